"""A one-time broadcast, end to end: launch, freeze, real RQ worker, simulator provider."""

from __future__ import annotations

from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from chatman.campaigns import lifecycle
from chatman.contacts import segments
from chatman.contacts.models import Contact
from chatman.errors import Conflict, Invalid
from chatman.jobs import enqueue_dispatch
from chatman.ledger import counters
from chatman.ledger.models import Message
from chatman.messaging.simulator import SimulatorProvider
from chatman.messaging.templates import save_template
from chatman.timeutils import utcnow
from tests.factories import make_audience


def test_broadcast_submits_each_eligible_contact_once_and_counters_match(
    app, client, session, redis, run_worker
):
    everyone, delhi = make_audience(session, 2000)
    template = save_template(
        session,
        {
            "name": "offer",
            "language": "en",
            "category": "marketing",
            "status": "approved",
            "body": "Hi {{first}}, 20% off today: https://shop.example/sale",
            "variables": {"first": {"field": "name"}},
        },
    )
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "Sale",
            "template_id": template.id,
            "utm_campaign": "sale-nov",
            "include_segments": [everyone.id],
            "exclude_segments": [delhi.id],
        },
    )
    run = lifecycle.launch(session, campaign.id)
    session.commit()
    enqueue_dispatch(redis, run.id)
    run_worker(workers=2)  # two workers claim batches side by side

    session.expire_all()
    contacts = {c.phone: c for c in session.scalars(select(Contact))}
    eligible = {p for p, c in contacts.items() if not c.dnd and c.attributes["city"] != "Delhi"}
    dnd = {p for p, c in contacts.items() if c.dnd and c.attributes["city"] != "Delhi"}
    sent = Counter(m["to"] for m in SimulatorProvider(redis).sent())
    assert set(sent) == eligible and set(sent.values()) == {1}
    some = SimulatorProvider(redis).sent()[0]
    # The link went out as a tracked link, which leads to it with the campaign's utm tag.
    assert some["body"].startswith("Hi Customer ") and "https://shop.example" not in some["body"]
    link = some["body"].rsplit(" ", 1)[1]
    assert link.startswith("http://testserver/r/")
    followed = client.get(link.removeprefix("http://testserver"))
    assert followed.status_code == 302
    assert followed.headers["Location"] == "https://shop.example/sale?utm_campaign=sale-nov"
    assert client.get(link.removeprefix("http://testserver")[:-1] + "x").status_code == 404

    by_status = dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all())
    assert by_status == {"submitted": len(eligible), "skipped": len(dnd)}
    verify = app.test_cli_runner().invoke(args=["reports", "verify"])  # recounts from the ledger
    assert verify.exit_code == 0 and "all equal to the recount" in verify.output, verify.output
    assert counters.differences(session, campaign.id) == []
    assert lifecycle.get_campaign(session, campaign.id).status == "completed"
    totals = Counter()
    for (_, _, _, metric), value in counters.stored(session, campaign.id).items():
        totals[metric] += value
    assert totals["targeted"] == len(eligible) + len(dnd)
    assert totals["submitted"] == len(eligible) and totals["skipped:dnd"] == len(dnd)
    assert totals["clicked"] == 1 and totals["clicks"] == 1
    with pytest.raises(Conflict):
        lifecycle.launch(session, campaign.id)


def test_free_text_outside_the_24h_window_is_skipped_with_its_reason(app, session, redis, run_worker):
    everyone, _ = make_audience(session, 30)
    session.execute(update(Contact).where(Contact.id <= 5).values(last_inbound_at=utcnow()))
    session.commit()
    text = lifecycle.create_campaign(
        session, {"name": "Free text", "body": "Thanks for writing!", "include_segments": [everyone.id]}
    )
    run = lifecycle.launch(session, text.id)
    session.commit()
    enqueue_dispatch(redis, run.id)
    run_worker()
    reasons = dict(
        session.execute(
            select(Message.skip_reason, func.count())
            .where(Message.campaign_id == text.id)
            .group_by(Message.skip_reason)
        ).all()
    )
    in_window = session.scalar(
        select(func.count()).select_from(Contact).where(Contact.id <= 5, Contact.dnd.is_(False))
    )
    assert reasons[None] == in_window
    assert reasons["outside_window"] == 30 - 3 - in_window  # 3 of 30 are DND
    assert counters.differences(session, text.id) == []


def test_campaign_input_errors(session):
    everyone = segments.create_segment(session, {"name": "s", "kind": "static"})
    with pytest.raises(Invalid):
        lifecycle.create_campaign(session, {"name": "x", "include_segments": [everyone.id]})
    with pytest.raises(Invalid):
        lifecycle.create_campaign(session, {"name": "x", "body": "hi", "include_segments": [999]})
    with pytest.raises(Invalid):
        save_template(
            session,
            {"name": "t", "language": "en", "category": "marketing", "body": "Hi {{first}}", "variables": {}},
        )


def test_scheduled_campaign_is_launched_once_by_the_clock_in_its_timezone(app, session, redis):
    from datetime import datetime, timedelta

    from rq import Queue

    from chatman.campaigns.models import CampaignRun
    from chatman.clock import launch_due_campaigns, tick

    everyone, _ = make_audience(session, 20)
    campaign = lifecycle.create_campaign(
        session, {"name": "Morning", "body": "hello", "include_segments": [everyone.id]}
    )
    now = utcnow()
    # 2 hours from now, written as Kolkata wall-clock time (UTC+5:30) without an offset
    local = (now + timedelta(hours=2)).astimezone(ZoneInfo("Asia/Kolkata")).replace(tzinfo=None)
    lifecycle.schedule(session, campaign.id, local, "Asia/Kolkata", now=now)
    session.commit()
    assert campaign.send_at == now + timedelta(hours=2)
    assert campaign.timezone == "Asia/Kolkata"
    with pytest.raises(Invalid):
        lifecycle.schedule(session, campaign.id, datetime(2020, 1, 1), "Asia/Kolkata", now=now)
    session.rollback()

    db = app.extensions["chatman.db"]
    task = launch_due_campaigns(db, redis)
    assert tick(redis, [task], now + timedelta(hours=1)) == 0  # not yet due
    assert tick(redis, [task], now + timedelta(hours=2, seconds=1)) == 1
    assert tick(redis, [task], now + timedelta(hours=2, seconds=6)) == 0  # a second clock tick: no second run
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(CampaignRun)) == 1
    assert lifecycle.get_campaign(session, campaign.id).status == "running"
    assert Queue("system", connection=redis).count == 1  # its dispatch


def test_reports_verify_finds_a_counter_that_drifted(app, session, redis, run_worker):
    from chatman.ledger.models import CampaignStat

    everyone, _ = make_audience(session, 10)
    campaign = lifecycle.create_campaign(
        session, {"name": "x", "body": "hi", "include_segments": [everyone.id]}
    )
    run = lifecycle.launch(session, campaign.id)
    session.commit()
    enqueue_dispatch(redis, run.id)
    run_worker()
    ok = app.test_cli_runner().invoke(args=["reports", "verify"])
    assert ok.exit_code == 0 and "all equal to the recount" in ok.output
    session.execute(
        update(CampaignStat).where(CampaignStat.metric == "targeted").values(value=CampaignStat.value + 1)
    )
    session.commit()
    bad = app.test_cli_runner().invoke(args=["reports", "verify"])
    assert bad.exit_code != 0
    assert "targeted: stored 11, recount 10" in bad.output


def test_a_due_campaign_whose_template_lost_its_approval_goes_back_to_draft(app, session, redis):
    from datetime import timedelta

    from chatman.clock import launch_due_campaigns, tick

    everyone, _ = make_audience(session, 5)
    template = save_template(
        session,
        {"name": "t", "language": "en", "category": "utility", "status": "approved", "body": "Hello"},
    )
    campaign = lifecycle.create_campaign(
        session, {"name": "Later", "template_id": template.id, "include_segments": [everyone.id]}
    )
    now = utcnow()
    lifecycle.schedule(session, campaign.id, now + timedelta(hours=1), "UTC", now=now)
    template.status = "rejected"
    session.commit()
    task = launch_due_campaigns(app.extensions["chatman.db"], redis)
    assert tick(redis, [task], now + timedelta(hours=2)) == 0
    session.expire_all()
    campaign = lifecycle.get_campaign(session, campaign.id)
    assert campaign.status == "draft" and "not approved" in campaign.last_error
    assert lifecycle.due_campaigns(session, now + timedelta(hours=3)) == []  # not retried every tick


def test_cancel_skips_every_row_not_yet_taken_and_counts_them(app, session, redis):
    from chatman.campaigns.dispatch import freeze_run

    everyone, _ = make_audience(session, 50)
    campaign = lifecycle.create_campaign(
        session, {"name": "x", "body": "hi", "include_segments": [everyone.id]}
    )
    run = lifecycle.launch(session, campaign.id)
    session.commit()
    freeze_run(session, run.id)
    lifecycle.set_status(session, campaign.id, "cancel")
    session.commit()
    reasons = dict(
        session.execute(select(Message.skip_reason, func.count()).group_by(Message.skip_reason)).all()
    )
    assert reasons == {"dnd": 5, "cancelled": 45}
    assert counters.differences(session, campaign.id) == []
    session.refresh(run)
    assert run.status == "cancelled"


def test_a_contact_who_opts_out_while_a_batch_is_sending_gets_nothing_more(app, session, redis):
    """DND is checked again before each group is handed over, not only when the batch starts."""
    from sqlalchemy.orm import Session as OrmSession

    from chatman.campaigns.dispatch import GROUP_SIZE, freeze_run, pending_batches, send_batch
    from chatman.messaging.providers import SendResult

    everyone, _ = make_audience(session, GROUP_SIZE + 20)
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "x",
            "template_id": save_template(
                session,
                {"name": "t", "language": "en", "category": "utility", "status": "approved", "body": "Hi"},
            ).id,
            "include_segments": [everyone.id],
        },
    )
    run = lifecycle.launch(session, campaign.id)
    session.commit()
    freeze_run(session, run.id)
    late = session.scalars(select(Contact).where(Contact.dnd.is_(False)).order_by(Contact.id.desc())).first()

    class Network:  # the provider's side; while the first group goes out, `late` sends STOP
        name, sender, sent = "network", "whatsapp:+10000000000", []

        def send(self, message):
            if not self.sent:
                with OrmSession(session.get_bind()) as other:
                    other.execute(update(Contact).where(Contact.id == late.id).values(dnd=True))
                    other.commit()
            self.sent.append(message.to)
            return SendResult(sid=f"SM{len(self.sent):032d}")

        def lookup(self, to, since):
            return []

    network = Network()
    (ids,) = list(pending_batches(session, run.id))
    send_batch(session, ids, network)
    assert late.phone not in network.sent
    session.expire_all()
    row = session.scalar(select(Message).where(Message.contact_id == late.id))
    assert (row.status, row.skip_reason) == ("skipped", "dnd")
    assert counters.differences(session, campaign.id) == []
