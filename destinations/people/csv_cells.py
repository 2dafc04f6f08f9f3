"""CSV cells a spreadsheet shows as text, and read back as they were.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return before one) as a formula: a name or userId taken from identify traits could then compute,
fetch URLs or run commands on the operator's machine ("CSV injection"). OWASP's advice is to
write such a cell after a single quote, which spreadsheets take as "this is text" and do not
show. The import reads the quote off again, so an exported file imported back means what it
said.

A value that already starts with quotes before one of those characters gets one quote more, so
it too comes back unchanged: exactly one quote is added on the way out, exactly one is taken
off on the way in, and only when quotes are followed by one of those characters.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"


def formula_like(value: str) -> bool:
    """True when the value, past any leading quotes, starts as a formula would."""
    return value.lstrip(TEXT_MARK).startswith(FORMULA_STARTS)


def as_text(value: str) -> str:
    """The cell to write for ``value``: quoted as text when a spreadsheet would run it."""
    return TEXT_MARK + value if formula_like(value) else value


def from_text(cell: str) -> str:
    """The value a cell written by ``as_text`` stands for."""
    return cell[1:] if cell.startswith(TEXT_MARK) and formula_like(cell) else cell
