from __future__ import annotations

import pytest
from sqlalchemy import select

from chatman.contacts import segments
from chatman.errors import Conflict, Invalid
from tests.factories import define, make_contact


def member_ids(session, segment_id):
    return set(session.scalars(segments.audience_query(session, segment_id)))


def test_static_segment_members_by_id_and_phone(session):
    a, b, c = (make_contact(session) for _ in range(3))
    seg = segments.create_segment(session, {"name": "vip", "kind": "static"})
    change = segments.change_members(
        session, seg.id, "add", [a.id, 999_999], [(0, b.phone), (1, "+919899999998"), (2, "oops")]
    )
    session.commit()
    assert change.changed == 2
    assert {m.get("contact_id") or m.get("value") for m in change.not_found} == {
        999_999,
        "+919899999998",
        "oops",
    }
    assert member_ids(session, seg.id) == {a.id, b.id}
    # adding again changes nothing; removing works by phone too
    assert segments.change_members(session, seg.id, "add", [a.id]).changed == 0
    assert segments.change_members(session, seg.id, "remove", [], [(0, a.phone)]).changed == 1
    session.commit()
    assert member_ids(session, seg.id) == {b.id}
    assert c.id not in member_ids(session, seg.id)


def test_include_and_exclude_other_segments(session):
    define(session, city="string")
    pune = [make_contact(session, attributes={"city": "Pune"}) for _ in range(3)]
    delhi = make_contact(session, attributes={"city": "Delhi"})
    blocked = segments.create_segment(session, {"name": "blocked", "kind": "static"})
    segments.add_members(session, blocked.id, [pune[0].id])
    extra = segments.create_segment(session, {"name": "extra", "kind": "static"})
    segments.add_members(session, extra.id, [delhi.id])
    combined = segments.create_segment(
        session,
        {
            "name": "pune minus blocked plus extra",
            "kind": "dynamic",
            "rules": {"all": [{"field": "attributes.city", "op": "eq", "value": "Pune"}]},
            "include_segments": [extra.id],
            "exclude_segments": [blocked.id],
        },
    )
    session.commit()
    assert member_ids(session, combined.id) == {pune[1].id, pune[2].id, delhi.id}
    count, sample = segments.preview_segment(session, combined.id, sample_size=2)
    assert count == 3 and len(sample) == 2


def test_segments_cannot_contain_each_other(session):
    a = segments.create_segment(session, {"name": "a", "kind": "static"})
    b = segments.create_segment(session, {"name": "b", "kind": "static", "include_segments": [a.id]})
    session.commit()
    with pytest.raises(Invalid) as err:
        segments.update_segment(session, a.id, {"exclude_segments": [b.id]})
    assert "contain each other" in err.value.reason
    session.rollback()
    assert segments.segment_links(session, a.id) == {"include": [], "exclude": []}


def test_a_segment_used_by_another_cannot_be_deleted(session):
    a = segments.create_segment(session, {"name": "a", "kind": "static"})
    segments.create_segment(session, {"name": "b", "kind": "static", "include_segments": [a.id]})
    session.commit()
    with pytest.raises(Conflict):
        segments.delete_segment(session, a.id)


def test_dynamic_segment_follows_contacts_as_they_change(session):
    define(session, orders="number")
    person = make_contact(session, attributes={"orders": 1})
    seg = segments.create_segment(
        session,
        {
            "name": "loyal",
            "kind": "dynamic",
            "rules": {"all": [{"field": "attributes.orders", "op": "gte", "value": 5}]},
        },
    )
    session.commit()
    assert member_ids(session, seg.id) == set()
    person.attributes = {"orders": 7}
    session.commit()
    assert member_ids(session, seg.id) == {person.id}


def test_members_cannot_be_added_to_a_dynamic_segment(session):
    seg = segments.create_segment(
        session,
        {"name": "d", "kind": "dynamic", "rules": {"all": [{"field": "dnd", "op": "eq", "value": False}]}},
    )
    with pytest.raises(Invalid):
        segments.change_members(session, seg.id, "add", [1])


def test_static_segment_with_rules_or_dynamic_without_is_refused(session):
    with pytest.raises(Invalid):
        segments.create_segment(session, {"name": "s", "kind": "static", "rules": {"all": []}})
    with pytest.raises(Invalid):
        segments.create_segment(session, {"name": "d", "kind": "dynamic"})
    session.rollback()
    assert list(session.scalars(select(segments.Segment))) == []
