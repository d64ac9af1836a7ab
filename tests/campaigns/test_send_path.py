"""The send path keeps its promises: no duplicate jobs for work that waits its turn, every
exception of one send is that message's result, lost answers are settled to the right sid,
and the send policy is asked right before each group leaves, on every path.

The provider side is the Twilio adapter talking to the local stub of Twilio's API."""

from __future__ import annotations

from datetime import timedelta

from rq import Queue
from sqlalchemy import func, select, update

from chatman import jobs
from chatman.campaigns import lifecycle
from chatman.campaigns.dispatch import SendOptions, pending_batches, send_batch, sent_texts
from chatman.clock import recover_stale_sends, tick
from chatman.contacts.models import Contact
from chatman.ledger import counters
from chatman.ledger.models import Message
from chatman.messaging.delivery import recover_stale_claims
from chatman.messaging.outbox import CONFIRMATION, queue_message, send_queued
from chatman.messaging.templates import save_template
from chatman.messaging.twilio import TwilioProvider
from chatman.timeutils import utcnow
from tests.conftest import TWILIO_ACCOUNT, twilio_env
from tests.factories import inbound_form, launch_campaign, make_contact, signed_post
from tests.webhooks.test_twilio_status import params

CALLBACK = "http://testserver/webhooks/twilio/status"


def twilio(stub, timeout: float = 10.0) -> TwilioProvider:
    return TwilioProvider(
        TWILIO_ACCOUNT,
        "stub-auth-token",
        from_="+14155238886",
        base_url=stub.base_url,
        timeout=timeout,
        retries=0,
    )


def recover(session, provider, later: timedelta = timedelta(minutes=2)):
    """The clock's recovery, as it runs once the holders' leases are long gone."""
    now = utcnow() + later
    return recover_stale_claims(session, provider, now, now - timedelta(hours=1), describe=sent_texts)


def test_a_run_that_waits_its_turn_is_not_dispatched_again(app, session, redis, in_process_jobs):
    campaign, run = launch_campaign(session, 1200)
    session.execute(update(Contact).values(last_inbound_at=utcnow()))
    session.commit()
    assert jobs.dispatch_run(run.id) == 5  # 1,080 eligible rows: five batches, queued
    default = Queue("default", connection=redis)
    queued = sorted(default.job_ids)
    task = recover_stale_sends(app.extensions["chatman.db"], redis, 900)
    for later in (timedelta(minutes=16), timedelta(minutes=31), timedelta(hours=2)):
        tick(redis, [task], now=utcnow() + later)  # long quiet: every batch waits behind other work
    assert sorted(default.job_ids) == queued  # one copy each, none added
    assert Queue("system", connection=redis).count == 0  # and no dispatch again

    for job_id in queued:  # now the jobs are lost (Redis restarted, say): the run is dispatched again
        default.remove(job_id)
    redis.delete("chatman:jobs:" + jobs.run_group(run.id))
    tick(redis, [task], now=utcnow() + timedelta(minutes=1))
    assert Queue("system", connection=redis).count == 1


def test_a_conversation_message_waiting_in_line_gets_one_job(app, session, redis):
    contact = make_contact(session)
    message = queue_message(session, contact.id, "reply", body="We open at 10")
    session.commit()
    jobs.enqueue_sends(redis, [message])
    task = recover_stale_sends(app.extensions["chatman.db"], redis, 900)
    for minutes in (6, 7, 8, 20):  # still pending long after: the queue is long
        tick(redis, [task], now=utcnow() + timedelta(minutes=minutes))
    assert Queue("replies", connection=redis).count == 1


def test_an_unexpected_exception_in_one_send_is_that_messages_result_only(app, session, redis, twilio_stub):
    campaign, run = launch_campaign(session, 40, body=None)
    (ids,) = list(pending_batches(session, run.id))
    twilio_stub.config(mangle=1)  # one answer comes back broken: twilio-python raises ValueError
    provider = twilio(twilio_stub)
    result = send_batch(session, ids, provider, options=SendOptions(status_callback=CALLBACK, concurrency=4))
    assert (result.submitted, len(result.ambiguous)) == (35, 1)  # 4 of 40 are DND
    session.expire_all()
    at_stub = {
        m["to"].removeprefix("whatsapp:"): m["sid"] for m in twilio_stub.messages(full=True)["messages"]
    }
    rows = session.execute(select(Message.status, Message.provider_sid, Contact.phone).join(Contact)).all()
    submitted = {phone: sid for status, sid, phone in rows if status == "submitted"}
    assert all(at_stub[phone] == sid for phone, sid in submitted.items())  # the rest kept their sids
    (lost,) = [phone for status, _, phone in rows if status == "claimed"]

    report = recover(session, provider)
    assert report.found == 1 and report.resent == 0
    session.expire_all()
    sid = session.scalar(select(Message.provider_sid).join(Contact).where(Contact.phone == lost))
    assert sid == at_stub[lost]
    assert set(twilio_stub.messages()["by_to"].values()) == {1}  # nobody got it twice
    assert counters.differences(session, campaign.id) == []


def test_two_sends_to_one_phone_with_lost_answers_each_get_their_own_sid(app, session, redis, twilio_stub):
    campaign, run = launch_campaign(session, 10, body="Sale today")
    customer = session.scalars(select(Contact).where(Contact.dnd.is_(False)).order_by(Contact.id)).first()
    session.execute(update(Contact).values(last_inbound_at=utcnow()))  # windows open: free text may go
    reply = queue_message(session, customer.id, "reply", body="Hello, we open at 10")
    session.commit()
    row = session.scalar(
        select(Message.id).where(Message.run_id == run.id, Message.contact_id == customer.id)
    )

    twilio_stub.config(hold_after=0)  # Twilio accepts both, and neither answer comes back in time
    impatient = twilio(twilio_stub, timeout=0.5)
    assert send_batch(session, [row], impatient, options=SendOptions(status_callback=CALLBACK)).ambiguous == [
        row
    ]
    assert send_queued(session, reply, impatient, CALLBACK).ambiguous == [reply]
    twilio_stub.release()

    report = recover(session, twilio(twilio_stub))
    assert (report.found, report.resent, report.unresolved) == (2, 0, 0)
    session.expire_all()
    at_stub = {m["body"]: m["sid"] for m in twilio_stub.messages(full=True)["messages"]}
    assert session.get(Message, row).provider_sid == at_stub["Sale today"]
    assert session.get(Message, reply).provider_sid == at_stub["Hello, we open at 10"]
    assert counters.differences(session, campaign.id) == []


def test_the_first_callback_ties_a_lost_answer_to_its_row(
    app, client, session, redis, twilio_stub, run_worker
):
    campaign, run = launch_campaign(session, 5, body=None)
    (ids,) = list(pending_batches(session, run.id))
    twilio_stub.config(hold_after=0)
    options = SendOptions(status_callback=CALLBACK)
    result = send_batch(session, ids[:1], twilio(twilio_stub, timeout=0.5), options=options)
    twilio_stub.release()
    (record,) = twilio_stub.messages(full=True)["messages"]
    assert record["status_callback"] == f"{CALLBACK}?m={result.ambiguous[0]}"  # we told Twilio the row
    # Twilio reports on it at that URL: signed like the rest of it, the row id cannot be forged.
    callback = f"/webhooks/twilio/status?m={result.ambiguous[0]}"
    assert signed_post(client, app, callback, params(record["sid"], "delivered")).status_code == 204
    run_worker()
    session.expire_all()
    tied = session.get(Message, result.ambiguous[0])
    assert (tied.status, tied.provider_sid) == ("delivered", record["sid"])
    assert counters.differences(session, campaign.id) == []
    assert recover(session, twilio(twilio_stub)).found == 0  # nothing left to look up


def test_an_error_code_of_an_earlier_try_is_not_kept_by_a_sent_row(app, session, redis, twilio_stub):
    campaign, run = launch_campaign(session, 5, body=None)
    (ids,) = list(pending_batches(session, run.id))
    twilio_stub.config(errors=[{"status": 500, "code": 20500}])
    provider = twilio(twilio_stub)
    first = send_batch(session, ids[:1], provider)
    assert first.retry == ids[:1]
    assert session.scalar(select(Message.error_code).where(Message.id == ids[0])) == "20500"
    assert send_batch(session, first.retry, provider).submitted == 1
    session.expire_all()
    row = session.get(Message, ids[0])
    assert (row.status, row.error_code, row.error_message) == ("submitted", None, None)


def test_the_window_is_asked_right_before_each_group_leaves(app, session, redis, twilio_stub):
    """Free text to 108 contacts (of 120; 12 are DND) whose windows close 3 s from now; the
    first group of 100 takes about 5 s to hand over (the stub answers in 0.5 s, 10 at a time):
    the 8 after it are skipped, not sent outside the window."""
    campaign, run = launch_campaign(session, 120, body="Thanks for writing!")
    session.execute(
        update(Contact).values(last_inbound_at=utcnow() - timedelta(hours=24) + timedelta(seconds=3))
    )
    session.commit()
    twilio_stub.config(latency_ms=500)
    (ids,) = list(pending_batches(session, run.id))
    result = send_batch(session, ids, twilio(twilio_stub), options=SendOptions(concurrency=10))
    assert result.submitted == 100  # the first group
    reasons = dict(
        session.execute(select(Message.skip_reason, func.count()).group_by(Message.skip_reason)).all()
    )
    assert reasons == {None: 100, "dnd": 12, "outside_window": 8}  # the second group's
    assert twilio_stub.messages()["count"] == 100
    assert counters.differences(session, campaign.id) == []


def test_every_conversation_send_asks_the_send_policy_when_it_leaves(
    app, client, session, redis, twilio_stub
):
    """Trigger replies, flow prompts and confirmations are queued when the customer writes and
    sent by a job: what holds when the job runs is what counts."""
    provider = twilio(twilio_stub)
    stopped, silent, leaving = (make_contact(session) for _ in range(3))
    for contact in (stopped, silent, leaving):
        answer = signed_post(client, app, "/webhooks/twilio/inbound", inbound_form(contact.phone, "hi"))
        assert answer.status_code == 200
    session.expire_all()
    reply = queue_message(session, stopped.id, "reply", body="We open at 10")
    prompt = queue_message(session, silent.id, "flow", body="Your city?")
    confirmation = queue_message(session, leaving.id, CONFIRMATION, body="You are unsubscribed")
    template = queue_message(session, silent.id, "reply", body="Hi", content_sid="HX" + "c" * 32)
    session.execute(update(Contact).where(Contact.id.in_([stopped.id, leaving.id])).values(dnd=True))
    session.execute(
        update(Contact).where(Contact.id == silent.id).values(last_inbound_at=utcnow() - timedelta(hours=25))
    )
    session.commit()
    assert send_queued(session, reply, provider) == "dnd"
    assert send_queued(session, prompt, provider) == "outside_window"
    assert send_queued(session, confirmation, provider).submitted == 1  # the one message a STOP gets
    assert send_queued(session, template, provider).submitted == 1  # a template may go outside it
    assert sorted(
        m["to"].removeprefix("whatsapp:") for m in twilio_stub.messages(full=True)["messages"]
    ) == sorted([leaving.phone, silent.phone])


def test_a_triggered_start_asks_the_send_policy_when_it_leaves(
    app, session, redis, twilio_stub, in_process_jobs
):
    from chatman.campaigns.triggered import start_for_contact

    in_process_jobs(**twilio_env(twilio_stub))
    template = save_template(
        session, {"name": "t", "language": "en", "category": "utility", "status": "approved", "body": "Hi"}
    )
    campaign = lifecycle.create_campaign(
        session,
        {"name": "welcome", "kind": "triggered", "trigger_event": "signup", "template_id": template.id},
    )
    lifecycle.launch(session, campaign.id)
    contact = make_contact(session)
    run_id, message_id = start_for_contact(session, campaign.id, contact.id, "event:1")
    session.execute(update(Contact).where(Contact.id == contact.id).values(dnd=True))  # STOP meanwhile
    session.commit()
    jobs.send_batch(run_id, [message_id])
    session.expire_all()
    assert session.get(Message, message_id).skip_reason == "dnd"
    assert twilio_stub.messages()["count"] == 0
    assert counters.differences(session, campaign.id) == []
