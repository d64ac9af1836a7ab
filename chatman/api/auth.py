"""Bearer-token check that every API blueprint runs before its views."""

from __future__ import annotations

from flask import g, request
from flask_smorest import abort

from chatman.auth.accounts import check_token
from chatman.extensions import request_session


def require_token() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(
            401,
            message="missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    session = request_session()
    row = check_token(session, token.strip())
    if row is None:
        abort(401, message="invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    session.commit()
    g.api_token = row
