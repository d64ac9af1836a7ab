"""A claim's lease: a holder that lost it sends nothing more, and recovery never takes back a
row its slow (not dead) holder handed to the provider meanwhile."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update

from chatman.ledger import sending
from chatman.ledger.models import ClaimLease, Message
from chatman.messaging import policy
from chatman.messaging.providers import NOT_SENT, OutboundMessage, send_safely
from chatman.messaging.simulator import SimulatorProvider
from chatman.timeutils import utcnow
from tests.factories import make_contact, make_submitted_run


def claimed_rows(session, count: int):
    _, _, _, rows = make_submitted_run(session, count, submitted=False)
    token = str(uuid.uuid4())
    assert sending.claim(session, [r.id for r in rows], token, utcnow()) == count
    session.commit()
    return token, rows


def test_a_holder_whose_lease_ran_out_hands_nothing_over(app, session):
    token, rows = claimed_rows(session, 3)
    session.execute(update(ClaimLease).values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    assert sending.hand(session, token, [r.id for r in rows], utcnow()) == set()
    session.rollback()
    session.execute(update(ClaimLease).values(expires_at=utcnow() + timedelta(seconds=20)))
    assert sending.hand(session, token, [r.id for r in rows], utcnow()) == {r.id for r in rows}


def test_recovery_does_not_take_back_a_row_its_slow_holder_handed_meanwhile(app, session):
    token, (handed, idle) = claimed_rows(session, 2)
    later = utcnow() + timedelta(minutes=1)
    stale = sending.stale_claims(session, later, later - timedelta(hours=1))
    assert {s.row.id for s in stale} == {handed.id, idle.id}  # both look never handed, lease gone
    assert sending.hand(session, token, [handed.id], utcnow())  # the holder was only slow
    session.commit()
    assert sending.release(session, token, [handed.id, idle.id]) == 1
    session.commit()
    statuses = dict(session.execute(select(Message.id, Message.status)).all())
    assert statuses == {handed.id: "claimed", idle.id: "pending"}


def test_a_send_whose_lease_is_not_fresh_does_not_leave(app, redis):
    provider = SimulatorProvider(redis)
    lease = sending.Lease()
    message = OutboundMessage(to="+919800000001", body="hi")
    assert send_safely(provider, message, lease).ok
    lease.renewed -= sending.SEND_FRESH_S
    assert send_safely(provider, message, lease) == NOT_SENT
    assert len(provider.sent()) == 1


def test_a_contact_deleted_since_the_batch_started_is_not_sent_to(app, session):
    here = make_contact(session)
    blocked = policy.blocked(session, [here.id, here.id + 1000], utcnow(), free_text=False)
    assert blocked == {here.id + 1000: "contact_deleted"}


def test_a_confirmation_in_a_template_is_blocked_by_nothing_but_deletion(app, session):
    stopped = make_contact(session, dnd=True)
    assert policy.blocked(session, [stopped.id], utcnow(), free_text=False, confirmation=True) == {}
