from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from chatman import jobs
from chatman.clock import deliver_due_webhooks, tick
from chatman.outgoing import endpoints, queue_delivery
from chatman.outgoing.models import WebhookDelivery, WebhookEndpoint
from chatman.timeutils import pinned
from tests.outgoing.crm_stub import CrmStub

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
# What a rule's call_webhook action sends (see chatman.outgoing.queue_delivery).
PAYLOAD = {
    "rule": {"id": 7, "name": "Interested"},
    "campaign": {"id": 3, "run_id": 11, "step_id": 5},
    "message": {"id": 42, "status": "read", "event": "read, tapped:Interested"},
    "contact": {"id": 9, "phone": "+919800000001", "name": "Asha", "attributes": {"city": "Pune"}},
    "fired_at": "2026-12-04T09:00:00+00:00",
}


@pytest.fixture
def crm() -> Iterator[CrmStub]:
    stub = CrmStub().start()
    yield stub
    stub.stop()


@pytest.fixture
def allow_private(app):
    """The API with WEBHOOK_ALLOW_PRIVATE=true (the CRM stub is on loopback)."""
    original = app.extensions["chatman.settings"]
    app.extensions["chatman.settings"] = replace(original, webhook_allow_private=True)
    yield
    app.extensions["chatman.settings"] = original


@pytest.fixture
def senders(in_process_jobs):
    """Jobs in this process that may call the loopback CRM; `senders(**env)` changes settings."""

    def configure(**env: str) -> None:
        in_process_jobs(**({"WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_TIMEOUT_S": "5"} | env))

    configure()
    return configure


@pytest.fixture
def endpoint_for(session, crm):
    """endpoint_for(url=crm.url): a saved endpoint (the address check passed), whose secret the
    CRM verifies with."""

    def make(url: str | None = None, name: str = "CRM") -> WebhookEndpoint:
        endpoint = endpoints.create_endpoint(
            session, {"name": name, "url": url or crm.url}, allow_private=True
        )
        session.commit()
        crm.secret = endpoint.secret
        return endpoint

    return make


@pytest.fixture
def queue(session):
    """queue(endpoint, at): a rule.fired delivery queued (and committed) at `at`."""

    def make(endpoint: WebhookEndpoint, at: datetime = T0, payload: dict | None = None) -> int:
        delivery_id = queue_delivery(session, endpoint.id, "rule.fired", payload or PAYLOAD, now=at)
        session.commit()
        return delivery_id

    return make


@pytest.fixture
def first_attempt(session, redis):
    """first_attempt(ids, at): what the rule's job does after its commit, at `at`: enqueue the
    deliveries, and a burst worker in this process runs them."""

    def run(delivery_ids: list[int], at: datetime = T0) -> None:
        with pinned(at):
            jobs.enqueue_webhook_deliveries(redis, delivery_ids)
            jobs.run_worker(redis, burst=True)
        session.expire_all()

    return run


@pytest.fixture
def drive(app, session, redis):
    """drive(now): the clock's webhook task ticks at `now`, then a burst worker runs what it
    enqueued in this process, the wall clock read as `now`; returns what the tick enqueued."""
    task = deliver_due_webhooks(app.extensions["chatman.db"], redis)

    def run(now: datetime) -> int:
        with pinned(now):
            enqueued = tick(redis, [task], now)
            if enqueued:
                jobs.run_worker(redis, burst=True)
        session.expire_all()
        return enqueued

    return run


def delivery(session, delivery_id: int) -> WebhookDelivery:
    session.expire_all()
    return endpoints.get_delivery(session, delivery_id)
