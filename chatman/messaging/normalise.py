"""Text as the matcher compares it: what customers type varies in ways that mean nothing.

Case, accents ("café" / "cafe"), stretched letters ("hiiii", "pleeease"), punctuation,
emoji and spacing are all dropped. Patterns go through the same function, so "good" and
"goood" (both "god") still meet.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_STRETCH = re.compile(r"([^\W\d_])\1+")  # a letter repeated: one is enough


@lru_cache(maxsize=65_536)
def _char(ch: str) -> str:
    category = unicodedata.category(ch)
    if category[0] in "PSZC":  # punctuation, symbols (emoji), separators, controls
        return " "
    return ch.lower()


def normalise(text: str) -> str:
    out = []
    latin = False
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.category(ch) == "Mn":
            # An accent on a Latin letter ("é" = "e" + accent) means little in a chat; in
            # Devanagari or Arabic the marks are the vowels, and stay.
            if not latin:
                out.append(ch)
            continue
        latin = ch < "\u0250"
        out.append(_char(ch))
    return " ".join(_STRETCH.sub(r"\1", "".join(out)).split())
