"""What the provider's answers mean for claimed rows, and how rows whose holder died (or whose
answer was lost) are settled: one place for campaign batches and conversation messages alike.

Settling never sends anything twice. A row never handed over goes back in line. A handed row
is settled by what the provider knows: the first status callback naming the row (its
StatusCallback URL carries the row id) ties it to its sid; failing that, recovery looks the
row up at the provider, and takes a listed message as the row's only when nothing else could
be it (same phone, a time the send could have made it, the same text where both show one).
When the provider has nothing near that time, the row goes back in line; when it cannot be
told, it is asked again later, a bounded number of times, and then the row is `unconfirmed`:
never sent again, counted apart.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatman.contacts.dnd import set_dnd
from chatman.contacts.models import Contact
from chatman.ledger import sending, states
from chatman.ledger.models import ClaimLease, Message
from chatman.messaging.providers import CLOCK_SKEW, OPT_OUT_CODES, Provider, ProviderMessage, SendResult
from chatman.timeutils import utcnow

# Tries of one row (claims that reached the provider or died) before it fails for good.
MAX_ATTEMPTS = 5
# Lookups that told us nothing before a handed row is settled as unconfirmed; they are spaced
# 30 s, 1, 2, 4 minutes apart.
MAX_LOOKUPS = 5
LOOKUP_BACKOFF = timedelta(seconds=30)
# A send that got no answer (a read timeout) is left to the provider this long before it is
# looked up: Twilio may still be working on the request.
AMBIGUOUS_HOLD = timedelta(seconds=45)
# While recovery asks the provider, its rows are its own (the lease is renewed meanwhile).
LOOKUP_LEASE = timedelta(minutes=2)
# The provider creates a message while the request that sends it lasts (timeouts and retries
# included).
SEND_SPAN = timedelta(seconds=60)
# One recovery works this long at most; the clock starts another for what is left.
BUDGET_S = 60

# Row id -> the text the provider shows for it, None where we cannot tell (a content template).
Describe = Callable[[Session, Sequence[sending.ClaimedRow]], dict[int, str | None]]


@dataclass
class Answers:
    submitted: int = 0
    failed: int = 0
    retry: list[int] = field(default_factory=list)  # back to pending, to be sent again later
    retry_attempts: int = 0  # the most tries any of `retry` has had
    ambiguous: list[int] = field(default_factory=list)  # no answer: the provider is asked later


def record_answers(
    session: Session,
    token: str,
    answered: Sequence[tuple[sending.ClaimedRow, SendResult]],
    now: datetime | None = None,
) -> Answers:
    """Record each row's answer; the caller commits. A row with no answer (the request may
    have reached the provider) stays claimed and handed until a callback or a lookup tells."""
    result = Answers()
    submitted, retry, failed = [], [], []
    for row, answer in answered:
        if answer.ambiguous:
            result.ambiguous.append(row.id)
        elif answer.ok:
            submitted.append((row, answer.sid))
        elif answer.retryable and row.attempts < MAX_ATTEMPTS:
            retry.append(sending.Failure(row, answer.error_code, answer.error_message))
        else:
            failed.append(sending.Failure(row, answer.error_code, answer.error_message))
    recorded = sending.record_results(session, token, submitted, retry, failed, now=now or utcnow())
    set_dnd(session, [f.row.contact_id for f in failed if f.code in OPT_OUT_CODES], "opt_out")
    result.submitted, result.failed = recorded.submitted, recorded.failed
    result.retry = [f.row.id for f in retry]
    result.retry_attempts = max([0, *(f.row.attempts for f in retry)])
    return result


@dataclass
class Recovery:
    released: int = 0  # claimed but never handed over: back to pending
    found: int = 0  # handed over, and the provider has it: recorded as submitted
    resent: int = 0  # handed over, the provider never got it: back to pending
    unresolved: int = 0  # the provider could not tell: asked again later
    unconfirmed: int = 0  # it still could not tell after MAX_LOOKUPS: never sent again
    abandoned: int = 0  # its holders died MAX_ATTEMPTS times: failed, not tried again
    pending: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))  # run -> rows to send
    conversation: list[int] = field(default_factory=list)  # conversation messages to send
    runs: set[int] = field(default_factory=set)  # every run a row of which was settled

    def back_in_line(self, rows: Sequence[sending.ClaimedRow]) -> None:
        for row in rows:
            if row.run_id is None:
                self.conversation.append(row.id)
            else:
                self.pending[row.run_id].append(row.id)


def recover_stale_claims(
    session: Session,
    provider: Provider,
    now: datetime,
    legacy_before: datetime,
    describe: Describe | None = None,
    ids: Sequence[int] | None = None,
    threads: int = 8,
) -> Recovery:
    """Settle claimed rows whose holder is gone as of `now` (sending.stale_claims), committing
    as it goes, for BUDGET_S at most. `describe` tells the text of campaign rows (conversation
    rows carry theirs)."""
    report = Recovery()
    seen: set[int] = set()
    until = time.monotonic() + BUDGET_S
    while time.monotonic() < until and (
        stale := [
            s for s in sending.stale_claims(session, now, legacy_before, ids=ids) if s.row.id not in seen
        ]
    ):
        seen.update(s.row.id for s in stale)
        report.runs.update(s.row.run_id for s in stale if s.row.run_id is not None)
        for token, group in _by_token([s for s in stale if s.handed_at is None]).items():
            tired = [s.row for s in group if s.row.attempts >= MAX_ATTEMPTS]
            report.abandoned += _abandon(session, token, tired, unhanded=True)
            fresh = [s.row for s in group if s.row.attempts < MAX_ATTEMPTS]
            released = sending.release(session, token, [r.id for r in fresh])
            report.released += released
            report.back_in_line(fresh)
            sending.end_lease(session, token)
        session.commit()
        handed = [s for s in stale if s.handed_at is not None]
        if handed:
            token = str(uuid.uuid4())
            handed = sending.adopt(session, handed, token, utcnow() + LOOKUP_LEASE)
            session.commit()
            with sending.keep_lease(session.get_bind(), token):
                _settle_handed(session, provider, token, handed, describe, threads, report)
            sending.end_lease(session, token)
            session.commit()
    sending.sweep_leases(session, now)
    session.commit()
    return report


def _settle_handed(
    session: Session,
    provider: Provider,
    token: str,
    handed: list[sending.StaleClaim],
    describe: Describe | None,
    threads: int,
    report: Recovery,
) -> None:
    rows = {s.row.id: s for s in handed}
    phones = dict(
        session.execute(
            select(Contact.id, Contact.phone).where(
                Contact.id.in_({s.row.contact_id for s in handed} - {None})
            )
        ).all()
    )
    texts = _texts(session, [s.row for s in handed], describe)
    # A live holder is sending to the same phone right now: what the provider lists could be
    # its message, so these wait (under this recovery's lease, which runs out in a minute or
    # two) until it has its answer; waiting asks nothing, so it counts no lookup.
    busy = set(
        session.scalars(
            select(Message.contact_id)
            .join(ClaimLease, ClaimLease.token == Message.claim_token)
            .where(
                Message.contact_id.in_(phones),
                Message.status == states.CLAIMED,
                Message.handed_at.is_not(None),
                Message.claim_token != token,
                ClaimLease.expires_at > utcnow(),
            )
        )
    )
    by_phone: dict[str, list[sending.StaleClaim]] = defaultdict(list)
    nobody = []
    for s in handed:
        if s.row.contact_id in phones:
            if s.row.contact_id not in busy:
                by_phone[phones[s.row.contact_id]].append(s)
        else:
            nobody.append(s.row)  # the contact was deleted: there is no one to look up
    with ThreadPoolExecutor(threads) as pool:
        listed = dict(
            zip(
                by_phone,
                pool.map(lambda p: _ask(provider, p, min(s.handed_at for s in by_phone[p])), by_phone),
                strict=True,
            )
        )
    candidates = {m.sid for found in listed.values() if found for m in found}
    taken = set(session.scalars(select(Message.provider_sid).where(Message.provider_sid.in_(candidates))))
    found, lacking, unknown = [], [], []
    for phone, claims in by_phone.items():
        if listed[phone] is None:  # the provider could not be asked
            unknown += [s.row for s in claims]
            continue
        ties, none, open_ = _match(claims, [m for m in listed[phone] if m.sid not in taken], texts)
        found += [(rows[i].row, sid) for i, sid in ties.items()]
        lacking += [rows[i].row for i in none]
        unknown += [rows[i].row for i in open_]
    report.found += sending.record_results(session, token, submitted=found, now=utcnow()).submitted
    tired = [r for r in lacking if r.attempts >= MAX_ATTEMPTS]
    report.abandoned += _abandon(session, token, tired)
    again = [r for r in lacking if r.attempts < MAX_ATTEMPTS]
    report.resent += sending.record_results(
        session, token, retry=[sending.Failure(r, None) for r in again], now=utcnow()
    ).retry
    report.back_in_line(again)
    # Nobody to ask about a deleted contact's message: it is settled at once.
    report.unconfirmed += sending.record_results(session, token, unconfirmed=nobody, now=utcnow()).unconfirmed
    _ask_later(session, token, unknown, {i: s.lookups for i, s in rows.items()}, report)


def _match(
    claims: list[sending.StaleClaim], listed: list[ProviderMessage], texts: dict[int, str | None]
) -> tuple[dict[int, str], list[int], list[int]]:
    """Which listed message is whose, where that is certain: (row id -> sid, rows the
    provider has nothing for, rows that cannot be told)."""

    def near(claim: sending.StaleClaim, message: ProviderMessage) -> bool:
        if message.created_at is None:
            return True
        return claim.handed_at - CLOCK_SKEW <= message.created_at <= claim.handed_at + SEND_SPAN + CLOCK_SKEW

    def same_text(claim: sending.StaleClaim, message: ProviderMessage) -> bool:
        text = texts.get(claim.row.id)
        return text is None or not message.body or message.body == text

    timely = {c.row.id: {m.sid for m in listed if near(c, m)} for c in claims}
    fitting = {c.row.id: {m.sid for m in listed if near(c, m) and same_text(c, m)} for c in claims}
    ties: dict[int, str] = {}
    changed = True
    while changed:
        changed = False
        tied = set(ties.values())
        for claim in claims:
            row = claim.row.id
            options = fitting[row] - tied
            if row in ties or len(options) != 1:
                continue
            (sid,) = options
            if not any(
                sid in fitting[other] - tied for other in fitting if other != row and other not in ties
            ):
                ties[row] = sid
                changed = True
                tied.add(sid)
    tied = set(ties.values())
    none = [c.row.id for c in claims if c.row.id not in ties and not timely[c.row.id] - tied]
    open_ = [c.row.id for c in claims if c.row.id not in ties and c.row.id not in none]
    return ties, none, open_


def _ask_later(
    session: Session,
    token: str,
    rows: list[sending.ClaimedRow],
    lookups: dict[int, int],
    report: Recovery,
) -> None:
    """One more lookup that told nothing: ask again later (backing off), or, after
    MAX_LOOKUPS, settle the row as unconfirmed."""
    if not rows:
        return
    sending.count_lookup(session, token, [r.id for r in rows])
    done = [r for r in rows if lookups.get(r.id, 0) + 1 >= MAX_LOOKUPS]
    report.unconfirmed += sending.record_results(session, token, unconfirmed=done, now=utcnow()).unconfirmed
    later: dict[int, list[sending.StaleClaim]] = defaultdict(list)
    for row in rows:
        if row not in done:
            tries = lookups.get(row.id, 0) + 1
            later[tries].append(sending.StaleClaim(row, token, None, tries))
    for tries, claims in later.items():
        sending.adopt(session, claims, str(uuid.uuid4()), utcnow() + LOOKUP_BACKOFF * 2 ** (tries - 1))
        report.unresolved += len(claims)


def _texts(
    session: Session, rows: Sequence[sending.ClaimedRow], describe: Describe | None
) -> dict[int, str | None]:
    conversation = [r.id for r in rows if r.run_id is None]
    texts: dict[int, str | None] = {}
    for message_id, content in session.execute(
        select(Message.id, Message.content).where(Message.id.in_(conversation))
    ):
        content = content or {}
        texts[message_id] = None if content.get("content_sid") else content.get("body")
    campaign = [r for r in rows if r.run_id is not None]
    if campaign and describe is not None:
        texts |= describe(session, campaign)
    return texts


def _by_token(claims: Sequence[sending.StaleClaim]) -> dict[str, list[sending.StaleClaim]]:
    groups: dict[str, list[sending.StaleClaim]] = defaultdict(list)
    for claim in claims:
        groups[claim.token].append(claim)
    return groups


def _abandon(session: Session, token: str, rows: Sequence[sending.ClaimedRow], unhanded: bool = False) -> int:
    """Rows whose every holder died (one may be what kills them): fail them, visibly."""
    if not rows:
        return 0
    failures = [sending.Failure(r, "abandoned", f"its send batch died {r.attempts} times") for r in rows]
    return sending.record_results(session, token, failed=failures, now=utcnow(), unhanded=unhanded).failed


def _ask(provider: Provider, phone: str, since: datetime) -> list[ProviderMessage] | None:
    try:
        return provider.lookup(phone, since)
    except Exception:  # noqa: BLE001 (the provider cannot be asked now: the next recovery asks again)
        return None
