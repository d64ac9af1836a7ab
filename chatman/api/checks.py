"""Every API request checked before a view or schema sees it: ids in the path that a 64-bit
column can hold, and a JSON body that is sent as JSON, parses, and holds only what both
databases keep. webargs alone would read JSON sent without its Content-Type as no body at
all, and answer "Missing data" for a body that is there."""

from __future__ import annotations

import json
import math
from typing import Any

from flask import request
from flask_smorest import abort

from chatman.limits import MAX_ID, bad_character

MAX_DEPTH = 32  # rules and flow steps nest a few levels; nothing real comes near
MAX_JSON_BYTES = 2 * 1024 * 1024  # the largest real body (a rule's 1,000 values) is far below


def check_request() -> None:
    for name, value in (request.view_args or {}).items():
        if isinstance(value, int) and value > MAX_ID:
            reason = f"no record has this id (ids go up to {MAX_ID})"
            abort(404, message=f"{name}: {reason}", errors={name: [reason]})
    _check_body()


def _check_body() -> None:
    if request.method not in ("POST", "PUT", "PATCH") or request.mimetype == "multipart/form-data":
        return
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        _refuse(
            413, f"the body is over {MAX_JSON_BYTES // (1024 * 1024)} MB; CSV files go to the import routes"
        )
    raw = request.get_data(cache=True)
    if not raw.strip():
        if request.method == "PATCH":
            _refuse(400, "send the fields to change as a JSON object")
        return
    if not request.is_json:
        _refuse(415, "send the body as JSON, with the header Content-Type: application/json")
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except UnicodeDecodeError:
        _refuse(400, "the body is not UTF-8 text")
    except json.JSONDecodeError as error:
        _refuse(400, f"the body is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}")
    except RecursionError:
        _refuse(400, f"the body is nested more than {MAX_DEPTH} levels deep")
    except ValueError as error:  # an integer of more digits than Python reads (4,300)
        _refuse(400, f"the body holds a number that is too long: {str(error).split(';')[0]}")
    problem = _problem(value, "", 0)
    if problem:
        path, reason = problem
        abort(422, message=f"{path}: {reason}", errors={path: [reason]})


def _refuse(code: int, reason: str) -> None:
    abort(code, message=f"body: {reason}", errors={"body": [reason]})


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def _problem(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    """The first value that no database would keep, as (JSON path, reason)."""
    if depth > MAX_DEPTH:
        _refuse(400, f"the body is nested more than {MAX_DEPTH} levels deep")
    where = path or "body"
    if isinstance(value, str):
        reason = bad_character(value)
        return (where, reason) if reason else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if -MAX_ID <= value <= MAX_ID else (where, f"a number from -{MAX_ID} to {MAX_ID}")
    if isinstance(value, float):
        return None if math.isfinite(value) else (where, "a number too large to store")
    if isinstance(value, dict):
        for key, item in value.items():
            reason = bad_character(key)
            if reason:
                return f"{path}.{key!r}" if path else repr(key), reason
            found = _problem(item, f"{path}.{key}" if path else key, depth + 1)
            if found:
                return found
        return None
    for i, item in enumerate(value):
        found = _problem(item, f"{path}[{i}]", depth + 1)
        if found:
            return found
    return None
