"""Per-application handles the HTTP doors share: the database, a request session, Redis."""

from __future__ import annotations

from flask import Flask, current_app, g
from redis import Redis
from sqlalchemy.orm import Session

from chatman.config import Settings
from chatman.db import Database


def init_extensions(app: Flask, settings: Settings) -> None:
    app.extensions["chatman.settings"] = settings
    app.extensions["chatman.db"] = Database(settings.database_url)
    app.extensions["chatman.redis"] = Redis.from_url(
        settings.redis_url, socket_connect_timeout=1, socket_timeout=2
    )
    app.teardown_appcontext(_close_session)


def settings() -> Settings:
    return current_app.extensions["chatman.settings"]


def database() -> Database:
    return current_app.extensions["chatman.db"]


def redis_client() -> Redis:
    return current_app.extensions["chatman.redis"]


def request_session() -> Session:
    """The session of this request; views commit it, teardown rolls back what they did not."""
    if "db_session" not in g:
        g.db_session = database().sessionmaker()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.rollback()
        session.close()
