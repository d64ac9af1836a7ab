"""The inbox: conversations newest first, one contact's thread, a person's reply, hand-over."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from chatman.admin.blueprint import bp, viewer_zone, wants_json
from chatman.errors import Invalid
from chatman.extensions import redis_client, request_session
from chatman.jobs import enqueue_sends
from chatman.messaging import conversations
from chatman.timeutils import utcnow
from chatman.triggers import handover


@bp.route("/inbox")
def inbox():
    page = conversations.conversations(request_session(), after=request.args.get("after") or None)
    return render_template("admin/inbox.html", page=page, tz=ZoneInfo(viewer_zone()))


def _thread_page(contact_id: int, errors=None, form=None, code: int = 200):
    session = request_session()
    chat = conversations.thread(session, contact_id, utcnow())
    return (
        render_template(
            "admin/thread.html",
            chat=chat,
            templates=[(t.id, f"{t.name} ({t.language})") for t in conversations.reply_templates(session)],
            errors=errors or {},
            form=form or {},
            tz=ZoneInfo(viewer_zone()),
        ),
        code,
    )


@bp.route("/inbox/<int:contact_id>")
def thread(contact_id: int):
    return _thread_page(contact_id)


def entry_json(entry: conversations.Entry) -> dict:
    return {
        "id": entry.id,
        "direction": entry.direction,
        "at": entry.at.isoformat(),
        "text": entry.text,
        "status": entry.status,
        "reason": entry.reason,
        "purpose": entry.purpose,
    }


@bp.route("/inbox/<int:contact_id>/messages.json")
def thread_messages(contact_id: int):
    chat = conversations.thread(request_session(), contact_id, utcnow())
    return jsonify(
        entries=[entry_json(e) for e in chat.entries],
        bot_paused=chat.bot_paused_at is not None,
        window_open=chat.window_open,
        done=False,
    )


@bp.post("/inbox/<int:contact_id>/reply")
def thread_reply(contact_id: int):
    session = request_session()
    data = request.get_json(silent=True) if request.is_json else request.form
    body = (data.get("body") or "").strip() or None
    template = str(data.get("template_id") or "").strip()
    form = {"body": body or "", "template_id": template}
    try:
        if template and not template.isdigit():
            raise Invalid("template_id", "choose a template from the list")
        message_id = conversations.reply(
            session, contact_id, utcnow(), body=body, template_id=int(template) if template else None
        )
    except Invalid as error:
        session.rollback()
        if wants_json():
            return jsonify(code=422, message=error.message, errors=error.errors), 422
        return _thread_page(contact_id, errors=error.errors, form=form, code=422)
    session.commit()
    enqueue_sends(redis_client(), [message_id])
    if wants_json():
        return jsonify(message_id=message_id), 202
    flash("Reply queued: it goes out now.")
    return redirect(url_for("admin.thread", contact_id=contact_id))


@bp.post("/inbox/<int:contact_id>/hand-over")
def thread_hand_over(contact_id: int):
    session = request_session()
    if handover.hand_over(session, contact_id, current_user.email, utcnow()):
        flash("You have the conversation: the bot stays silent for this contact until you release it.")
    session.commit()
    return redirect(url_for("admin.thread", contact_id=contact_id))


@bp.post("/inbox/<int:contact_id>/release")
def thread_release(contact_id: int):
    session = request_session()
    if handover.release(session, contact_id):
        flash("Released: the bot answers this contact again.")
    session.commit()
    return redirect(url_for("admin.thread", contact_id=contact_id))
