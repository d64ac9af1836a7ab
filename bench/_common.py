"""Shared set-up for the benchmarks: a fresh schema (through the migrations) on a scratch database."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence

import psycopg
from flask import Flask
from sqlalchemy import text

import chatman.models  # noqa: F401
from chatman import create_app
from chatman.config import Settings, normalise_database_url
from chatman.db import Base

PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/chatman_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def ensure_pg_database(url: str) -> None:
    """Create the scratch database when it does not exist (connecting to `postgres`)."""
    dbname = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            conn.execute(f'CREATE DATABASE "{dbname}"')


def fresh_app(database_url: str) -> Flask:
    import flask_migrate

    database_url = normalise_database_url(database_url)
    if database_url.startswith("postgresql"):
        ensure_pg_database(database_url)
    app = create_app(Settings(database_url=database_url, redis_url=REDIS_URL))
    db = app.extensions["chatman.db"]
    with app.app_context():
        with db.engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        flask_migrate.upgrade()
    return app


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
