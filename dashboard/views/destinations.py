"""Destinations: the list with health, add and edit (settings form from the connector),
enable/disable, resume after the breaker paused it, Test connection, and generating a secret
Switchboard makes itself (a webhook's signing secret), shown once more after saving."""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from dashboard.forms.destinations import DestinationForm, generate_secret, generated_secret_name
from dashboard.selectors.destinations import (
    connector_of,
    destination_kinds,
    stored_secrets,
)
from dashboard.views.request_info import acting_user
from destinations.crypto import SecretsUnreadable
from destinations.delivery import services
from destinations.delivery.contract import Connector
from destinations.delivery.health import destinations_with_health
from destinations.kinds import kind_label
from destinations.models import Destination
from destinations.web.htmx import HtmxHttpRequest
from destinations.web.navigation import redirect_back

UNREADABLE_SECRETS = (
    "The saved secrets cannot be decrypted: SWITCHBOARD_ENCRYPTION_KEY has changed. "
    "Enter them again."
)


def connector_or_404(kind: str) -> Connector:
    connector = connector_of(kind)
    if connector is None:
        raise Http404(f"No destination kind {kind!r}")
    return connector


def revealed(connector: Connector, data: Mapping[str, str]) -> set[str]:
    """A generated secret typed or generated into the form stays visible when it comes back."""
    name = generated_secret_name(connector)
    return {name} if name and data.get(name) else set()


@require_GET
def destination_list(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "destinations/list.html", {"destinations": destinations_with_health()})


@require_GET
def destination_choose_kind(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "destinations/choose_kind.html", {"kinds": destination_kinds()})


@sensitive_post_parameters()
def destination_new(request: HtmxHttpRequest, kind: str) -> HttpResponse:
    connector = connector_or_404(kind)
    generated = generated_secret_name(connector)
    if request.method != "POST" and generated:
        # Signed by default: the new form comes with a fresh secret the operator can clear.
        secret = generate_secret(generated)
        form = DestinationForm(connector=connector, initial={generated: secret}, reveal={generated})
    else:
        form = DestinationForm(
            request.POST or None, connector=connector, reveal=revealed(connector, request.POST)
        )
    if request.method == "POST" and form.is_valid():
        try:
            destination = services.destination_create(
                kind=kind, actor=acting_user(request), **form.service_values()
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Destination {destination.name!r} created.")
            return saved(request, form, destination)
    return render_form(request, form, destination=None)


@sensitive_post_parameters()
def destination_edit(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    destination = get_object_or_404(Destination, pk=destination_id)
    connector = connector_or_404(destination.kind)
    secrets, readable = stored_secrets(destination)
    generated = generated_secret_name(connector)
    if request.method != "POST" and generated and "generate" in request.GET:
        # Generate without JavaScript: the form as stored, with a new secret in the field.
        initial = {"name": destination.name, "enabled": destination.enabled}
        initial.update({**destination.settings, generated: generate_secret(generated)})
        form = DestinationForm(
            connector=connector,
            instance=destination,
            stored_secrets=secrets,
            initial=initial,
            reveal={generated},
        )
    else:
        form = DestinationForm(
            request.POST or None,
            connector=connector,
            instance=destination,
            stored_secrets=secrets,
            reveal=revealed(connector, request.POST),
        )
    if not readable and request.method != "POST":
        form.add_error(None, UNREADABLE_SECRETS)
    if request.method == "POST" and form.is_valid():
        try:
            services.destination_update(
                destination, actor=acting_user(request), **form.service_values()
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Destination {destination.name!r} saved.")
            return saved(request, form, destination)
    return render_form(request, form, destination=destination)


def saved(
    request: HtmxHttpRequest, form: DestinationForm, destination: Destination
) -> HttpResponse:
    """To the Event delivery page; or, when a generated secret was just set, a page showing it
    this once, to copy to the receiver. It is in this response only (not the session or a
    message), and the response is not cached, so Back does not bring it up again."""
    new_secret = form.new_generated_secret()
    if new_secret is None:
        return redirect("destination-delivery", destination_id=destination.pk)
    label, value = new_secret
    context = {"destination": destination, "secret_label": label, "secret": value}
    response = render(request, "destinations/secret_once.html", context)
    add_never_cache_headers(response)
    return response


def render_form(
    request: HtmxHttpRequest,
    form: DestinationForm,
    *,
    destination: Destination | None,
    test_result: services.ConnectionTest | None = None,
) -> HttpResponse:
    generated = generated_secret_name(form.connector)
    if destination is None:
        test_url = reverse("destination-test-new", args=[form.connector.kind])
        form_url = reverse("destination-new-kind", args=[form.connector.kind])
    else:
        test_url = reverse("destination-test", args=[destination.pk])
        form_url = reverse("destination-edit", args=[destination.pk])
    context = {
        "form": form,
        "destination": destination,
        "connector": form.connector,
        "kind_label": kind_label(form.connector.kind),
        "test_url": test_url,
        "test_result": test_result,
        # Generate: a link to this form with a new secret (no JS), or just the field (htmx).
        "generate_href": f"{form_url}?generate=1" if generated else "",
        "generate_url": (
            reverse("destination-generate-secret", args=[form.connector.kind]) if generated else ""
        ),
        "generated_field": generated,
        "generated_label": form.fields[generated].label if generated else "",
    }
    return render(request, "destinations/form.html", context)


@require_POST
@vary_on_headers("HX-Request")
@sensitive_post_parameters()
def destination_test(
    request: HtmxHttpRequest, kind: str | None = None, destination_id: int | None = None
) -> HttpResponse:
    """Try the settings as typed, before saving them. On an existing destination a blank
    secret means the stored one, as it does when saving."""
    destination = None
    secrets: dict[str, str] = {}
    if destination_id is not None:
        destination = get_object_or_404(Destination, pk=destination_id)
        kind = destination.kind
        secrets, _ = stored_secrets(destination)
    connector = connector_or_404(kind or "")
    form = DestinationForm(
        request.POST,
        connector=connector,
        instance=destination,
        stored_secrets=secrets,
        reveal=revealed(connector, request.POST),
    )
    config, problem = form.connection_config()
    result = (
        services.ConnectionTest(False, problem)
        if config is None
        else services.test_connection(connector.kind, config)
    )
    if request.htmx:
        return render(request, "includes/test_result.html", {"test_result": result})
    return render_form(request, form, destination=destination, test_result=result)


@require_POST
@vary_on_headers("HX-Request")
def destination_test_stored(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    """Send test (Test connection) from a destination's page, with its saved settings: a
    webhook's receiver gets a sample event without opening the settings."""
    destination = get_object_or_404(Destination, pk=destination_id)
    connector = connector_or_404(destination.kind)
    try:
        config = destination.config()
    except SecretsUnreadable:
        result = services.ConnectionTest(False, UNREADABLE_SECRETS)
    else:
        result = services.test_connection(connector.kind, config)
    if request.htmx:
        return render(request, "includes/test_result.html", {"test_result": result})
    if result.ok:
        messages.success(request, f"{connector.test_label}: {result.message}")
    else:
        messages.error(request, f"{connector.test_label}: {result.message}")
    return redirect("destination-delivery", destination_id=destination.pk)


@require_GET
@vary_on_headers("HX-Request")
def destination_generate_secret(request: HtmxHttpRequest, kind: str) -> HttpResponse:
    """Generate, with htmx: the field's input again, holding a fresh secret in clear. Nothing is
    stored until the form is saved. Without htmx the link itself (the form with ``?generate``)
    does the same for the whole form."""
    connector = connector_or_404(kind)
    name = generated_secret_name(connector)
    if name is None:
        raise Http404(f"{connector.display_name} has no secret to generate")
    if not request.htmx:
        return redirect(reverse("destination-new-kind", args=[kind]) + "?generate=1")
    form = DestinationForm(
        connector=connector, initial={name: generate_secret(name)}, reveal={name}
    )
    return render(request, "destinations/form.html#generated-secret", {"field": form[name]})


@require_POST
def destination_toggle(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    destination = get_object_or_404(Destination, pk=destination_id)
    services.destination_set_enabled(
        destination, not destination.enabled, actor=acting_user(request)
    )
    if destination.enabled:
        messages.success(request, f"{destination.name} enabled: new events are routed to it.")
    else:
        messages.warning(
            request,
            f"{destination.name} disabled: new events are not routed to it, and what is "
            "waiting is held until it is enabled again.",
        )
    return redirect_back(request, reverse("destination-list"))


@require_POST
def destination_resume(request: HtmxHttpRequest, destination_id: int) -> HttpResponse:
    destination = get_object_or_404(Destination, pk=destination_id)
    woken = services.destination_resume(destination, actor=acting_user(request))
    messages.success(
        request, f"{destination.name} resumed: {woken} waiting deliveries will be sent now."
    )
    return redirect_back(request, reverse("destination-delivery", args=[destination.pk]))
