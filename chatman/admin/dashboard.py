"""The dashboard: the account overview and the campaigns going out now, with live progress."""

from __future__ import annotations

from flask import render_template

from chatman.admin.blueprint import bp, viewer_zone
from chatman.campaigns import lifecycle
from chatman.extensions import request_session, settings
from chatman.reports import overview


@bp.route("/")
def dashboard():
    session = request_session()
    config = settings()
    running = lifecycle.list_campaigns(session, "running", None, 50)
    summary = overview.overview(session, viewer_zone(), daily_limit=config.sender_daily_limit)
    return render_template("admin/dashboard.html", running=running, overview=summary)
