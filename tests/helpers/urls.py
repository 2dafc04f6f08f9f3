"""Every named URL of the project, with a concrete path to request."""

from __future__ import annotations

import uuid

from django.urls import URLPattern, URLResolver, get_resolver


def dashboard_urls() -> list[tuple[str, str]]:
    """(url name, a concrete path) for every named URL outside Django's admin."""
    found: list[tuple[str, str]] = []

    def walk(resolver: URLResolver, prefix: str) -> None:
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace == "admin":
                    continue
                walk(pattern, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and pattern.name:
                route = prefix + str(pattern.pattern)
                for converter, value in (
                    ("<int:", "999999"),
                    ("<slug:", "refiner"),
                    ("<uuid:", str(uuid.uuid4())),
                    ("<str:", "x"),
                ):
                    while converter in route:
                        start = route.index(converter)
                        route = route[:start] + value + route[route.index(">", start) + 1 :]
                found.append((pattern.name, "/" + route))

    walk(get_resolver(), "")
    return found
