"""Members of the dashboard and their roles (admins manage them)."""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import Q, QuerySet

from dashboard.roles import ADMIN, ROLES, role_of
from destinations.audit import record
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
    existing = User.objects.filter(username__iexact=username).first()
    if existing is not None and not existing.is_active:
        return member_readd(existing, password=password, role=role, actor=actor)
    if existing is not None:
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
    if not user.is_active:
        raise MemberRefused(f"{user.username} was removed; add them again to give them a role")
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


def member_readd(user: User, *, password: str, role: str, actor: User | None) -> User:
    """A removed member added again: the same account (its audit entries name it), with the
    new password and role."""
    with transaction.atomic():
        user.is_active = True
        user.set_password(password)
        user.save(update_fields=["is_active", "password"])
        set_role_groups(user, role)
        record(
            AuditAction.MEMBER_CHANGED,
            f"Added member {user.username!r} again as {role}",
            actor=actor,
            user=user.pk,
            role=role,
        )
    return user


def member_remove(user: User, *, actor: User | None) -> None:
    """Take ``user`` off the dashboard: the account is deactivated, not deleted, so the audit
    log still names who did what (deleting would blank those entries' actor), and its sessions
    stop working at the next request. Refused for yourself, a superuser, a member already
    removed, and the last admin."""
    if actor is not None and user.pk == actor.pk:
        raise MemberRefused("you cannot remove yourself; ask another admin")
    if user.is_superuser:
        raise MemberRefused(
            f"{user.username} is a superuser and always an admin; only Django's admin can "
            "remove a superuser"
        )
    if not user.is_active:
        raise MemberRefused(f"{user.username} was removed already")
    with transaction.atomic():
        # Locks every admin, so that two admins removing each other at once cannot leave the
        # dashboard with none: the second waits, then counts one admin and is refused.
        locked = active_admins().select_for_update(of=("self",))
        admins = set(locked.values_list("pk", flat=True))
        before = role_of(user)
        if before == ADMIN and admins <= {user.pk}:
            raise MemberRefused(
                f"{user.username} is the last admin; make another member admin first"
            )
        user.is_active = False
        user.save(update_fields=["is_active"])
        user.groups.remove(*Group.objects.filter(name__in=ROLES))
        record(
            AuditAction.MEMBER_CHANGED,
            f"Removed member {user.username!r} (was {before or 'none'})",
            actor=actor,
            user=user.pk,
            before=before,
            removed=True,
        )


def active_admins() -> QuerySet[User]:
    return User.objects.filter(Q(is_superuser=True) | Q(groups__name=ADMIN), is_active=True)
