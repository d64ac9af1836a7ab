"""Domain errors; the HTTP layers map them to status codes in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of the errors domain functions raise on purpose."""

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    @classmethod
    def taken(cls, kind: str, name: str) -> Conflict:
        """Another record of this kind already has this name."""
        return cls(f"a {kind} named {name!r} already exists", {"name": [f"{name!r} is taken"]})


class Invalid(DomainError):
    """Input that breaks a rule; `errors` maps a field (or JSON path) to its reasons."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", {field: [reason]})
        self.field = field
        self.reason = reason

    @classmethod
    def many(cls, errors: dict[str, list[str]]) -> Invalid:
        first_field, reasons = next(iter(errors.items()))
        err = cls(first_field, reasons[0])
        err.errors = errors
        err.message = "; ".join(f"{f}: {', '.join(r)}" for f, r in errors.items())
        return err
