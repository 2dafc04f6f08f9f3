"""Datetimes to and from SQLite on ingest's path, the common case without the ORM's general
one.

SQLite keeps a datetime as text. Django writes an aware datetime there by converting it to
the connection's time zone (``make_naive``) and calling ``str``, and reads it back with a
regular expression (``parse_datetime``) and ``make_aware``: four writes and two reads per
event, about a tenth of a batched event's CPU. When the connection's zone is UTC, as Django
makes it unless the database's TIME_ZONE says otherwise, a datetime in UTC (every one
validation makes) needs only its tzinfo dropped on the way in, and the stored text (what
``str`` wrote) is what ``datetime.fromisoformat`` reads; a column the sqlite3 module has
already parsed (declared ``datetime``: Django registers the converter) comes naive and needs
only the UTC tzinfo. Anything else goes Django's way, so the results are always Django's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

MomentAdapter = Callable[[Any], Any]


def takes_the_shortcut(connection: BaseDatabaseWrapper) -> bool:
    return connection.vendor == "sqlite" and connection.timezone is UTC


def moment_adapter(
    connection: BaseDatabaseWrapper, general: MomentAdapter | None = None
) -> MomentAdapter:
    """What becomes of a datetime on its way into ``connection``'s database: ``general``
    (by default ``adapt_datetimefield_value``), with the shortcut where it holds."""
    fallback = general or connection.ops.adapt_datetimefield_value
    if not takes_the_shortcut(connection):
        return fallback

    def utc_text(value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is UTC:
            # str() of the naive moment, a third cheaper: in UTC, isoformat always ends in
            # "+00:00".
            return value.isoformat(" ")[:-6]
        return fallback(value)

    return utc_text


def faster_converters(functions: list[Any], connection: BaseDatabaseWrapper) -> list[Any]:
    """A column's ORM converters, SQLite's datetime reader replaced by the shortcut."""
    if not takes_the_shortcut(connection):
        return functions
    general = getattr(connection.ops, "convert_datetimefield_value", None)  # SQLite's own
    return [read_utc_text(general) if f == general else f for f in functions]


def read_utc_text(general: Callable[..., Any]) -> Callable[..., Any]:
    def convert(value: Any, expression: Any, connection: Any) -> Any:
        if isinstance(value, datetime):
            # A column declared ``datetime`` arrives parsed already (Django registers a
            # converter with the sqlite3 module), naive: in UTC, ``make_aware`` is this.
            if value.tzinfo is None:
                return value.replace(tzinfo=UTC)
            return general(value, expression, connection)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return general(value, expression, connection)
            if moment.tzinfo is None:
                return moment.replace(tzinfo=UTC)
        return general(value, expression, connection)

    return convert
