"""Audiences: the list, the editor (conditions built by posting the form back, Preview, the
key shown as the name is typed), the audience page (its computation's progress, size over time,
members, syncs per destination) and deletion."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from dashboard.charts import size_chart
from dashboard.forms.audiences import (
    COUNT_CHOICES,
    AudienceForm,
    ConditionBuilder,
    DeleteAudienceForm,
    MemberSearchForm,
)
from dashboard.selectors import audiences as selectors
from dashboard.selectors.audience_words import definition_words
from dashboard.views.request_info import acting_user
from destinations.audiences.definition import LEAF_OPERATORS, MATCHES
from destinations.audiences.keys import snake_key
from destinations.audiences.services import (
    InvalidAudience,
    audience_create,
    audience_delete,
    audience_update,
    checked_definition,
    preview,
)
from destinations.models import Audience, AudienceSubject, Job
from destinations.web.htmx import HtmxHttpRequest
from destinations.web.pagination import parse_cursor

NAME_LIMIT = 200


def audience_or_404(audience_id: int) -> Audience:
    audience = selectors.audience_detail(audience_id)
    if audience is None:
        raise Http404("No such audience")
    return audience


# --- the list -------------------------------------------------------------------------------


@require_GET
def audience_list(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "audiences/list.html", {"rows": selectors.audience_rows()})


# --- the editor -----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
def audience_new(request: HtmxHttpRequest) -> HttpResponse:
    return edit_audience(request, audience=None)


@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
def audience_edit(request: HtmxHttpRequest, audience_id: int) -> HttpResponse:
    return edit_audience(request, audience=audience_or_404(audience_id))


def edit_audience(request: HtmxHttpRequest, *, audience: Audience | None) -> HttpResponse:
    destinations = selectors.sync_destinations()
    if request.method != "POST":
        form, builder = unbound_editor(audience, destinations)
        return render_editor(request, form, builder)
    form = AudienceForm(request.POST, audience=audience, destinations=destinations)
    builder = ConditionBuilder.from_post(request.POST, form.subject_value())
    if builder.acted or "refresh" in request.POST:
        # A condition added or removed, or the subject changed: the form comes back as typed.
        if request.htmx:
            return render_builder(request, builder, audience)
        return render_editor(request, form, builder)
    try:
        if form.is_valid():
            return save(request, form, builder, audience)
        # The name is wrong: say what is wrong with the conditions too, if anything.
        checked_definition(
            builder.subject, builder.definition(), audience_id=audience.pk if audience else None
        )
    except InvalidAudience as exc:
        report_invalid(form, builder, str(exc))
    return render_editor(request, form, builder)


def unbound_editor(
    audience: Audience | None, destinations: list[Any]
) -> tuple[AudienceForm, ConditionBuilder]:
    if audience is None:
        form = AudienceForm(destinations=destinations)
        return form, ConditionBuilder(AudienceSubject.USERS)
    targets = list(audience.targets.values_list("destination_id", "refiner_segment"))
    initial = {
        "name": audience.name,
        "destinations": [pk for pk, _ in targets],
        "segments": {pk: segment for pk, segment in targets if segment},
    }
    form = AudienceForm(audience=audience, destinations=destinations, initial=initial)
    return form, ConditionBuilder.from_definition(audience.definition, audience.subject)


def save(
    request: HtmxHttpRequest,
    form: AudienceForm,
    builder: ConditionBuilder,
    audience: Audience | None,
) -> HttpResponse:
    """Raises InvalidAudience for the form to show; otherwise on to the audience page, where
    the computation's progress shows."""
    job: Job | None
    if audience is None:
        audience, job = audience_create(
            name=form.cleaned_data["name"],
            subject=form.subject_value(),
            definition=builder.definition(),
            destination_ids=form.chosen_destinations(),
            segments=form.chosen_segments(),
            actor=acting_user(request),
        )
        messages.success(
            request, f"Audience {audience.name!r} created: computing who is in it now."
        )
    else:
        job = audience_update(
            audience,
            name=form.cleaned_data["name"],
            definition=builder.definition(),
            destination_ids=form.chosen_destinations(),
            segments=form.chosen_segments(),
            actor=acting_user(request),
        )
        audience.refresh_from_db()
        if job is None:
            messages.success(
                request, f"Audience {audience.name!r} saved. Its conditions did not change."
            )
        else:
            messages.success(
                request,
                f"Audience {audience.name!r} saved: computing it again; only changes are sent.",
            )
    url = reverse("audience-detail", args=[audience.pk])
    return redirect(f"{url}?job={job.pk}" if job is not None else url)


def report_invalid(form: AudienceForm, builder: ConditionBuilder, message: str) -> None:
    form.add_error(None, message[:1].upper() + message[1:] + ".")
    builder.mark_invalid(message)


def editor_context(builder: ConditionBuilder, audience: Audience | None) -> dict[str, Any]:
    builder.offer_audiences(
        selectors.audience_choices(builder.subject, exclude=audience.pk if audience else None)
    )
    if audience is None:
        action = reverse("audience-new")
    else:
        action = reverse("audience-edit", args=[audience.pk])
    return {
        "audience": audience,
        "builder": builder,
        "action": action,
        "operators": LEAF_OPERATORS.items(),
        "counts": COUNT_CHOICES.items(),
        "matches": MATCHES.items(),
    }


def render_builder(
    request: HtmxHttpRequest, builder: ConditionBuilder, audience: Audience | None
) -> HttpResponse:
    context = editor_context(builder, audience)
    return render(request, "audiences/form.html#builder", context)


def render_editor(
    request: HtmxHttpRequest,
    form: AudienceForm,
    builder: ConditionBuilder,
    *,
    result: selectors.PreviewResult | None = None,
) -> HttpResponse:
    audience = form.audience
    form.offer_segments(
        {d.pk: selectors.refiner_segments(d) for d in form.all_destinations if d.kind == "refiner"}
    )
    context = {
        **editor_context(builder, audience),
        "form": form,
        "key": key_status(form.typed_name()) if audience is None else None,
        "result": result,
    }
    return render(request, "audiences/form.html", context)


def key_status(name: str) -> dict[str, str]:
    """The key a name makes, or why it cannot be used."""
    name = name.strip()
    if not name:
        return {"key": "", "problem": ""}
    if len(name) > NAME_LIMIT:
        return {"key": "", "problem": f"a name is at most {NAME_LIMIT} characters"}
    key = snake_key(name)
    if not key:
        return {"key": "", "problem": "the name needs a letter or digit to make its key from"}
    holder = selectors.key_holder(key)
    if holder is not None:
        return {"key": key, "problem": f"the audience {holder.name!r} already has this key"}
    return {"key": key, "problem": ""}


@require_GET
def audience_key(request: HtmxHttpRequest) -> HttpResponse:
    """The key the name typed so far makes, as the form shows it (htmx, as the name is typed)."""
    context = {"key": key_status(str(request.GET.get("name", "")))}
    return render(request, "audiences/form.html#key-preview", context)


@require_POST
@vary_on_headers("HX-Request")
def audience_preview(request: HtmxHttpRequest) -> HttpResponse:
    """How many match now, with examples; nothing is saved. htmx swaps in the result; without
    JavaScript the editor comes back with it."""
    audience_id = parse_cursor(request.POST.get("audience"))
    audience = audience_or_404(audience_id) if audience_id is not None else None
    destinations = selectors.sync_destinations()
    form = AudienceForm(request.POST, audience=audience, destinations=destinations)
    builder = ConditionBuilder.from_post(request.POST, form.subject_value())
    try:
        found = preview(
            builder.subject, builder.definition(), audience_id=audience.pk if audience else None
        )
    except InvalidAudience as exc:
        builder.mark_invalid(str(exc))
        result = selectors.PreviewResult(problem=str(exc), subject=builder.subject)
    else:
        result = selectors.PreviewResult(preview=found, subject=builder.subject)
    if request.htmx:
        return render(request, "audiences/form.html#audience-preview", {"result": result})
    return render_editor(request, form, builder, result=result)


# --- one audience ---------------------------------------------------------------------------


@require_GET
def audience_show(request: HtmxHttpRequest, audience_id: int) -> HttpResponse:
    audience = audience_or_404(audience_id)
    search = MemberSearchForm(request.GET or None)
    term = search.cleaned_data["q"] if search.is_valid() else ""
    before = parse_cursor(request.GET.get("before"))
    definition_match, words = definition_words(audience.definition)
    context = {
        "audience": audience,
        "job": selectors.audience_job(audience, parse_cursor(request.GET.get("job"))),
        "last_computed": selectors.last_computed(audience),
        "changes": selectors.recent_changes(audience),
        "chart": size_chart(selectors.daily_sizes(audience)),
        "size_legend": [("size", "Members at the end of the day")],
        "members": selectors.members_page(audience, search=term, before=before),
        "search": search,
        "term": term,
        "older_page": before is not None,
        "syncs": selectors.destination_syncs(audience),
        "definition_match": definition_match,
        "words": words,
        "accounts": audience.subject == AudienceSubject.ACCOUNTS,
    }
    return render(request, "audiences/detail.html", context)


@require_http_methods(["GET", "POST"])
def audience_remove(request: HtmxHttpRequest, audience_id: int) -> HttpResponse:
    audience = audience_or_404(audience_id)
    # Bound on POST only: an empty POST is a form error (tell them or not?), never a guess.
    form = DeleteAudienceForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        name = audience.name
        try:
            told = audience_delete(
                audience, tell_members=form.tell_members(), actor=acting_user(request)
            )
        except InvalidAudience as exc:
            messages.error(request, f"{name!r} was not deleted: {exc}.")
            return redirect("audience-detail", audience_id=audience.pk)
        if form.tell_members():
            messages.success(
                request,
                f"Audience {name!r} deleted; {told} member{'' if told == 1 else 's'} told "
                "they left.",
            )
        else:
            messages.success(request, f"Audience {name!r} deleted; members were not told.")
        return redirect("audience-list")
    context = {
        "audience": audience,
        "form": form,
        "syncs": selectors.destination_syncs(audience),
        "used_by": selectors.audiences_using(audience),
    }
    return render(request, "audiences/delete.html", context)
