"""Filling placeholders, the one way for every text we send (templates, trigger replies, flow
steps), and tagging links with utm_campaign."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chatman.errors import Invalid

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
LINK = re.compile(r"https?://[^\s<>\"']+")
CONTACT_FIELDS = ("name", "phone", "wa_id", "timezone")


class MissingVariable(Exception):
    """The contact has no value for a placeholder; the send is skipped, the run goes on."""

    def __init__(self, placeholder: str) -> None:
        super().__init__(placeholder)
        self.placeholder = placeholder


def placeholders(body: str) -> list[str]:
    return list(dict.fromkeys(PLACEHOLDER.findall(body)))


def validate_variables(body: str, variables: Mapping[str, Any]) -> None:
    """Every placeholder has exactly one source: a contact field, an attribute, a fixed value,
    or a property of the event that started a triggered campaign."""
    errors: dict[str, list[str]] = {}
    for name in placeholders(body):
        source = variables.get(name)
        path = f"variables.{name}"
        if not isinstance(source, dict) or len(source) != 1:
            errors[path] = ['map it to {"field": ...}, {"attribute": ...}, {"value": ...} or {"event": ...}']
            continue
        ((kind, value),) = source.items()
        if kind == "field" and value not in CONTACT_FIELDS:
            errors[path] = [f"unknown contact field {value!r}; one of {', '.join(CONTACT_FIELDS)}"]
        elif kind in ("attribute", "event") and not isinstance(value, str):
            errors[path] = [
                f"an {kind} property name is a string" if kind == "event" else "an attribute name is a string"
            ]
        elif kind == "value" and not isinstance(value, str | int | float):
            errors[path] = ["a fixed value is text or a number"]
        elif kind not in ("field", "attribute", "value", "event"):
            errors[path] = [f"unknown source {kind!r}"]
    extra = set(variables) - set(placeholders(body))
    for name in sorted(extra):
        errors[f"variables.{name}"] = ["the body has no such placeholder"]
    if errors:
        raise Invalid.many(errors)


def resolve(
    variables: Mapping[str, Mapping[str, Any]], contact: Any, context: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The placeholder values for one contact (and the event that started the run, if any);
    MissingVariable when one has none."""
    values: dict[str, str] = {}
    for name, source in variables.items():
        ((kind, key),) = source.items()
        if kind == "value":
            value = key
        elif kind == "field":
            value = getattr(contact, key)
        elif kind == "event":
            value = (context or {}).get(key)
        else:
            value = (contact.attributes or {}).get(key)
        if value is None or value == "":
            raise MissingVariable(name)
        values[name] = _text(value)
    return values


def contact_values(contact: Any) -> dict[str, Any]:
    """What a free-text placeholder (`{{name}}`, `{{city}}`) may name: the contact's fields, and
    its attributes by their names."""
    return {**(contact.attributes or {}), **{field: getattr(contact, field) for field in CONTACT_FIELDS}}


def render(body: str, values: Mapping[str, Any], missing: str | None = None) -> str:
    """`body` with each `{{name}}` replaced by its value. A placeholder with no value raises
    MissingVariable, or, when `missing` is given, becomes that."""

    def fill(match: re.Match) -> str:
        value = values.get(match.group(1))
        if value is None or value == "":
            if missing is None:
                raise MissingVariable(match.group(1))
            return missing
        return _text(value)

    return PLACEHOLDER.sub(fill, body)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else str(value)


def trailing_punctuation(url: str) -> tuple[str, str]:
    """A link as matched in text, split from the punctuation that ends its sentence."""
    trailing = ""
    while url and url[-1] in ".,;:!?)":
        trailing = url[-1] + trailing
        url = url[:-1]
    return url, trailing


def tag_links(text: str, utm_campaign: str | None) -> str:
    """Append utm_campaign to every link that does not carry one already."""
    if not utm_campaign:
        return text

    def tag(match: re.Match) -> str:
        url, trailing = trailing_punctuation(match.group(0))
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if any(k == "utm_campaign" for k, _ in query):
            return match.group(0)
        query.append(("utm_campaign", utm_campaign))
        return urlunsplit(parts._replace(query=urlencode(query))) + trailing

    return LINK.sub(tag, text)
