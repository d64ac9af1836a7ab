from __future__ import annotations

from dataclasses import replace

from chatman import create_app, inbox
from chatman.clock import tick


def test_healthz_reports_database_and_redis(client, redis):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["database"] == "ok" and response.json["redis"] == "ok"
    assert response.json["clock_last_tick_s"] is None
    tick(redis, [])
    assert client.get("/healthz").json["clock_last_tick_s"] < 60
    assert response.json["status_backlog"] == 0
    inbox.append(redis, inbox.STATUS, {"MessageSid": "SM1", "MessageStatus": "sent"})
    assert client.get("/healthz").json["status_backlog"] == 1  # accepted, not applied yet


def test_healthz_is_503_when_redis_does_not_answer(app):
    settings = replace(app.extensions["chatman.settings"], redis_url="redis://127.0.0.1:1/0")
    broken = create_app(settings)
    response = broken.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["database"] == "ok" and response.json["redis"].startswith("error")
    broken.extensions["chatman.db"].dispose()


def test_openapi_document_describes_the_api_and_its_auth(client):
    spec = client.get("/api/v1/openapi.json").json
    assert {
        "/api/v1/contacts",
        "/api/v1/contacts/import",
        "/api/v1/segments",
        "/api/v1/segments/{segment_id}/preview",
    } <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_swagger_ui_loads_with_its_assets_served_locally(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/api/v1/openapi.json" in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert f"/api/v1/docs/assets/{asset}" in html
        assert client.get(f"/api/v1/docs/assets/{asset}").status_code == 200


def test_clock_tick_runs_every_task_even_when_one_fails(redis):
    ran = []

    def broken(now):
        raise RuntimeError("boom")

    def works(now):
        ran.append(now)
        return 2

    assert tick(redis, [broken, works]) == 2
    assert len(ran) == 1


def test_healthz_shows_the_status_waits_and_claims_left_by_a_dead_batch(app, client, session, redis):
    import time
    from datetime import timedelta

    from sqlalchemy import update

    from chatman.ledger.models import Message
    from chatman.timeutils import utcnow
    from tests.factories import make_submitted_run

    inbox.append(redis, inbox.STATUS, {"MessageSid": "SM1", "MessageStatus": "sent"})
    time.sleep(0.2)
    health = client.get("/healthz").json
    assert health["status_backlog"] == 1 and health["status_oldest_s"] >= 0.2
    _, _, _, (fresh, old) = make_submitted_run(session, 2, submitted=False)
    session.execute(
        update(Message).where(Message.id == fresh.id).values(status="claimed", claimed_at=utcnow())
    )
    session.execute(
        update(Message)
        .where(Message.id == old.id)
        .values(status="claimed", claimed_at=utcnow() - timedelta(minutes=11))
    )
    session.commit()
    assert client.get("/healthz").json["claims_overdue"] == 1
