"""A destination's event filters (Segment's destination filters): events matching a drop rule
are not sent to the destination. Listed, added and removed here; routing applies them to
events received from then on."""

from __future__ import annotations

import re

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard.selectors.filters import drop_rules
from dashboard.views.request_info import acting_user
from destinations.conditions import OPERATORS
from destinations.delivery.filters import InvalidFilter, filter_add, filter_remove
from destinations.models import Destination
from destinations.web.condition_forms import ConditionRow, DropRuleForm
from destinations.web.pagination import parse_cursor

CONDITION_NUMBER = re.compile(r"^condition (\d+):")


@require_http_methods(["GET", "POST"])
def destination_filters(request: HttpRequest, destination_id: int) -> HttpResponse:
    destination = get_object_or_404(Destination, pk=destination_id)
    form = DropRuleForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and not form.row_action and form.is_valid():
        try:
            saved = filter_add(destination, form.drop_rule(), user=acting_user(request))
        except InvalidFilter as exc:
            report_invalid(form, exc)
        else:
            messages.success(
                request,
                f"Filter {len(saved)} added: matching events received from now on are not "
                f"sent to {destination.name}.",
            )
            return redirect("destination-filters", destination_id=destination.pk)
    context = {
        "destination": destination,
        "rules": drop_rules(destination),
        "form": form,
        "operators": OPERATORS.items(),
    }
    return render(request, "destinations/filters.html", context)


def report_invalid(form: DropRuleForm, exc: InvalidFilter) -> None:
    message = str(exc)
    form.add_error(None, message[:1].upper() + message[1:] + ".")
    number = CONDITION_NUMBER.match(message)
    if number:
        # The event name, when given, is the rule's first condition but has no row.
        named = 1 if form.typed_event_name() else 0
        form.mark_invalid_row(int(number.group(1)) - named)


@require_POST
def destination_filter_delete(request: HttpRequest, destination_id: int) -> HttpResponse:
    destination = get_object_or_404(Destination, pk=destination_id)
    number = parse_cursor(request.POST.get("number")) or 0
    removed = filter_remove(
        destination,
        number=number,
        seen=request.POST.get("fingerprint", ""),
        user=acting_user(request),
    )
    if removed:
        messages.success(
            request, "Filter removed: matching events received from now on are sent again."
        )
    else:
        messages.warning(
            request,
            "Nothing removed: the filters changed since this page was loaded. Check them again.",
        )
    return redirect("destination-filters", destination_id=destination.pk)


@require_GET
def condition_row(request: HttpRequest) -> HttpResponse:
    """One blank condition row, appended by the editors' "Add condition" button."""
    context = {"row": ConditionRow(), "operators": OPERATORS.items()}
    return render(request, "includes/condition_editor.html#condition-row", context)
