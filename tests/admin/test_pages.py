"""Admin screens over real domain functions: what a marketer's forms create, and the
errors they show beside the field when the input is wrong."""

from __future__ import annotations

import io
import json

from sqlalchemy import func, select

from chatman.campaigns import drips, lifecycle
from chatman.campaigns.models import Campaign
from chatman.contacts.models import Contact, Segment
from chatman.messaging.templates import save_template
from tests.factories import define, make_audience, make_contact


def _template(session, status="approved"):
    template = save_template(
        session,
        {
            "name": "offer",
            "language": "en",
            "category": "marketing",
            "status": status,
            "body": "Hi {{name}}",
            "variables": {"name": {"field": "name"}},
        },
    )
    session.commit()
    return template


def test_import_preview_shows_the_first_rows_and_where_each_column_goes(admin):
    csv = b"Mobile,Name,Favourite Colour\n+919820011111,Asha,blue\n+919820011112,Ravi,red\n"
    answer = admin.post(
        "/admin/contacts/import/preview",
        data={"file": (io.BytesIO(csv), "c.csv")},
        headers={"X-CSRFToken": admin.csrf},
    )
    assert answer.status_code == 200
    assert answer.json["header"] == ["Mobile", "Name", "Favourite Colour"]
    assert answer.json["rows"][1] == ["+919820011112", "Ravi", "red"]
    assert answer.json["targets"] == {
        "Mobile": "phone",
        "Name": "name",
        "Favourite Colour": "attributes.favourite_colour",
    }


def test_an_import_is_queued_with_the_mapping_and_a_bad_file_is_refused_beside_its_field(
    admin, session, in_process_jobs
):
    from chatman.jobs import import_contacts

    refused = admin.post(
        "/admin/contacts/import",
        data={
            "file": (io.BytesIO(b"Name,City\nAsha,Pune\n"), "c.csv"),
            "csrf_token": admin.csrf,
            "mapping": "",
        },
    )
    assert refused.status_code == 422
    assert 'data-error-for="file"' in refused.get_data(as_text=True)
    assert "no phone column" in refused.get_data(as_text=True)
    queued = admin.post(
        "/admin/contacts/import",
        data={
            "file": (io.BytesIO(b"Cell,Name\n+919820011111,Asha\nnope,Bad\n"), "c.csv"),
            "csrf_token": admin.csrf,
            "mapping": json.dumps({"Cell": "phone", "Name": "name"}),
        },
    )
    assert queued.status_code == 302
    import_id = int(queued.headers["Location"].rsplit("/", 1)[1])
    assert admin.get(f"/admin/contacts/imports/{import_id}/progress.json").json["done"] is False
    import_contacts(import_id)
    assert admin.get(f"/admin/contacts/imports/{import_id}/progress.json").json == {
        "status": "done",
        "progress": 1.0,
        "done": True,
    }
    page = admin.get(f"/admin/contacts/imports/{import_id}").get_data(as_text=True)
    assert "Rows refused" in page and "nope" in page
    assert session.scalar(select(Contact.name).where(Contact.phone == "+919820011111")) == "Asha"


def test_a_segment_from_the_builder_counts_what_the_rules_say(admin, session):
    define(session, city="string", orders="number")
    for city, orders in (("Pune", 4), ("Pune", 1), ("Goa", 9)):
        make_contact(session, attributes={"city": city, "orders": orders})
    rules = {
        "all": [
            {"field": "attributes.city", "op": "eq", "value": "Pune"},
            {"field": "attributes.orders", "op": "gte", "value": 3},
        ]
    }
    live = admin.post("/admin/segments/preview", json={"rules": rules}, headers={"X-CSRFToken": admin.csrf})
    assert live.json["count"] == 1
    bad = admin.post(
        "/admin/segments/preview",
        json={"rules": {"all": [{"field": "attributes.orders", "op": "contains", "value": "x"}]}},
        headers={"X-CSRFToken": admin.csrf},
    )
    assert bad.status_code == 422 and "does not apply" in bad.json["message"]
    saved = admin.post(
        "/admin/segments/new",
        data={"name": "Pune buyers", "kind": "dynamic", "rules": json.dumps(rules), "csrf_token": admin.csrf},
    )
    segment_id = int(saved.headers["Location"].rsplit("/", 1)[1])
    assert '<b id="segment-count">1</b>' in admin.get(f"/admin/segments/{segment_id}").get_data(as_text=True)
    taken = admin.post(
        "/admin/segments/new",
        data={"name": "Pune buyers", "kind": "dynamic", "rules": json.dumps(rules), "csrf_token": admin.csrf},
    )
    assert taken.status_code == 422 and 'data-error-for="name"' in taken.get_data(as_text=True)


def test_a_template_preview_is_rendered_for_a_contact_and_errors_sit_beside_their_field(admin, session):
    make_contact(session, name="Asha", attributes={"city": "Pune"})
    preview = admin.post(
        "/admin/templates/preview",
        json={
            "body": "Hi {{name}} from {{city}} {{code}}",
            "variables": {"name": {"field": "name"}, "city": {"attribute": "city"}},
        },
        headers={"X-CSRFToken": admin.csrf},
    )
    assert preview.json["text"] == "Hi Asha from Pune [code]"
    refused = admin.post(
        "/admin/templates/new",
        data={"name": "x", "language": "en", "category": "nonsense", "body": "Hi", "csrf_token": admin.csrf},
    )
    assert refused.status_code == 422 and 'data-error-for="category"' in refused.get_data(as_text=True)


def test_every_kind_of_campaign_is_made_by_its_editor(admin, session):
    template = _template(session)
    segment = session.scalars(select(Segment)).first() or make_audience(session, 3)[0]
    session.commit()
    base = {
        "csrf_token": admin.csrf,
        "include_segments": str(segment.id),
        "content": "template",
        "template_id": str(template.id),
    }
    forms = {
        "one_time": {"name": "Broadcast"},
        "recurring": {
            "name": "Weekly",
            "rec_mode": "every",
            "rec_every": "week",
            "rec_interval": "1",
            "rec_at": "10:00",
            "rec_weekdays": ["mon", "thu"],
            "rec_start": "2031-01-06",
            "timezone": "Asia/Kolkata",
        },
        "triggered": {"name": "On order", "trigger_event": "order_placed"},
        "date": {
            "name": "Birthday",
            "date_attribute": "birthday",
            "date_offset_days": "0",
            "date_at": "10:00",
            "date_repeat": "yearly",
            "timezone": "Asia/Kolkata",
        },
        "drip": {
            "name": "Welcome",
            "timezone": "Asia/Kolkata",
            "exit_on": ["replied", "opted_out"],
            "step-0-content": "text",
            "step-0-body": "Welcome!",
            "step-1-content": "template",
            "step-1-template_id": str(template.id),
            "step-1-wait_amount": "1",
            "step-1-wait_unit": "days",
            "step-1-at": "10:00",
            "step-1-condition": "not_replied",
            "step-2-content": "text",
            "step-2-body": "Last call",
            "step-2-wait_amount": "3",
            "step-2-wait_unit": "hours",
            "step-3-content": "text",
            "step-3-body": "",
        },
    }
    define(session, birthday="date")
    for kind, form in forms.items():
        answer = admin.post(f"/admin/campaigns/new?kind={kind}", data={**base, **form})
        assert answer.status_code == 302, (kind, answer.get_data(as_text=True).split("<ul>")[1][:800])
    made = {c.kind: c for c in session.scalars(select(Campaign))}
    assert set(made) == set(forms)
    assert made["recurring"].recurrence["weekdays"] == ["mon", "thu"]
    steps = drips.step_dicts(session, made["drip"].id)
    assert [s["body"] for s in steps] == ["Welcome!", None, "Last call"]
    assert steps[1]["wait"] == {"days": 1, "at": "10:00", "after": "previous"}
    assert steps[1]["condition"] == {"if": "not_replied", "step": 1}
    page = admin.get(f"/admin/campaigns/{made['recurring'].id}").get_data(as_text=True)
    assert "Next occurrences" in page and "Asia/Kolkata" in page and "Mon 06 Jan 2031, 10:00" in page


def test_a_campaign_form_error_is_shown_beside_the_field_and_nothing_is_saved(admin, session):
    answer = admin.post(
        "/admin/campaigns/new?kind=recurring",
        data={
            "csrf_token": admin.csrf,
            "name": "Weekly",
            "rec_mode": "cron",
            "rec_cron": "not cron",
            "rec_start": "2031-01-06",
            "timezone": "Asia/Kolkata",
            "content": "text",
            "body": "Hi",
        },
    )
    assert answer.status_code == 422
    assert 'data-error-for="recurrence"' in answer.get_data(as_text=True)
    assert "cron expression" in answer.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_launch_pause_resume_and_cancel_from_the_campaign_page(admin, session, redis):
    template = _template(session)
    segment, _ = make_audience(session, 3)
    campaign = lifecycle.create_campaign(
        session, {"name": "Sale", "include_segments": [segment.id], "template_id": template.id}
    )
    session.commit()
    page = admin.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert "3</b> of 3 contacts would get it now" in page
    for action, status in (
        ("launch", "running"),
        ("pause", "paused"),
        ("resume", "running"),
        ("cancel", "cancelled"),
    ):
        assert (
            admin.post(
                f"/admin/campaigns/{campaign.id}/{action}", data={"csrf_token": admin.csrf}
            ).status_code
            == 302
        )
        session.expire_all()
        assert session.get(Campaign, campaign.id).status == status, action
    assert admin.get(f"/admin/campaigns/{campaign.id}/progress.json").json["done"] is True


def test_a_launch_the_preflight_refuses_says_why_and_does_not_start(admin, session, redis):
    template = _template(session, status="draft")
    segment, _ = make_audience(session, 2)
    campaign = lifecycle.create_campaign(
        session, {"name": "Sale", "include_segments": [segment.id], "template_id": template.id}
    )
    session.commit()
    answer = admin.post(
        f"/admin/campaigns/{campaign.id}/launch", data={"csrf_token": admin.csrf}, follow_redirects=True
    )
    assert "approved" in answer.get_data(as_text=True)
    session.expire_all()
    assert session.get(Campaign, campaign.id).status == "draft"
