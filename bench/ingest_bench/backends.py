"""The two backends a run measures: SQLite in WAL mode (the embedded default) and PostgreSQL
with Redis as the cache. Each gives the server's environment, makes and drops its database,
answers the bench's queries and inserts the ceiling's rows the way the app writes them: its
column list and SQLite pragmas are the app's own (the bench process has Django loaded for
them, ``measure.app.load_app``)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from measure.postgres import pg_drop, pg_query, pg_recreate, pg_version
from measure.proc import pids_named

from ingest_bench.config import BATCH_SIZE, PG_BENCH_DB


def event_columns() -> tuple[str, ...]:
    """destinations_event's columns, in the order the app's ingest writes them."""
    from destinations.ingest.store import EVENT_COLUMNS

    return EVENT_COLUMNS


class SqliteBackend:
    """The embedded default: SQLite in WAL mode in a temporary SWITCHBOARD_DATA_DIR."""

    kind = "sqlite"
    title = "SQLite (embedded default, WAL)"
    placeholder = "?"
    ceiling_methods = ("executemany INSERT",)

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def create(self) -> None:
        pass

    def drop(self) -> None:
        pass

    def server_env(self) -> dict[str, str]:
        return {}

    def connect(self) -> sqlite3.Connection:
        """A connection with the app's pragmas, so the ceiling writes the way the app does."""
        from django.conf import settings

        connection = sqlite3.connect(self.data_dir / "switchboard.sqlite3", isolation_level=None)
        connection.executescript(str(settings.SQLITE_OPTIONS["init_command"]))
        return connection

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.connect()) as connection:
            return connection.execute(sql, params).fetchall()

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"

    def database_pids(self) -> list[int]:
        return []  # SQLite works inside the server's processes

    def insert(self, method: str, rows: list[tuple[Any, ...]]) -> None:
        columns = event_columns()
        sql = (
            f"INSERT INTO destinations_event ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        with contextlib.closing(self.connect()) as connection:
            for start in range(0, len(rows), BATCH_SIZE):
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(sql, rows[start : start + BATCH_SIZE])
                connection.execute("COMMIT")


class PostgresBackend:
    """DATABASE_URL on a fresh database of the local PostgreSQL server; Redis as CACHE_URL."""

    kind = "postgres"
    title = "PostgreSQL"
    placeholder = "%s"
    ceiling_methods = ("multi-row INSERT", "COPY")
    dsn = f"postgresql://postgres@127.0.0.1:5432/{PG_BENCH_DB}"

    def __init__(self, data_dir: Path, cache_url: str) -> None:
        self.data_dir = data_dir
        self.cache_url = cache_url

    def create(self) -> None:
        self.drop()
        pg_recreate(PG_BENCH_DB)

    def drop(self) -> None:
        pg_drop(PG_BENCH_DB)

    def server_env(self) -> dict[str, str]:
        env = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"}
        if self.cache_url:
            env["CACHE_URL"] = self.cache_url
        return env

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

    def insert(self, method: str, rows: list[tuple[Any, ...]]) -> None:
        columns = ", ".join(event_columns())
        row_sql = "(" + ", ".join(value_sql(c) for c in event_columns()) + ")"
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            for start in range(0, len(rows), BATCH_SIZE):
                chunk = rows[start : start + BATCH_SIZE]
                with connection.transaction():
                    if method == "COPY":
                        sql = f"COPY destinations_event ({columns}) FROM STDIN"
                        with connection.cursor().copy(sql) as copy:
                            for row in chunk:
                                copy.write_row(row)
                    else:
                        sql = f"INSERT INTO destinations_event ({columns}) VALUES " + ", ".join(
                            [row_sql] * len(chunk)
                        )
                        connection.execute(sql, [v for row in chunk for v in row])


Backend = SqliteBackend | PostgresBackend


def value_sql(column: str) -> str:
    """A PostgreSQL placeholder for a value of ``column``: the payload arrives as JSON text."""
    return "%s::jsonb" if column == "payload" else "%s"


def count_rows(backend: Backend, prefix: str) -> int:
    """Events stored with this messageId prefix; a duplicate would be a bug, so it is fatal."""
    total, distinct = backend.query(
        "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM destinations_event "
        f"WHERE message_id LIKE {backend.placeholder}",
        [f"{prefix}-%"],
    )[0]
    if total != distinct:
        raise AssertionError(f"{prefix}: {total} rows but {distinct} distinct messageIds")
    return int(total)


def copied_rows(backend: Backend, source: str, prefix: str) -> list[tuple[Any, ...]]:
    """The rows the app stored for phase ``source``, with messageIds moved to ``prefix``."""
    columns = event_columns()
    text = "payload::text" if backend.kind == "postgres" else "payload"
    rows = backend.query(
        f"SELECT {', '.join(text if c == 'payload' else c for c in columns)} "
        f"FROM destinations_event WHERE message_id LIKE {backend.placeholder} ORDER BY id",
        [f"{source}-%"],
    )
    at = columns.index("message_id")
    return [(*row[:at], prefix + row[at][len(source) :], *row[at + 1 :]) for row in rows]
