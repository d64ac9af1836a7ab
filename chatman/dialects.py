"""The few statements whose SQL differs between SQLite and PostgreSQL, both forms side by side.

Rows are passed as executemany parameters to one statement, not baked into a multi-VALUES
statement: the statement then compiles once and is cached, which for a batch of a thousand
rows is most of the cost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Column, MetaData, Select, Table, func, literal, literal_column, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session


def _insert(session: Session, table: Table):
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table), dialect
    if dialect == "sqlite":
        return sqlite.insert(table), dialect
    raise NotImplementedError(f"unsupported database {dialect}")


def insert_ignore(
    session: Session, model, rows: Sequence[Mapping[str, Any]], conflict_columns: Sequence[str]
) -> int:
    """INSERT rows, skipping those that collide on `conflict_columns`; returns rows inserted."""
    return len(insert_ignore_returning(session, model, rows, conflict_columns, conflict_columns[0]))


def insert_ignore_returning(
    session: Session,
    model,
    rows: Sequence[Mapping[str, Any]],
    conflict_columns: Sequence[str],
    returning: str | tuple[str, ...],
) -> list[Any]:
    """INSERT rows, skipping those that collide on `conflict_columns`; returns the `returning`
    column of each row inserted (a tuple of columns: a row of them)."""
    if not rows:
        return []
    table = model.__table__
    stmt, dialect = _insert(session, table)
    if dialect == "postgresql" and len(rows) >= UNNEST_FROM:
        rows = _with_defaults(table, rows)
        stmt = stmt.from_select(list(rows[0]), _unnested(session, table, rows))
    stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict_columns))
    if dialect == "postgresql" and len(rows) >= UNNEST_FROM:
        if isinstance(returning, tuple):
            return list(session.execute(stmt.returning(*(table.c[name] for name in returning))))
        return list(session.scalars(stmt.returning(table.c[returning])))
    # rowcount of a batched INSERT is not reliable across drivers; RETURNING is.
    if isinstance(returning, tuple):
        return list(
            session.connection().execute(stmt.returning(*(table.c[c] for c in returning)), list(rows))
        )
    return list(session.connection().execute(stmt.returning(table.c[returning]), list(rows)).scalars())


# From this many rows, PostgreSQL gets them as one array per column, unnested: a statement of
# a few parameters, where executemany's batches of VALUES cost ~50 us a row to build and parse.
UNNEST_FROM = 50


def _with_defaults(table: Table, rows: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    """`rows` with the Python-side default of each column they leave out: executemany applies
    those, INSERT ... SELECT does not (SQLAlchemy refuses it)."""
    missing = {}
    for column in table.columns:
        default = column.default
        if column.name in rows[0] or default is None or not (default.is_scalar or default.is_callable):
            continue
        missing[column.name] = default.arg(None) if default.is_callable else default.arg
    return [{**row, **missing} for row in rows] if missing else rows


def _unnested(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]):
    """SELECT * FROM unnest(CAST(:c0 AS type[]), ...): `rows` (all with the same keys) as a
    query, each value passed through its column type's bind processing (JSON, UTC times)."""
    dialect = session.get_bind().dialect
    names = list(rows[0])
    casts, params = [], {}
    for i, name in enumerate(names):
        column = table.c[name]
        process = column.type.bind_processor(dialect)
        values = [row[name] for row in rows]
        if process is not None:
            values = [process(v) if v is not None else None for v in values]
        type_name = column.type.compile(dialect=dialect)
        if type_name in ("JSON", "JSONB") and process is None:  # passed as text, each element cast
            # As executemany would: None is JSON null unless the type says SQL NULL.
            null = getattr(column.type, "none_as_null", False)
            values = [None if v is None and null else json.dumps(v) for v in values]
        casts.append(f"CAST(:u{i} AS {type_name}[])")
        params[f"u{i}"] = values
    labels = ", ".join(f"u{i}" for i in range(len(names)))
    query = text(f"SELECT * FROM unnest({', '.join(casts)}) AS unnested({labels})").bindparams(**params)
    return query.columns(*(literal_column(f"u{i}") for i in range(len(names))))


def insert_ignore_select(
    session: Session,
    model,
    rows: Select,
    columns: Sequence[str],
    conflict_columns: Sequence[str],
    returning: str,
) -> list[Any]:
    """INSERT ... SELECT `rows` into `columns`, skipping collisions; returns the `returning`
    column of each inserted row."""
    table = model.__table__
    stmt, _ = _insert(session, table)
    stmt = stmt.from_select(list(columns), rows).on_conflict_do_nothing(index_elements=list(conflict_columns))
    return list(session.scalars(stmt.returning(table.c[returning])))


def try_advisory_lock(session: Session, name: str) -> bool:
    """Take a lock named `name` until the transaction ends, unless another transaction holds
    it (False). SQLite runs one writer at a time: nothing to take."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(func.hashtext(name)))))


def lock_keys(session: Session, namespace: str, keys: Sequence[int]) -> None:
    """Hold a lock on each of `keys` in `namespace` until the transaction ends, waiting for
    whoever holds one. PostgreSQL takes them in ascending order, so two holders of
    overlapping keys never wait on each other in a cycle. SQLite has one writer at a time:
    beginning a write takes its lock, and what the transaction reads next is what was last
    committed (call this before the transaction reads anything)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(hashtext(:ns), CAST(mod(k, 2147483647) AS integer)))"
                " FROM unnest(CAST(:keys AS bigint[])) AS k"
            ),
            {"ns": namespace, "keys": sorted(keys)},
        )
    else:
        session.execute(text("UPDATE claim_leases SET token = token WHERE 0"))


def insert_or_overwrite(
    session: Session,
    model,
    rows: Sequence[Mapping[str, Any]],
    key_columns: Sequence[str],
    overwrite: Sequence[str],
) -> None:
    """INSERT rows; where one collides on `key_columns`, set its `overwrite` columns instead."""
    if not rows:
        return
    stmt, _ = _insert(session, model.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key_columns), set_={name: stmt.excluded[name] for name in overwrite}
    )
    session.connection().execute(stmt, list(rows))


def json_merge(dialect: str, current, patch):
    """SQL for `current` with the keys of `patch` written over it (both JSON objects)."""
    if dialect == "postgresql":
        return current.op("||")(patch)
    return func.json_patch(current, patch)


def upsert(
    session: Session,
    model,
    rows: Sequence[Mapping[str, Any]],
    conflict_column: str,
    constants: Mapping[str, Any] | None = None,
    keep_existing: Sequence[str] = (),
    merge_json: Sequence[str] = (),
    overwrite: Sequence[str] = (),
) -> int:
    """INSERT rows (all with the same keys) or update the row they collide with; returns
    how many rows were inserted rather than updated.

    `constants` are columns with one value for every row. On a collision, `keep_existing`
    columns take the new value only when it is not NULL, `merge_json` columns merge the new
    object into the stored one, `overwrite` columns take the new value.
    """
    if not rows:
        return 0
    constants = dict(constants or {})
    table = model.__table__
    stmt, dialect = _insert(session, table)
    columns = list(rows[0])
    if dialect == "postgresql":
        # COPY into a temporary table, then one INSERT ... SELECT: building bind parameters
        # for a thousand rows costs several times what the server needs to upsert them.
        source = _copy_to_temp_table(session, table, columns, rows)
        values = [source.c[name] for name in columns]
        values += [literal(value, table.c[name].type) for name, value in constants.items()]
        stmt = stmt.from_select([*columns, *constants], select(*values))
    set_ = {name: func.coalesce(stmt.excluded[name], table.c[name]) for name in keep_existing}
    set_ |= {name: json_merge(dialect, table.c[name], stmt.excluded[name]) for name in merge_json}
    set_ |= {name: stmt.excluded[name] for name in overwrite}
    stmt = stmt.on_conflict_do_update(index_elements=[conflict_column], set_=set_)
    if dialect == "postgresql":
        # xmax is 0 on a freshly inserted row version and set on an updated one.
        inserted = stmt.returning(literal_column("xmax = 0"))
        return sum(1 for (fresh,) in session.execute(inserted) if fresh)
    keys = [row[conflict_column] for row in rows]
    existing = session.scalar(
        select(func.count()).select_from(table).where(table.c[conflict_column].in_(keys))
    )
    session.connection().execute(stmt, [{**row, **constants} for row in rows])
    return len(rows) - existing


def _copy_to_temp_table(session: Session, table: Table, columns: list[str], rows) -> Table:
    connection = session.connection()
    dialect = connection.dialect
    name = f"_upsert_{table.name}"
    source = Table(name, MetaData(), *(Column(c, table.c[c].type) for c in columns))
    ddl = ", ".join(f'"{c}" {table.c[c].type.compile(dialect)}' for c in columns)
    # Emptied by the commit that follows each batch; a stale batch cannot leak into the next.
    connection.execute(text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({ddl}) ON COMMIT DELETE ROWS"))
    json_columns = {c for c in columns if isinstance(table.c[c].type, JSON | JSONB)}
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([json.dumps(row[c]) if c in json_columns else row[c] for c in columns])
    return source
