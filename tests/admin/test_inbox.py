"""The inbox through a signed-in client: hand-over silences the bot (STOP still works), a
person's reply keeps to the 24-hour window, and what customers send is shown as text."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from chatman.contacts.models import Contact
from chatman.ledger.models import Message
from chatman.messaging.models import InboundMessage, Template
from chatman.messaging.simulator import sent_to
from chatman.timeutils import utcnow
from chatman.triggers.crud import save_trigger
from tests.factories import inbound_form, make_contact, signed_post

URL = "/webhooks/twilio/inbound"
PHONE = "+919820066666"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(autouse=True)
def _nav_endpoints(app):
    """Until the triggers and flows pages exist (chatman/admin/automation.py is being written),
    the nav's links to them need an endpoint to build. Remove once they land."""
    from werkzeug.routing import Rule

    for name in ("triggers", "flows"):
        if f"admin.{name}" not in app.view_functions:
            app.url_map.add(Rule(f"/admin/{name}", endpoint=f"admin.{name}"))
            app.view_functions[f"admin.{name}"] = lambda: ""


@pytest.fixture
def admin(app, admin_user, redis):
    """conftest's `admin`, with its CSRF token read from the inbox rather than the dashboard
    (the dashboard is being reworked and did not render when this was written)."""
    from tests.admin.conftest import csrf_of

    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    data = {"email": admin_user[0], "password": admin_user[1], "csrf_token": csrf_of(page)}
    assert client.post("/admin/login", data=data).status_code == 302
    client.csrf = csrf_of(client.get("/admin/inbox").get_data(as_text=True))
    return client


@pytest.fixture
def hello(session):
    trigger = save_trigger(
        session,
        {
            "name": "hello",
            "match_type": "keyword",
            "patterns": ["hello"],
            "action": "reply",
            "reply_body": "Hi! How can we help?",
        },
    )
    session.commit()
    return trigger


def writes(client, app, text, phone=PHONE, **fields):
    assert signed_post(client, app, URL, inbound_form(phone, text, **fields)).status_code == 200


def contact_of(session, phone=PHONE) -> Contact:
    session.expire_all()
    return session.scalar(select(Contact).where(Contact.phone == phone))


def bot_replies(session) -> list[str | None]:
    session.expire_all()
    rows = session.scalars(select(Message.content).where(Message.purpose == "reply").order_by(Message.id))
    return [content["body"] for content in rows]


def post(admin, path, **data):
    return admin.post(path, data={"csrf_token": admin.csrf, **data})


def test_hand_over_silences_the_bot_until_released(app, client, admin, session, redis, hello):
    writes(client, app, "hello")
    assert bot_replies(session) == ["Hi! How can we help?"]
    contact = contact_of(session)

    taken = post(admin, f"/admin/inbox/{contact.id}/hand-over")
    assert taken.status_code == 302
    contact = contact_of(session)
    assert contact.bot_paused_at is not None and contact.bot_paused_by == "marketer@example.com"
    page = admin.get(f"/admin/inbox/{contact.id}").get_data(as_text=True)
    assert "bot paused" in page and "Release to the bot" in page
    assert "bot paused" in admin.get("/admin/inbox").get_data(as_text=True)

    writes(client, app, "hello")
    assert bot_replies(session) == ["Hi! How can we help?"]  # no second answer
    handled = session.scalars(select(InboundMessage.handled_by).order_by(InboundMessage.id)).all()
    assert handled == ["trigger", "person"]
    assert "hello" in admin.get(f"/admin/inbox/{contact.id}/messages.json").get_data(as_text=True)

    assert post(admin, f"/admin/inbox/{contact.id}/release").status_code == 302
    assert contact_of(session).bot_paused_at is None
    writes(client, app, "hello")
    assert bot_replies(session) == ["Hi! How can we help?"] * 2


def test_stop_still_opts_out_while_the_bot_is_paused(app, client, admin, session, redis, hello):
    writes(client, app, "hello")
    contact = contact_of(session)
    post(admin, f"/admin/inbox/{contact.id}/hand-over")
    writes(client, app, "STOP")
    contact = contact_of(session)
    assert contact.dnd and contact.dnd_reason == "opt_out"
    assert session.scalar(select(func.count()).where(Message.purpose == "confirmation")) == 1


def test_free_text_outside_the_window_is_refused_and_nothing_is_queued(admin, session):
    never = make_contact(session, name="Never wrote")
    lapsed = make_contact(session, name="Wrote long ago")
    session.execute(
        update(Contact).where(Contact.id == lapsed.id).values(last_inbound_at=utcnow() - timedelta(hours=25))
    )
    session.commit()
    for contact in (never, lapsed):
        refused = post(admin, f"/admin/inbox/{contact.id}/reply", body="Are you there?")
        assert refused.status_code == 422
        page = refused.get_data(as_text=True)
        assert "the 24-hour window is closed" in page and 'data-error-for="body"' in page
        assert "choose an approved template" in page
    assert session.scalar(select(func.count()).select_from(Message)) == 0
    as_json = admin.post(
        f"/admin/inbox/{lapsed.id}/reply",
        json={"body": "Are you there?"},
        headers={"X-CSRFToken": admin.csrf, "Accept": "application/json"},
    )
    assert as_json.status_code == 422 and "window is closed" in as_json.json["errors"]["body"][0]
    assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_outside_the_window_an_approved_template_goes(admin, session, redis, in_process_jobs):
    from chatman.jobs import send_message

    contact = make_contact(session, name="Asha")
    template = Template(
        name="follow_up", language="en", category="utility", body="Hello {{1}}, any questions?",
        variables={"1": {"field": "name"}}, buttons=[], status="approved",
    )  # fmt: skip
    session.add(template)
    session.commit()
    page = admin.get(f"/admin/inbox/{contact.id}").get_data(as_text=True)
    assert "The 24-hour window is closed" in page and "follow_up (en)" in page
    assert post(admin, f"/admin/inbox/{contact.id}/reply", template_id=str(template.id)).status_code == 302
    message_id = session.scalar(select(Message.id).where(Message.purpose == "person"))
    send_message(message_id)
    assert [m["body"] for m in sent_to(redis, contact.phone)] == ["Hello Asha, any questions?"]


def test_a_reply_inside_the_window_is_queued_and_sent(app, client, admin, session, redis, in_process_jobs):
    from chatman.jobs import send_message

    writes(client, app, "my parcel is late")
    contact = contact_of(session)
    page = admin.get(f"/admin/inbox/{contact.id}").get_data(as_text=True)
    assert "window is open" in page
    sent = post(admin, f"/admin/inbox/{contact.id}/reply", body="Sorry! It leaves today.")
    assert sent.status_code == 302
    message = session.scalar(select(Message).where(Message.purpose == "person"))
    assert message.content["body"] == "Sorry! It leaves today." and message.status == "pending"
    assert send_message(message.id) is not None
    assert [m["body"] for m in sent_to(redis, PHONE)] == ["Sorry! It leaves today."]
    session.expire_all()
    assert session.get(Message, message.id).status == "submitted"
    thread = admin.get(f"/admin/inbox/{contact.id}/messages.json").json["entries"]
    assert [(e["direction"], e["text"], e["status"]) for e in thread] == [
        ("in", "my parcel is late", None),
        ("out", "Sorry! It leaves today.", "submitted"),
    ]


def test_a_profile_name_with_markup_is_shown_as_text(app, client, admin, session, redis):
    writes(client, app, XSS, ProfileName=XSS)
    contact = contact_of(session)
    assert contact.name == XSS
    for path in ("/admin/inbox", f"/admin/inbox/{contact.id}"):
        page = admin.get(path).get_data(as_text=True)
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
        assert "<img" not in page


def test_the_inbox_lists_the_latest_writer_first_page_by_page(app, client, admin, session, redis):
    from chatman.messaging.conversations import conversations

    phones = [f"+9198200777{i:02d}" for i in range(5)]
    for phone in phones:
        writes(client, app, f"hi from {phone}", phone=phone)
    first = conversations(session, limit=3)
    assert [c.phone for c in first.items] == phones[::-1][:3]
    second = conversations(session, after=first.next, limit=3)
    assert [c.phone for c in second.items] == phones[::-1][3:] and second.next is None
    page = admin.get("/admin/inbox").get_data(as_text=True)
    assert page.index(phones[-1]) < page.index(phones[0])


def test_an_empty_inbox_says_what_to_do(admin):
    page = admin.get("/admin/inbox").get_data(as_text=True)
    assert "No conversations yet" in page and "/admin/simulator" in page
