"""Add a destination from the command line, for automation:

    python manage.py adddestination refiner --name Refiner --api-key KEY [--base-url URL]

Options come from the connectors' declared settings (``api_key`` -> ``--api-key``). Secrets
may also be read from an environment variable named by ``--<setting>-env`` so they stay out
of shell history.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from destinations.connectors import CONNECTORS
from destinations.delivery.services import destination_create


def option_name(setting: str) -> str:
    return "--" + setting.replace("_", "-")


class Command(BaseCommand):
    help = "Add a destination (Refiner, ...) and print its id as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=sorted(CONNECTORS))
        parser.add_argument("--name", required=True)
        parser.add_argument("--disabled", action="store_true", help="add it switched off")
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
            destination = destination_create(
                kind=connector.kind,
                name=options["name"],
                settings_values=values,
                secret_values=secrets,
                enabled=not options["disabled"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Added {connector.display_name} destination {destination.name!r}")
        self.stdout.write(str(destination.pk))
