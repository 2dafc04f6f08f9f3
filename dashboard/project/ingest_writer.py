"""The ingest writer process ``manage.py start`` runs beside the web processes on SQLite:
``python -m dashboard.project.ingest_writer --fd N [--fd M ...]``, one inherited socket per web
process (destinations/ingest/writer_link.py, destinations/ingest/writer_process.py)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Switchboard's ingest writer process.")
    parser.add_argument(
        "--fd", type=int, action="append", required=True, help="a web process's link"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.project.settings")
    import django

    django.setup()
    from dashboard.project.webserver import collect_less_often
    from destinations.ingest.writer_process import serve

    collect_less_often()  # the web processes' reason holds here: ingest's many young objects
    # SIGTERM (the start command stopping everything) is not the signal to go: the web
    # processes, stopping too, may still hand over the requests they have read. The writer
    # stops once they have all closed their links.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve([socket.socket(fileno=fd) for fd in args.fd])


if __name__ == "__main__":
    main()
