"""What a message asks for, by example phrases: the triggers' own, and the built-in ones for
opting out, opting back in and chatter (triggers.builtin_phrases).

Precedence, for a message of several clauses (triggers.phrases.clauses):
1. a clause that reads as chatter, thanks or praise asks for nothing; if the whole message
   reads as chatter, no trigger answers it, not even by keyword when the resemblance is close
   ("got my refund, thanks");
2. of the clauses that match a trigger, one after "but", "just", "lekin", "pero" ... wins
   ("I don't want to cancel, just tell me where it is");
3. then the trigger with the higher priority (give a greeting trigger a negative one, and
   "hi, where is my order" goes to the order: an opening greeting is a clause of its own);
4. then the closer resemblance, in steps of 10 points (a story before the question says
   little);
5. then the earlier clause ("cancel my order and refund me": the cancellation comes first).
A phrase of the opposite polarity ("I don't want to cancel" / "cancel my order") counts for
less (phrases.NEGATION_FACTOR).

Opt-out is judged on the whole message only, never on a clause, by n-grams alone (the model
finds "start sending" and "stop sending" alike), with thresholds of its own. The contact is
opted out at `OPT_OUT_SURE` when the message names what to stop ("stop sending the parcel"
does not), has three words or more and asks no question; from `OPT_OUT_UNSURE`, or when it
names messages and refuses them in words no phrase is close to, the customer is asked to
reply STOP and nothing else answers. An opt-in is never read into a negated sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatman.messaging.normalise import normalise
from chatman.triggers import builtin_phrases, semantic
from chatman.triggers.phrases import (
    Clause,
    Hit,
    PhraseIndex,
    build_phrases,
    clauses,
    is_greeting,
    negated,
    prepare,
    word_set,
)

if TYPE_CHECKING:
    from chatman.triggers.matcher import TriggerSpec

CHATTER = "chatter"
OPT_OUT = "opt_out"
OPT_IN = "opt_in"
OPT_OUT_MAYBE = "opt_out_maybe"
# A trigger's example phrases count from this similarity (0-100) unless the trigger says.
DEFAULT_EXAMPLE_THRESHOLD = 22.0
CHATTER_THRESHOLD = 40.0
OPT_OUT_SURE = 55.0
OPT_OUT_UNSURE = 40.0
OPT_IN_SURE = 50.0
# A greeting phrase matches a clause of at most this many words: one that greets, not one that
# mentions the morning.
GREETING_WORDS = 3


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
    by_word: bool = False  # an opt word or the opt-out button, not a resemblance


@dataclass
class Intents:
    phrases: PhraseIndex  # the triggers' example phrases and chatter
    opt: PhraseIndex  # opting out and in
    thresholds: dict[int, float]
    priorities: dict[int, int]
    greetings: frozenset[str] = frozenset()  # example phrases that only greet

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
        if self.phrases.semantic is not None:
            semantic.prime([text] + [c.text for c in parts])
        for clause in parts:
            alone = len(parts) == 1
            # a message of one clause was judged whole just now
            hit = (
                overall
                if alone and clause.text == whole
                else self._winner(clause.text, text if alone else None)
            )
            if hit is None:
                continue
            if hit.owner == CHATTER:
                chatter = chatter or hit
                continue
            match = ClauseMatch(hit.owner, hit.score, hit.phrase, clause, self.priorities[hit.owner])
            known = found.get(hit.owner)
            if known is None or known.precedence < match.precedence:
                found[hit.owner] = match
        matches = sorted(found.values(), key=lambda m: m.precedence, reverse=True)
        return Understood(matches, chatter if not matches else None)

    def _winner(self, norm: str, raw: str | None = None) -> Hit | None:
        """The closest phrase's owner that reaches its threshold (chatter below its own
        threshold gives way to the next): one clause says one thing."""
        for hit in self.phrases.best(norm, raw):
            if hit.phrase in self.greetings and len(norm.split()) > GREETING_WORDS:
                continue  # "good morning" greets; "I ordered it this morning" does not
            if hit.owner == CHATTER:
                if hit.score >= CHATTER_THRESHOLD:
                    return hit
                continue
            return hit if hit.score >= self.thresholds[hit.owner] else None
        return None

    def opt_verdict(self, text: str) -> OptVerdict:
        whole = normalise(prepare(text))
        hits = self.opt.best(whole, text) if whole else []
        out = max((h for h in hits if h.owner != OPT_IN), key=lambda h: h.score, default=None)
        opt_in = next((h for h in hits if h.owner == OPT_IN), None)
        # "never send me messages again" is no request to get them again
        if (
            opt_in is not None
            and opt_in.score >= OPT_IN_SURE
            and not negated(whole)
            and (out is None or opt_in.score > out.score)
        ):
            return OptVerdict(OPT_IN, opt_in.score, opt_in.phrase)
        if out is not None and out.score >= OPT_OUT_UNSURE and about_messages(whole):
            # A clear request, of three words at least ("no more" may answer another question),
            # and no question ("can I unsubscribe later?"): else the customer is asked.
            words = whole.split()
            if (
                out.owner == OPT_OUT
                and out.score >= OPT_OUT_SURE
                and len(words) >= 3
                and not _asks(text, words)
            ):
                return OptVerdict(OPT_OUT, out.score, out.phrase)
            return OptVerdict("opt_out_prompt", out.score, out.phrase)
        if _refuses_messages(whole):
            # "I do not want your offers on whatsapp" resembles no phrase closely enough, but no
            # offer may answer it: ask.
            return OptVerdict("opt_out_prompt", out.score if out else 0.0, out.phrase if out else None)
        top = hits[0] if hits else None
        return OptVerdict(None, top.score if top else 0.0, top.phrase if top else None)


_ABOUT_MESSAGES = word_set(builtin_phrases.ABOUT_MESSAGES)
_MESSAGING = word_set(builtin_phrases.MESSAGING)
_STOPPING = word_set(builtin_phrases.STOPPING)
_WANTING = word_set(builtin_phrases.WANTING)
_QUESTION_WORDS = word_set(builtin_phrases.QUESTION_WORDS)


def about_messages(norm: str) -> bool:
    return any(word in _ABOUT_MESSAGES for word in norm.split())


def _refuses_messages(norm: str) -> bool:
    """Messages named and refused: "I do not want your offers", "enough promo msgs"."""
    words = set(norm.split())
    if not words & _MESSAGING:
        return False
    return bool(words & _STOPPING) or (negated(norm) and bool(words & _WANTING))


def _asks(text: str, words: list[str]) -> bool:
    return "?" in text or "¿" in text or words[0] in _QUESTION_WORDS


def build_intents(triggers: list[TriggerSpec], with_model: bool = False) -> Intents:
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
    greetings = frozenset(p for _, p in items if is_greeting(normalise(prepare(p))))
    intents = Intents(
        build_phrases(items),
        build_phrases(opt, coverage=0.0),
        thresholds,
        priorities,
        greetings,
    )
    if with_model:
        # Not for opting out: the model finds "start sending" and "stop sending" alike.
        intents.phrases.semantic = semantic.Embeddings(intents.phrases.phrases)
    return intents
