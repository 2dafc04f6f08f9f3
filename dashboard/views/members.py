"""Members and roles: admins add members, change their roles and remove them."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard.members import MemberRefused, member_create, member_remove, member_set_role
from dashboard.roles import ROLE_LABELS, ROLES, role_of

ROLE_CHOICES = [(r, ROLE_LABELS[r]) for r in ROLES]


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput(render_value=False))
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial="viewer")

    def clean_password(self) -> str:
        password: str = self.cleaned_data["password"]
        validate_password(password)
        return password


def member_list(request: HttpRequest) -> HttpResponse:
    users = User.objects.filter(is_active=True).prefetch_related("groups").order_by("username")
    rows = [(u, role_of(u)) for u in users]
    return render(
        request,
        "members/list.html",
        {"rows": rows, "form": MemberForm(), "role_choices": ROLE_CHOICES},
    )


def member_new(request: HttpRequest) -> HttpResponse:
    form = MemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            member_create(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
                role=form.cleaned_data["role"],
                actor=request.user if isinstance(request.user, User) else None,
            )
        except MemberRefused as exc:
            form.add_error("username", str(exc))
        else:
            messages.success(request, f"Added {form.cleaned_data['username']}.")
            return redirect("members")
    users = User.objects.filter(is_active=True).prefetch_related("groups").order_by("username")
    rows = [(u, role_of(u)) for u in users]
    return render(
        request, "members/list.html", {"rows": rows, "form": form, "role_choices": ROLE_CHOICES}
    )


@require_POST
def member_role(request: HttpRequest, user_id: int) -> HttpResponse:
    member = get_object_or_404(User, pk=user_id)
    try:
        member_set_role(
            member,
            request.POST.get("role", ""),
            actor=request.user if isinstance(request.user, User) else None,
        )
    except MemberRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{member.username} is now {request.POST.get('role')}.")
    return redirect("members")


@require_POST
def member_remove_view(request: HttpRequest, user_id: int) -> HttpResponse:
    """The confirm panel's POST: the member is removed, or the page says why not."""
    member = get_object_or_404(User, pk=user_id)
    try:
        member_remove(member, actor=request.user if isinstance(request.user, User) else None)
    except MemberRefused as exc:
        messages.error(request, f"Could not remove {member.username}: {exc}.")
    else:
        messages.success(request, f"Removed {member.username}: they can no longer sign in.")
    return redirect("members")
