"""The customers' door: `/r/<token>`, a tracked link in a campaign message. A valid token is
counted as a click and redirected to the link's stored address; anything else is a 404 that
leads nowhere."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, request

from chatman.extensions import request_session, settings
from chatman.messaging import links

bp = Blueprint("links", __name__)


@bp.route("/r/<token>", methods=["GET", "HEAD"])
def follow(token: str):
    session = request_session()
    if request.method == "HEAD":  # link checkers and previews look; only a visit counts
        ids = links.parse_token(settings().secret_key or "", token)
        target = links.target(session, *ids) if ids else None
    else:
        target = links.follow(session, settings().secret_key or "", token)
        session.commit()
    if target is None:
        abort(404, description="This link is not valid.")
    response = redirect(target, code=302)
    response.headers["Cache-Control"] = "no-store"  # every visit reaches us and is counted
    response.headers["Referrer-Policy"] = "no-referrer"  # the token stays ours
    return response
