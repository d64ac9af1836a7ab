from __future__ import annotations

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from chatman.db import Base


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_downgrade_to_base_and_upgrade_again(app):
    engine = app.extensions["chatman.db"].engine
    with app.app_context():
        flask_migrate.downgrade(revision="base")
        assert tables(engine) == set()
        flask_migrate.upgrade()
    assert tables(engine) == set(Base.metadata.tables)


def test_migrations_match_the_models(app):
    engine = app.extensions["chatman.db"].engine
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    assert diff == []


def test_altering_a_table_on_the_way_keeps_the_rows_that_refer_to_it(app):
    """0020 changes a check constraint of `triggers`, which SQLite does by copying the table:
    the firings and inbound messages that name a trigger must survive it."""
    engine = app.extensions["chatman.db"].engine
    with app.app_context():
        flask_migrate.downgrade(revision="0019")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO contacts (id, phone, attributes, dnd, created_at, updated_at)"
                    " VALUES (1, '+919800000001', '{}', false, :now, :now)"
                ),
                {"now": "2026-12-01 00:00:00+00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO triggers (id, name, match_type, patterns, priority, cooldown_s, action,"
                    " reply_body, is_fallback, enabled, created_at, updated_at) VALUES (1, 'hours',"
                    " 'keyword', '[\"open\"]', 0, 60, 'reply', 'We open at 10', false, true, :now, :now)"
                ),
                {"now": "2026-12-01 00:00:00+00:00"},
            )
            conn.execute(
                text("INSERT INTO trigger_firings (trigger_id, contact_id, fired_at) VALUES (1, 1, :now)"),
                {"now": "2026-12-01 00:00:00+00:00"},
            )
        flask_migrate.upgrade()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM trigger_firings")).scalar() == 1
        assert conn.execute(text("SELECT examples FROM triggers")).scalar() in ([], "[]")
