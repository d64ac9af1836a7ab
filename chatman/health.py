"""GET /healthz: can this process reach the database and Redis?"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from chatman import inbox
from chatman.clock import last_tick
from chatman.extensions import database, redis_client
from chatman.jobs import BATCH_TIMEOUT_S, worker_count
from chatman.ledger.sending import overdue_claims
from chatman.messaging import simulator
from chatman.timeutils import utcnow

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    checks: dict[str, str] = {}
    info: dict[str, object] = {}
    try:
        with database().sessionmaker() as session:
            session.execute(text("SELECT 1"))
            checks["database"] = "ok"
            # Rows claimed (or handed to the provider) for longer than a batch can take and
            # still undecided: a dead worker's, which recovery should settle within a minute.
            info["claims_overdue"] = overdue_claims(session, utcnow() - timedelta(seconds=BATCH_TIMEOUT_S))
    except SQLAlchemyError as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        connection = redis_client()
        connection.ping()
        checks["redis"] = "ok"
        # Informational: a missing worker or clock degrades work, not this process.
        info["workers"] = worker_count(connection)
        tick = last_tick(connection)
        info["clock_last_tick_s"] = round((utcnow() - tick).total_seconds(), 1) if tick else None
        # Status callbacks accepted and not yet applied, and how long the oldest has waited:
        # both near 0 while workers keep up. Set aside: callbacks that could not be applied.
        info["status_backlog"] = inbox.backlog(connection, inbox.STATUS)
        info["status_oldest_s"] = inbox.oldest_age_s(connection, inbox.STATUS)
        info["status_set_aside"] = inbox.set_aside_count(connection, inbox.STATUS)
        # Simulated status callbacks our own webhook never took: non-zero means the
        # simulator posts to a wrong address (PUBLIC_BASE_URL) or with a wrong key.
        dropped, why = simulator.undelivered(connection)
        info["simulator_callbacks_undelivered"] = dropped
        if why:
            info["simulator_last_error"] = why
    except RedisError as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return {"status": "ok" if healthy else "unavailable", **checks, **info}, 200 if healthy else 503
