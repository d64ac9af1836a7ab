"""Handling what a customer writes, in the webhook's transaction.

Order: keep it (once) and open the window; opt-out/opt-in words, then the same said in other
words (triggers.intents: a clear request opts out, an uncertain one is asked to reply STOP and
nothing else answers it); nothing more for a DND
contact, nor for one a person has taken over (hand-over: the bot is paused, triggers.handover);
the flow the contact is in takes the answer (unless a trigger matches and the flow lets
triggers interrupt it); else the best matching trigger acts; else the fallback.
What is to be sent is queued in the ledger here and sent by jobs after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chatman.campaigns import drips
from chatman.campaigns.triggered import start_for_contact
from chatman.contacts.dnd import clear_dnd, set_dnd
from chatman.contacts.models import Contact
from chatman.dialects import insert_or_overwrite
from chatman.flows import engine as flows
from chatman.flows.models import Flow
from chatman.ledger.models import Message
from chatman.messaging import engagement, policy
from chatman.messaging.inbound import InboundEvent, receive
from chatman.messaging.models import InboundMessage, Template
from chatman.messaging.outbox import CONFIRMATION, queue_message
from chatman.messaging.rendering import MissingVariable, contact_values, render, resolve
from chatman.timeutils import utcnow
from chatman.triggers.matcher import Candidate, TriggerIndex, TriggerSpec
from chatman.triggers.models import Trigger, TriggerFiring
from chatman.triggers.optout import OptWords, opt_verdict

if TYPE_CHECKING:
    from chatman.config import Settings


# A prompt ("Reply STOP ...") goes to a contact at most once in this long.
PROMPT_EVERY = timedelta(hours=24)


@dataclass(frozen=True)
class InboundPolicy:
    words: OptWords
    opt_out_confirmation: str
    opt_in_confirmation: str
    reply_window: timedelta = timedelta(hours=72)
    opt_out_prompt: str = "Reply STOP to stop all messages."  # config.Settings gives both
    opt_in_prompt: str = "Reply START to get our messages again."


@cache
def inbound_policy(config: Settings) -> InboundPolicy:
    """The policy as the settings give it (the webhook's, and the one /triggers/match explains)."""
    return InboundPolicy(
        words=OptWords.of(config.opt_out_keywords, config.opt_in_keywords, config.opt_out_payload),
        opt_out_confirmation=config.opt_out_confirmation,
        opt_in_confirmation=config.opt_in_confirmation,
        reply_window=timedelta(hours=config.reply_window_h),
        opt_out_prompt=config.opt_out_prompt,
        opt_in_prompt=config.opt_in_prompt,
    )


@dataclass
class Handled:
    inbound_id: int
    contact_id: int
    handled_by: str | None = None
    trigger_id: int | None = None
    queued: list[int] = field(default_factory=list)  # conversation messages to send
    runs: list[tuple[int, int]] = field(default_factory=list)  # (run, message) of campaigns started
    reply_to: int | None = None  # the campaign message this answers (its rules look again)


def handle_inbound(
    session: Session,
    event: InboundEvent,
    policy: InboundPolicy,
    index: TriggerIndex,
    now: datetime | None = None,
) -> Handled | None:
    """Receive and act on one inbound message; None when it was received before."""
    now = now or utcnow()
    received = receive(session, event, now, policy.reply_window)
    if received is None:
        return None
    handled = Handled(received.inbound_id, received.contact_id, reply_to=received.reply_to_id)
    contact = session.execute(
        select(Contact.id, Contact.dnd, Contact.dnd_reason, Contact.bot_paused_at).where(
            Contact.id == received.contact_id
        )
    ).one()
    verdict = opt_verdict(policy.words, index, event.body, event.button_payload)
    opt = verdict.kind
    if received.reply_to_id is not None:
        engagement.count_reply(session, received.reply_to_id, event.button_payload, opt == "opt_out", now)
    if opt == "opt_out":
        handled.handled_by = "opt_out"
        if set_dnd(session, [contact.id], "opt_out", now):  # one confirmation, not one per STOP
            handled.queued.append(
                queue_message(session, contact.id, CONFIRMATION, body=policy.opt_out_confirmation, now=now)
            )
        run = flows.active_session(session, contact.id)
        if run is not None:
            flows.end(session, run, "stopped", now)
        drips.exit_contact(session, contact.id, "opted_out", now)
    elif opt == "opt_out_prompt" and not contact.dnd and contact.bot_paused_at is None:
        # It read like an opt-out: ask, and nothing else answers: no trigger, flow, drip step or
        # post-campaign rule on this reply (no offer answers "too many msgs").
        handled.handled_by = "opt_out_prompt"
        handled.reply_to = None
        drips.exit_contact(session, contact.id, "replied", now)
        _prompt(session, contact.id, policy.opt_out_prompt, handled, now)
    elif opt == "opt_in" and contact.dnd and not verdict.by_word:
        # "send me offers again" from a contact who opted out: they confirm with START; a
        # resemblance never brings anyone back on its own.
        handled.handled_by = "opt_in_prompt"
        if contact.dnd_reason == "opt_out":
            _prompt(session, contact.id, policy.opt_in_prompt, handled, now)
    elif opt == "opt_in" and contact.dnd:
        handled.handled_by = "opt_in"
        # A marketer's DND (spam, a complaint) is theirs to lift; the contact lifts their own.
        if contact.dnd_reason == "opt_out" and clear_dnd(session, [contact.id], now):
            handled.queued.append(
                queue_message(session, contact.id, CONFIRMATION, body=policy.opt_in_confirmation, now=now)
            )
    elif contact.dnd:
        handled.handled_by = "dnd"
    elif contact.bot_paused_at is not None:  # a person answers: no trigger, flow or campaign
        handled.handled_by = "person"
        drips.exit_contact(session, contact.id, "replied", now)
    else:
        drips.exit_contact(session, contact.id, "replied", now)
        _converse(session, event, index, contact.id, handled, now)
    session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == handled.inbound_id)
        .values(handled_by=handled.handled_by, trigger_id=handled.trigger_id)
    )
    return handled


def _prompt(session: Session, contact_id: int, body: str, handled: Handled, now: datetime) -> None:
    """Send `body`, unless the contact was sent it within the day (once is enough)."""
    recent = session.scalars(
        select(Message.content).where(
            Message.contact_id == contact_id,
            Message.purpose == CONFIRMATION,
            Message.created_at >= now - PROMPT_EVERY,
        )
    )
    if not any((content or {}).get("body") == body for content in recent):
        handled.queued.append(queue_message(session, contact_id, CONFIRMATION, body=body, now=now))


def _converse(
    session: Session,
    event: InboundEvent,
    index: TriggerIndex,
    contact_id: int,
    handled: Handled,
    now: datetime,
) -> None:
    found = index.candidates(event.body, event.button_payload)
    chosen = choose(session, found, contact_id, now)
    if chosen is None and found and found[0].stage == "examples":  # cooling down, or closed
        chosen = choose(
            session, index.candidates(event.body, event.button_payload, complete=True), contact_id, now
        )
    run = flows.active_session(session, contact_id)
    if run is not None:
        interruptible = session.scalar(select(Flow.on_trigger).where(Flow.id == run.flow_id)) == "interrupt"
        if chosen is None or not interruptible:
            handled.handled_by = "flow"
            handled.queued += flows.answer(
                session, run, event.body or event.button_text, event.button_payload, now
            )
            return
        flows.end(session, run, "interrupted", now)
    if chosen is None:
        chosen = choose(session, [Candidate(t) for t in index.fallbacks], contact_id, now)
        if chosen is None:
            return
        handled.handled_by = "fallback"
    else:
        handled.handled_by = "trigger"
    handled.trigger_id = chosen.id
    act(session, chosen.id, contact_id, handled, event.provider_sid, now)


def choose(
    session: Session, candidates: list[Candidate], contact_id: int, now: datetime
) -> TriggerSpec | None:
    """The best candidate that is within its active hours and out of its cooldown."""
    open_now = [c.trigger for c in candidates if c.trigger.active_at(now)]
    cooling = [t.id for t in open_now if t.cooldown_s]
    fired = (
        dict(
            session.execute(
                select(TriggerFiring.trigger_id, TriggerFiring.fired_at).where(
                    TriggerFiring.contact_id == contact_id, TriggerFiring.trigger_id.in_(cooling)
                )
            ).all()
        )
        if cooling
        else {}
    )
    for trigger in open_now:
        last = fired.get(trigger.id)
        if last is None or now - last >= timedelta(seconds=trigger.cooldown_s):
            return trigger
    return None


def act(
    session: Session, trigger_id: int, contact_id: int, handled: Handled, cause: str, now: datetime
) -> None:
    """Do what the trigger says, and note when it fired for this contact (its cooldown)."""
    trigger = session.get(Trigger, trigger_id)
    insert_or_overwrite(
        session,
        TriggerFiring,
        [{"trigger_id": trigger_id, "contact_id": contact_id, "fired_at": now}],
        ["trigger_id", "contact_id"],
        ["fired_at"],
    )
    if trigger.action == "flow":
        handled.queued += flows.start(session, trigger.flow_id, contact_id, now)
    elif trigger.action == "enroll":
        started = start_for_contact(session, trigger.campaign_id, contact_id, f"inbound:{cause}", now=now)
        if started is not None:
            handled.runs.append(started)
    else:
        message = reply(session, trigger, contact_id, now)
        if message is not None:
            handled.queued.append(message)


def reply(session: Session, trigger: Trigger, contact_id: int, now: datetime) -> int | None:
    """Free text inside the contact's 24-hour window, the approved template outside it. A reply
    that cannot go is recorded in the ledger as skipped, with why (None is returned)."""
    contact = session.get(Contact, contact_id, populate_existing=True)  # its window was opened just now
    if trigger.reply_body and policy.window_open(session, contact_id, now):
        body = render(trigger.reply_body, contact_values(contact), missing="")
        return queue_message(session, contact_id, "reply", body=body, trigger_id=trigger.id, now=now)
    template = session.get(Template, trigger.reply_template_id) if trigger.reply_template_id else None
    if template is None:
        why = "outside_window"
    elif template.status != "approved":
        why = "template_not_approved"
    else:
        try:
            values = resolve(template.variables or {}, contact)
        except MissingVariable:
            why = "missing_variable"
        else:
            return queue_message(
                session,
                contact_id,
                "reply",
                body=render(template.body, values),
                content_sid=template.content_sid,
                content_variables=values if template.content_sid else None,
                template=True,
                trigger_id=trigger.id,
                now=now,
            )
    queue_message(
        session, contact_id, "reply", body=trigger.reply_body, trigger_id=trigger.id, now=now, skipped=why
    )
    return None
