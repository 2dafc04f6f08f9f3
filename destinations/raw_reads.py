"""Lookups on ingest's per-request path, in plain SQL.

The ORM compiles a query in Python on every call: about 0.4 ms of CPU for a one-row lookup,
against 0.1 ms for sending the statement and reading its rows. A single-event request made
three such lookups (is this messageId stored, which of these users exist, load them locked),
a quarter of its CPU. The statements are the ones the ORM wrote, with bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from destinations.db_values import faster_converters

# Well under SQLite's limit on parameters in one statement (999 as Django counts it).
SQLITE_CHUNK = 500

M = TypeVar("M", bound=Model)


def chunks(values: Iterable[Any]) -> list[list[Any]]:
    """One statement on PostgreSQL (so rows are locked in one id order); SQLite, which has no
    row locks, limits the parameters of a statement."""
    items = list(values)
    if connection.vendor != "sqlite":
        return [items] if items else []
    return [items[start : start + SQLITE_CHUNK] for start in range(0, len(items), SQLITE_CHUNK)]


def placeholders(count: int) -> str:
    return "(" + ", ".join(["%s"] * count) + ")"


def column(model: type[Model], field_name: str) -> str:
    return quoted_column(model, field_name, connection.vendor)


@cache
def quoted_column(model: type[Model], field_name: str, vendor: str) -> str:
    """The column's name as the database's statements write it; the same for every connection
    of a kind of database, so worked out once per process."""
    name = getattr(model._meta.get_field(field_name), "column", None)
    if not isinstance(name, str):
        raise ValueError(f"{model.__name__}.{field_name} is not a column")
    return connection.ops.quote_name(name)


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def values_present(
    model: type[Model],
    field_name: str,
    values: Iterable[Any],
    *,
    also: Sequence[tuple[str, Any]] = (),
) -> set[Any]:
    """Which of ``values`` the column ``field_name`` holds (in rows matching ``also``, a list of
    (field name, value) equalities)."""
    name = column(model, field_name)
    found: set[Any] = set()
    extra = "".join(f" AND {column(model, f)} = %s" for f, _ in also)
    with connection.cursor() as cursor:
        for chunk in chunks(values):
            cursor.execute(
                f"SELECT {name} FROM {table(model)} WHERE {name} IN {placeholders(len(chunk))}"
                + extra,
                [*chunk, *(value for _, value in also)],
            )
            found.update(row[0] for row in cursor.fetchall())
    return found


def rows_locked(
    model: type[M],
    field_name: str,
    values: Iterable[Any],
    only: Sequence[str] | None = None,
) -> list[M]:
    """Rows whose ``field_name`` is one of ``values``, ordered by id and, where the database
    has row locks, locked until the transaction ends (what ``select_for_update().order_by("id")``
    reads). ``only`` names the fields to read (the primary key always is); the others are left
    deferred, as ``QuerySet.only`` leaves them."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    fields = read_fields(model, only)
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    found: list[M] = []
    with connection.cursor() as cursor:
        for chunk in chunks(values):
            cursor.execute(
                f"SELECT {names} FROM {table(model)} WHERE {column(model, field_name)} IN "
                f"{placeholders(len(chunk))} ORDER BY {column(model, 'id')}{lock}",
                chunk,
            )
            found.extend(instances(model, cursor.fetchall(), fields))
    return found


def read_fields(model: type[Model], only: Sequence[str] | None) -> list[Field[Any, Any]]:
    concrete = model._meta.concrete_fields
    if only is None:
        return list(concrete)
    wanted = {model._meta.pk.name if model._meta.pk else "id", *only}
    return [f for f in concrete if f.name in wanted]


def instances(
    model: type[M], rows: Sequence[Sequence[Any]], fields: Sequence[Field[Any, Any]] | None = None
) -> list[M]:
    """Model instances from rows of ``fields`` (all the model's columns, in field order, by
    default), each value converted as the ORM converts what it reads (JSON decoded, SQLite's
    datetimes parsed). ``Model.objects.raw`` does the same, at three times the CPU for a one-row
    read."""
    fields = list(fields if fields is not None else model._meta.concrete_fields)
    # The thread's connection itself: every attribute read through the ``connection`` proxy
    # looks the thread's connection up again (a tenth of loading 100 profiles, once per row).
    database = connections[DEFAULT_DB_ALIAS]
    converters = converters_of(model, tuple(f.name for f in fields), database.vendor)
    attnames = [f.attname for f in fields]
    signals_heard = pre_init.has_listeners(model) or post_init.has_listeners(model)
    alias = database.alias
    made = []
    for row in rows:
        values = list(row)
        for index, col, functions in converters:
            for convert in functions:
                values[index] = convert(values[index], col, database)
        if signals_heard:
            made.append(model.from_db(alias, attnames, values))
        else:
            made.append(loaded_instance(model, alias, attnames, values))
    return made


def loaded_instance(model: type[M], alias: str, attnames: list[str], values: list[Any]) -> M:
    """What ``model.from_db`` returns, made without ``Model.__init__``: a new instance's
    ``__dict__`` holds each read field's value by attname (a field not read is simply absent,
    which is what makes it deferred), and its state says it came from database ``alias``.
    ``__init__`` sets the same, one descriptor at a time, and sends pre_init and post_init:
    only for a model with no listeners to those is this used. For 100 profiles it is half the
    CPU of reading them."""
    instance = model.__new__(model)
    state = ModelState()
    state.adding = False
    state.db = alias
    instance._state = state
    instance.__dict__.update(zip(attnames, values, strict=True))
    return instance


@cache
def converters_of(
    model: type[Model], field_names: tuple[str, ...], vendor: str
) -> list[tuple[int, Any, list[Any]]]:
    """For each column of a row that the ORM converts: its index, its ``Col`` and the functions
    that convert it. They depend only on the fields and the database's kind (each function is
    given the connection it converts for), so they are worked out once per process."""
    found = []
    for index, name in enumerate(field_names):
        model_field = model._meta.get_field(name)
        col = model_field.get_col(model._meta.db_table)  # type: ignore[union-attr]
        functions = faster_converters(
            connection.ops.get_db_converters(col) + col.get_db_converters(connection), connection
        )
        if functions:
            found.append((index, col, functions))
    return found
