"""Opt-out and opt-in words: STOP makes a contact DND, START brings them back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatman.messaging.normalise import normalise
from chatman.triggers.intents import OptVerdict
from chatman.triggers.phrases import word_set

if TYPE_CHECKING:
    from chatman.triggers.matcher import TriggerIndex


@dataclass(frozen=True)
class OptWords:
    opt_out: frozenset[str]
    opt_in: frozenset[str]
    opt_out_payload: str | None = None

    @classmethod
    def of(
        cls, opt_out: Iterable[str], opt_in: Iterable[str], opt_out_payload: str | None = None
    ) -> OptWords:
        return cls(
            frozenset(normalise(w) for w in opt_out),
            frozenset(normalise(w) for w in opt_in),
            opt_out_payload.strip().lower() if opt_out_payload else None,
        )

    def classify(self, body: str | None, button_payload: str | None) -> str | None:
        """ "opt_out", "opt_in" or None. The whole message must be the word ("Stop!", "stop all"
        count; "don't stop the offers" does not)."""
        if button_payload and self.opt_out_payload and button_payload.strip().lower() == self.opt_out_payload:
            return "opt_out"
        text = normalise(body or "")
        for said in (text, _unpadded(text)):  # "stop please", "START pls" say the word too
            if said in self.opt_out:
                return "opt_out"
            if said in self.opt_in:
                return "opt_in"
        return None


# Politeness around an opt word: "please stop", "stop pls", "stop now sir".
_POLITE = word_set("please pls plz kindly now sir madam ji bhai yaar thanks thank you porfavor por favor")


def _unpadded(text: str) -> str:
    words = text.split()
    while words and words[0] in _POLITE:
        words.pop(0)
    while words and words[-1] in _POLITE:
        words.pop()
    return " ".join(words)


def opt_verdict(
    words: OptWords, index: TriggerIndex | None, body: str | None, button_payload: str | None
) -> OptVerdict:
    """The opt words and the opt-out button first; then what the message says in other words
    ("stop sending me these": opt_out; "why do you keep messaging me": opt_out_prompt; "send me
    offers again": opt_in). A tapped button is judged by its text unless a trigger handles it
    (a "Stop promotions" button with a payload of its own still opts out)."""
    said = words.classify(body, button_payload)
    if said is not None:
        return OptVerdict(said, 100.0, body, by_word=True)
    if not body or index is None or index.intents is None:
        return OptVerdict(None)
    if button_payload and index.buttons.get(button_payload.strip().lower()):
        return OptVerdict(None)
    return index.intents.opt_verdict(body)
