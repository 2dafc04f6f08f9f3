"""Write many rows with one ``UPDATE ... FROM`` a list of values, on PostgreSQL and SQLite.

Why not ``QuerySet.bulk_update``: it builds a ``CASE WHEN pk = ... THEN ...`` expression for
every field of every row, and resolving and compiling those expressions in Python took about
70% of the CPU of an ingest request carrying 100 events. Here the SQL is a fixed template, the
rows travel as one ``VALUES`` list of bound parameters, and the database joins it to the table
on a key column.

The ``VALUES`` list is a subquery in ``FROM`` whose columns keep their default names,
``column1``, ``column2``, ..., on both backends, so one statement serves both: SQLite (3.33 or
later for ``UPDATE ... FROM``) accepts no ``AS v(a, b)`` column list, and Python's sqlite3
reports no row count for a statement that starts with ``WITH v(a, b) AS (VALUES ...)``.

PostgreSQL types a ``VALUES`` column from its values (an untyped NULL or string would be text,
which a jsonb or timestamptz column refuses), so there every placeholder is cast to its
column's type. That is also the cast ``bulk_update`` wraps its ``CASE`` in, so an over-long
string is cut to a varchar column's length exactly as before (an explicit cast truncates).
SQLite needs no casts.

Each value is converted exactly as Django converts it for that field when saving, so the rows
hold what ``bulk_update`` or ``save`` would have written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, Field, JSONField, Model

from destinations.binary_params import execute_binary
from destinations.db_values import moment_adapter

# Rows per statement; SQLite's parameter limit (999 as Django counts it) may lower it.
MAX_ROWS_PER_STATEMENT = 500
VALUES_NAME = "incoming"

# A string: Django's Field is generic only in its type stubs, not at run time.
AnyField: TypeAlias = "Field[Any, Any]"
Converter = Callable[[Any], Any]


def bulk_write(
    model: type[Model],
    objs: Sequence[Model],
    field_names: Sequence[str],
    *,
    using: str = DEFAULT_DB_ALIAS,
) -> int:
    """Store ``field_names`` of each of ``objs`` in its row (matched by primary key), in the
    order given; what ``model.objects.bulk_update(objs, field_names)`` stores. Returns the
    number of rows written."""
    opts = model._meta
    fields = [concrete_field(model, name) for name in field_names]
    rows = [(obj.pk, *(getattr(obj, f.attname) for f in fields)) for obj in objs]
    return update_from_values(model, key=opts.pk, fields=fields, rows=rows, using=using)


def update_from_values(
    model: type[Model],
    *,
    key: AnyField,
    fields: Sequence[AnyField],
    rows: Sequence[Sequence[Any]],
    only_where_null: bool = False,
    using: str = DEFAULT_DB_ALIAS,
) -> int:
    """For each row ``(key value, value for each of fields...)``, set ``fields`` in the rows
    of ``model`` whose ``key`` column equals the key value. ``only_where_null`` leaves rows
    alone whose ``fields`` are already set. Returns the number of rows updated.

    Each key value must appear once: were it given twice, which of its rows is stored would
    be up to the database."""
    if not rows:
        return 0
    connection = connections[using]
    columns = [key, *fields]
    converters = [db_converter(field, connection) for field in columns]
    if connection.vendor == "postgresql":
        arrays = [[convert(row[index]) for row in rows] for index, convert in enumerate(converters)]
        sql = unnest_update_sql(connection, model, key, fields, only_where_null)
        updated, _ = execute_binary(sql, arrays, connection=connection)
        return updated
    chunk_size = rows_per_statement(connection, len(columns))
    updated = 0
    with connection.cursor() as cursor:
        for start in range(0, len(rows), chunk_size):
            chunk = rows[start : start + chunk_size]
            params = [
                convert(value)
                for row in chunk
                for convert, value in zip(converters, row, strict=True)
            ]
            sql = update_sql(connection, model, key, fields, len(chunk), only_where_null)
            cursor.execute(sql, params)
            updated += cursor.rowcount
    return updated


def update_sql(
    connection: BaseDatabaseWrapper,
    model: type[Model],
    key: AnyField,
    fields: Sequence[AnyField],
    row_count: int,
    only_where_null: bool,
) -> str:
    """``UPDATE table SET a = incoming.column2, b = incoming.column3 FROM (VALUES (%s, %s, %s),
    ...) AS incoming WHERE table.key = incoming.column1``."""
    row = "(" + ", ".join(placeholder(connection, f) for f in (key, *fields)) + ")"
    rows = f"(VALUES {', '.join([row] * row_count)}) AS {connection.ops.quote_name(VALUES_NAME)}"
    return update_from_sql(connection, model, key, fields, rows, only_where_null)


def unnest_update_sql(
    connection: BaseDatabaseWrapper,
    model: type[Model],
    key: AnyField,
    fields: Sequence[AnyField],
    only_where_null: bool,
) -> str:
    """PostgreSQL: the rows as one array per column, bound in binary, ``UPDATE table SET a =
    incoming.column2 FROM unnest(CAST(%b AS bigint[]), CAST(%b AS jsonb[])) AS
    incoming(column1, column2) ...``.
    The statement's text is the same whatever the number of rows: psycopg parses a query's
    placeholders in Python and caches only short queries, and a ``VALUES`` list of a few hundred
    rows spent more CPU there than the database spent running it."""
    quote = connection.ops.quote_name
    columns = (key, *fields)
    arrays = ", ".join(placeholder(connection, f, array=True) for f in columns)
    names = ", ".join(column_names(connection, len(columns)))
    rows = f"unnest({arrays}) AS {quote(VALUES_NAME)}({names})"
    return update_from_sql(connection, model, key, fields, rows, only_where_null)


def update_from_sql(
    connection: BaseDatabaseWrapper,
    model: type[Model],
    key: AnyField,
    fields: Sequence[AnyField],
    rows: str,
    only_where_null: bool,
) -> str:
    """``UPDATE table SET ... FROM <rows> WHERE table.key = incoming.column1``; ``rows`` names
    its columns column1, column2, ...: the key, then ``fields``."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    values = quote(VALUES_NAME)
    names = column_names(connection, len(fields) + 1)
    assignments = ", ".join(
        f"{quote(f.column)} = {values}.{name}" for f, name in zip(fields, names[1:], strict=True)
    )
    conditions = [f"{table}.{quote(key.column)} = {values}.{names[0]}"]
    if only_where_null:
        conditions += [f"{table}.{quote(f.column)} IS NULL" for f in fields]
    return f"UPDATE {table} SET {assignments} FROM {rows} WHERE {' AND '.join(conditions)}"


def column_names(connection: BaseDatabaseWrapper, count: int) -> list[str]:
    return [connection.ops.quote_name(f"column{n}") for n in range(1, count + 1)]


def placeholder(connection: BaseDatabaseWrapper, field: AnyField, array: bool = False) -> str:
    if connection.vendor != "postgresql":
        return "%s"
    # The column's own type: varchar(n), jsonb, timestamp with time zone, bigint for ids.
    column_type = field.db_type(connection)
    if column_type is None:
        raise ValueError(f"{field} has no column type to cast to")
    if array:  # bound in binary: destinations/binary_params.py
        return f"CAST(%b AS {column_type}[])"
    return f"CAST(%s AS {column_type})"


def db_converter(field: AnyField, connection: BaseDatabaseWrapper) -> Converter:
    """The value a field's column receives when Django saves ``value``.

    JSON is sent as text (cast to jsonb on PostgreSQL), serialised as the field does it: with
    ``json.dumps`` and the field's encoder. None stays SQL NULL, as ``bulk_update`` stores it.
    """
    if isinstance(field, JSONField):
        encoder = field.encoder

        def to_json(value: Any) -> str | None:
            if value is None:
                return None
            return json.dumps(field.get_prep_value(value), cls=encoder)

        return to_json

    def to_column(value: Any) -> Any:
        return field.get_db_prep_save(value, connection)

    if isinstance(field, DateTimeField):
        return moment_adapter(connection, general=to_column)
    return to_column


def rows_per_statement(connection: BaseDatabaseWrapper, columns: int) -> int:
    limit = connection.features.max_query_params
    if limit is None:
        return MAX_ROWS_PER_STATEMENT
    return max(1, min(MAX_ROWS_PER_STATEMENT, limit // columns))


def concrete_field(model: type[Model], name: str) -> AnyField:
    field = model._meta.get_field(name)
    if (
        not isinstance(field, Field)
        or not field.concrete
        or field.primary_key
        or field.many_to_many
    ):
        raise ValueError(f"{model.__name__}.{name} is not a column bulk_write can set")
    return field
