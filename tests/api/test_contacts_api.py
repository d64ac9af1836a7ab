from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select, update

from chatman import jobs
from chatman.contacts.models import AttributeDefinition, Contact, ContactImport, ImportChunk
from chatman.timeutils import utcnow
from tests.factories import api_import


def count(session, model) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def test_every_api_route_refuses_a_missing_or_wrong_token(client, app, session):
    routes = [
        r
        for r in app.url_map.iter_rules()
        if r.rule.startswith("/api/v1/") and not r.rule.startswith(("/api/v1/docs", "/api/v1/openapi"))
    ]
    assert len(routes) >= 8
    for rule in routes:
        url = re.sub(r"<int:\w+>", "1", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            for headers in ({}, {"Authorization": "Bearer cm_not-a-token"}, {"Authorization": "Basic x"}):
                response = client.open(url, method=method, json={"phone": "+919820012345"}, headers=headers)
                assert response.status_code == 401, (method, url, headers)
                assert response.json["message"]
    assert count(session, Contact) == 0


def test_revoked_token_is_refused(client, app, auth):
    runner = app.test_cli_runner()
    assert client.get("/api/v1/contacts", headers=auth).status_code == 200
    assert runner.invoke(args=["tokens", "revoke", "tests"]).exit_code == 0
    assert client.get("/api/v1/contacts", headers=auth).status_code == 401


def test_create_read_update_delete_a_contact(client, auth):
    created = client.post(
        "/api/v1/contacts",
        headers=auth,
        json={
            "phone": "+91 98200-12345",
            "name": "Asha",
            "timezone": "Asia/Kolkata",
            "attributes": {"city": "Pune", "orders": 3, "vip": True},
            "opted_in_at": "2026-01-02T03:04:05+00:00",
            "opt_in_source": "website",
        },
    )
    assert created.status_code == 201, created.json
    body = created.json
    assert body["phone"] == "+919820012345"
    assert body["attributes"] == {"city": "Pune", "orders": 3, "vip": True}
    url = f"/api/v1/contacts/{body['id']}"
    assert client.get(url, headers=auth).json["name"] == "Asha"

    patched = client.patch(
        url,
        headers=auth,
        json={"attributes": {"orders": 4, "vip": None}, "dnd": True, "dnd_reason": "asked by phone"},
    )
    assert patched.status_code == 200, patched.json
    assert patched.json["attributes"] == {"city": "Pune", "orders": 4}
    assert patched.json["dnd"] is True and patched.json["dnd_reason"] == "asked by phone"
    assert patched.json["dnd_at"] is not None
    cleared = client.patch(url, headers=auth, json={"dnd": False}).json
    assert (cleared["dnd"], cleared["dnd_reason"], cleared["dnd_at"]) == (False, None, None)

    assert client.delete(url, headers=auth).status_code == 204
    assert client.get(url, headers=auth).status_code == 404
    assert client.delete(url, headers=auth).status_code == 404


def test_same_number_twice_is_a_conflict(client, auth):
    assert client.post("/api/v1/contacts", headers=auth, json={"phone": "+919820012345"}).status_code == 201
    again = client.post("/api/v1/contacts", headers=auth, json={"phone": "0091 98200 12345"})
    assert again.status_code == 409 and "+919820012345" in again.json["message"]


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"phone": "+9198200", "attributes": {"fresh": 1}}, "phone", "not a valid phone number"),
        ({"phone": "98200 12345", "attributes": {"fresh": 1}}, "phone", "no country code"),
        ({"phone": "+919820012345", "timezone": "Mars/Base", "attributes": {"fresh": 1}}, "timezone", "IANA"),
        (
            {"phone": "+919820012345", "attributes": {"fresh": 1, "Bad Name": 2}},
            "attributes.Bad Name",
            "not a valid attribute name",
        ),
        ({"phone": "+919820012345", "attributes": {"fresh": [1, 2]}}, "attributes.fresh", "strings, numbers"),
        ({"phone": "+919820012345", "colour": "red"}, "colour", "Unknown field"),
        ({"name": "no phone"}, "phone", "required"),
    ],
)
def test_bad_contact_input_is_a_422_naming_the_field_and_writes_nothing(
    client, auth, session, payload, field, words
):
    response = client.post("/api/v1/contacts", headers=auth, json=payload)
    assert response.status_code == 422
    assert field in response.json["errors"], response.json
    assert any(words in r for r in response.json["errors"][field])
    assert count(session, Contact) == 0
    assert count(session, AttributeDefinition) == 0  # "fresh" was not declared either


def test_phone_without_country_code_uses_default_region_when_set(client, auth, set_region):
    set_region("IN")
    response = client.post("/api/v1/contacts", headers=auth, json={"phone": "98200 12345"})
    assert response.status_code == 201 and response.json["phone"] == "+919820012345"


def test_attribute_types_are_enforced_after_first_use(client, auth):
    client.post("/api/v1/contacts", headers=auth, json={"phone": "+919820012345", "attributes": {"age": 30}})
    bad = client.post(
        "/api/v1/contacts", headers=auth, json={"phone": "+919820012346", "attributes": {"age": "old"}}
    )
    assert bad.status_code == 422 and "attributes.age" in bad.json["errors"]
    declared = client.post("/api/v1/attributes", headers=auth, json={"name": "birthday", "type": "date"})
    assert declared.status_code == 201
    clash = client.post("/api/v1/attributes", headers=auth, json={"name": "age", "type": "string"})
    assert clash.status_code == 409
    listed = {a["name"]: a["type"] for a in client.get("/api/v1/attributes", headers=auth).json}
    assert listed == {"age": "number", "birthday": "date"}


def test_list_is_keyset_paginated_and_searchable(client, auth):
    for i in range(7):
        client.post(
            "/api/v1/contacts",
            headers=auth,
            json={"phone": f"+91982001234{i}", "name": "Asha" if i % 2 else "Ravi"},
        )
    seen, after = [], None
    while True:
        query = {"limit": 3} | ({"after": after} if after else {})
        page = client.get("/api/v1/contacts", headers=auth, query_string=query).json
        seen += [c["id"] for c in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == sorted(seen) and len(seen) == 7
    found = client.get("/api/v1/contacts", headers=auth, query_string={"q": "ash"}).json["items"]
    assert {c["name"] for c in found} == {"Asha"} and len(found) == 3
    by_digits = client.get("/api/v1/contacts", headers=auth, query_string={"q": "98200 12346"}).json["items"]
    assert [c["phone"] for c in by_digits] == ["+919820012346"]
    bad = client.get("/api/v1/contacts", headers=auth, query_string={"limit": 0})
    assert bad.status_code == 422 and "query.limit" in bad.json["errors"]


def test_csv_upload_is_imported_in_the_background_with_a_per_row_report(
    client, auth, session, in_process_jobs
):
    answer, done = api_import(
        client, auth, b"Mobile,Name,City\n+919820012345,Asha,Pune\nnope,B,Delhi\n+91 98200 12345,,Mumbai\n"
    )
    assert answer.status_code == 202 and answer.json["status"] == "queued", answer.json
    assert (done["status"], done["progress"], done["bytes_read"]) == ("done", 1.0, answer.json["size_bytes"])
    report = done["report"]
    assert (report["rows"], report["created"], report["merged"], report["failed"]) == (3, 1, 1, 1)
    assert report["errors"] == [
        {"row": 3, "column": "Mobile", "value": "nope", "reason": report["errors"][0]["reason"]}
    ]
    assert count(session, Contact) == 1
    assert session.scalar(select(func.count()).select_from(ImportChunk)) == 0  # the upload is gone


def test_csv_upload_with_mapping(client, auth, session, in_process_jobs):
    _, done = api_import(
        client, auth, b"Cell,Who\n+919820012345,Asha\n", mapping='{"Cell": "phone", "Who": "name"}'
    )
    assert done["report"]["created"] == 1
    answer, _ = api_import(client, auth, b"Cell\n1\n", mapping="{not json")
    assert answer.status_code == 422


def test_csv_without_phone_column_is_refused_at_once_and_writes_nothing(client, auth, session):
    answer, _ = api_import(client, auth, b"name,city\nAsha,Pune\n")
    assert answer.status_code == 422
    assert "no phone column" in answer.json["errors"]["file"][0]
    assert count(session, Contact) == 0 and count(session, AttributeDefinition) == 0
    assert count(session, ContactImport) == 0


def test_csv_in_another_encoding_is_refused_and_writes_nothing(client, auth, session, in_process_jobs):
    answer, _ = api_import(client, auth, "phone,name\n+919820012345,Renée\n".encode("latin-1"))
    assert answer.status_code == 422 and "UTF-8" in answer.json["message"]
    # Past the first megabyte it is the import that fails, saying where, and writes nothing.
    late = (
        "phone,city\n" + "".join(f"+9198{i:08d},Pune\n" for i in range(80000))
    ).encode() + "+919899999999,Montréal\n".encode("latin-1")
    answer, done = api_import(client, auth, late)
    assert answer.status_code == 202 and done["status"] == "failed"
    assert "not UTF-8" in done["error"]["message"] and done["report"] is None
    assert count(session, Contact) == 0 and count(session, AttributeDefinition) == 0


def test_an_import_interrupted_by_a_dead_worker_is_started_again_by_the_clock(
    app, client, auth, session, redis, in_process_jobs
):
    from chatman import clock

    answer = client.post(
        "/api/v1/contacts/import",
        headers=auth,
        data={"file": (io.BytesIO(b"phone\n+919820012345\n"), "c.csv")},
        content_type="multipart/form-data",
    )
    import_id = answer.json["id"]
    assert answer.status_code == 202 and count(session, Contact) == 0  # a worker imports it
    redis.flushdb()  # its job is lost, as when Redis restarts or the worker died holding it
    session.execute(update(ContactImport).where(ContactImport.id == import_id).values(status="running"))
    session.commit()
    db = app.extensions["chatman.db"]
    assert clock.resume_imports(db, redis)(utcnow()) == 1
    assert clock.resume_imports(db, redis)(utcnow()) == 0  # its job is queued: not twice
    assert jobs.import_contacts(import_id) == "done"
    assert client.get(f"/api/v1/contacts/imports/{import_id}", headers=auth).json["report"]["created"] == 1


def test_csv_upload_without_a_file_is_refused(client, auth):
    response = client.post(
        "/api/v1/contacts/import", headers=auth, data={}, content_type="multipart/form-data"
    )
    assert response.status_code == 422 and "files.file" in response.json["errors"]
