"""Inbound messages: trigger matching with 10,000 triggers, and the time to a reply.

Matching: 10,000 triggers of every match type (product keywords, SKU codes, order-number
regexes, fuzzy intent phrases, buttons), built into the matcher's index; 2,000 realistic
messages (capitals, typos, emoji, extra words; half aimed at a trigger, half chatter) timed
one by one through `TriggerIndex.candidates`. Baseline in the same run: the naive matcher
that loops over every trigger, testing each pattern (Python `re`, `in`, rapidfuzz's
token_set_ratio per phrase), on the first 50 messages.

Reply latency: the app as production runs it (gunicorn, one `flask worker`, the Twilio adapter
pointed at the local stub of Twilio's API, tests/twilio_stub.py), on PostgreSQL with the same
10,000 triggers. Signed inbound webhooks are posted from this process, one at a time at a
steady pace; latency = the moment the stub received the reply minus the moment the webhook
was posted. Also the webhook's own answer time (what Twilio waits for).

    python bench/inbound.py [--triggers 10000] [--messages 2000] [--replies 300] [--rate 10] [--baseline 50]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from rapidfuzz import fuzz  # noqa: E402
from redis import Redis  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from bench._common import (  # noqa: E402
    PG_URL,
    SECRET_KEY,
    Processes,
    free_port,
    fresh_app,
    median,
    table,
    wait_healthy,
)
from chatman import revisions  # noqa: E402
from chatman.messaging.normalise import normalise  # noqa: E402
from chatman.triggers.crud import REVISION  # noqa: E402
from chatman.triggers.matcher import TriggerSpec, build_index  # noqa: E402
from chatman.triggers.models import Trigger  # noqa: E402
from tests.factories import inbound_form  # noqa: E402
from tests.twilio_stub import start_stub  # noqa: E402

# Its own scratch database and Redis db: the other benchmarks may run beside it.
DB_URL = PG_URL.rsplit("/", 1)[0] + "/chatman_bench_inbound"
REDIS = os.environ.get("BENCH_INBOUND_REDIS_URL", "redis://127.0.0.1:6379/12")
ACCOUNT_SID = "AC" + "c" * 32
AUTH_TOKEN = "bench-auth-token"

_ITEMS = """
kurta saree lehenga dupatta shirt tshirt jeans trousers jacket hoodie sweater blazer dress skirt
sandal sneaker loafer heel boot slipper watch wallet belt backpack handbag sunglasses earring
necklace bangle ring perfume lipstick kajal serum shampoo conditioner facewash sunscreen mug
bedsheet pillow curtain towel blanket lamp
"""
ITEMS = _ITEMS.split()
COLOURS = ("red", "blue", "green", "black", "white", "pink", "yellow", "maroon", "navy", "beige", "olive")
INTENTS = [
    "where is my {x} order",
    "{x} size chart",
    "return my {x}",
    "is the {x} in stock",
    "{x} delivery date",
    "exchange {x} for another size",
]
CHATTER = [
    "hi",
    "ok thanks",
    "👍",
    "where is my order",
    "can you help me",
    "what are your store timings",
    "I want to return something",
    "do you deliver to pune",
    "hello?? anyone there",
    "price?",
    "is this available in xl",
    "thank you so much 🙏",
]


def make_triggers(count: int, rng: random.Random) -> list[TriggerSpec]:
    """`count` triggers spread over the match types as a large shop would have them."""
    specs = []
    kinds = ["keyword"] * 25 + ["fuzzy"] * 20 + ["exact"] * 15 + ["starts_with"] * 10
    kinds += ["contains"] * 10 + ["regex"] * 10 + ["button"] * 10
    for i in range(count):
        kind = kinds[i % len(kinds)]
        product = f"{rng.choice(COLOURS)} {rng.choice(ITEMS)} {i}"
        if kind == "keyword":
            patterns = (product, f"{rng.choice(ITEMS)}{i}")
        elif kind == "fuzzy":
            patterns = tuple(intent.format(x=f"{rng.choice(ITEMS)}{i}") for intent in rng.sample(INTENTS, 3))
        elif kind == "exact":
            patterns = (f"DIWALI{i}", f"offer {i}")
        elif kind == "starts_with":
            patterns = (f"track {rng.choice(ITEMS)}{i}", f"price of {rng.choice(ITEMS)}{i}")
        elif kind == "contains":
            patterns = (f"sku{i:05d}",)
        elif kind == "regex":
            patterns = (rf"\b(?:ord|order)[-\s#]*{i:05d}\d{{2}}\b",)
        else:
            patterns = (f"BTN_{i}",)
        threshold = 80.0 if kind == "fuzzy" else None
        specs.append(TriggerSpec(i + 1, kind, patterns, priority=rng.randint(0, 2), threshold=threshold))
    return specs


def noisy(text: str, rng: random.Random) -> str:
    """What a customer makes of a phrase: capitals, a typo, emoji, a few extra words."""
    words = text.split()
    if rng.random() < 0.4 and words:
        i = rng.randrange(len(words))
        word = words[i]
        if len(word) > 3:
            j = rng.randrange(len(word) - 1)
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]  # swapped letters
    text = " ".join(words)
    if rng.random() < 0.3:
        text = text.upper()
    if rng.random() < 0.4:
        text = (
            rng.choice(["hi ", "hello, ", "pls ", ""]) + text + rng.choice(["??", " 🙏", " please", "!!", ""])
        )
    return text


def make_messages(specs: list[TriggerSpec], count: int, rng: random.Random) -> list[tuple[str, str | None]]:
    messages: list[tuple[str, str | None]] = []
    for i in range(count):
        if i % 2:
            messages.append((noisy(rng.choice(CHATTER), rng), None))
            continue
        spec = rng.choice(specs)
        pattern = rng.choice(spec.patterns)
        if spec.match_type == "button":
            messages.append(("Yes please", pattern))
        elif spec.match_type == "regex":
            number = re.search(r"\{?(\d{5})", pattern)
            messages.append((f"where is order #{number.group(1) if number else '00000'}42 ?", None))
        elif spec.match_type == "contains":
            messages.append((f"is {pattern}-xl available", None))
        else:
            messages.append((noisy(pattern, rng), None))
    return messages


def naive_candidates(
    specs: list[TriggerSpec], compiled: dict[str, re.Pattern], text: str, payload: str | None
):
    """Every trigger tested one by one: what an index saves us from."""
    norm = normalise(text)
    found = []
    for spec in specs:
        for pattern in spec.patterns:
            if spec.match_type == "button":
                hit = payload is not None and payload.lower() == pattern.lower()
            elif spec.match_type == "regex":
                hit = compiled[pattern].search(text) is not None
            elif spec.match_type == "fuzzy":
                hit = fuzz.token_set_ratio(norm, normalise(pattern)) >= (spec.threshold or 0)
            else:
                p = normalise(pattern)
                if spec.match_type == "exact":
                    hit = norm == p
                elif spec.match_type == "contains":
                    hit = p in norm
                elif spec.match_type == "starts_with":
                    hit = norm == p or norm.startswith(p + " ")
                else:
                    hit = re.search(rf"(?<!\S){re.escape(p)}(?!\S)", norm) is not None
            if hit:
                found.append(spec.id)
                break
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_matching(triggers: int, messages: int, baseline: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    specs = make_triggers(triggers, rng)
    start = time.perf_counter()
    index = build_index(specs, revision=1)
    build_s = time.perf_counter() - start
    corpus = make_messages(specs, messages, rng)
    for text, payload in corpus[:50]:  # warm caches (the normaliser's, the CPU's)
        index.candidates(text, payload)
    times, matched = [], 0
    for text, payload in corpus:
        start = time.perf_counter()
        found = index.candidates(text, payload)
        times.append((time.perf_counter() - start) * 1000)
        matched += bool(found)
    compiled = {p: re.compile(p, re.IGNORECASE) for s in specs if s.match_type == "regex" for p in s.patterns}
    naive = []
    for text, payload in corpus[:baseline]:
        start = time.perf_counter()
        naive_candidates(specs, compiled, text, payload)
        naive.append((time.perf_counter() - start) * 1000)
    rows = [
        [
            "naive: every trigger tested",
            baseline,
            f"{median(naive):.2f}",
            f"{percentile(naive, 0.99):.2f}",
            "1x",
        ],
        [
            "index (build once per trigger set)",
            messages,
            f"{median(times):.3f}",
            f"{percentile(times, 0.99):.3f}",
            f"{median(naive) / median(times):.0f}x faster",
        ],
    ]
    print(f"\n{triggers:,} triggers, index built in {build_s:.2f} s; {matched:,} of {messages:,} matched")
    print(table(["matcher", "messages", "ms median", "ms p99", "vs naive"], rows))
    return {"match_p50_ms": median(times), "match_p99_ms": percentile(times, 0.99)}


def load_triggers(session: Session, specs: list[TriggerSpec]) -> None:
    """The bench's triggers as rows (each replies with its name) and a fallback that answers
    the rest, as a shop would have one."""
    rows = [
        {
            "id": spec.id,
            "name": f"trigger {spec.id}",
            "match_type": spec.match_type,
            "patterns": list(spec.patterns),
            "threshold": spec.threshold,
            "priority": spec.priority,
            "cooldown_s": 0,
            "action": "reply",
            "reply_body": f"answer {spec.id}",
            "is_fallback": False,
            "enabled": True,
        }
        for spec in specs
    ]
    fallback = len(specs) + 1
    rows.append(
        rows[-1]
        | {"id": fallback, "name": "fallback", "match_type": "exact", "patterns": [], "priority": 0}
        | {"reply_body": "Sorry, we did not get that", "is_fallback": True, "threshold": None}
    )
    for start in range(0, len(rows), 1000):
        session.execute(insert(Trigger), rows[start : start + 1000])
    revisions.bump(session, REVISION)
    session.commit()


def bench_replies(specs: list[TriggerSpec], replies: int, rate: float, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    app = fresh_app(DB_URL)
    db = app.extensions["chatman.db"]
    with db.sessionmaker() as session:
        load_triggers(session, specs)
    Redis.from_url(REDIS).flushdb()
    # The matching corpus: half aimed at a trigger, half chatter the fallback answers.
    corpus = make_messages(specs, replies + 20, rng)
    with tempfile.TemporaryDirectory() as logs, start_stub() as stub:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = os.environ | {
            "DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
            "REDIS_URL": REDIS,
            "SECRET_KEY": SECRET_KEY,
            "PUBLIC_BASE_URL": base,
            "SENDER_RATE_PER_S": "0",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_WHATSAPP_FROM": "+14155238886",
            "TWILIO_API_BASE_URL": stub.base_url,
        }
        procs = Processes(Path(logs), env)
        try:
            gunicorn = [sys.executable, "-m", "gunicorn", "app:app", "--bind", f"127.0.0.1:{port}"]
            procs.start("web", [*gunicorn, "--worker-class", "gthread", "--workers", "2", "--threads", "4"])
            procs.start("worker", [sys.executable, "-m", "flask", "--app", "app", "worker"])
            wait_healthy(base, procs)
            http = requests.Session()
            url = base + "/webhooks/twilio/inbound"
            validator = RequestValidator(AUTH_TOKEN)

            def post(n: int) -> tuple[str, float, float]:
                phone = f"+9197{n:08d}"
                text, payload = corpus[n % len(corpus)]
                buttons = {"ButtonPayload": payload, "ButtonText": text} if payload else {}
                form = inbound_form(phone, text, **buttons)
                headers = {"X-Twilio-Signature": validator.compute_signature(url, form)}
                sent = time.time()
                answer = http.post(url, data=form, headers=headers, timeout=15)
                if answer.status_code != 200:
                    raise BenchError(f"inbound webhook answered {answer.status_code}: {answer.text[:200]}")
                return phone, sent, time.time() - sent

            for n in range(20):  # each gunicorn worker builds its index on its first messages
                post(n)
            wait_for_stub(stub, 20)
            stub.reset()
            posted = []
            for n in range(1_000, 1_000 + replies):
                posted.append(post(n))
                time.sleep(rng.expovariate(rate))  # customers write when they write
            received = wait_for_stub(stub, replies)
            time.sleep(1)  # a second answer to anyone would arrive by now
            received = stub.messages(full=True)["messages"]
        finally:
            procs.stop_all()
    answered = {m["to"].removeprefix("whatsapp:"): m for m in received}
    if len(received) != replies or set(answered) != {phone for phone, _, _ in posted}:
        raise BenchError(f"{len(received)} replies to {len(answered)} of {replies} customers: want one each")
    webhook = [wait * 1000 for _, _, wait in posted]
    reply = [
        (datetime.fromisoformat(answered[p]["date_created"]).timestamp() - t) * 1000 for p, t, _ in posted
    ]
    rows = [
        [
            "webhook answered (TwiML)",
            replies,
            *(f"{percentile(webhook, q):.1f}" for q in (0.5, 0.95, 0.99)),
            "1x",
        ],
        [
            "reply handed to the provider",
            replies,
            *(f"{percentile(reply, q):.1f}" for q in (0.5, 0.95, 0.99)),
            f"{median(reply) / median(webhook):.1f}x",
        ],
    ]
    print(
        f"\nSigned inbound webhooks, one at a time, ~{rate:g}/s, {len(specs):,} triggers; gunicorn, 1 worker"
    )
    print(table(["from the webhook post to", "messages", "p50 ms", "p95 ms", "p99 ms", "vs webhook"], rows))
    return {"reply_p50_ms": median(reply), "reply_p95_ms": percentile(reply, 0.95)}


def wait_for_stub(stub, count: int, timeout_s: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = stub.messages(full=True)
        if seen["count"] >= count:
            return seen["messages"]
        time.sleep(0.2)
    raise BenchError(f"only {stub.messages()['count']} of {count} replies reached the stub")


class BenchError(RuntimeError):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triggers", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--baseline", type=int, default=50, help="messages through the naive matcher")
    parser.add_argument("--replies", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0, help="inbound messages per second")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    matching = bench_matching(args.triggers, args.messages, args.baseline, args.seed)
    specs = make_triggers(args.triggers, random.Random(args.seed))
    replies = bench_replies(specs, args.replies, args.rate, args.seed)
    print(f"reply_p95_ms: {replies['reply_p95_ms']:.1f}")
    print(f"match_p99_ms: {matching['match_p99_ms']:.2f}")


if __name__ == "__main__":
    main()
