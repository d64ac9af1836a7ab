"""What the provider's answers mean for claimed rows, and how rows whose sender died are
settled: one place for campaign batches and single conversation messages alike."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatman.contacts.dnd import set_dnd
from chatman.contacts.models import Contact
from chatman.ledger import sending
from chatman.ledger.models import Message
from chatman.messaging.providers import OPT_OUT_CODES, Provider, SendResult
from chatman.timeutils import utcnow

# Tries of one row (claims that reached the provider or died) before it fails for good.
MAX_ATTEMPTS = 5


@dataclass
class Answers:
    submitted: int = 0
    failed: int = 0
    retry: list[int] = field(default_factory=list)  # back to pending, to be sent again later
    retry_attempts: int = 0  # the most tries any of `retry` has had
    ambiguous: list[int] = field(default_factory=list)  # no answer: to be looked up later


def record_answers(
    session: Session,
    token: str,
    answered: Sequence[tuple[sending.ClaimedRow, SendResult]],
    now: datetime | None = None,
) -> Answers:
    """Record each row's answer; the caller commits. A row with no answer (the request may
    have reached the provider) stays claimed and handed until the provider is asked."""
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
    unresolved: int = 0  # the provider could not be asked: left for the next try
    abandoned: int = 0  # its batches died MAX_ATTEMPTS times: failed, not tried again
    runs: set[int] = field(default_factory=set)  # campaign runs with rows back to pending
    conversation: list[int] = field(default_factory=list)  # conversation messages back to pending


def recover_stale_claims(
    session: Session,
    provider: Provider,
    claimed_before: datetime,
    ids: Sequence[int] | None = None,
    lookups: int = 8,
) -> Recovery:
    """Settle claimed rows (all claimed before `claimed_before`, or just `ids`) that no batch
    will finish: never handed -> pending; handed -> ask the provider whether it has the
    message (then it is submitted) or not (then it goes back to pending, to be sent)."""
    report = Recovery()
    seen: set[int] = set()
    while stale := [
        s for s in sending.stale_claims(session, claimed_before, ids=ids) if s.row.id not in seen
    ]:
        seen.update(s.row.id for s in stale)
        report.runs.update(s.row.run_id for s in stale if s.row.run_id is not None)
        report.conversation += [s.row.id for s in stale if s.row.run_id is None]
        by_token: dict[str, list[int]] = defaultdict(list)
        for s in stale:
            if s.handed_at is None and s.row.attempts < MAX_ATTEMPTS:
                by_token[s.token].append(s.row.id)
            elif s.handed_at is None:
                report.abandoned += _abandon(session, s)
        for token, ids in by_token.items():
            report.released += sending.release(session, token, ids)
        session.commit()
        handed = [s for s in stale if s.handed_at is not None]
        phones = dict(
            session.execute(
                select(Contact.id, Contact.phone).where(Contact.id.in_({s.row.contact_id for s in handed}))
            ).all()
        )

        with ThreadPoolExecutor(lookups) as pool:
            answers = list(
                pool.map(
                    _ask,
                    [provider] * len(handed),
                    [phones.get(h.row.contact_id) for h in handed],
                    [h.handed_at for h in handed],
                )
            )
        candidates = {sid for found in answers if found for sid in found}
        taken = set(session.scalars(select(Message.provider_sid).where(Message.provider_sid.in_(candidates))))
        for claim, found in zip(handed, answers, strict=True):
            if found is None:
                report.unresolved += 1
                continue
            sid = next((s for s in found if s not in taken), None)
            if sid is not None:
                taken.add(sid)
                report.found += sending.record_results(
                    session, claim.token, submitted=[(claim.row, sid)], now=utcnow()
                ).submitted
            elif claim.row.attempts >= MAX_ATTEMPTS:
                report.abandoned += _abandon(session, claim)
            else:
                report.resent += sending.record_results(
                    session, claim.token, retry=[sending.Failure(claim.row, None)], now=utcnow()
                ).retry
        session.commit()
    return report


def _abandon(session: Session, claim: sending.StaleClaim) -> int:
    """A row whose every batch died (it may be what kills them): fail it, visibly."""
    failure = sending.Failure(claim.row, "abandoned", f"its send batch died {claim.row.attempts} times")
    return sending.record_results(session, claim.token, failed=[failure], now=utcnow()).failed


def _ask(provider: Provider, phone: str | None, since: datetime) -> list[str] | None:
    if phone is None:  # the contact was deleted: nobody to look up
        return None
    try:
        return provider.lookup(phone, since)
    except Exception:  # the provider cannot be asked now: the next recovery asks again
        return None
