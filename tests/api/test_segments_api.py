from __future__ import annotations

import io

from sqlalchemy import func, select

from chatman.contacts.models import Segment, SegmentLink


def make(client, auth, **body):
    response = client.post("/api/v1/segments", headers=auth, json=body)
    assert response.status_code == 201, response.json
    return response.json


def add_contacts(client, auth, rows):
    ids = []
    for i, (city, orders, dnd) in enumerate(rows):
        r = client.post(
            "/api/v1/contacts",
            headers=auth,
            json={"phone": f"+9198200{i:05d}", "attributes": {"city": city, "orders": orders}, "dnd": dnd},
        )
        assert r.status_code == 201, r.json
        ids.append(r.json["id"])
    return ids


RULES = {
    "all": [
        {"field": "attributes.city", "op": "eq", "value": "Pune"},
        {"field": "attributes.orders", "op": "gte", "value": 3},
        {"field": "dnd", "op": "eq", "value": False},
    ]
}


def test_dynamic_segment_preview_counts_and_samples(client, auth):
    ids = add_contacts(
        client,
        auth,
        [("Pune", 5, False), ("Pune", 1, False), ("Pune", 9, True), ("Delhi", 9, False), ("Pune", 3, False)],
    )
    seg = make(client, auth, name="Pune buyers", kind="dynamic", rules=RULES)
    preview = client.get(
        f"/api/v1/segments/{seg['id']}/preview", headers=auth, query_string={"sample": 1}
    ).json
    assert preview["count"] == 2
    assert [c["id"] for c in preview["sample"]] == [ids[0]]
    unsaved = client.post("/api/v1/segments/preview", headers=auth, json={"rules": RULES, "sample": 5}).json
    assert {c["id"] for c in unsaved["sample"]} == {ids[0], ids[4]}


def test_bad_rule_is_refused_with_its_json_path_and_nothing_is_saved(client, auth, session):
    add_contacts(client, auth, [("Pune", 1, False)])
    for rules, path in [
        (
            {"all": [RULES["all"][0], {"field": "attributes.orders", "op": "bigger", "value": 3}]},
            "rules.all[1].op",
        ),
        (
            {"any": [{"all": [{"field": "attributes.colour", "op": "eq", "value": "red"}]}]},
            "rules.any[0].all[0].field",
        ),
    ]:
        response = client.post(
            "/api/v1/segments", headers=auth, json={"name": "x", "kind": "dynamic", "rules": rules}
        )
        assert response.status_code == 422
        assert list(response.json["errors"]) == [path]
        assert path in response.json["message"]
        preview = client.post("/api/v1/segments/preview", headers=auth, json={"rules": rules})
        assert preview.status_code == 422 and path in preview.json["errors"]
    assert session.scalar(select(func.count()).select_from(Segment)) == 0


def test_static_segment_members_by_ids_phones_and_csv(client, auth):
    ids = add_contacts(client, auth, [("Pune", 1, False), ("Delhi", 2, False), ("Goa", 3, False)])
    seg = make(client, auth, name="Beta", kind="static")
    url = f"/api/v1/segments/{seg['id']}/members"
    added = client.post(
        url, headers=auth, json={"contact_ids": [ids[0]], "phones": ["+91 98200 00001", "+919899999999"]}
    ).json
    assert added["changed"] == 2
    assert added["not_found"] == [
        {"row": 1, "value": "+919899999999", "reason": "no contact with this phone"}
    ]
    csv = io.BytesIO(b"Phone\n+919820000002\nrubbish\n")
    imported = client.post(
        f"{url}/import", headers=auth, data={"file": (csv, "m.csv")}, content_type="multipart/form-data"
    ).json
    assert imported["changed"] == 1 and imported["not_found"][0]["row"] == 3
    assert client.get(f"/api/v1/segments/{seg['id']}/preview", headers=auth).json["count"] == 3
    removed = client.post(f"{url}/remove", headers=auth, json={"contact_ids": ids[:2]}).json
    assert removed["changed"] == 2
    assert client.get(f"/api/v1/segments/{seg['id']}/preview", headers=auth).json["count"] == 1
    no_phone = client.post(
        f"{url}/import",
        headers=auth,
        data={"file": (io.BytesIO(b"name\nx\n"), "m.csv")},
        content_type="multipart/form-data",
    )
    assert no_phone.status_code == 422


def test_a_members_file_of_many_rows_is_added_a_chunk_at_a_time_with_every_miss_counted(
    client, auth, session
):
    from chatman.contacts.crud import create_contact

    for i in range(1500):
        create_contact(session, {"phone": f"+9198{i:08d}"}, None)
    session.commit()
    seg = make(client, auth, name="Big", kind="static")
    rows = [f"+9198{i:08d}" for i in range(1500)] + [f"+9197{i:08d}" for i in range(1200)] + ["junk"]
    csv = io.BytesIO(("phone\n" + "\n".join(rows) + "\n").encode())
    answer = client.post(
        f"/api/v1/segments/{seg['id']}/members/import",
        headers=auth,
        data={"file": (csv, "m.csv")},
        content_type="multipart/form-data",
    ).json
    assert (answer["changed"], answer["not_found_count"], len(answer["not_found"])) == (1500, 1201, 1000)
    assert answer["not_found"][0] == {
        "row": 1502,
        "value": "+919700000000",
        "reason": "no contact with this phone",
    }
    assert client.get(f"/api/v1/segments/{seg['id']}/preview", headers=auth).json["count"] == 1500
    broken = io.BytesIO(b"phone\n+919800000001\n" + "Montr\u00e9al".encode("latin-1") + b"\n")
    other = make(client, auth, name="Other", kind="static")["id"]
    refused = client.post(
        f"/api/v1/segments/{other}/members/import",
        headers=auth,
        data={"file": (broken, "m.csv")},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 422 and "UTF-8" in refused.json["message"]
    assert client.get(f"/api/v1/segments/{other}/preview", headers=auth).json["count"] == 0


def test_include_exclude_and_their_errors(client, auth, session):
    ids = add_contacts(client, auth, [("Pune", 5, False), ("Pune", 6, False), ("Delhi", 1, False)])
    pune = make(
        client,
        auth,
        name="Pune",
        kind="dynamic",
        rules={"all": [{"field": "attributes.city", "op": "eq", "value": "Pune"}]},
    )
    blocked = make(client, auth, name="Blocked", kind="static")
    client.post(f"/api/v1/segments/{blocked['id']}/members", headers=auth, json={"contact_ids": [ids[1]]})
    combo = make(
        client,
        auth,
        name="Combo",
        kind="static",
        include_segments=[pune["id"]],
        exclude_segments=[blocked["id"]],
    )
    assert combo["include_segments"] == [pune["id"]] and combo["exclude_segments"] == [blocked["id"]]
    assert client.get(f"/api/v1/segments/{combo['id']}/preview", headers=auth).json["count"] == 1

    cycle = client.patch(
        f"/api/v1/segments/{pune['id']}", headers=auth, json={"include_segments": [combo["id"]]}
    )
    assert cycle.status_code == 422 and "contain each other" in cycle.json["message"]
    missing = client.post("/api/v1/segments", headers=auth, json={"name": "m", "include_segments": [999]})
    assert missing.status_code == 422 and "include_segments[0]" in missing.json["errors"]
    in_use = client.delete(f"/api/v1/segments/{pune['id']}", headers=auth)
    assert in_use.status_code == 409
    assert session.scalar(select(func.count()).select_from(SegmentLink)) == 2
    assert client.get(f"/api/v1/segments/{combo['id']}/preview", headers=auth).json["count"] == 1


def test_segment_crud_and_name_conflict(client, auth):
    seg = make(client, auth, name="A", kind="static", description="first")
    assert client.post("/api/v1/segments", headers=auth, json={"name": "A"}).status_code == 409
    renamed = client.patch(f"/api/v1/segments/{seg['id']}", headers=auth, json={"name": "B"})
    assert renamed.status_code == 200 and renamed.json["name"] == "B"
    kind = client.patch(f"/api/v1/segments/{seg['id']}", headers=auth, json={"kind": "dynamic"})
    assert kind.status_code == 422
    assert [s["name"] for s in client.get("/api/v1/segments", headers=auth).json] == ["B"]
    assert client.delete(f"/api/v1/segments/{seg['id']}", headers=auth).status_code == 204
    assert client.get(f"/api/v1/segments/{seg['id']}", headers=auth).status_code == 404
