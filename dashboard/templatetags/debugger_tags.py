"""The debugger's pretty views, written out in Python: a page holds a hundred rows of a few
dozen fields each, and joining escaped strings here is several times faster than a template
loop per field, or ``format_html`` per field. Every value is escaped all the same."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from django import template
from django.utils.safestring import SafeString, mark_safe

from dashboard.selectors.debugger import PrettyField, PrettySection

register = template.Library()


def value_cell(tag: str, field: PrettyField) -> str:
    return f'<{tag} class="value-{escape(field.kind)}">{escape(field.value)}</{tag}>'


@register.filter
def fact_list(facts: Sequence[PrettyField]) -> SafeString:
    items = "".join(f"<dt>{escape(f.name)}</dt>{value_cell('dd', f)}" for f in facts)
    # Safe: every name and value was escaped just above.
    return mark_safe(f'<dl class="debug-facts">{items}</dl>')


@register.filter
def field_table(section: PrettySection) -> SafeString:
    rows = "".join(
        f"<tr><th>{escape(f.name)}</th>{value_cell('td', f)}</tr>" for f in section.fields
    )
    more = (
        f'<p class="muted small-note">and {section.hidden} more: see Raw.</p>'
        if section.hidden
        else ""
    )
    # Safe: every name and value was escaped just above.
    return mark_safe(f'<h3>{escape(section.title)}</h3><table class="kv">{rows}</table>{more}')
