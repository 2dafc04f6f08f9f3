"""The condition editor's form, shared by Kana's mapping rules and destinations' event filters.

Both edit the same thing: an optional event name and any number of property conditions, all
ANDed. Condition rows are repeated inputs named ``path``, ``op`` and ``value`` (browsers keep
their order), so htmx can append a row fragment without renumbering anything.

Paths as operators type them: ``object.name`` means ``properties.object.name``, as in Kana's
own rule editor. A path that starts with ``properties.``, ``context.`` or ``traits.`` is taken
as written. The engine stores and evaluates full paths into the payload
(``destinations.conditions``); ``full_path`` and ``shown_path`` convert between the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.http import QueryDict

TOP_LEVEL_KEYS = ("properties", "context", "traits")
DEFAULT_OPERATOR = "equals"
# Empty rows rendered below the filled ones: one to type into; "Add condition" adds more.
BLANK_ROWS = 1
ROW_LIMIT = 50


def full_path(typed: str) -> str:
    """The payload path for what the operator typed: inside ``properties`` unless it names
    another top-level object."""
    path = typed.strip()
    if not path:
        return ""
    if path.split(".", 1)[0] in TOP_LEVEL_KEYS:
        return path
    return f"properties.{path}"


def shown_path(path: str) -> str:
    """The inverse of ``full_path`` wherever one exists: ``properties.object.name`` shows as
    ``object.name``; ``properties.context.x`` keeps its prefix, or it would read as
    ``context.x``."""
    prefix = "properties."
    if path.startswith(prefix):
        rest = path[len(prefix) :]
        if rest and rest.split(".", 1)[0] not in TOP_LEVEL_KEYS:
            return rest
    return path


@dataclass
class ConditionRow:
    """One row of the condition editor, as shown and as typed."""

    path: str = ""
    op: str = DEFAULT_OPERATOR
    value: str = ""
    invalid: bool = False

    @property
    def is_blank(self) -> bool:
        return not self.path.strip() and not self.value.strip()

    def as_condition(self) -> dict[str, Any]:
        condition: dict[str, Any] = {"path": full_path(self.path), "op": self.op}
        # "exists" compares nothing: a value typed beside it is left out rather than stored.
        if self.op != "exists":
            condition["value"] = self.value
        return condition


def rows_from_conditions(conditions: Sequence[Mapping[str, Any]]) -> list[ConditionRow]:
    return [
        ConditionRow(
            path=shown_path(str(c.get("path", ""))),
            op=str(c.get("op", DEFAULT_OPERATOR)),
            value="" if c.get("value") is None else str(c.get("value")),
        )
        for c in conditions
    ]


def rows_from_post(data: QueryDict) -> list[ConditionRow]:
    """The posted rows, filled ones first (in the order typed), then the blank ones."""
    paths, ops, values = data.getlist("path"), data.getlist("op"), data.getlist("value")
    rows = [
        ConditionRow(
            path=path.strip(),
            op=ops[i] if i < len(ops) else DEFAULT_OPERATOR,
            value=values[i].strip() if i < len(values) else "",
        )
        for i, path in enumerate(paths[:ROW_LIMIT])
    ]
    return [row for row in rows if not row.is_blank] + [row for row in rows if row.is_blank]


class ConditionsForm(forms.Form):
    """An optional event name and condition rows. Without JavaScript, "Add condition" and a
    row's "Remove" are submit buttons: the form comes back with the row added or gone."""

    event_name = forms.CharField(
        required=False,
        max_length=255,
        label="Event name",
        help_text="Leave blank to match any event name.",
    )

    def __init__(
        self,
        data: QueryDict | None = None,
        *,
        rows: Sequence[ConditionRow] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(data, **kwargs)
        self.rows: list[ConditionRow] = rows_from_post(data) if data is not None else list(rows)
        self.row_action = False
        if data is not None and "add_condition" in data:
            self.row_action = True
            self.rows.append(ConditionRow())
        if data is not None and "remove_condition" in data:
            self.row_action = True
            self._remove_row(data.get("remove_condition", ""))

    def _remove_row(self, number: str) -> None:
        # The number counts the rows as they were shown: filled ones first, as they are here.
        try:
            index = int(number) - 1
        except ValueError:
            return
        if 0 <= index < len(self.rows):
            del self.rows[index]

    @property
    def editing_rows(self) -> list[ConditionRow]:
        """What the editor shows: the filled rows, then at least one blank row to type into."""
        if any(row.is_blank for row in self.rows):
            return self.rows
        return self.rows + [ConditionRow() for _ in range(BLANK_ROWS)]

    def typed_event_name(self) -> str:
        if self.is_bound and self.is_valid():
            return str(self.cleaned_data["event_name"]).strip()
        return str(self.data.get("event_name", "")).strip() if self.is_bound else ""

    def conditions(self) -> list[dict[str, Any]]:
        return [row.as_condition() for row in self.rows if not row.is_blank]

    def mark_invalid_row(self, number: int) -> None:
        """Highlight the row a validation message numbers (1 = first filled row)."""
        filled = [row for row in self.rows if not row.is_blank]
        if 1 <= number <= len(filled):
            filled[number - 1].invalid = True


class DropRuleForm(ConditionsForm):
    """A drop rule for a destination: the event name (if given) and every condition must
    match for an event to be kept from the destination."""

    def drop_rule(self) -> list[dict[str, Any]]:
        name = self.typed_event_name()
        named = [{"path": "event", "op": "equals", "value": name}] if name else []
        return named + self.conditions()
