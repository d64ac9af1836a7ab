"""Schema fields that refuse what either database would refuse, so SQLite and PostgreSQL give
the same answer: ids within a 64-bit column, strict integers, texts within their column's
length and free of NUL, times that stay in range when turned into UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import marshmallow as ma

from chatman.limits import MAX_ID, bad_character

MAX_INT = 2**31 - 1


class Integer(ma.fields.Integer):
    """Within bounds; in a JSON body only a JSON integer (20.7 and "20" are refused rather than
    stored as 20). A query string's digits are text: pass `strict=False` there."""

    def __init__(
        self, *, minimum: int = -MAX_INT, maximum: int = MAX_INT, strict: bool = True, **kwargs: Any
    ) -> None:
        validators = [ma.validate.Range(min=minimum, max=maximum), *_as_list(kwargs.pop("validate", None))]
        super().__init__(strict=strict, validate=validators, **kwargs)


class Id(Integer):
    """A record's id: a positive 64-bit integer."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(minimum=kwargs.pop("minimum", 1), maximum=MAX_ID, **kwargs)


class Boolean(ma.fields.Boolean):
    """Only JSON true or false: "yes" and 1 are refused rather than guessed."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class Float(ma.fields.Float):
    """Only a finite JSON number: "50" and true are refused rather than converted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_nan=False, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class Text(ma.fields.String):
    """A string that fits its column (`max` characters) and holds no NUL or lone surrogate."""

    def __init__(self, *, max: int | None = None, min: int | None = None, **kwargs: Any) -> None:
        validators = _as_list(kwargs.pop("validate", None))
        if max is not None or min is not None:
            validators.insert(0, ma.validate.Length(min=min, max=max))
        super().__init__(validate=[*validators, _characters], **kwargs)


def _characters(value: str) -> None:
    reason = bad_character(value)
    if reason:
        raise ma.ValidationError(reason)


class Moment(ma.fields.AwareDateTime):
    """An ISO 8601 time with its offset, within the years 1-9999 in UTC too."""

    default_error_messages = {
        "invalid": "Not a valid time: write it as ISO 8601 with an offset, e.g. 2026-12-24T09:00:00+05:30.",
        "invalid_awareness": "Give the time with its offset, e.g. 2026-12-24T09:00:00+05:30.",
    }

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment.astimezone(UTC)
        except OverflowError:
            raise ma.ValidationError("This time is out of range once converted to UTC.") from None
        return moment


class WallTime(ma.fields.NaiveDateTime):
    """A wall-clock time without an offset (the timezone is given beside it)."""

    default_error_messages = {
        "invalid": "Not a valid time: write it as YYYY-MM-DDTHH:MM:SS, e.g. 2026-12-24T09:00:00.",
        "invalid_awareness": "Give the local time without an offset; the timezone field says where it is.",
    }


def _as_list(validate: Any) -> list:
    if validate is None:
        return []
    return list(validate) if isinstance(validate, list | tuple) else [validate]
