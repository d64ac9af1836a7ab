"""Dynamic segment rules: validated JSON compiled to one SQL condition on `contacts`.

A rule is a group ``{"all": [...]}`` or ``{"any": [...]}`` whose items are groups or
conditions ``{"field": "attributes.city", "op": "eq", "value": "Pune"}``. Errors name the
JSON path of the mistake, e.g. ``rules.all[1].op``.

Negative operators (neq, not_contains, not_in) also match contacts that lack the value,
as "city is not Pune" reads to a marketer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, not_, or_, true

from chatman.contacts.models import Contact
from chatman.errors import Invalid

MAX_DEPTH = 8
MAX_CONDITIONS = 200
# Bounds a marketer never meets, below what each database refuses (PostgreSQL's 65,535 bind
# parameters, SQLite's 50,000-byte LIKE pattern, a date before year 1).
MAX_IN_VALUES = 1000
MAX_TEXT = 500
MAX_DAYS = 36500

BUILTIN_FIELDS: dict[str, str] = {
    "id": "number",
    "phone": "string",
    "wa_id": "string",
    "name": "string",
    "timezone": "string",
    "dnd": "boolean",
    "dnd_reason": "string",
    "dnd_at": "datetime",
    "opted_in_at": "datetime",
    "opt_in_source": "string",
    "last_inbound_at": "datetime",
    "created_at": "datetime",
    "updated_at": "datetime",
}

VALUE_OPS = {"eq", "neq", "gt", "gte", "lt", "lte", "before", "after"}
OPERATOR_TYPES: dict[str, set[str]] = {
    "eq": {"string", "number", "boolean", "date", "datetime"},
    "neq": {"string", "number", "boolean", "date", "datetime"},
    "contains": {"string"},
    "not_contains": {"string"},
    "starts_with": {"string"},
    "ends_with": {"string"},
    "exists": {"string", "number", "boolean", "date", "datetime"},
    "not_exists": {"string", "number", "boolean", "date", "datetime"},
    "gt": {"number", "date", "datetime"},
    "gte": {"number", "date", "datetime"},
    "lt": {"number", "date", "datetime"},
    "lte": {"number", "date", "datetime"},
    "in": {"string", "number"},
    "not_in": {"string", "number"},
    "before": {"date", "datetime"},
    "after": {"date", "datetime"},
    "within_last_days": {"date", "datetime"},
}
OPERATORS = tuple(OPERATOR_TYPES)


class _Compiler:
    def __init__(self, attribute_types: dict[str, str], now: datetime) -> None:
        self.types = attribute_types
        self.now = now
        self.errors: dict[str, list[str]] = {}
        self.conditions = 0

    def fail(self, path: str, reason: str) -> ColumnElement[bool]:
        self.errors.setdefault(path, []).append(reason)
        return false()

    def group(self, node: Any, path: str, depth: int) -> ColumnElement[bool]:
        if not isinstance(node, dict):
            return self.fail(
                path,
                'must be an object: a group {"all": [...]} / {"any": [...]} '
                'or a condition {"field", "op", "value"}',
            )
        if "field" in node or "op" in node:
            return self.condition(node, path)
        keys = set(node)
        if len(keys) != 1 or not keys <= {"all", "any"}:
            return self.fail(path, 'a group has exactly one key, "all" or "any"')
        if depth >= MAX_DEPTH:
            return self.fail(path, f"groups nest at most {MAX_DEPTH} deep")
        key = keys.pop()
        items = node[key]
        if not isinstance(items, list) or not items:
            return self.fail(f"{path}.{key}", "must be a non-empty list")
        parts = [self.group(item, f"{path}.{key}[{i}]", depth + 1) for i, item in enumerate(items)]
        return and_(*parts) if key == "all" else or_(*parts)

    def condition(self, node: dict, path: str) -> ColumnElement[bool]:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            return self.fail(path, f"a rule holds at most {MAX_CONDITIONS} conditions")
        extra = set(node) - {"field", "op", "value"}
        if extra:
            return self.fail(f"{path}.{sorted(extra)[0]}", "unknown key in a condition")
        field, op = node.get("field"), node.get("op")
        if not isinstance(field, str) or not field:
            return self.fail(f"{path}.field", "required: a contact field or attributes.<name>")
        if not isinstance(op, str) or op not in OPERATOR_TYPES:
            return self.fail(f"{path}.op", f"unknown operator {op!r}; one of {', '.join(OPERATORS)}")
        resolved = self.resolve(field)
        if resolved is None:
            known = ", ".join(sorted(BUILTIN_FIELDS))
            return self.fail(
                f"{path}.field",
                f"unknown field {field!r}; one of {known}, or attributes.<name> of a defined attribute",
            )
        type_, column_for = resolved
        if type_ not in OPERATOR_TYPES[op]:
            return self.fail(f"{path}.op", f"operator {op!r} does not apply to {field} ({type_})")
        has_value = "value" in node
        if op in ("exists", "not_exists"):
            if has_value:
                return self.fail(f"{path}.value", f"operator {op!r} takes no value")
            return self.presence(column_for(type_), op == "exists")
        if not has_value:
            return self.fail(f"{path}.value", "required")
        value = node["value"]
        vpath = f"{path}.value"
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                return self.fail(vpath, "must be a non-empty list")
            if len(value) > MAX_IN_VALUES:
                return self.fail(vpath, f"at most {MAX_IN_VALUES} values; for more, use a static segment")
            values = [self.typed(v, type_, f"{vpath}[{i}]") for i, v in enumerate(value)]
            if any(v is _BAD for v in values):
                return false()
            column = column_for(type_)
            return column.in_(values) if op == "in" else or_(column.is_(None), column.not_in(values))
        if op == "within_last_days":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DAYS:
                return self.fail(vpath, f"must be a whole number of days from 0 to {MAX_DAYS}")
            column = column_for(type_)
            if type_ == "date":
                today = self.now.date()
                return column.between((today - timedelta(days=value)).isoformat(), today.isoformat())
            return column.between(self.now - timedelta(days=value), self.now)
        if op in ("contains", "not_contains", "starts_with", "ends_with"):
            if not isinstance(value, str) or not value:
                return self.fail(vpath, "must be a non-empty string")
            if len(value) > MAX_TEXT:
                return self.fail(vpath, f"at most {MAX_TEXT} characters")
            column = column_for(type_)
            escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = {
                "contains": f"%{escaped}%",
                "not_contains": f"%{escaped}%",
                "starts_with": f"{escaped}%",
                "ends_with": f"%{escaped}",
            }[op]
            like = column.ilike(pattern, escape="\\")
            return or_(column.is_(None), not_(like)) if op == "not_contains" else like
        typed = self.typed(value, type_, vpath)
        if typed is _BAD:
            return false()
        column = column_for(type_)
        if op == "eq":
            return column == typed
        if op == "neq":
            return or_(column.is_(None), column != typed)
        if op in ("gt", "after"):
            return column > typed
        if op == "gte":
            return column >= typed
        if op in ("lt", "before"):
            return column < typed
        return column <= typed  # lte

    def presence(self, column, exists: bool) -> ColumnElement[bool]:
        return column.is_not(None) if exists else column.is_(None)

    def resolve(self, field: str) -> tuple[str, Callable[[str], Any]] | None:
        if field.startswith("attributes."):
            name = field[len("attributes.") :]
        elif field in BUILTIN_FIELDS:
            return BUILTIN_FIELDS[field], lambda _t, f=field: getattr(Contact, f)
        else:
            name = field
        type_ = self.types.get(name)
        if type_ is None:
            return None
        return type_, lambda t, n=name: _attribute_column(n, t)

    def typed(self, value: Any, type_: str, path: str) -> Any:
        if type_ == "string":
            if isinstance(value, str) and len(value) <= MAX_TEXT:
                return value
            self.fail(path, f"must be a string of at most {MAX_TEXT} characters")
        elif type_ == "number":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
            self.fail(path, "must be a number")
        elif type_ == "boolean":
            if isinstance(value, bool):
                return value
            self.fail(path, "must be true or false")
        elif type_ == "date":
            try:
                return date.fromisoformat(value).isoformat()
            except (TypeError, ValueError):
                self.fail(path, "must be a date, YYYY-MM-DD")
        elif type_ == "datetime":
            parsed = _parse_datetime(value)
            if parsed is not None:
                return parsed
            self.fail(path, "must be an ISO 8601 date or date-time (UTC unless an offset is given)")
        return _BAD


_BAD = object()


def _parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(value), time())
        except ValueError:
            return None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    try:
        parsed.astimezone(UTC)  # what the database is given
    except OverflowError:
        return None
    return parsed


def _attribute_column(name: str, type_: str):
    element = Contact.attributes[name]
    if type_ == "number":
        return element.as_float()
    if type_ == "boolean":
        return element.as_boolean()
    return element.as_string()


def compile_rules(
    rules: Any, attribute_types: dict[str, str], now: datetime, path: str = "rules"
) -> ColumnElement[bool]:
    """The SQL condition selecting the contacts `rules` describe; Invalid names every mistake."""
    if rules is None:
        return true()
    compiler = _Compiler(attribute_types, now)
    if isinstance(rules, dict) and ("field" in rules or "op" in rules):
        compiler.fail(path, 'the top level is a group: {"all": [...]} or {"any": [...]}')
        raise Invalid.many(compiler.errors)
    condition = compiler.group(rules, path, 0)
    if compiler.errors:
        raise Invalid.many(compiler.errors)
    return condition
