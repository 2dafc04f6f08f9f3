"""The two backends a run measures: SQLite with the file-system broker (the embedded default)
and PostgreSQL with Redis as broker and cache. Each gives the app's environment, makes and drops
its database, answers the bench's queries and reads the tasks waiting in its broker (no worker
runs: what the web server sends stays there to be counted)."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from measure.postgres import pg_drop, pg_query, pg_recreate, pg_version
from measure.proc import pids_named

from audiences_bench.config import BROKER_URL, CACHE_URL, PG_BENCH_DB


class Backend:
    kind = ""
    title = ""
    placeholder = "%s"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def env(self) -> dict[str, str]:
        # Its own queue name, as installations sharing a broker do: purged at the end.
        return {"SWITCHBOARD_DATA_DIR": str(self.data_dir), "SWITCHBOARD_QUEUE": self.queue}

    @property
    def queue(self) -> str:
        return f"bench-audiences-{self.kind}"

    def create(self) -> None: ...

    def drop(self) -> None: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def database_pids(self) -> list[int]:
        return []

    def waiting_tasks(self) -> list[tuple[str, list[Any]]]:
        """(task name, positional arguments) of every message in the queue."""
        raise NotImplementedError

    def purge(self) -> None:
        raise NotImplementedError


def task_of(envelope: dict[str, Any]) -> tuple[str, list[Any]]:
    """A kombu message's task name and arguments (Celery's message protocol 2)."""
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, _, _ = json.loads(body)
    return str(envelope.get("headers", {}).get("task", "")), list(args)


class SqliteBackend(Backend):
    kind = "sqlite"
    title = "SQLite (embedded default, WAL) + file-system broker"
    placeholder = "?"

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        path = self.data_dir / "switchboard.sqlite3"
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection, connection:
            return connection.execute(sql, params).fetchall()

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"

    def messages(self) -> list[Path]:
        return sorted((self.data_dir / "broker").glob("*.msg"))

    def waiting_tasks(self) -> list[tuple[str, list[Any]]]:
        return [task_of(json.loads(m.read_bytes())) for m in self.messages()]

    def purge(self) -> None:
        for message in self.messages():
            message.unlink(missing_ok=True)


class PostgresBackend(Backend):
    kind = "postgres"
    title = "PostgreSQL + Redis broker"
    dsn = f"postgresql://postgres@127.0.0.1:5432/{PG_BENCH_DB}"

    def env(self) -> dict[str, str]:
        return super().env() | {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}",
            "CELERY_BROKER_URL": BROKER_URL,
            "CACHE_URL": CACHE_URL,
        }

    def create(self) -> None:
        self.drop()
        pg_recreate(PG_BENCH_DB)

    def drop(self) -> None:
        pg_drop(PG_BENCH_DB)
        self.purge()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return pg_query(self.dsn, sql, params)

    def version(self) -> str:
        return pg_version(self.dsn)

    def database_pids(self) -> list[int]:
        """The PostgreSQL processes working for the bench database (the server is shared), the
        WAL writer, checkpointer and background writer, and Redis."""
        rows = self.query(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (datname = "
            "current_database() OR backend_type IN ('walwriter', 'checkpointer', "
            "'background writer'))"
        )
        return [int(pid) for (pid,) in rows] + pids_named("redis-server")

    def waiting_tasks(self) -> list[tuple[str, list[Any]]]:
        import redis

        client = redis.Redis.from_url(BROKER_URL)
        raw = [m for key in self.keys(client) for m in client.lrange(key, 0, -1)]
        return [task_of(json.loads(message)) for message in raw]

    def keys(self, client: Any) -> list[bytes]:
        """This bench's queue and its priority lists only: the Redis database may be shared."""
        return [k for k in client.scan_iter(match=f"{self.queue}*") if client.type(k) == b"list"]

    def purge(self) -> None:
        import redis

        client = redis.Redis.from_url(BROKER_URL)
        # The queue, its priority lists and kombu's binding of it.
        for key in client.scan_iter(match=f"*{self.queue}*"):
            client.delete(key)


def make_backend(kind: str, data_dir: Path) -> Backend:
    return SqliteBackend(data_dir) if kind == "sqlite" else PostgresBackend(data_dir)
