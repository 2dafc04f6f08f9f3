"""The three roles' names, for every page's URL table (``dashboard.roles`` says who holds which
and enforces them): each role can do everything the one below it can."""

from __future__ import annotations

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

# url name -> (role to read with GET/HEAD, role to change with POST and other methods)
UrlRoles = dict[str, tuple[str, str]]
