"""Which trigger an inbound message means: an index built once per trigger set.

Stages, in order: a tapped button, the exact text and regexes are sure; when none of them
matched, the example phrases (triggers.intents: by similarity, clause by clause, with chatter
that starts nothing); when no phrase is close enough, keywords, openings, "contains" and fuzzy
phrases.

Every match type has a structure that finds its candidates without visiting each trigger:
dictionaries for exact text, whole words or phrases, message openings and button payloads;
one Aho-Corasick automaton for "contains"; one RE2 set for every regex (all patterns in one
pass); for fuzzy phrases, an index of their words, reached through a rapidfuzz scan of the
vocabulary for each word of the message. The best candidate wins: highest priority,
then the most specific match type, then the fuzzy score.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

import ahocorasick
import re2
from rapidfuzz import fuzz, process

from chatman.messaging.normalise import normalise
from chatman.triggers.intents import Intents, build_intents

# Higher is more specific: a tapped button says more than a fuzzy resemblance.
SPECIFICITY = {
    "button": 7,
    "exact": 6,
    "keyword": 5,
    "starts_with": 4,
    "contains": 3,
    "regex": 2,
    "fuzzy": 1,
    "examples": 0,
}
# Found by these stages, a trigger is meant for sure: example phrases are not compared.
SURE = frozenset(("button", "exact", "regex"))
# Chatter this close silences a keyword or fuzzy match too ("got my refund, thanks" says
# "refund"); a weaker resemblance ("I want a refund" / "got my refund, thanks") does not.
CHATTER_OVER_WORDS = 70.0


@dataclass(frozen=True)
class TriggerSpec:
    """What the matcher needs of a trigger (a snapshot, not a database row)."""

    id: int
    match_type: str
    patterns: tuple[str, ...]
    priority: int = 0
    threshold: float | None = None
    active_from: str | None = None
    active_until: str | None = None
    timezone: str | None = None
    cooldown_s: int = 0
    is_fallback: bool = False
    examples: tuple[str, ...] = ()
    example_threshold: float | None = None

    def active_at(self, now: datetime) -> bool:
        if not (self.active_from and self.active_until):
            return True
        local = now.astimezone(ZoneInfo(self.timezone or "UTC")).time()
        start, end = time.fromisoformat(self.active_from), time.fromisoformat(self.active_until)
        return start <= local < end if start <= end else local >= start or local < end  # overnight


@dataclass(frozen=True)
class Candidate:
    trigger: TriggerSpec
    score: float = 100.0
    stage: str | None = None  # how it matched: a match type or "examples"; None: its match type
    phrase: str | None = None  # the example phrase that won
    clause: str | None = None  # the part of the message it matched

    @property
    def how(self) -> str:
        return self.stage or self.trigger.match_type

    @property
    def rank(self) -> tuple[int, int, float]:
        return (self.trigger.priority, SPECIFICITY[self.how], self.score)


@dataclass
class TriggerIndex:
    revision: int
    exact: dict[str, list[TriggerSpec]] = field(default_factory=lambda: defaultdict(list))
    words: dict[str, list[TriggerSpec]] = field(default_factory=lambda: defaultdict(list))
    openings: dict[str, list[TriggerSpec]] = field(default_factory=lambda: defaultdict(list))
    buttons: dict[str, list[TriggerSpec]] = field(default_factory=lambda: defaultdict(list))
    longest_phrase: int = 1
    contains: ahocorasick.Automaton | None = None
    regexes: object | None = None  # re2.Set
    regex_triggers: list[TriggerSpec] = field(default_factory=list)
    fuzzy_words: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # word -> phrases
    fuzzy_vocabulary: list[str] = field(default_factory=list)
    fuzzy_weights: list[int] = field(default_factory=list)  # each phrase's letters (its content words)
    fuzzy_triggers: list[TriggerSpec] = field(default_factory=list)
    fallbacks: list[TriggerSpec] = field(default_factory=list)
    intents: Intents | None = None
    by_id: dict[int, TriggerSpec] = field(default_factory=dict)
    _chatty: dict[int, bool] = field(default_factory=dict)  # whose patterns are chatter themselves
    _near: dict[int, list[str]] = field(default_factory=dict)  # vocabulary by the lengths it can match

    def candidates(
        self, text: str | None, button_payload: str | None = None, complete: bool = False
    ) -> list[Candidate]:
        """Every trigger the message matches, best first (before hours and cooldowns).
        `complete`: when example phrases matched, the pattern matches follow them (for a
        trigger cooling down, or outside its hours, another may answer)."""
        if (
            not text
            or button_payload  # a tap is no sentence: its payload and patterns decide
            or self.intents is None
            or self._patterns(text, button_payload, sure_only=True)
        ):
            return self._patterns(text, button_payload)
        understood = self.intents.understand(text)
        if understood.chatter is not None and understood.chatter.score >= CHATTER_OVER_WORDS:
            # thanks or praise: a word it shares with a trigger asks for nothing, unless the
            # trigger is there to answer thanks ("thanks" -> "You're welcome!")
            return [c for c in self._patterns(text, button_payload) if self._answers_chatter(c.trigger)]
        if not understood.matches:
            return self._patterns(text, button_payload)
        found = [
            Candidate(self.by_id[m.trigger_id], m.score, "examples", m.phrase, m.clause.text)
            for m in understood.matches
        ]
        if complete:
            taken = {c.trigger.id for c in found}
            found += [c for c in self._patterns(text, button_payload) if c.trigger.id not in taken]
        return found

    def _answers_chatter(self, trigger: TriggerSpec) -> bool:
        known = self._chatty.get(trigger.id)
        if known is None:
            chatter = (self.intents.understand(p).chatter for p in trigger.patterns)
            known = self._chatty[trigger.id] = any(
                c is not None and c.score >= CHATTER_OVER_WORDS for c in chatter
            )
        return known

    def _patterns(
        self, text: str | None, button_payload: str | None, sure_only: bool = False
    ) -> list[Candidate]:
        """Matches by the triggers' patterns, ranked; `sure_only`: buttons, exact text, regexes."""
        found: dict[int, Candidate] = {}

        def add(triggers: list[TriggerSpec], score: float = 100.0) -> None:
            for trigger in triggers:
                known = found.get(trigger.id)
                if known is None or known.score < score:
                    found[trigger.id] = Candidate(trigger, score)

        if button_payload:
            add(self.buttons.get(button_payload.strip().lower(), []))
        raw = (text or "").strip()
        norm = normalise(raw) if raw else ""
        if norm:
            add(self.exact.get(norm, []))
        if norm and not sure_only:
            tokens = norm.split()
            for size in range(1, min(self.longest_phrase, len(tokens)) + 1):
                add(self.openings.get(" ".join(tokens[:size]), []))
                for start in range(len(tokens) - size + 1):
                    add(self.words.get(" ".join(tokens[start : start + size]), []))
            if self.contains is not None:
                for _, triggers in self.contains.iter(norm):
                    add(triggers)
            if self.fuzzy_triggers:
                for i, score in self._fuzzy_scores(tokens).items():
                    trigger = self.fuzzy_triggers[i]
                    if score >= (trigger.threshold or 0):
                        add([trigger], score)
        if raw and self.regexes is not None:
            add([self.regex_triggers[i] for i in self.regexes.Match(raw) or ()])
        return sorted(found.values(), key=lambda c: c.rank, reverse=True)

    def _vocabulary_near(self, length: int) -> list[str]:
        """The vocabulary's words whose length lets them reach `WORD_SIMILARITY` with a word of
        `length` letters: rapidfuzz's ratio is at most 2 * shorter / (sum of both lengths)."""
        near = self._near.get(length)
        if near is None:
            share = WORD_SIMILARITY / 100
            low, high = math.floor(length * share / (2 - share)), math.ceil(length * (2 - share) / share)
            near = self._near[length] = [w for w in self.fuzzy_vocabulary if low <= len(w) <= high]
        return near

    def _fuzzy_scores(self, tokens: list[str]) -> dict[int, float]:
        """How much of each fuzzy phrase the message says, 0-100: each of the phrase's words
        counts by its length times its best rapidfuzz similarity to a word of the message.
        Extra words in the message cost nothing ("hi, where is my order please" says all of
        "where is my order"); a missing or mistyped word of the phrase costs its share.

        Only phrases that share a (similar) word with the message are visited: a word the
        phrases use is looked up, any other (a typo, a word no phrase has) is compared with
        the vocabulary's words of a length that could reach `WORD_SIMILARITY`, in one rapidfuzz
        scan.
        """
        best: dict[str, float] = {}
        for word in set(_content_words(tokens)):
            if word in self.fuzzy_words:  # said as the phrases say it: no need to look further
                best[word] = 100.0
                continue
            for similar, score, _ in process.extract(
                word,
                self._vocabulary_near(len(word)),
                scorer=fuzz.ratio,
                score_cutoff=WORD_SIMILARITY,
                limit=None,
            ):
                if score > best.get(similar, 0):
                    best[similar] = score
        said: dict[int, float] = defaultdict(float)
        for word, score in best.items():
            letters = len(word) * score
            for phrase in self.fuzzy_words[word]:
                said[phrase] += letters
        return {phrase: total / self.fuzzy_weights[phrase] for phrase, total in said.items()}


# A message word this similar to a phrase word counts (in proportion); below, not at all.
WORD_SIMILARITY = 70.0

# Words that say nothing about intent; fuzzy phrases are compared on the others. Normalised
# like everything else ("hello" -> "helo").
_STOPWORDS_TEXT = """
a an the is are am was be to of for in on at and or i me my we our you your u ur it this that
hi hello hey hii please pls plz thanks thank ok okay can could would will do does did want
need just sir madam dear
"""
STOPWORDS = frozenset(normalise(word) for word in _STOPWORDS_TEXT.split())


def _content_words(tokens: list[str]) -> list[str]:
    words = [t for t in tokens if t not in STOPWORDS]
    return words or tokens


def build_index(
    triggers: list[TriggerSpec], revision: int = 0, semantic: bool = False, understand: bool = True
) -> TriggerIndex:
    """`semantic`: blend in the packaged multilingual model (triggers.semantic); without
    `understand`, patterns alone (no example phrases, chatter or opt-out phrases)."""
    index = TriggerIndex(revision)
    index.by_id = {t.id: t for t in triggers}
    index.intents = build_intents(triggers, semantic) if understand else None
    contains: dict[str, list[TriggerSpec]] = defaultdict(list)
    regexes = re2.Set.SearchSet(_regex_options())
    for trigger in triggers:
        if trigger.is_fallback:
            index.fallbacks.append(trigger)
            continue
        for pattern in trigger.patterns if trigger.match_type != "examples" else ():
            if trigger.match_type == "button":
                index.buttons[pattern.strip().lower()].append(trigger)
                continue
            if trigger.match_type == "regex":
                regexes.Add(pattern)
                index.regex_triggers.append(trigger)
                continue
            norm = normalise(pattern)
            if not norm:
                continue
            if trigger.match_type == "exact":
                index.exact[norm].append(trigger)
            elif trigger.match_type in ("keyword", "starts_with"):
                target = index.words if trigger.match_type == "keyword" else index.openings
                target[norm].append(trigger)
                index.longest_phrase = max(index.longest_phrase, len(norm.split()))
            elif trigger.match_type == "contains":
                contains[norm].append(trigger)
            elif trigger.match_type == "fuzzy":
                words = set(_content_words(norm.split()))
                for word in words:
                    index.fuzzy_words[word].append(len(index.fuzzy_triggers))
                index.fuzzy_weights.append(sum(len(w) for w in words))
                index.fuzzy_triggers.append(trigger)
    index.fuzzy_vocabulary = list(index.fuzzy_words)
    if contains:
        automaton = ahocorasick.Automaton()
        for norm, owners in contains.items():
            automaton.add_word(norm, owners)
        automaton.make_automaton()
        index.contains = automaton
    if index.regex_triggers:
        regexes.Compile()
        index.regexes = regexes
    index.fallbacks.sort(key=lambda t: t.priority, reverse=True)
    return index


def _regex_options():
    options = re2.Options()
    options.case_sensitive = False
    return options


def regex_error(pattern: str) -> str | None:
    """Why RE2 refuses `pattern` (it has no backreferences or lookaround), or None."""
    try:
        re2.compile(pattern, _regex_options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        if isinstance(reason, bytes):  # RE2's binding gives its message as bytes
            reason = reason.decode("utf-8", "replace")
        return str(reason) or "not a valid regular expression"
    return None
