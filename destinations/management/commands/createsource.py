from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from destinations.sources import source_create


class Command(BaseCommand):
    help = "Create a source and print its write key as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Source name, e.g. 'Web app'")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("The source name must not be empty")
        try:
            source = source_create(name=name)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Created source {source.name!r} (id {source.pk}). Write key:")
        self.stdout.write(source.write_key)
