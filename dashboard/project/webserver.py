"""The web server ``manage.py start`` runs: waitress in several processes sharing one socket.

waitress reads every request whole (headers and body, bodies past 512 KB spooled to a temporary
file) in its event loop before one of its threads runs Django, so a client that is slow to send,
or sends nothing after its headers, holds a connection but never a thread. A connection idle
for ``SWITCHBOARD_CLIENT_TIMEOUT_SECONDS`` (mid-request or between keep-alive requests) is
closed. See docs/decisions/0019-web-server.md.

The start command binds the port (``listen``) and runs ``launch``'s processes, each
``python -m dashboard.project.webserver --fd N``: on Linux each process has a socket of its own
on the port (``SO_REUSEPORT``) and the kernel spreads new connections across them; elsewhere they
share one socket.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waitress import wasyncore
from waitress.task import ThreadedTaskDispatcher

from dashboard.project.loop_answers import (
    AnsweredApplication,
    LoopAnswers,
    LoopChannel,
    LoopDispatcher,
    offers_loop,
)
from dashboard.project.processes import stop_with_parent

ROOT = Path(__file__).resolve().parents[2]
THREADS = 8  # per process: Django runs on these
SWITCH_INTERVAL_SECONDS = 0.001
BACKLOG = 2048
# Bodies past this are refused with 413 before they are read. Above the largest body a view
# takes (the 50 MB customer import; ingest refuses past 500 KB itself, with its own message).
MAX_BODY_BYTES = 64 * 1024 * 1024
# Allocations (less deallocations) between two runs of the cyclic garbage collector's youngest
# generation; Python's default is 700.
GC_THRESHOLD = 50_000
# A stopping process finishes the requests it has read for at most this long.
STOP_GRACE_SECONDS = 20.0


def listen(host: str, port: int, *, share_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host`` (a name, an IPv4 or an IPv6 address), inheritable by
    the server processes; with ``share_port``, one of a group bound to the same port."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def listen_each(host: str, port: int, processes: int) -> list[socket.socket]:
    """The listening sockets of ``processes`` server processes on ``host:port``.

    On Linux, one per process, bound together with ``SO_REUSEPORT``: the kernel gives each new
    connection to one of them by a hash of its addresses. On one shared socket, whichever
    process wakes first accepts a whole burst: the four keep-alive connections of a proxy, or
    of a benchmark, all went to one process, which then did all the work on one core while the
    other idled. Elsewhere (macOS and the BSDs do not spread connections that way) the
    processes share one socket.
    """
    if processes < 2 or not sys.platform.startswith("linux"):
        sock = listen(host, port)
        return [sock] * processes
    # A port that anything else listens on, even another group sharing it, is refused here
    # (SO_REUSEPORT would otherwise let this server join that group and split its traffic).
    probe = listen(host, port)
    port = probe.getsockname()[1]  # the port chosen, when 0 asked for any
    probe.close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(processes):
            sockets.append(listen(host, port, share_port=True))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def server_argv(fd: int, writer_fd: int | None = None) -> list[str]:
    argv = [sys.executable, "-m", "dashboard.project.webserver", "--fd", str(fd)]
    if writer_fd is not None:
        argv += ["--writer-fd", str(writer_fd)]
    return argv


def writer_argv(fds: Sequence[int]) -> list[str]:
    argv = [sys.executable, "-m", "dashboard.project.ingest_writer"]
    for fd in fds:
        argv += ["--fd", str(fd)]
    return argv


@dataclass
class Launched:
    """The processes ``launch`` started: the web servers and, on SQLite, the ingest writer."""

    web: list[subprocess.Popen[bytes]]
    writer: subprocess.Popen[bytes] | None = None

    def all(self) -> list[subprocess.Popen[bytes]]:
        return self.web + ([self.writer] if self.writer else [])


def launch(host: str, port: int, processes: int, *, writer_process: bool = False) -> Launched:
    """Bind ``host:port`` and start ``processes`` server processes on it; with
    ``writer_process``, also the ingest writer process, linked to each of them by a socket
    pair that nothing else can reach (destinations/ingest/writer_link.py)."""
    sockets = listen_each(host, port, processes)
    pairs = [socket.socketpair() for _ in range(processes)] if writer_process else []
    launched = Launched(web=[])
    try:
        if pairs:
            far = [writer_end.fileno() for _, writer_end in pairs]
            launched.writer = subprocess.Popen(
                writer_argv(far), cwd=ROOT, pass_fds=far, preexec_fn=stop_with_parent
            )
        for number, sock in enumerate(sockets):
            near = pairs[number][0].fileno() if pairs else None
            launched.web.append(
                subprocess.Popen(
                    server_argv(sock.fileno(), near),
                    cwd=ROOT,
                    pass_fds=[sock.fileno()] + ([near] if near is not None else []),
                    preexec_fn=stop_with_parent,
                )
            )
    except BaseException:
        for process in launched.all():
            process.kill()
        raise
    finally:
        for sock in set(sockets):
            sock.close()  # the processes have their own copies
        for web_end, writer_end in pairs:
            web_end.close()
            writer_end.close()
    return launched


def serve(sock: socket.socket, writer_link: socket.socket | None = None) -> None:
    """Serve Django on ``sock`` until SIGTERM or SIGINT, then finish what was read and stop.
    With ``writer_link``, ingest's writes go to the writer process at its other end."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.project.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.servers.basehttp import get_internal_wsgi_application
    from waitress.server import BaseWSGIServer, create_server

    from dashboard.project.warmup import warm_up

    application: Any = get_internal_wsgi_application()  # settings.WSGI_APPLICATION
    if writer_link is not None:
        from destinations.ingest.writer_link import use_writer_process

        use_writer_process(writer_link)
    warm_up()
    collect_less_often()
    # Threads that mostly wait (on clients, the database, ingest's writer) hand the GIL over
    # sooner than the 5 ms default: a thread woken by its answer does not queue behind one
    # that is parsing JSON.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)

    connections = settings.WEB_CONNECTION_LIMIT
    raise_open_files_limit(connections + 100)
    timeout = settings.WEB_CLIENT_TIMEOUT_SECONDS
    # Requests the application takes on the event loop (ingest) are started there; the rest go
    # to waitress's threads (dashboard/project/loop_answers.py).
    dispatcher: ThreadedTaskDispatcher | None = None
    if offers_loop(application):
        dispatcher = LoopDispatcher(application)
        dispatcher.set_thread_count(THREADS)
        application = AnsweredApplication(application)
    server = create_server(
        application,
        _dispatcher=dispatcher,  # waitress's one way in for a dispatcher of one's own
        sockets=[sock],
        threads=THREADS,
        connection_limit=connections,
        channel_timeout=timeout,
        # How often idle connections are looked for: a stalled one goes within 1.5 timeouts.
        cleanup_interval=max(1, timeout // 2),
        max_request_body_size=MAX_BODY_BYTES,
        # poll(2): select(2) cannot watch descriptors past 1023.
        asyncore_use_poll=True,
        # X-Forwarded-* reach Django as sent; SWITCHBOARD_BEHIND_HTTPS_PROXY decides whether
        # they are trusted (SECURE_PROXY_SSL_HEADER), as with any WSGI server.
        clear_untrusted_proxy_headers=False,
        ident="switchboard",
    )
    assert isinstance(server, BaseWSGIServer)  # one socket, one server
    answers = None
    if isinstance(dispatcher, LoopDispatcher):
        server.channel_class = LoopChannel
        answers = LoopAnswers(server, dispatcher)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    announce_ready()
    while not stopping:
        turn(server, answers)
    drain(server, answers)


def collect_less_often() -> None:
    """Ingest allocates many short-lived objects per event (parsed JSON, messages, rows, model
    instances) and few that form cycles: with the default threshold (700 allocations) the
    cyclic collector ran about once per 70 batched events, and a 50,000 threshold took a
    tenth off the CPU per batched event (docs/decisions/0029-ingest-path.md). What the process
    loaded before serving (modules, settings, URL tables) is moved out of the collector's sight
    for good (``gc.freeze``), so the collections that do run do not walk it again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD)


def announce_ready() -> None:
    """With ``SWITCHBOARD_READY_DIR`` set (a supervisor's or the tests'), leave a file named
    after this process there once it serves: ``start`` runs several, and one answering does not
    mean all do."""
    folder = os.environ.get("SWITCHBOARD_READY_DIR")
    if folder:
        Path(folder, str(os.getpid())).touch()


def turn(server: Any, answers: LoopAnswers | None = None) -> None:
    """One turn of waitress's event loop (``server.run()`` repeats them until an exception),
    then the requests it read that are answered on the loop."""
    wasyncore.loop(timeout=0.5, map=server._map, use_poll=True, count=1)
    if answers is not None:
        answers.run()


def drain(server: Any, answers: LoopAnswers | None = None) -> None:
    """Accept nothing more; answer the requests already read (for at most
    ``STOP_GRACE_SECONDS``), closing each connection once it has nothing in flight; then stop
    the threads."""
    server.accepting = False
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while server.active_channels and time.monotonic() < deadline:
        for channel in list(server.active_channels.values()):
            if not (channel.requests or channel.total_outbufs_len):
                channel.will_close = True  # idle, or its request not read whole: closed now
        turn(server, answers)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)


def raise_open_files_limit(wanted: int) -> None:
    """Each connection is a file descriptor: lift the soft limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One Switchboard web server process.")
    parser.add_argument("--fd", type=int, required=True, help="an inherited listening socket")
    parser.add_argument("--writer-fd", type=int, help="the link to the ingest writer process")
    args = parser.parse_args(argv)
    link = socket.socket(fileno=args.writer_fd) if args.writer_fd is not None else None
    serve(socket.socket(fileno=args.fd), link)


if __name__ == "__main__":
    main()
