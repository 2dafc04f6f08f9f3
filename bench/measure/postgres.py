"""PostgreSQL databases of the bench's own: dropped and created by the admin user, queried."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def pg_admin(sql: str, admin_dsn: str = PG_ADMIN_DSN) -> None:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(sql)


def pg_drop(database: str, admin_dsn: str = PG_ADMIN_DSN) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', admin_dsn)


def pg_recreate(database: str, admin_dsn: str = PG_ADMIN_DSN) -> None:
    """A fresh, empty database of that name (the bench's own: never a shared one)."""
    pg_drop(database, admin_dsn)
    pg_admin(f'CREATE DATABASE "{database}"', admin_dsn)


def pg_query(dsn: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        cursor = connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def pg_version(dsn: str) -> str:
    return "PostgreSQL " + str(pg_query(dsn, "SHOW server_version")[0][0]).split()[0]
