"""``prefix``: "starts with", case-sensitive, in a form an index serves on both databases.

Django's ``startswith`` is ``LIKE 'term%'`` with ``%``, ``_`` and ``\\`` in the term escaped.
On PostgreSQL that is what this lookup does: the ``varchar_pattern_ops`` index Django makes
beside every unique or indexed ``CharField`` serves it whatever the database's collation. On
SQLite, ``LIKE`` ignores ASCII case, so the column's (binary) index cannot serve it; ``GLOB
'term*'`` is case-sensitive, as on PostgreSQL, and can, with GLOB's own wildcards in the term
(``*``, ``?``, ``[``) matched literally.
"""

from __future__ import annotations

from typing import Any

from django.db.models import CharField
from django.db.models.lookups import Lookup, StartsWith
from django.db.models.sql.compiler import SQLCompiler

GLOB_SPECIAL = frozenset("*?[")


def glob_prefix(term: str) -> str:
    """A GLOB pattern for strings starting with ``term``: a special character stands for
    itself inside brackets."""
    return "".join(f"[{c}]" if c in GLOB_SPECIAL else c for c in term) + "*"


@CharField.register_lookup
class Prefix(Lookup):  # generic in the stubs only
    lookup_name = "prefix"
    prepare_rhs = False

    def as_sql(self, compiler: SQLCompiler, connection: Any) -> tuple[str, list[Any]]:
        # Django's own startswith, its escaping and (on PostgreSQL) its cast included.
        sql, params = StartsWith(self.lhs, self.rhs).as_sql(compiler, connection)
        return sql, list(params)

    def as_sqlite(self, compiler: SQLCompiler, connection: Any) -> tuple[str, list[Any]]:
        if not isinstance(self.rhs, str):
            raise TypeError("prefix takes a string")
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs_sql} GLOB %s", [*lhs_params, glob_prefix(self.rhs)]
