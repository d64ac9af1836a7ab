"""Counters are inserted deltas that the clock squashes: writers of one counter never wait on
each other, and every counter equals a recount from the message rows at every moment."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from chatman.ledger import counters, sending
from chatman.ledger.models import CampaignStat
from chatman.ledger.status import StatusUpdate, apply_pending_events, record_many
from chatman.messaging.delivery import record_answers
from chatman.messaging.providers import SendResult
from chatman.timeutils import utcnow
from tests.factories import make_submitted_run


def sid_of(message_id: int) -> str:
    return f"SM{message_id:032d}"


def submit(session: Session, rows) -> None:
    """What a batch does for these rows: claim, hand over, record the provider's sids. Left
    uncommitted after the answers, as a batch's transaction is while it records them."""
    token, now = str(uuid.uuid4()), utcnow()
    ids = [r.id for r in rows]
    assert sending.claim(session, ids, token, now) == len(ids)
    sending.hand(session, token, ids, now)
    session.commit()
    claimed = [sending.ClaimedRow(r.id, r.campaign_id, r.run_id, r.step_id, r.contact_id, 1) for r in rows]
    record_answers(session, token, [(row, SendResult(sid=sid_of(row.id))) for row in claimed])


def impatient(engine):
    """An engine on the same database whose sessions give up waiting for a lock after 2 s."""
    return create_engine(
        engine.url.render_as_string(hide_password=False), connect_args={"options": "-c lock_timeout=2s"}
    )


def test_squash_folds_rows_and_keeps_every_counter(app, session):
    campaign, run, step, rows = make_submitted_run(session, 40, submitted=False)
    for chunk in (rows[:15], rows[15:30]):
        submit(session, chunk)
        session.commit()
    record_many(session, [StatusUpdate(sid_of(r.id), random.choice(["sent", "read"])) for r in rows[:25]])
    session.commit()
    before = counters.stored(session, campaign.id)
    assert session.scalar(select(func.count()).select_from(CampaignStat)) > len(before)  # deltas
    assert counters.squash(session) > 0
    session.commit()
    assert counters.stored(session, campaign.id) == before
    assert session.scalar(select(func.count()).select_from(CampaignStat)) == len(before)  # one each
    assert not counters.unsquashed(session)
    assert counters.differences(session, campaign.id) == []


@pytest.mark.postgresql
def test_a_batch_and_a_drain_touching_one_counter_do_not_wait_on_each_other(app, session):
    """Forced interleaving: A records a batch's answers and keeps its transaction open; B then
    records another batch's answers and applies callbacks, and C squashes, all on the same
    run's counters. None of them waits for A (each would fail after 2 s if it did)."""
    campaign, run, step, rows = make_submitted_run(session, 30, submitted=False)
    first, second, earlier = rows[:10], rows[10:20], rows[20:]
    submit(session, earlier)
    session.commit()
    engine = impatient(session.get_bind())
    with Session(engine) as a, Session(engine) as b, Session(engine) as c:
        submit(a, first)  # A's transaction stays open: its row locks and its counter deltas
        submit(b, second)
        outcome = record_many(b, [StatusUpdate(sid_of(r.id), "delivered") for r in earlier])
        assert outcome.moved == len(earlier)
        b.commit()
        counters.squash(c)
        c.commit()
        a.commit()
    engine.dispose()
    session.expire_all()
    totals = Counter()
    for (_, _, _, metric), value in counters.stored(session, campaign.id).items():
        totals[metric] += value
    assert (totals["submitted"], totals["delivered"], totals["sent"]) == (30, 10, 10)
    assert counters.differences(session, campaign.id) == []


@pytest.mark.postgresql
def test_batches_drains_and_squashes_at_once_never_deadlock(app, session):
    campaign, run, step, rows = make_submitted_run(session, 400, submitted=False)
    engine = session.get_bind()
    groups = [rows[i : i + 20] for i in range(0, len(rows), 20)]
    lock = threading.Lock()
    errors: list[BaseException] = []
    batches_done = threading.Event()

    def guarded(work):
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 (collected for the assertion below)
                errors.append(exc)

        return threading.Thread(target=run)

    def batch() -> None:
        with Session(engine) as s:
            while True:
                with lock:
                    if not groups:
                        return
                    group = groups.pop()
                submit(s, group)
                s.commit()

    def drain(seed: int) -> None:
        rng = random.Random(seed)
        with Session(engine) as s:
            while not batches_done.is_set():
                sample = rng.sample(rows, 40)
                statuses = ["sent", "delivered", "read", "undelivered"]
                record_many(s, [StatusUpdate(sid_of(r.id), rng.choice(statuses), "63024") for r in sample])
                s.commit()

    def squasher() -> None:
        with Session(engine) as s:
            while not batches_done.is_set():
                counters.squash(s)
                s.commit()

    batchers = [guarded(batch) for _ in range(4)]
    others = [guarded(lambda i=i: drain(i)) for i in range(3)] + [guarded(squasher)]
    for t in batchers + others:
        t.start()
    for t in batchers:
        t.join(120)
    batches_done.set()
    for t in others:
        t.join(120)
    assert errors == []
    apply_pending_events(session, [sid_of(r.id) for r in rows])  # callbacks that raced their send
    session.commit()
    assert counters.differences(session, campaign.id) == []
    totals = Counter()
    for (_, _, _, metric), value in counters.stored(session, campaign.id).items():
        totals[metric] += value
    assert totals["submitted"] == totals["targeted"] == 400
