"""Example phrases: how close a message comes to the ways a marketer said customers ask.

Every phrase becomes a vector of its character n-grams (2 to 4 letters, across word
boundaries, filler words set aside), weighted by TF-IDF over all phrases of the index; a
message scores by the cosine and by how much of the phrase it says, so "mera order kab
aayega" meets "order kab aayega" and "wher is my oder" still shares most of "where is my
order". Plain Python: no dependency, no model.

A message is matched clause by clause (`clauses`): "I don't want to cancel, just tell me where
it is" is two requests, and the one after "just" is what the customer wants.

Speed with tens of thousands of phrases: the n-grams most phrases share (" th", "my ") say
little and have long lists, so candidates come from the rarer n-grams, and the common ones are
added only to those candidates' scores. A phrase that shares nothing but common n-grams with a
message could not reach a threshold anyway.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from chatman.messaging.normalise import normalise

SIZES = (2, 3, 4)
# Emoji that say something: a wave is a greeting, a thumbs-up an "ok".
EMOJI_WORDS = {
    "👋": " hi. ",
    "🙋": " hi. ",
    "🙏": " thanks ",
    "👍": " ok ",
    "👌": " ok ",
    "😂": " lol ",
    "🤣": " lol ",
    "❤": " love it ",
    "😍": " love it ",
    "🥰": " love it ",
}
_EMOJI = re.compile("|".join(map(re.escape, EMOJI_WORDS)))
_CONTRACTION = re.compile(r"(\w)n['’]t\b", re.IGNORECASE)
# A message longer than this is judged on its beginning (a pasted essay would take long).
MAX_CHARS = 1000
MAX_CLAUSES = 12
# Where a message splits into clauses: sentence punctuation, and words that join requests.
_PUNCTUATION = re.compile(r"[.!?;,\n\u0964]+|\s-\s")


def word_set(text: str) -> frozenset[str]:
    """The words of `text`, normalised."""
    return frozenset(normalise(word) for word in text.split())


JOINERS = word_set("and also then or plus aur phir y tambien o")
# A clause after these is what the customer wants instead ("not X, just Y").
CONTRASTS = word_set("but just only actually instead rather lekin magar bas sirf pero sino solo")
NEGATIONS = word_set(
    "not no never dont cant wont doesnt didnt isnt arent havent hasnt nahi nahin na mat nunca ni"
    " nope नहीं नही मत ना"
)
# A message's opening greeting is a clause of its own, with the way the customer addresses us.
GREETINGS = word_set("hi hii hello hey hlo hola namaste namaskar salaam buenas oye hiya yo") | {
    normalise(g)
    for g in (
        "good morning",
        "good afternoon",
        "good evening",
        "buenos dias",
        "buenas tardes",
        "buenas noches",
    )
}
ADDRESSES = word_set("sir madam mam maam ji bhai team there all dear bro amigo")
# Words that carry no request: fillers of voice notes and politeness in three languages.
FILLERS = word_set(
    """um umm uh uhh hmm erm so like basically okay ok yeah yes haan han arre arey bhai yaar ji
    sir madam mam maam please pls plz kindly bro dude dear porfa porfavor favor bueno pues oye este
    the a an is are was were be been it its this that these those i me my am you your u ur we our
    can could would will do does did just really very actually hai ka ki ke ko se"""
)


def prepare(text: str) -> str:
    """Emoji that carry meaning become words, "don't" is "dont" as customers type it; the
    rest is left to `normalise`. Only the first `MAX_CHARS` characters count."""
    return _CONTRACTION.sub(r"\1nt", _EMOJI.sub(lambda m: EMOJI_WORDS[m.group(0)], text[:MAX_CHARS]))


@dataclass(frozen=True)
class Clause:
    text: str  # normalised
    position: int
    after_contrast: bool


def negated(norm: str) -> bool:
    return any(word in NEGATIONS for word in norm.split())


def clauses(text: str) -> list[Clause]:
    """The message's clauses, split on punctuation and on joining words, in order."""
    found: list[Clause] = []
    for piece in _PUNCTUATION.split(prepare(text)):
        words: list[str] = []
        contrast = False
        tokens = normalise(piece).split()
        opening = _greeting_length(tokens)
        if opening and opening < len(tokens):  # "hey um are there any offers": two clauses
            found.append(Clause(" ".join(tokens[:opening]), len(found), False))
            tokens = tokens[opening:]
        for word in tokens:
            if word in JOINERS or word in CONTRASTS:
                if words:
                    found.append(Clause(" ".join(words), len(found), contrast))
                    words = []
                contrast = contrast or word in CONTRASTS
                continue
            words.append(word)
        if words:
            found.append(Clause(" ".join(words), len(found), contrast))
    return found[:MAX_CLAUSES]


def is_greeting(norm: str) -> bool:
    """Whether the text is a greeting and nothing more ("good evening sir")."""
    tokens = norm.split()
    return bool(tokens) and _greeting_length(tokens) == len(tokens)


def _greeting_length(tokens: list[str]) -> int:
    """How many of the first words are a greeting ("hi", "good evening sir"), or 0."""
    for size in (2, 1):
        if " ".join(tokens[:size]) in GREETINGS:
            while size < len(tokens) and tokens[size] in ADDRESSES:
                size += 1
            return size
    return 0


def content(norm: str) -> str:
    """The words that say what is asked; all of them when fewer than two would be left ("hi",
    "how are you": a lone word is too little to compare)."""
    words = [w for w in norm.split() if w not in FILLERS]
    return " ".join(words) if len(words) >= 2 else norm


def grams(norm: str) -> Counter[str]:
    padded = f" {content(norm)} "
    return Counter(padded[i : i + size] for size in SIZES for i in range(len(padded) - size + 1))


@dataclass(frozen=True)
class Hit:
    """The best phrase of one owner (a trigger, or a built-in class) for one text."""

    owner: Hashable
    score: float  # 0-100
    phrase: str


@dataclass
class PhraseIndex:
    """Phrases, each with an owner; `best` tells each owner's best phrase for a text."""

    owners: list[Hashable] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)
    negated: list[bool] = field(default_factory=list)
    vectors: list[dict[str, float]] = field(default_factory=list)
    postings: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # (phrase, weight)
    idf: dict[str, float] = field(default_factory=dict)
    unseen_idf: float = 1.0
    # The share of the score that is how much of the phrase the text says (the rest is the
    # cosine): a long clause that says a short phrase whole still scores.
    coverage: float = 0.7
    semantic: object | None = None  # triggers.semantic.Embeddings of the phrases, when installed

    def __len__(self) -> int:
        return len(self.phrases)

    def scores(self, norm: str) -> dict[int, float]:
        """Cosine and coverage (0-100) of `norm` with the phrases that share a rarer n-gram
        with it (at most `CANDIDATES` of them, the closest on those n-grams)."""
        query = self._vector(grams(norm))
        if not query:
            return {}
        rare, frequent = [], {}
        for gram, weight in query.items():
            postings = self.postings.get(gram)
            if postings is not None:
                if len(postings) > COMMON:
                    frequent[gram] = weight
                else:
                    rare.append((weight, postings))
        found: dict[int, float] = defaultdict(float)
        covered: dict[int, float] = defaultdict(float)  # how much of the phrase the text says
        for weight, postings in rare:
            for i, w in postings:
                found[i] += weight * w
                covered[i] += w * w
        if len(found) > CANDIDATES:
            keep = heapq.nlargest(CANDIDATES, found, key=found.__getitem__)
            found = {i: found[i] for i in keep}
        if frequent:
            for i in found:
                vector = self.vectors[i]
                # the smaller side is walked: a phrase has tens of n-grams, a long message hundreds
                shared = vector.keys() & frequent.keys()
                for gram in shared:
                    w = vector[gram]
                    found[i] += frequent[gram] * w
                    covered[i] += w * w
        mix = self.coverage
        return {i: 100.0 * ((1 - mix) * score + mix * covered[i]) for i, score in found.items()}

    def best(self, norm: str, raw: str | None = None) -> list[Hit]:
        """Each owner's best phrase for the text, best first. A phrase whose polarity differs
        ("I don't want to cancel" / "cancel my order") counts for less."""
        scores = self.scores(norm)
        if self.semantic is not None:
            scores = self.semantic.blend(scores, raw if raw is not None else norm)
        is_negated = negated(norm)
        best: dict[Hashable, Hit] = {}
        for i, score in scores.items():
            if self.negated[i] != is_negated:
                score *= NEGATION_FACTOR
            owner = self.owners[i]
            known = best.get(owner)
            if known is None or known.score < score:
                best[owner] = Hit(owner, score, self.phrases[i])
        return sorted(best.values(), key=lambda h: h.score, reverse=True)

    def _vector(self, counts: Counter[str]) -> dict[str, float]:
        weights = {}
        for gram, n in counts.items():
            weights[gram] = (1.0 + math.log(n)) * self.idf.get(gram, self.unseen_idf)
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {g: w / norm for g, w in weights.items()} if norm else {}


# Phrases scored in full for one text, at most: the rest share too little with it.
CANDIDATES = 32
# An n-gram in more phrases than this says little: it adds to candidates, it finds none.
COMMON = 128
# A phrase of the other polarity keeps this share of its score.
NEGATION_FACTOR = 0.6


def build_phrases(items: Iterable[tuple[Hashable, str]], coverage: float = 0.7) -> PhraseIndex:
    """An index of (owner, phrase) pairs; phrases that normalise to nothing are left out."""
    index = PhraseIndex(coverage=coverage)
    counted: list[Counter[str]] = []
    frequency: Counter[str] = Counter()
    for owner, phrase in items:
        norm = normalise(prepare(phrase))
        if not norm:
            continue
        counts = grams(norm)
        index.owners.append(owner)
        index.phrases.append(phrase)
        index.negated.append(negated(norm))
        counted.append(counts)
        frequency.update(counts.keys())
    total = len(counted)
    index.idf = {g: math.log((1 + total) / (1 + df)) + 1.0 for g, df in frequency.items()}
    index.unseen_idf = math.log(1 + total) + 1.0
    postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for i, counts in enumerate(counted):
        vector = index._vector(counts)
        index.vectors.append(vector)
        for gram, weight in vector.items():
            postings[gram].append((i, weight))
    index.postings = dict(postings)
    return index
