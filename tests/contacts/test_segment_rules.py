"""Rules compile to SQL that selects the same contacts on SQLite and PostgreSQL as a
plain-Python reading of the documented semantics does."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from chatman.contacts.attributes import attribute_types
from chatman.contacts.models import Contact
from chatman.contacts.segment_rules import compile_rules
from chatman.errors import Invalid
from tests.factories import define, make_contact

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CITIES = ["Pune", "Mumbai", "Navi Mumbai", "pune", "Delhi"]
NAMES = ["Asha Rao", "Ravi", "Ravindra K", "Zoe", None]


def _people():
    """A spread of contacts, some missing each attribute."""
    people = []
    for i in range(30):
        attrs = {}
        if i % 5 != 0:
            attrs["city"] = CITIES[i % len(CITIES)]
        if i % 4 != 1:
            attrs["age"] = [17, 18, 30, 30.5, 64, 65][i % 6]
        if i % 3 != 2:
            attrs["vip"] = i % 2 == 0
        if i % 6 != 3:
            attrs["joined"] = (date(2026, 6, 15) - timedelta(days=[0, 1, 7, 8, 30, 400][i % 6])).isoformat()
        people.append(
            {
                "name": NAMES[i % len(NAMES)],
                "attributes": attrs,
                "dnd": i % 7 == 0,
                "created_at": NOW - timedelta(days=i * 3, hours=i),
                "last_inbound_at": None if i % 2 else NOW - timedelta(hours=i * 20),
            }
        )
    return people


@pytest.fixture
def people(session):
    define(session, city="string", age="number", vip="boolean", joined="date")
    rows = []
    for person in _people():
        contact = make_contact(
            session, name=person["name"], attributes=person["attributes"], dnd=person["dnd"]
        )
        contact.created_at = person["created_at"]
        contact.last_inbound_at = person["last_inbound_at"]
        session.commit()
        rows.append((contact.id, person))
    return rows


FIELD_TYPES = {
    "attributes.city": "string",
    "attributes.age": "number",
    "attributes.vip": "boolean",
    "attributes.joined": "date",
    "name": "string",
    "dnd": "boolean",
    "created_at": "datetime",
    "last_inbound_at": "datetime",
}


def _value_of(person, field):
    if field.startswith("attributes."):
        return person["attributes"].get(field.split(".", 1)[1])
    return person[field]


def _as_dt(text):
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def oracle(node, person) -> bool:
    if "all" in node:
        return all(oracle(n, person) for n in node["all"])
    if "any" in node:
        return any(oracle(n, person) for n in node["any"])
    field, op, value = node["field"], node["op"], node.get("value")
    have = _value_of(person, field)
    kind = FIELD_TYPES[field]
    if kind == "datetime" and isinstance(value, str):
        value = _as_dt(value)
    if op == "exists":
        return have is not None
    if op == "not_exists":
        return have is None
    if op in ("neq", "not_contains", "not_in"):
        positive = {"neq": "eq", "not_contains": "contains", "not_in": "in"}[op]
        return have is None or not oracle({**node, "op": positive}, person)
    if have is None:
        return False
    if op == "eq":
        return have == value
    if op == "contains":
        return value.lower() in have.lower()
    if op == "starts_with":
        return have.lower().startswith(value.lower())
    if op == "ends_with":
        return have.lower().endswith(value.lower())
    if op == "in":
        return have in value
    if op in ("gt", "after"):
        return have > value
    if op == "gte":
        return have >= value
    if op in ("lt", "before"):
        return have < value
    if op == "lte":
        return have <= value
    if op == "within_last_days":
        if kind == "date":
            return (date(2026, 6, 15) - timedelta(days=value)).isoformat() <= have <= "2026-06-15"
        return NOW - timedelta(days=value) <= have <= NOW
    raise AssertionError(op)


def _dates():
    return st.dates(date(2025, 1, 1), date(2026, 12, 31)).map(date.isoformat)


def _datetimes():
    return st.datetimes(datetime(2025, 9, 1), datetime(2026, 7, 1)).map(lambda d: d.isoformat())


CONDITIONS = st.one_of(
    st.builds(
        lambda op, v: {"field": "attributes.city", "op": op, "value": v},
        st.sampled_from(["eq", "neq", "contains", "not_contains", "starts_with", "ends_with"]),
        st.sampled_from(CITIES + ["mum", "UNE", "x"]),
    ),
    st.builds(
        lambda op, v: {"field": "attributes.city", "op": op, "value": v},
        st.sampled_from(["in", "not_in"]),
        st.lists(st.sampled_from(CITIES), min_size=1, max_size=3),
    ),
    st.builds(
        lambda op, v: {"field": "attributes.age", "op": op, "value": v},
        st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte"]),
        st.sampled_from([17, 18, 30, 30.5, 40, 65]),
    ),
    st.builds(
        lambda op, v: {"field": "attributes.age", "op": op, "value": v},
        st.sampled_from(["in", "not_in"]),
        st.lists(st.sampled_from([18, 30, 65]), min_size=1),
    ),
    st.builds(lambda v: {"field": "attributes.vip", "op": "eq", "value": v}, st.booleans()),
    st.builds(lambda v: {"field": "dnd", "op": "eq", "value": v}, st.booleans()),
    st.builds(
        lambda op, v: {"field": "attributes.joined", "op": op, "value": v},
        st.sampled_from(["eq", "before", "after", "gte", "lte"]),
        _dates(),
    ),
    st.builds(
        lambda f, v: {"field": f, "op": "within_last_days", "value": v},
        st.sampled_from(["attributes.joined", "created_at", "last_inbound_at"]),
        st.integers(0, 60),
    ),
    st.builds(
        lambda f, op, v: {"field": f, "op": op, "value": v},
        st.sampled_from(["created_at", "last_inbound_at"]),
        st.sampled_from(["before", "after", "gt", "lte"]),
        _datetimes(),
    ),
    st.builds(
        lambda f, op: {"field": f, "op": op},
        st.sampled_from(
            [
                "attributes.city",
                "attributes.age",
                "attributes.vip",
                "attributes.joined",
                "name",
                "last_inbound_at",
            ]
        ),
        st.sampled_from(["exists", "not_exists"]),
    ),
    st.builds(
        lambda op, v: {"field": "name", "op": op, "value": v},
        st.sampled_from(["contains", "starts_with", "neq", "eq"]),
        st.sampled_from(["ravi", "Zoe", "a"]),
    ),
)

RULES = st.recursive(
    CONDITIONS,
    lambda inner: st.builds(
        lambda k, items: {k: items}, st.sampled_from(["all", "any"]), st.lists(inner, min_size=1, max_size=4)
    ),
    max_leaves=8,
).map(lambda node: node if ("all" in node or "any" in node) else {"all": [node]})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=RULES)
def test_compiled_rules_select_what_the_documented_semantics_say(session, people, rules):
    condition = compile_rules(rules, attribute_types(session), NOW)
    selected = set(session.scalars(select(Contact.id).where(condition)))
    expected = {cid for cid, person in people if oracle(rules, person)}
    assert selected == expected


def test_three_rule_segment_on_known_data(session, people):
    rules = {
        "all": [
            {"field": "attributes.city", "op": "in", "value": ["Pune", "Mumbai"]},
            {"field": "attributes.age", "op": "gte", "value": 30},
            {"field": "dnd", "op": "eq", "value": False},
        ]
    }
    condition = compile_rules(rules, attribute_types(session), NOW)
    selected = set(session.scalars(select(Contact.id).where(condition)))
    assert selected == {
        cid
        for cid, p in people
        if p["attributes"].get("city") in ("Pune", "Mumbai")
        and p["attributes"].get("age", 0) >= 30
        and not p["dnd"]
    }
    assert selected  # the data holds such contacts, so an empty result would be a bug


@pytest.mark.parametrize(
    ("rules", "path", "words"),
    [
        ({"all": [{"field": "name", "op": "equals", "value": "x"}]}, "rules.all[0].op", "unknown operator"),
        (
            {
                "any": [
                    {"field": "name", "op": "eq", "value": "x"},
                    {"all": [{"field": "attributes.shoe", "op": "eq", "value": 1}]},
                ]
            },
            "rules.any[1].all[0].field",
            "unknown field",
        ),
        (
            {"all": [{"field": "attributes.age", "op": "contains", "value": "3"}]},
            "rules.all[0].op",
            "does not apply",
        ),
        (
            {"all": [{"field": "attributes.age", "op": "gt", "value": "thirty"}]},
            "rules.all[0].value",
            "must be a number",
        ),
        (
            {"all": [{"field": "attributes.city", "op": "in", "value": []}]},
            "rules.all[0].value",
            "non-empty list",
        ),
        (
            {"all": [{"field": "attributes.city", "op": "exists", "value": 1}]},
            "rules.all[0].value",
            "takes no value",
        ),
        ({"all": []}, "rules.all", "non-empty"),
        ({"both": []}, "rules", '"all" or "any"'),
        ({"field": "name", "op": "eq", "value": "x"}, "rules", "top level is a group"),
        (
            {"all": [{"field": "created_at", "op": "before", "value": "yesterday"}]},
            "rules.all[0].value",
            "ISO 8601",
        ),
        (
            {"all": [{"field": "attributes.joined", "op": "within_last_days", "value": -1}]},
            "rules.all[0].value",
            "whole number",
        ),
    ],
)
def test_bad_rules_are_refused_with_the_json_path_of_the_mistake(session, rules, path, words):
    define(session, age="number", city="string", joined="date")
    with pytest.raises(Invalid) as err:
        compile_rules(rules, attribute_types(session), NOW)
    assert path in err.value.errors
    assert any(words in reason for reason in err.value.errors[path])
