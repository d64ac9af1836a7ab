"""The few statements whose SQL differs between SQLite and PostgreSQL, both forms side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def _insert(session: Session, model):
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model), dialect
    if dialect == "sqlite":
        return sqlite.insert(model), dialect
    raise NotImplementedError(f"unsupported database {dialect}")


def insert_ignore(
    session: Session, model, rows: Sequence[Mapping[str, Any]], conflict_columns: Sequence[str]
) -> int:
    """INSERT rows, skipping those that collide on `conflict_columns`; returns rows inserted."""
    if not rows:
        return 0
    stmt, _ = _insert(session, model)
    stmt = stmt.values(list(rows)).on_conflict_do_nothing(index_elements=list(conflict_columns))
    # rowcount of a multi-row INSERT is not reliable across drivers; RETURNING is.
    key = model.__table__.c[conflict_columns[0]]
    return len(session.execute(stmt.returning(key)).all())


def json_merge(dialect: str, current, patch):
    """SQL for `current` with the keys of `patch` written over it (both JSON objects)."""
    if dialect == "postgresql":
        return current.op("||")(patch)
    return func.json_patch(current, patch)


def upsert(
    session: Session,
    model,
    rows: Sequence[Mapping[str, Any]],
    conflict_columns: Sequence[str],
    keep_existing: Sequence[str] = (),
    merge_json: Sequence[str] = (),
    overwrite: Sequence[str] = (),
) -> None:
    """INSERT rows or update the row they collide with.

    On a collision, `keep_existing` columns take the new value only when it is not NULL,
    `merge_json` columns merge the new object into the stored one, `overwrite` columns
    take the new value.
    """
    if not rows:
        return
    stmt, dialect = _insert(session, model)
    stmt = stmt.values(list(rows))
    table = model.__table__
    set_ = {name: func.coalesce(stmt.excluded[name], table.c[name]) for name in keep_existing}
    set_ |= {name: json_merge(dialect, table.c[name], stmt.excluded[name]) for name in merge_json}
    set_ |= {name: stmt.excluded[name] for name in overwrite}
    session.execute(stmt.on_conflict_do_update(index_elements=list(conflict_columns), set_=set_))
