"""Requests answered on waitress's event loop instead of a request thread.

waitress reads a request whole on its event loop, then hands it to one of its threads, which
runs the application and wakes the loop to send the answer. An ingest request that waits for the
process's group-commit writer was handed on four times (loop, request thread, writer, request
thread, loop), each hand-over a wake-up and a wait for the GIL: most of a single event's CPU
(docs/decisions/0029-ingest-path.md). An application that offers ``in_loop``/``begin``
(``LoopApplication``) has the requests it chooses started on the loop itself: ``begin`` reads
and validates the request and either answers at once or hands its write to the writer, whose
commit makes the answer; the answer is sent from the loop. Nothing on the loop waits: the
writer's hand-back is one wake-up per group, not per request.

Every other request (the dashboard, ``/healthz``, a request whose body waitress could not parse)
takes waitress's threads as before, and what the server guarantees is unchanged: requests are
still read whole by the loop before anything runs (slow clients hold a connection, not a
thread), pipelined requests on a connection are answered in order (the next one is started only
once the one before it is answered), and a stopping server still answers what it has read.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeGuard

from waitress.channel import HTTPChannel
from waitress.task import ThreadedTaskDispatcher, WSGITask

logger = logging.getLogger(__name__)

# status line, headers, body: what a WSGI application gives start_response and returns
Answer = tuple[str, list[tuple[str, str]], bytes]
# Called (from any thread) with a function the loop runs to make the answer.
Reply = Callable[[Callable[[], Answer]], None]
ANSWER_KEY = "switchboard.answer"
FAILED: Answer = (
    "500 Internal Server Error",
    [("Content-Type", "text/plain; charset=utf-8")],
    b"The server encountered an unexpected internal server error",
)


class LoopApplication(Protocol):
    """A WSGI application that starts some of its requests on the event loop."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]: ...

    def in_loop(self, method: str, path: str, content_length: int) -> bool:
        """Whether ``begin`` takes this request; cheap, called on every request."""
        ...

    def begin(self, environ: dict[str, Any], reply: Reply) -> None:
        """Start answering ``environ`` without waiting for anything; call ``reply`` once, now
        or later from another thread."""
        ...

    def end_turn(self) -> None:
        """Called once the loop has started this turn's requests: hand their work on, answer
        the requests that have waited too long."""
        ...


def offers_loop(application: Any) -> TypeGuard[LoopApplication]:
    names = ("in_loop", "begin", "end_turn")
    return all(callable(getattr(application, name, None)) for name in names)


class AnsweredApplication:
    """The server's WSGI application: a request answered on the loop carries its answer in
    its environ; every other one goes to the application."""

    def __init__(self, application: Any) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        answer: Answer | None = environ.pop(ANSWER_KEY, None)
        if answer is None:
            return self.application(environ, start_response)
        status, headers, body = answer
        start_response(status, headers)
        return [body]


class AnsweredTask(WSGITask):
    """waitress's task, which for a request answered on the loop uses the environ the loop
    made (with its answer in it) instead of calling the application anew."""

    def __init__(self, channel: LoopChannel, request: Any) -> None:
        super().__init__(channel, request)
        answered = channel.answered
        if answered is not None and answered[0] is request:
            channel.answered = None
            self.environ = answered[1]


class LoopChannel(HTTPChannel):
    task_class = AnsweredTask
    # (request, environ with its answer) while the loop sends it through ``service``
    answered: tuple[Any, dict[str, Any]] | None = None


class LoopDispatcher(ThreadedTaskDispatcher):
    """waitress's thread pool, except that the requests the application takes on the loop are
    queued for ``LoopAnswers.run`` instead."""

    def __init__(self, application: LoopApplication) -> None:
        super().__init__()
        self.application = application
        self.loop_thread = threading.get_ident()
        self.loop_queue: deque[LoopChannel] = deque()

    def add_task(self, channel: Any) -> None:
        # Called with the channel's requests lock held: what the loop takes is only queued
        # here and started after the loop's turn.
        request = channel.requests[0]
        if (
            threading.get_ident() == self.loop_thread
            and isinstance(channel, LoopChannel)
            and not request.error
            and self.application.in_loop(request.command, request.path, request.content_length)
        ):
            self.loop_queue.append(channel)
            return
        super().add_task(channel)


class LoopAnswers:
    """What the loop does between its turns: start the queued requests and send the answers
    that are ready."""

    def __init__(self, server: Any, dispatcher: LoopDispatcher) -> None:
        self.server = server
        self.dispatcher = dispatcher
        self.application = dispatcher.application
        self.lock = threading.Lock()
        # Answers made ready by other threads: (channel, request, environ, make the answer)
        self.ready: list[tuple[LoopChannel, Any, dict[str, Any], Callable[[], Answer]]] = []

    def run(self) -> None:
        """Start every queued request and send every ready answer, until neither is left (an
        answer sent can start a pipelined request, which can answer at once)."""
        while self.dispatcher.loop_queue or self.ready:
            while self.dispatcher.loop_queue:
                self.start(self.dispatcher.loop_queue.popleft())
            with self.lock:
                ready, self.ready = self.ready, []
            for channel, request, environ, make in ready:
                self.send(channel, request, environ, make)
        self.application.end_turn()

    def start(self, channel: LoopChannel) -> None:
        if not channel.requests:
            return  # cancelled meanwhile (a stopping server's last turn)
        request: Any = channel.requests[0]
        environ = WSGITask(channel, request).get_environment()

        def reply(make: Callable[[], Answer]) -> None:
            if threading.get_ident() == self.dispatcher.loop_thread:
                self.send(channel, request, environ, make)
                return
            with self.lock:
                first = not self.ready
                self.ready.append((channel, request, environ, make))
            if first:
                self.server.pull_trigger()  # one wake-up for everything ready meanwhile

        try:
            self.application.begin(environ, reply)
        except Exception:
            logger.exception("Exception while starting %s", request.path)
            reply(lambda: FAILED)

    def send(
        self,
        channel: LoopChannel,
        request: Any,
        environ: dict[str, Any],
        make: Callable[[], Answer],
    ) -> None:
        if not channel.requests or channel.requests[0] is not request:
            return  # the connection's requests were cancelled while this one was stored
        try:
            answer = make()
        except Exception:
            logger.exception("Exception while answering %s", request.path)
            answer = FAILED
        environ[ANSWER_KEY] = answer
        channel.answered = (request, environ)
        # waitress's own bookkeeping: write the answer, take the request off the channel,
        # start the next pipelined one, or close the connection if the answer says so.
        channel.service()
