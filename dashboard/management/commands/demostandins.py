"""Run local stand-ins for Refiner and Kana, for demo mode: the same loopback servers the test
suite uses (destinations/standins), so a newcomer sees deliveries without an account anywhere."""

from __future__ import annotations

import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from destinations.demo import DEMO_FEATURES, DEMO_KANA_KEY, DEMO_REFINER_KEY


class Command(BaseCommand):
    help = "Serve demo stand-ins for Refiner and Kana on loopback until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--refiner-port", type=int, required=True)
        parser.add_argument("--kana-port", type=int, required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        from destinations.standins.kana import FakeKana
        from destinations.standins.refiner import FakeRefiner

        refiner = FakeRefiner(api_keys={DEMO_REFINER_KEY}, project_name="Demo project")
        refiner.port = options["refiner_port"]
        kana = FakeKana(api_keys={DEMO_KANA_KEY})
        kana.port = options["kana_port"]
        for feature_id, name in DEMO_FEATURES:
            kana.add_feature(feature_id, name)
        # A few transient failures, so the demo shows retries that end delivered.
        kana.graphql_error(
            "Temporarily unavailable", "INTERNAL_SERVER_ERROR", times=3, operation="recordUsage"
        )
        refiner.server_error(times=2, path="/track-event")
        stopping = False

        def stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        with refiner, kana:
            self.stdout.write(f"Demo stand-ins: Refiner {refiner.base_url}, Kana {kana.base_url}")
            while not stopping:
                time.sleep(0.5)
