"""Small builders of real rows."""

from __future__ import annotations

from itertools import count
from typing import Any

from sqlalchemy.orm import Session

from chatman.contacts.attributes import define_attribute
from chatman.contacts.crud import create_contact

_numbers = count(1)


def phone() -> str:
    """A fresh valid Indian mobile number."""
    return f"+9198{next(_numbers):08d}"


def make_contact(session: Session, **fields: Any):
    fields.setdefault("phone", phone())
    contact = create_contact(session, fields, default_region=None)
    session.commit()
    return contact


def define(session: Session, **types: str) -> None:
    for name, type_ in types.items():
        define_attribute(session, name, type_)
    session.commit()


def make_submitted_run(session: Session, recipients: int, submitted: bool = True):
    """A one-time campaign run whose messages were all handed to the provider (sids SM0..),
    or with `submitted=False` all still pending."""
    from chatman.campaigns.models import Campaign, CampaignRun, CampaignStep
    from chatman.ledger import counters
    from chatman.ledger.models import Message
    from chatman.timeutils import utcnow

    now = utcnow()
    campaign = Campaign(name="c", status="running")
    session.add(campaign)
    session.flush()
    step = CampaignStep(campaign_id=campaign.id, position=0, body="hi")
    run = CampaignRun(
        campaign_id=campaign.id, occurrence_at=now, occurrence_key=now.isoformat(), status="sending"
    )
    session.add_all([step, run])
    session.flush()
    messages = []
    for i in range(recipients):
        contact = make_contact(session)
        messages.append(
            Message(
                campaign_id=campaign.id,
                run_id=run.id,
                step_id=step.id,
                contact_id=contact.id,
                status="submitted" if submitted else "pending",
                provider_sid=f"SM{i:032d}" if submitted else None,
                submitted_at=now if submitted else None,
                attempts=0,
            )
        )
    session.add_all(messages)
    metrics = {"targeted": recipients} | ({"submitted": recipients} if submitted else {})
    counters.apply(session, [(campaign.id, run.id, step.id, metrics)])
    session.commit()
    return campaign, run, step, messages


def make_audience(session: Session, size: int):
    """`size` contacts +919800000000.. (every 10th DND, every 3rd in Delhi, the rest in Pune),
    and two dynamic segments: everyone, and Delhi."""
    import io

    from sqlalchemy import update

    from chatman.contacts import segments
    from chatman.contacts.csv_import import import_contacts
    from chatman.contacts.models import Contact

    rows = "".join(f"+9198{i:08d},Customer {i},{'Pune' if i % 3 else 'Delhi'}\n" for i in range(size))
    import_contacts(session, io.BytesIO(("phone,name,city\n" + rows).encode()), default_region=None)
    session.execute(update(Contact).where(Contact.id % 10 == 0).values(dnd=True, dnd_reason="opt_out"))
    everyone = segments.create_segment(
        session,
        {
            "name": "all",
            "kind": "dynamic",
            "rules": {"all": [{"field": "phone", "op": "starts_with", "value": "+91"}]},
        },
    )
    delhi = segments.create_segment(
        session,
        {
            "name": "delhi",
            "kind": "dynamic",
            "rules": {"all": [{"field": "attributes.city", "op": "eq", "value": "Delhi"}]},
        },
    )
    session.commit()
    return everyone, delhi


def signed_post(client, app, path: str, form: dict, signature: str | None = "sign"):
    """POST a form to one of our webhooks, signed as Twilio signs it (RequestValidator over
    PUBLIC_BASE_URL + path and every field), or with the `signature` given."""
    from twilio.request_validator import RequestValidator

    settings = app.extensions["chatman.settings"]
    headers = {}
    if signature == "sign":
        validator = RequestValidator(settings.webhook_auth_token)
        headers["X-Twilio-Signature"] = validator.compute_signature(settings.public_base_url + path, form)
    elif signature is not None:
        headers["X-Twilio-Signature"] = signature
    return client.post(path, data=form, headers=headers)


def inbound_form(phone: str, body: str | None = None, sid: str | None = None, **fields: str) -> dict:
    """Twilio's form for an incoming WhatsApp message (the fields it sends for a text)."""
    import uuid

    sid = sid or "SM" + uuid.uuid4().hex
    form = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": f"whatsapp:{phone}",
        "To": "whatsapp:+14155238886",
        "Body": body or "",
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
        "WaId": phone.lstrip("+"),
        "MessageType": "text",
    }
    return form | fields


def launch_campaign(
    session: Session, size: int, body: str | None = "Hi there", freeze: bool = True, **fields
):
    """A one-time campaign to `size` new contacts (make_audience), in free text `body` or, with
    `body=None`, an approved utility template; launched, and its audience frozen (`freeze`)."""
    from chatman.campaigns import lifecycle
    from chatman.campaigns.dispatch import freeze_run
    from chatman.messaging.templates import save_template

    everyone, _ = make_audience(session, size)
    if body is None:
        template = save_template(
            session,
            {"name": "t", "language": "en", "category": "utility", "status": "approved", "body": "Hello"},
        )
        fields["template_id"] = template.id
    else:
        fields["body"] = body
    campaign = lifecycle.create_campaign(session, {"name": "c", "include_segments": [everyone.id], **fields})
    run = lifecycle.launch(session, campaign.id)
    session.commit()
    if freeze:
        freeze_run(session, run.id)
    return campaign, run


def api_import(client, auth, content: bytes | str, **form):
    """Upload a CSV to POST /contacts/import; when it is queued (202), run its job here, as a
    worker would (the test asks for the in_process_jobs fixture), and return (the upload's
    answer, the import as GET /contacts/imports/{id} shows it once over)."""
    import io

    from chatman import jobs

    data = content.encode() if isinstance(content, str) else content
    answer = client.post(
        "/api/v1/contacts/import",
        headers=auth,
        data={"file": (io.BytesIO(data), "contacts.csv"), **form},
        content_type="multipart/form-data",
    )
    if answer.status_code != 202:
        return answer, None
    assert answer.headers["Location"].endswith(f"/api/v1/contacts/imports/{answer.json['id']}")
    jobs.import_contacts(answer.json["id"])
    return answer, client.get(f"/api/v1/contacts/imports/{answer.json['id']}", headers=auth).json
