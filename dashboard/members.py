"""Members of the dashboard and their roles (admins manage them)."""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.db import transaction

from dashboard.roles import ROLES, role_of
from destinations.models import AuditAction, AuditEntry


class MemberRefused(ValueError):
    """The message says why."""


def set_role_groups(user: User, role: str) -> None:
    if role not in ROLES:
        raise MemberRefused(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    user.groups.remove(*Group.objects.filter(name__in=ROLES))
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)


def member_create(*, username: str, password: str, role: str, actor: User | None) -> User:
    if User.objects.filter(username__iexact=username).exists():
        raise MemberRefused(f"a member named {username!r} already exists")
    with transaction.atomic():
        user = User.objects.create_user(username=username, password=password)
        set_role_groups(user, role)
        AuditEntry.objects.create(
            actor=actor,
            action=AuditAction.MEMBER_CHANGED,
            summary=f"Added member {username!r} as {role}",
            data={"user": user.pk, "role": role},
        )
    return user


def member_set_role(user: User, role: str, *, actor: User | None) -> None:
    before = role_of(user)
    if user.is_superuser:
        raise MemberRefused(f"{user.username} is a superuser and always an admin")
    if actor is not None and user.pk == actor.pk and role != before:
        raise MemberRefused("you cannot change your own role; ask another admin")
    with transaction.atomic():
        set_role_groups(user, role)
        AuditEntry.objects.create(
            actor=actor,
            action=AuditAction.MEMBER_CHANGED,
            summary=f"Changed {user.username}'s role from {before or 'none'} to {role}",
            data={"user": user.pk, "before": before, "after": role},
        )
