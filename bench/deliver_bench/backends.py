"""The two backends a run measures: PostgreSQL with Redis as broker and cache, and the
embedded default, SQLite with the file-system broker. Each gives the app's environment, makes
and drops its database, empties its queue and answers the bench's queries."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from measure.postgres import pg_drop, pg_query, pg_recreate, pg_version
from measure.proc import pids_named

from deliver_bench.config import BROKER_URL, CACHE_URL, PG_BENCH_DB


class Backend:
    kind = ""
    title = ""
    placeholder = "%s"

    def __init__(self, data_dir: Path, queue: str = "") -> None:
        self.data_dir = data_dir
        # Its own queue name too, as installations sharing a broker do.
        self.queue = queue or queue_name(self.kind)

    def env(self) -> dict[str, str]:
        # The stand-in services listen on loopback, which the address guard refuses otherwise.
        return {
            "SWITCHBOARD_DATA_DIR": str(self.data_dir),
            "SWITCHBOARD_ALLOW_PRIVATE_URLS": "true",
        }

    def create(self) -> None: ...

    def drop(self) -> None: ...

    def purge_broker(self) -> None: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def broker_title(self) -> str:
        raise NotImplementedError


class PostgresBackend(Backend):
    kind = "postgres"
    title = "PostgreSQL + Redis broker"

    def __init__(
        self,
        data_dir: Path,
        queue: str = "",
        database: str = PG_BENCH_DB,
        broker_url: str = BROKER_URL,
        cache_url: str = CACHE_URL,
    ) -> None:
        """``database`` and the Redis databases are the bench's own: each script has its own."""
        super().__init__(data_dir, queue)
        self.database = database
        self.broker_url = broker_url
        self.cache_url = cache_url
        self.dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"

    def env(self) -> dict[str, str]:
        return super().env() | {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.database}",
            "CELERY_BROKER_URL": self.broker_url,
            "CACHE_URL": self.cache_url,
        }

    def create(self) -> None:
        self.drop()
        pg_recreate(self.database)

    def drop(self) -> None:
        pg_drop(self.database)
        self.purge_broker()

    def purge_broker(self) -> None:
        """Delete this bench's queues (and their priority lists; the replay queue's name starts
        with the default queue's) only: the Redis database may be shared. The rate-limit
        counters in the cache expire by themselves."""
        import redis

        client = redis.Redis.from_url(self.broker_url)
        for key in client.scan_iter(match=f"{self.queue}*"):
            client.delete(key)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return pg_query(self.dsn, sql, params)

    def version(self) -> str:
        return pg_version(self.dsn)

    def service_pids(self) -> list[int]:
        """The server processes serving the bench database, and Redis."""
        rows = self.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return [int(pid) for (pid,) in rows] + pids_named("redis-server")

    def broker_title(self) -> str:
        return f"Redis broker `{self.broker_url}`, `CACHE_URL={self.cache_url}`"


class SqliteBackend(Backend):
    kind = "sqlite"
    title = "SQLite + file-system broker (embedded default)"
    placeholder = "?"

    def purge_broker(self) -> None:
        for message in (self.data_dir / "broker").glob("*.msg"):
            message.unlink(missing_ok=True)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        path = self.data_dir / "switchboard.sqlite3"
        with contextlib.closing(sqlite3.connect(path, timeout=20)) as connection:
            return connection.execute(sql, params).fetchall()

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"

    def broker_title(self) -> str:
        return "file-system broker in the data directory, per-process cache"


def queue_name(kind: str) -> str:
    return f"bench-deliver-{kind}"


def moment(value: Any) -> datetime:
    """A timestamp column as an aware datetime (SQLite hands back Django's text form)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
