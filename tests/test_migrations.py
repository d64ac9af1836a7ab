from __future__ import annotations

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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
