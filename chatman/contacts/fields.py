"""Validation of the values a contact holds: phone, timezone, typed attributes."""

from __future__ import annotations

import re
from datetime import date
from typing import Any
from zoneinfo import available_timezones

import phonenumbers

from chatman.errors import Invalid

ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")
WHATSAPP_STYLE = re.compile(r"[1-9][0-9]{10,14}")  # 11-15 digits: a country code and a number
_TIMEZONES = frozenset(available_timezones())


def normalise_phone(raw: str, default_region: str | None, field: str = "phone") -> str:
    """Return `raw` in E.164, or raise Invalid saying why it cannot be one."""
    text = (raw or "").strip()
    if text.lower().startswith("whatsapp:"):
        text = text[len("whatsapp:") :].strip()
    if not text:
        raise Invalid(field, "phone number is required")
    has_country_code = text.startswith("+") or text.startswith("00")
    if text.startswith("00"):
        text = "+" + text[2:]
    if not has_country_code and default_region is None and WHATSAPP_STYLE.fullmatch(text):
        # As WhatsApp writes numbers (its wa_id): the country code, then the number, no "+".
        text, has_country_code = "+" + text, True
    if not has_country_code and default_region is None:
        raise Invalid(
            field,
            f"{raw!r} has no country code; write it as +<country code><number> or set DEFAULT_REGION",
        )
    try:
        number = phonenumbers.parse(text, None if has_country_code else default_region)
    except phonenumbers.NumberParseException as exc:
        raise Invalid(field, f"{raw!r} is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        raise Invalid(field, f"{raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_timezone(name: str, field: str = "timezone") -> str:
    if name not in _TIMEZONES:
        raise Invalid(field, f"{name!r} is not an IANA timezone name (e.g. Asia/Kolkata)")
    return name


def validate_attribute_name(name: str, field: str) -> str:
    if not isinstance(name, str) or not ATTRIBUTE_NAME.match(name):
        raise Invalid(
            field,
            f"{name!r} is not a valid attribute name: use lower-case letters, digits and _ "
            "(starting with a letter, at most 64 characters)",
        )
    return name


def infer_attribute_type(value: Any) -> str:
    """The type a first-seen attribute gets from its JSON value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TypeError(type(value).__name__)


_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


def coerce_attribute(value: Any, type_: str, field: str) -> Any:
    """Check `value` against `type_` and return its stored form (dates as ISO strings).

    Strings are accepted for every type, since CSV cells and form fields arrive as text.
    """
    if type_ == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return str(value).lower() if isinstance(value, bool) else str(value)
    elif type_ == "number":
        if isinstance(value, bool):
            pass
        elif isinstance(value, int | float):
            if value != value or value in (float("inf"), float("-inf")):
                raise Invalid(field, "must be a finite number")
            return value
        elif isinstance(value, str):
            try:
                number = float(value.strip().replace(",", ""))
            except ValueError:
                raise Invalid(field, f"{value!r} is not a number") from None
            if number != number or number in (float("inf"), float("-inf")):
                raise Invalid(field, "must be a finite number")
            return int(number) if number.is_integer() and "." not in value else number
    elif type_ == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise Invalid(field, f"{value!r} is not a boolean (true/false)")
    elif type_ == "date" and isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            raise Invalid(field, f"{value!r} is not a date (YYYY-MM-DD)") from None
    raise Invalid(field, f"{value!r} is not a {type_}")
