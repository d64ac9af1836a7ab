"""What a message asks for, by example phrases: the triggers' own, and the built-in ones for
opting out, opting back in and chatter (triggers.builtin_phrases).

Precedence, for a message of several clauses (triggers.phrases.clauses):
1. a clause that reads as chatter, thanks or praise asks for nothing; if the whole message
   reads as chatter, no trigger answers it, not even by keyword when the resemblance is close
   ("got my refund, thanks");
2. of the clauses that match a trigger, one after "but", "just", "lekin", "pero" ... wins
   ("I don't want to cancel, just tell me where it is");
3. then the trigger with the higher priority (give a greeting trigger a negative one, and
   "hi, where is my order" goes to the order);
4. then the closer resemblance, in steps of 10 points (a story before the question says
   little);
5. then the earlier clause ("cancel my order and refund me": the cancellation comes first).
A phrase of the opposite polarity ("I don't want to cancel" / "cancel my order") counts for
less (phrases.NEGATION_FACTOR).

Opt-out is judged on the whole message only, never on a clause, with thresholds of its own:
at `OPT_OUT_SURE` the contact is opted out; from `OPT_OUT_UNSURE` the customer is asked to
reply STOP, and nothing else answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatman.messaging.normalise import normalise
from chatman.triggers import builtin_phrases
from chatman.triggers.phrases import Clause, Hit, PhraseIndex, build_phrases, clauses, prepare

if TYPE_CHECKING:
    from chatman.triggers.matcher import TriggerSpec

CHATTER = "chatter"
OPT_OUT = "opt_out"
OPT_IN = "opt_in"
OPT_OUT_MAYBE = "opt_out_maybe"
# A trigger's example phrases count from this similarity (0-100) unless the trigger says.
DEFAULT_EXAMPLE_THRESHOLD = 25.0
CHATTER_THRESHOLD = 40.0
OPT_OUT_SURE = 65.0
OPT_OUT_UNSURE = 45.0
OPT_IN_SURE = 50.0
OPT_COVERAGE = 0.5


@dataclass(frozen=True)
class ClauseMatch:
    trigger_id: int
    score: float
    phrase: str
    clause: Clause
    priority: int

    @property
    def precedence(self) -> tuple[bool, int, int, int]:
        return (self.clause.after_contrast, self.priority, round(self.score / 10), -self.clause.position)


@dataclass(frozen=True)
class Understood:
    matches: list[ClauseMatch]  # by precedence, one per trigger
    chatter: Hit | None  # the whole message reads as chatter: no trigger answers


@dataclass(frozen=True)
class OptVerdict:
    kind: str | None  # "opt_out", "opt_out_prompt", "opt_in" or None
    score: float = 0.0
    phrase: str | None = None


@dataclass
class Intents:
    phrases: PhraseIndex  # the triggers' example phrases and chatter
    opt: PhraseIndex  # opting out and in
    thresholds: dict[int, float]
    priorities: dict[int, int]

    def understand(self, text: str) -> Understood:
        whole = normalise(prepare(text))
        if not whole:
            return Understood([], None)
        overall = self._winner(whole, text)
        if overall is not None and overall.owner == CHATTER:
            return Understood([], overall)
        found: dict[int, ClauseMatch] = {}
        chatter = None
        parts = clauses(text)
        for clause in parts:
            hits = self._hits(clause.text, text if len(parts) == 1 else None)
            if hits and hits[0].owner == CHATTER:
                chatter = chatter or hits[0]
                continue
            for hit in hits:
                if hit.owner == CHATTER:
                    continue
                match = ClauseMatch(hit.owner, hit.score, hit.phrase, clause, self.priorities[hit.owner])
                known = found.get(hit.owner)
                if known is None or known.precedence < match.precedence:
                    found[hit.owner] = match
        matches = sorted(found.values(), key=lambda m: m.precedence, reverse=True)
        return Understood(matches, chatter if not matches else None)

    def _winner(self, norm: str, raw: str | None = None) -> Hit | None:
        hits = self._hits(norm, raw)
        return hits[0] if hits else None

    def _hits(self, norm: str, raw: str | None = None) -> list[Hit]:
        """The owners whose best phrase reaches their threshold for this text, best first."""
        return [
            hit
            for hit in self.phrases.best(norm, raw)
            if hit.score >= (CHATTER_THRESHOLD if hit.owner == CHATTER else self.thresholds[hit.owner])
        ]

    def opt_verdict(self, text: str) -> OptVerdict:
        whole = normalise(prepare(text))
        hits = self.opt.best(whole, text) if whole else []
        if not hits:
            return OptVerdict(None)
        top = hits[0]
        if top.owner == OPT_IN:
            return OptVerdict(OPT_IN if top.score >= OPT_IN_SURE else None, top.score, top.phrase)
        if top.score >= OPT_OUT_SURE and top.owner == OPT_OUT:
            return OptVerdict(OPT_OUT, top.score, top.phrase)
        if top.score >= OPT_OUT_UNSURE:
            return OptVerdict("opt_out_prompt", top.score, top.phrase)
        return OptVerdict(None, top.score, top.phrase)


def build_intents(triggers: list[TriggerSpec], semantic: bool = False) -> Intents:
    items: list[tuple[object, str]] = [(CHATTER, p) for p in builtin_phrases.CHATTER]
    thresholds: dict[int, float] = {}
    priorities: dict[int, int] = {}
    for trigger in triggers:
        if trigger.is_fallback or not trigger.examples:
            continue
        thresholds[trigger.id] = trigger.example_threshold or DEFAULT_EXAMPLE_THRESHOLD
        priorities[trigger.id] = trigger.priority
        items += [(trigger.id, p) for p in trigger.examples]
    opt = (
        [(OPT_OUT, p) for p in builtin_phrases.OPT_OUT]
        + [(OPT_OUT_MAYBE, p) for p in builtin_phrases.OPT_OUT_MAYBE]
        + [(OPT_IN, p) for p in builtin_phrases.OPT_IN]
    )
    # Opting out is judged on the whole message, by resemblance, not by a phrase it contains.
    intents = Intents(build_phrases(items), build_phrases(opt, coverage=OPT_COVERAGE), thresholds, priorities)
    if semantic:
        from chatman.triggers import semantic as model

        intents.phrases.semantic = model.Embeddings(intents.phrases.phrases)
        intents.opt.semantic = model.Embeddings(intents.opt.phrases)
    return intents
