"""Add a destination from the command line, for automation:

    python manage.py adddestination refiner --name Refiner --api-key KEY [--base-url URL]
        [--rate-limit N]

Options come from the connectors' declared settings (``api_key`` -> ``--api-key``). Secrets
may also be read from an environment variable named by ``--<setting>-env`` so they stay out
of shell history. ``--rate-limit`` caps the requests a minute sent to the destination; without
it the connector's default applies (Refiner: 4,000 a minute; the others: none). An option of
another kind (``kana --base-url``) is refused, naming the options this kind has.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from destinations.delivery.contract import Connector
from destinations.delivery.services import destination_create
from destinations.kinds import CONNECTORS


def option_name(setting: str) -> str:
    return "--" + setting.replace("_", "-")


# As the dashboard's form allows: a slip of the keyboard, not a limit any destination needs.
RATE_LIMIT_MAX = 1_000_000


def requests_per_minute(value: str) -> int:
    """``--rate-limit``: a whole number of requests a minute, 1 to RATE_LIMIT_MAX."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= RATE_LIMIT_MAX:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a whole number of requests per minute, 1 to {RATE_LIMIT_MAX:,}"
        )
    return number


COMMON_OPTIONS = ("--name", "--disabled", "--rate-limit")


def options_of(connector: Connector) -> list[str]:
    """The options this kind takes, as typed on the command line."""
    found = list(COMMON_OPTIONS)
    for field in connector.settings_fields:
        found.append(option_name(field.name))
        if field.secret:
            found.append(option_name(field.name) + "-env")
    return found


def refuse_other_kinds_options(connector: Connector, options: dict[str, Any]) -> None:
    """The parser takes every kind's settings; one this kind does not have would otherwise be
    accepted and quietly ignored (``kana --base-url`` for Kana's ``--api-url``)."""
    own = {field.name for field in connector.settings_fields}
    given = []
    for other in CONNECTORS.values():
        for field in other.settings_fields:
            if field.name in own:
                continue
            for dest, flag in ((field.name, ""), (f"{field.name}_env", "-env")):
                if options.get(dest) is not None:
                    given.append(option_name(field.name) + flag)
    if given:
        unknown = ", ".join(sorted(set(given)))
        raise CommandError(
            f"{connector.kind} destinations have no {unknown}; "
            f"their options are {', '.join(options_of(connector))}"
        )


class Command(BaseCommand):
    help = "Add a destination (Refiner, ...) and print its id as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=sorted(CONNECTORS))
        parser.add_argument("--name", required=True)
        parser.add_argument("--disabled", action="store_true", help="add it switched off")
        parser.add_argument(
            "--rate-limit",
            type=requests_per_minute,
            metavar="N",
            help="at most N requests per minute (default: the connector's, Refiner 4,000)",
        )
        seen: set[str] = set()
        for connector in CONNECTORS.values():
            for field in connector.settings_fields:
                if field.name in seen:
                    continue
                seen.add(field.name)
                parser.add_argument(
                    option_name(field.name),
                    dest=field.name,
                    help=field.label + (f" (default {field.default})" if field.default else ""),
                    choices=[c for c, _ in field.choices if c] or None,
                )
                if field.secret:
                    parser.add_argument(
                        option_name(field.name) + "-env",
                        dest=f"{field.name}_env",
                        metavar="VARIABLE",
                        help=f"read {field.label} from this environment variable",
                    )

    def handle(self, *args: Any, **options: Any) -> None:
        connector = CONNECTORS[options["kind"]]
        refuse_other_kinds_options(connector, options)
        values: dict[str, str] = {}
        secrets: dict[str, str] = {}
        for field in connector.settings_fields:
            value = options.get(field.name)
            variable = options.get(f"{field.name}_env")
            if variable:
                value = os.environ.get(variable)
                if not value:
                    raise CommandError(f"environment variable {variable} is not set")
            if value:
                (secrets if field.secret else values)[field.name] = value
        try:
            with transaction.atomic():
                destination = destination_create(
                    kind=connector.kind,
                    name=options["name"],
                    settings_values=values,
                    secret_values=secrets,
                    enabled=not options["disabled"],
                    rate_limit_per_minute=options["rate_limit"] or 0,
                )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        limit = destination.rate_limit_per_minute
        cap = f", at most {limit:,} requests per minute" if limit else ""
        self.stdout.write(f"Added {connector.display_name} destination {destination.name!r}{cap}")
        self.stdout.write(str(destination.pk))
