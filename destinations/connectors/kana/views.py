"""Kana mapping rules: the ordered list, the editor with Preview, applying a saved rule to
stored events (the reprocessing job's progress), and the unmapped events a rule can be made
from."""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from destinations.conditions import OPERATORS
from destinations.connectors.kana.forms import MappingRuleForm
from destinations.connectors.kana.rules import (
    InvalidRule,
    rule_delete,
    rule_move,
    rule_save,
    validate_rule,
)
from destinations.connectors.kana.selectors import (
    FeatureList,
    RulePreview,
    kana_destination,
    kana_destinations,
    kana_features,
    reprocess_job,
    reprocess_progress,
    rule_of,
    rule_preview,
    rules_with_counts,
    unmapped_groups,
    unmapped_total,
)
from destinations.models import Destination, JobStatus, MappingRule
from destinations.web.condition_forms import rows_from_conditions
from destinations.web.htmx import HtmxHttpRequest

JOB_FINISHED = (JobStatus.DONE, JobStatus.FAILED)
# validate_rule numbers the property conditions: "condition 2: ..." is the second filled row.
CONDITION_NUMBER = re.compile(r"^condition (\d+):")
# Preview does not depend on the feature; validate_rule insists on one, so preview lends it
# this stand-in and reports everything else validate_rule finds.
PREVIEW_FEATURE = "preview"


def destination_or_404(destination_id: int) -> Destination:
    destination = kana_destination(destination_id)
    if destination is None:
        raise Http404("Mapping rules belong to a Kana destination")
    return destination


def rule_or_404(destination: Destination, rule_id: int) -> MappingRule:
    rule = rule_of(destination, rule_id)
    if rule is None:
        raise Http404("No such rule")
    return rule


def operator(request: HtmxHttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


def rules_url(destination: Destination) -> str:
    return reverse("mapping-rules", args=[destination.pk])


# --- the list -------------------------------------------------------------------------------


@require_GET
def mapping_rules_index(request: HtmxHttpRequest) -> HttpResponse:
    """The nav's "Mapping rules": straight to the rules when there is one Kana destination."""
    destinations = kana_destinations()
    if len(destinations) == 1:
        return redirect("mapping-rules", destination_id=destinations[0].pk)
    return render(request, "mapping/index.html", {"destinations": destinations})


@require_GET
@vary_on_headers("HX-Request")
def mapping_rules(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    destination = destination_or_404(destination_id)
    return render_rules(request, destination)


def render_rules(request: HtmxHttpRequest, destination: Destination) -> HttpResponse:
    context = {
        "destination": destination,
        "rules": rules_with_counts(destination),
        "unmapped_total": unmapped_total(destination),
    }
    template = "mapping/rules.html"
    if request.htmx:
        template += "#rule-list"
    return render(request, template, context)


@require_POST
@vary_on_headers("HX-Request")
def mapping_rule_move(request: HtmxHttpRequest, destination_id: int, rule_id: int) -> HttpResponse:
    destination = destination_or_404(destination_id)
    rule = rule_or_404(destination, rule_id)
    rule_move(rule, up=request.POST.get("direction") != "down")
    if request.htmx:
        return render_rules(request, destination)
    return redirect(rules_url(destination))


@require_POST
def mapping_rule_toggle(
    request: HtmxHttpRequest, destination_id: int, rule_id: int
) -> HttpResponse:
    destination = destination_or_404(destination_id)
    rule = rule_or_404(destination, rule_id)
    try:
        rule, job = rule_save(
            destination=destination,
            event_name=rule.event_name,
            conditions=rule.conditions,
            feature_id=rule.feature_id,
            enabled=not rule.enabled,
            rule=rule,
            user=operator(request),
        )
    except InvalidRule as exc:
        change = "disabled" if rule.enabled else "enabled"
        messages.error(request, f"The rule for {rule.feature_id} cannot be {change}: {exc}.")
        return redirect(rules_url(destination))
    if job is not None:
        messages.success(
            request, f"Rule enabled: applying it to {job.total} stored unmapped events."
        )
        return redirect("mapping-rule-job", destination_id=destination.pk, job_id=job.pk)
    messages.warning(
        request,
        "Rule disabled: new events no longer match it. Usage it recorded stays recorded.",
    )
    return redirect(rules_url(destination))


@require_POST
def mapping_rule_delete(
    request: HtmxHttpRequest, destination_id: int, rule_id: int
) -> HttpResponse:
    destination = destination_or_404(destination_id)
    rule = rule_or_404(destination, rule_id)
    feature = rule.feature_id
    rule_delete(rule, user=request.user if isinstance(request.user, User) else None)
    messages.success(
        request, f"Rule for {feature} deleted. Usage it recorded stays recorded in Kana."
    )
    return redirect(rules_url(destination))


# --- the editor -----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def mapping_rule_new(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    destination = destination_or_404(destination_id)
    return edit_rule(request, destination, rule=None)


@require_http_methods(["GET", "POST"])
def mapping_rule_edit(request: HtmxHttpRequest, destination_id: int, rule_id: int) -> HttpResponse:
    destination = destination_or_404(destination_id)
    return edit_rule(request, destination, rule=rule_or_404(destination, rule_id))


def edit_rule(
    request: HtmxHttpRequest, destination: Destination, *, rule: MappingRule | None
) -> HttpResponse:
    form = rule_form(request, destination, rule)
    if request.method == "POST" and not form.row_action:
        try:
            _, job = rule_save(
                destination=destination,
                event_name=form.typed_event_name(),
                conditions=form.conditions(),
                feature_id=form.feature(),
                enabled=form.is_enabled(),
                rule=rule,
                user=operator(request),
            )
        except InvalidRule as exc:
            report_invalid(form, exc)
        else:
            if job is not None:
                messages.success(
                    request,
                    f"Rule saved: applying it to {job.total} stored unmapped "
                    f"event{'' if job.total == 1 else 's'}.",
                )
                return redirect("mapping-rule-job", destination_id=destination.pk, job_id=job.pk)
            messages.success(request, "Rule saved, disabled: it matches nothing until enabled.")
            return redirect(rules_url(destination))
    return render_editor(request, destination, form, rule=rule)


def rule_form(
    request: HtmxHttpRequest, destination: Destination, rule: MappingRule | None
) -> MappingRuleForm:
    features = kana_features(destination)
    current = rule.feature_id if rule else ""
    if request.method == "POST":
        return MappingRuleForm(request.POST, features=features, current_feature=current)
    if rule is not None:
        initial = {"event_name": rule.event_name, "feature_id": rule.feature_id}
        return MappingRuleForm(
            features=features,
            current_feature=current,
            rows=rows_from_conditions(rule.conditions or []),
            initial={**initial, "enabled": rule.enabled},
        )
    # "Create a rule from this" on the Unmapped events page passes the event name.
    return MappingRuleForm(features=features, initial={"event_name": request.GET.get("event", "")})


def report_invalid(form: MappingRuleForm, exc: InvalidRule) -> None:
    message = str(exc)
    form.add_error(None, message[:1].upper() + message[1:] + ".")
    number = CONDITION_NUMBER.match(message)
    if number:
        form.mark_invalid_row(int(number.group(1)))


def render_editor(
    request: HtmxHttpRequest,
    destination: Destination,
    form: MappingRuleForm,
    *,
    rule: MappingRule | None,
    preview: RulePreview | None = None,
    preview_problem: str = "",
) -> HttpResponse:
    if rule is None:
        action = reverse("mapping-rule-new", args=[destination.pk])
    else:
        action = reverse("mapping-rule-edit", args=[destination.pk, rule.pk])
    context = {
        "destination": destination,
        "rule": rule,
        "form": form,
        "action": action,
        "operators": OPERATORS.items(),
        "event_names": [g.event_name for g in unmapped_groups(destination) if g.event_name],
        "preview": preview,
        "preview_problem": preview_problem,
    }
    return render(request, "mapping/editor.html", context)


@require_POST
@vary_on_headers("HX-Request")
def mapping_rule_preview(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    """How many stored unmapped events the rule as typed would match, with examples. Nothing
    is saved. htmx swaps in the result; without JavaScript the editor comes back with it."""
    destination = destination_or_404(destination_id)
    rule = None
    rule_id = request.POST.get("rule")
    if rule_id and rule_id.isdigit():
        rule = rule_or_404(destination, int(rule_id))
    htmx = bool(request.htmx)
    if htmx:
        # The fragment shows no feature field, so Kana is not asked for its list.
        form = MappingRuleForm(request.POST, features=FeatureList([]))
    else:
        form = rule_form(request, destination, rule)
    preview = None
    problem = ""
    try:
        conditions = validate_rule(
            event_name=form.typed_event_name(),
            conditions=form.conditions(),
            feature_id=PREVIEW_FEATURE,
        )
    except InvalidRule as exc:
        problem = str(exc)
    else:
        preview = rule_preview(
            destination, event_name=form.typed_event_name(), conditions=conditions
        )
    if htmx:
        context = {"preview": preview, "preview_problem": problem, "form": form}
        return render(request, "mapping/editor.html#rule-preview", context)
    return render_editor(
        request, destination, form, rule=rule, preview=preview, preview_problem=problem
    )


# --- the reprocessing job -------------------------------------------------------------------


@require_GET
@vary_on_headers("HX-Request")
def mapping_rule_job(request: HtmxHttpRequest, destination_id: int, job_id: int) -> HttpResponse:
    """A saved rule applied to stored unmapped events: scanned and matched while the job
    runs, then the usage it queued being delivered. Polled every second; answers 286 once
    the job is finished and nothing it queued is still on its way."""
    destination = destination_or_404(destination_id)
    found = reprocess_job(job_id, destination)
    if found is None:
        raise Http404("No such job")
    job, rule = found
    progress = reprocess_progress(job, rule, destination)
    context = {
        "job": job,
        "rule": rule,
        "destination": destination,
        "reprocess": progress,
        "poll_url": reverse("mapping-rule-job", args=[destination.pk, job.pk]),
    }
    if not request.htmx:
        return render(request, "mapping/job.html", context)
    response = render(request, "jobs/detail.html#job-progress", context)
    if job.status in JOB_FINISHED and not (progress and progress.following):
        stop = HttpResponseStopPolling(response.content)
        return trigger_client_event(stop, "job-done")
    return response


# --- unmapped events ------------------------------------------------------------------------


@require_GET
def mapping_unmapped(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    destination = destination_or_404(destination_id)
    groups = unmapped_groups(destination)
    context = {
        "destination": destination,
        "groups": groups,
        "unmapped_total": unmapped_total(destination) if groups else 0,
    }
    return render(request, "mapping/unmapped.html", context)
