"""The chat simulator: the marketer writes as a customer, through the simulated network and
the real signed inbound webhook, and sees what the bot answers (texts, templates, buttons)."""

from __future__ import annotations

from flask import jsonify, redirect, render_template, request, url_for

from chatman.admin.blueprint import bp, load, wants_json
from chatman.api.simulator import ConversationArgs, SayArgs
from chatman.contacts.fields import normalise_phone
from chatman.errors import Invalid
from chatman.extensions import redis_client, request_session, settings
from chatman.messaging import simulator as network

DEFAULT_PHONE = "+14155550100"


@bp.route("/simulator")
def simulator():
    config = settings()
    off = network.off_because(config)
    raw = (request.args.get("phone") or DEFAULT_PHONE).strip()
    errors: dict[str, list[str]] = {}
    phone = None
    try:
        phone = normalise_phone(raw, config.default_region)
    except Invalid as error:
        errors = {"phone": [error.reason]}
    return render_template(
        "admin/simulator.html",
        off=off,
        phone=phone,
        raw_phone=raw,
        profile_name=(request.args.get("name") or "").strip(),
        errors=errors,
        messages=network.conversation(request_session(), redis_client(), phone) if phone and not off else [],
    ), (422 if errors else 200)


@bp.route("/simulator/messages.json")
def simulator_messages():
    args = load(ConversationArgs(), request.args)
    phone = normalise_phone(args["phone"], settings().default_region)
    return jsonify(phone=phone, messages=network.conversation(request_session(), redis_client(), phone))


@bp.post("/simulator/messages")
def simulator_say():
    config = settings()
    off = network.off_because(config)
    if off:
        return jsonify(code=409, message=off, errors={}), 409
    data = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    fields = {k: v for k, v in (data or {}).items() if k in SayArgs().fields and v not in (None, "")}
    args = load(SayArgs(), fields)
    try:
        phone, sid = network.say(config, **args)
    except network.NotReceived as error:
        return jsonify(code=502, message=error.message, errors={}), 502
    if wants_json():
        return jsonify(phone=phone, message_sid=sid), 202
    return redirect(url_for("admin.simulator", phone=phone, name=args.get("profile_name") or None))
