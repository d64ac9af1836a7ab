"""What every database we run on keeps, checked in the application so that SQLite and
PostgreSQL accept and refuse the same values: ids within a signed 64-bit column, and text
without NUL characters (PostgreSQL refuses them) or lone UTF-16 surrogates (no UTF-8 encoder
takes them)."""

from __future__ import annotations

MAX_ID = 2**63 - 1


def bad_character(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a character that is not valid Unicode (a lone surrogate)"
    return None
