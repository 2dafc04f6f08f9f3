"""Computed traits: listed, made, changed and deleted (operators); read by everyone."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard.forms.computed_traits import ComputedTraitForm, initial_of
from dashboard.views.request_info import acting_user
from destinations.audiences.services import InvalidAudience
from destinations.audiences.trait_services import (
    describe_trait,
    trait_create,
    trait_delete,
    trait_update,
)
from destinations.models import ComputedTrait


@require_GET
def trait_list(request: HttpRequest) -> HttpResponse:
    traits = (
        ComputedTrait.objects.annotate(users=Count("values", distinct=True))
        .prefetch_related("targets__destination")
        .order_by("name")
    )
    rows = [
        {
            "trait": trait,
            "words": describe_trait(trait.definition),
            "destinations": [t.destination for t in trait.targets.all()],
        }
        for trait in traits
    ]
    return render(request, "computed_traits/list.html", {"rows": rows})


@require_http_methods(["GET", "POST"])
def trait_new(request: HttpRequest) -> HttpResponse:
    form = ComputedTraitForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            trait, _ = trait_create(
                name=form.cleaned_data["name"],
                definition=form.definition(),
                destination_ids=form.destination_ids(),
                actor=acting_user(request),
            )
        except InvalidAudience as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Computing {trait.name} for every user now.")
            return redirect("computed-trait-list")
    return render(request, "computed_traits/form.html", {"form": form, "trait": None})


@require_http_methods(["GET", "POST"])
def trait_edit(request: HttpRequest, trait_id: int) -> HttpResponse:
    trait = get_object_or_404(ComputedTrait, pk=trait_id)
    form = ComputedTraitForm(request.POST or None, editing=True, initial=initial_of(trait))
    if request.method == "POST" and form.is_valid():
        try:
            job = trait_update(
                trait,
                definition=form.definition(),
                destination_ids=form.destination_ids(),
                actor=acting_user(request),
            )
        except InvalidAudience as exc:
            form.add_error(None, str(exc))
        else:
            done = "recomputing for every user" if job else "saved"
            messages.success(request, f"{trait.name}: {done}.")
            return redirect("computed-trait-list")
    return render(request, "computed_traits/form.html", {"form": form, "trait": trait})


@require_POST
def trait_remove(request: HttpRequest, trait_id: int) -> HttpResponse:
    trait = get_object_or_404(ComputedTrait, pk=trait_id)
    trait_delete(trait, actor=acting_user(request))
    messages.success(request, f"Deleted {trait.name}; values already sent stay where they are.")
    return redirect("computed-trait-list")
