"""Refiner's own data, read through a Refiner destination: contacts (the List Contacts module's
Order by, Form UUID, Segment UUID and Limit, paged by cursor), one contact, segments, forms,
responses, and the API console (Make an API Call).

With several Refiner destinations, ``?destination=<id>`` picks one and every link keeps it;
the pick is remembered for the session, so the Refiner menu and the API console open on it.
Refiner's errors are shown on the page, never as a 500.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers

from destinations.connectors.refiner.api import (
    ConsoleResult,
    RefinerApiError,
    console_call,
)
from destinations.connectors.refiner.forms import (
    ConsoleForm,
    ContactFilterForm,
    FormListForm,
    ResponseFilterForm,
)
from destinations.connectors.refiner.selectors import (
    SECRETS_UNREADABLE,
    Fetched,
    contact_by_uuid,
    contacts_page,
    forms_page,
    linked_to_users,
    refiner_choice,
    responses_page,
    segments_page,
)
from destinations.crypto import SecretsUnreadable
from destinations.models import AuditAction, Destination
from destinations.web.htmx import HtmxHttpRequest
from destinations.web.pagination import parse_cursor, parse_page_number

CONSOLE_PREFILL = ("url", "method", "query")


PICKED_REFINER = "refiner-destination"


def refiner_of(request: HtmxHttpRequest) -> tuple[Destination | None, dict[str, Any]]:
    """The destination the page reads from, and what every Refiner page shows about the
    choice (the picker, and ``keep``: the query that keeps it on links)."""
    asked = parse_cursor(request.POST.get("destination") or request.GET.get("destination"))
    remembered = request.session.get(PICKED_REFINER)
    choice = refiner_choice(asked, remembered if isinstance(remembered, int) else None)
    if asked and choice.current and choice.current.pk == asked and remembered != asked:
        request.session[PICKED_REFINER] = asked
    several = len(choice.options) > 1
    keep = f"destination={choice.current.pk}" if choice.current and several else ""
    return choice.current, {
        "refiner": choice.current,
        "refiner_options": choice.options,
        "keep": keep,
    }


def paging(request: HtmxHttpRequest, next_cursor: str | None) -> dict[str, str]:
    """Query strings for "First page" and "Next": the same filters, without or with a cursor."""
    params: QueryDict = request.GET.copy()
    params.pop("cursor", None)
    first = params.urlencode()
    following = ""
    if next_cursor:
        params["cursor"] = next_cursor
        following = params.urlencode()
    return {"first_query": first, "next_query": following}


@require_GET
def refiner_home(request: HtmxHttpRequest) -> HttpResponse:
    query = request.GET.urlencode()
    return redirect(reverse("refiner-contacts") + (f"?{query}" if query else ""))


@require_GET
@vary_on_headers("HX-Request")
def contact_list(request: HtmxHttpRequest) -> HttpResponse:
    refiner, context = refiner_of(request)
    form = ContactFilterForm(request.GET or None)
    query = form.query()
    fetched = contacts_page(refiner, query) if refiner and query else Fetched()
    page = fetched.value
    context.update(
        form=form,
        fetched=fetched,
        rows=linked_to_users(page.items) if page else [],
        cursor=query.cursor if query else "",
        **paging(request, page.next_cursor if page else None),
    )
    template = "refiner/contacts.html"
    return render(request, template + "#contact-results" if request.htmx else template, context)


@require_GET
def contact_detail(request: HtmxHttpRequest, uuid: str) -> HttpResponse:
    refiner, context = refiner_of(request)
    fetched = contact_by_uuid(refiner, uuid) if refiner else Fetched()
    contact = fetched.value or {}
    [(_, profile_id)] = linked_to_users([contact])
    attributes = contact.get("attributes")
    context.update(
        uuid=uuid,
        fetched=fetched,
        contact=contact,
        profile_id=profile_id,
        attributes=sorted(attributes.items()) if isinstance(attributes, dict) else [],
    )
    return render(request, "refiner/contact.html", context)


@require_GET
def segment_list(request: HtmxHttpRequest) -> HttpResponse:
    refiner, context = refiner_of(request)
    number = parse_page_number(request.GET.get("page"))
    context["fetched"] = segments_page(refiner, number=number) if refiner else Fetched()
    return render(request, "refiner/segments.html", context)


@require_GET
def form_list(request: HtmxHttpRequest) -> HttpResponse:
    refiner, context = refiner_of(request)
    form = FormListForm(request.GET or None)
    which = form.which_value()
    number = parse_page_number(request.GET.get("page"))
    fetched = forms_page(refiner, which=which, number=number) if refiner else Fetched()
    context.update(form=form, which=which, fetched=fetched)
    return render(request, "refiner/forms.html", context)


@require_GET
@vary_on_headers("HX-Request")
def response_list(request: HtmxHttpRequest) -> HttpResponse:
    refiner, context = refiner_of(request)
    form = ResponseFilterForm(request.GET or None)
    query = form.query()
    fetched = responses_page(refiner, query) if refiner and query else Fetched()
    page = fetched.value
    context.update(
        form=form,
        fetched=fetched,
        rows=linked_to_users(page.items, key="contact") if page else [],
        cursor=query.cursor if query else "",
        **paging(request, page.next_cursor if page else None),
    )
    template = "refiner/responses.html"
    return render(request, template + "#response-results" if request.htmx else template, context)


@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
def console(request: HtmxHttpRequest) -> HttpResponse:
    """Make an API Call. The service confines it to the Base URL and writes it to the audit
    log; its refusals (and Refiner's network errors) come back here as the answer."""
    refiner, context = refiner_of(request)
    prefill = {k: v for k, v in request.GET.items() if k in CONSOLE_PREFILL}
    form = ConsoleForm(request.POST or None, initial=prefill or None)
    result: ConsoleResult | None = None
    error = ""
    if request.method == "POST" and refiner and form.is_valid():
        actor = request.user if isinstance(request.user, User) else None
        try:
            result = console_call(refiner, actor=actor, **form.call_arguments())
        except RefinerApiError as exc:
            error = str(exc)
        except SecretsUnreadable:
            error = SECRETS_UNREADABLE
    context.update(
        form=form,
        result=result,
        error=error,
        audit_action=AuditAction.REFINER_API_CALL.value,
    )
    template = "refiner/console.html"
    return render(request, template + "#console-panel" if request.htmx else template, context)
