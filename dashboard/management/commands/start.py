"""Start Switchboard: migrate, make the first admin, run the web server, a Celery worker and
the scheduler (which runs the delivery sweeper) in one command, and print the URL."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.project import webserver
from dashboard.project.processes import stop_with_parent


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise CommandError(f"the demo stand-in on port {port} did not start")


# Replays (of different destinations) the replay worker runs at once; each sends in parallel.
REPLAYS_AT_ONCE = 2
REPLAY_NICENESS = 10


def celery_worker(queue: str, threads: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "--quiet",  # no banner: the start command prints what matters
        "-A",
        "dashboard.project",
        "worker",
        "--queues",
        queue,
        *extra,
        "--pool",
        "threads",
        "--concurrency",
        str(threads),
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
    ]


class Child:
    """A process the start command runs and stops with it."""

    def __init__(self, name: str, process: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.process = process

    @classmethod
    def run(cls, name: str, argv: list[str], *, niceness: int = 0) -> Child:
        def prepare() -> None:
            stop_with_parent()
            if niceness:
                os.nice(niceness)

        return cls(name, subprocess.Popen(argv, preexec_fn=prepare))


class Stopping(BaseException):
    """SIGTERM or SIGINT while the command is still starting its children."""


def writer_process_wanted() -> bool:
    """The ingest writer process runs where group commit does and the settings ask for it."""
    return bool(settings.INGEST_GROUP_COMMIT and settings.INGEST_WRITER_PROCESS)


def raise_stopping(signum: int, _frame: object) -> None:
    raise Stopping(signum)


class Command(BaseCommand):
    help = "Run Switchboard: migrations, first admin account, web server, worker and scheduler."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("SWITCHBOARD_HOST", "127.0.0.1"))
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("SWITCHBOARD_PORT", "8000"))
        )
        parser.add_argument(
            "--web-workers",
            type=int,
            default=int(os.environ.get("SWITCHBOARD_WEB_WORKERS", "2")),
            help="web server processes (each runs several threads)",
        )
        parser.add_argument(
            "--delivery-threads",
            type=int,
            default=int(os.environ.get("SWITCHBOARD_DELIVERY_THREADS", "4")),
            help="Celery worker threads (each task also sends its HTTP requests in parallel)",
        )
        parser.add_argument(
            "--demo",
            action="store_true",
            help="seed demo data and run local stand-ins for Refiner and Kana (removable in one "
            "click from the dashboard)",
        )
        parser.add_argument(
            "--no-worker",
            action="store_true",
            help="web server only: workers and the scheduler run elsewhere (scale-out)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        if settings.PRODUCTION:
            # Production serves hashed static files from STATIC_ROOT: they must be collected.
            call_command("collectstatic", interactive=False, verbosity=0)
        self.ensure_admin()
        if options["demo"]:
            # The stand-ins listen on loopback, which the address guard refuses otherwise: the
            # web server (Test connection, Refiner pages) and the worker inherit this.
            os.environ["SWITCHBOARD_ALLOW_PRIVATE_URLS"] = "true"
        host, port = options["host"], options["port"]
        # Until supervise() takes over, a stop request stops whatever has been started.
        signal.signal(signal.SIGINT, raise_stopping)
        signal.signal(signal.SIGTERM, raise_stopping)
        children: list[Child] = []
        try:
            children = self.web_server(host, port, options["web_workers"])
            if not options["no_worker"]:
                children.append(self.delivery_worker(options["delivery_threads"]))
                children.append(self.replay_worker())
            if options["demo"]:
                children.append(self.demo(port))
        except Stopping:
            self.stop(children)
            return
        except BaseException:
            # Nothing may keep running after the command has given up.
            self.stop(children)
            raise
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        if ":" in shown_host:
            shown_host = f"[{shown_host}]"  # an IPv6 address in a URL
        self.stdout.write(
            self.style.SUCCESS(f"Switchboard is running at http://{shown_host}:{port}/")
        )
        self.stdout.write(f"Data directory: {settings.DATA_DIR}   (Ctrl-C stops)")
        sys.stdout.flush()
        self.supervise(children)

    def ensure_admin(self) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        users.objects.create_superuser(
            username=username, email=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""), password=password
        )
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin account {username!r} with password {password}\n"
                    "This password is shown once: keep it, or set DJANGO_SUPERUSER_PASSWORD "
                    "before the first start."
                )
            )
        else:
            self.stdout.write(f"Created admin account {username!r} from DJANGO_SUPERUSER_*.")

    def web_server(self, host: str, port: int, processes: int) -> list[Child]:
        try:
            launched = webserver.launch(
                host, port, processes, writer_process=writer_process_wanted()
            )
        except OSError as exc:
            raise CommandError(f"cannot listen on {host} port {port}: {exc}") from exc
        children = [
            Child(f"web server {number}", process) for number, process in enumerate(launched.web, 1)
        ]
        if launched.writer is not None:
            children.append(Child("ingest writer", launched.writer))
        return children

    def delivery_worker(self, threads: int) -> Child:
        """One worker process with the beat scheduler inside it. Scale-out runs
        ``celery -A dashboard.project worker`` on as many machines as needed and one
        ``celery -A dashboard.project beat``; the sweeper may run more than once at a time."""
        return Child.run(
            "delivery worker",
            celery_worker(
                settings.CELERY_TASK_DEFAULT_QUEUE,
                threads,
                "--beat",
                "--schedule",
                str(settings.DATA_DIR / "celerybeat-schedule"),
            ),
        )

    def replay_worker(self) -> Child:
        """Replays run in a process of their own, on their own queue, at a lower CPU priority:
        live delivery never waits behind a replay's task, and gets the CPU first."""
        return Child.run(
            "replay worker",
            celery_worker(settings.REPLAY_QUEUE, REPLAYS_AT_ONCE, "--hostname", "replay@%h"),
            niceness=REPLAY_NICENESS,
        )

    def demo(self, port: int) -> Child:
        """Stand-ins on the next two ports, and the demo data pointed at them."""
        from destinations.demo import seed_demo

        refiner_port, kana_port = port + 1, port + 2
        child = Child.run(
            "demo stand-ins",
            [
                sys.executable,
                "manage.py",
                "demostandins",
                "--refiner-port",
                str(refiner_port),
                "--kana-port",
                str(kana_port),
            ],
        )
        try:
            for stand_in_port in (refiner_port, kana_port):
                wait_for_port(stand_in_port)
            seeded = seed_demo(
                refiner_url=f"http://127.0.0.1:{refiner_port}/v1",
                kana_url=f"http://127.0.0.1:{kana_port}/graphql",
            )
        except BaseException:
            self.stop([child])
            raise
        self.stdout.write(
            self.style.WARNING(
                f"Demo mode: stand-ins for Refiner on :{refiner_port} and Kana on :{kana_port}; "
                f"{seeded['events']} demo events stored. Remove them with the button in the "
                "demo banner. Private and loopback addresses are allowed while --demo runs "
                "(SWITCHBOARD_ALLOW_PRIVATE_URLS=true), so the stand-ins can be reached."
            )
        )
        return child

    def supervise(self, children: list[Child]) -> None:
        stopping = False

        def stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for child in children:
                if child.process.poll() is not None:
                    code = child.process.returncode
                    self.stderr.write(f"The {child.name} exited with {code}; stopping")
                    exit_code = code or 1
                    stopping = True
            time.sleep(0.5)
        self.stop(children)
        if exit_code:
            sys.exit(exit_code)

    def stop(self, children: list[Child]) -> None:
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.process.kill()
