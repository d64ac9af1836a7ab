"""Count a 3-rule dynamic segment over 1M contacts in PostgreSQL.

The count runs the SQL that Chatman compiles from the segment's rules. Baselines from the
same run: a bare COUNT(*) of every contact (the floor of a full scan) and the naive way,
loading every contact and testing the rules in Python.

    python bench/segments.py [--contacts 1000000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, text  # noqa: E402

from bench._common import PG_URL, fresh_app, median, table  # noqa: E402
from chatman.contacts import segments  # noqa: E402
from chatman.contacts.attributes import define_attribute  # noqa: E402
from chatman.contacts.models import Contact  # noqa: E402

RULES = {
    "all": [
        {"field": "attributes.city", "op": "in", "value": ["Mumbai", "Pune"]},
        {"field": "attributes.orders", "op": "gte", "value": 10},
        {"field": "dnd", "op": "eq", "value": False},
    ]
}

FILL = """
INSERT INTO contacts (phone, name, attributes, timezone, dnd, created_at, updated_at)
SELECT '+9198' || lpad(g::text, 8, '0'),
       'Customer ' || g,
       jsonb_build_object(
           'city', (ARRAY['Mumbai','Pune','Delhi','Bengaluru','Chennai','Kolkata','Jaipur'])[1 + g % 7],
           'orders', (g::bigint * 7919) % 50,
           'vip', g % 5 = 0,
           'signup', to_char(date '2021-01-01' + (g % 1500), 'YYYY-MM-DD')),
       'Asia/Kolkata', g % 23 = 0, now() - make_interval(days => g % 700), now()
FROM generate_series(1, :n) AS g
"""


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return median(times), result


def python_count(session) -> int:
    """The naive way: every contact into Python, rules tested row by row."""
    count = 0
    rows = session.execute(select(Contact.attributes, Contact.dnd).execution_options(yield_per=10_000))
    for attributes, dnd in rows:
        if attributes.get("city") in ("Mumbai", "Pune") and attributes.get("orders", -1) >= 10 and not dnd:
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    logging.disable(logging.INFO)

    app = fresh_app(PG_URL)
    db = app.extensions["chatman.db"]
    start = time.perf_counter()
    with db.session() as session:
        session.execute(text(FILL), {"n": args.contacts})
        for name, type_ in (("city", "string"), ("orders", "number"), ("vip", "boolean"), ("signup", "date")):
            define_attribute(session, name, type_)
        segment = segments.create_segment(session, {"name": "bench", "kind": "dynamic", "rules": RULES})
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE contacts"))
    build_s = time.perf_counter() - start

    with db.sessionmaker() as session:
        all_s, total = timed(lambda: session.scalar(select(func.count()).select_from(Contact)), args.repeat)
        seg_s, (count, _) = timed(lambda: segments.preview_segment(session, segment.id, 0), args.repeat)
        naive_s, naive = timed(lambda: python_count(session), 1)
    assert naive == count, (naive, count)
    print(f"{args.contacts:,} contacts built in {build_s:.1f} s; medians of {args.repeat} runs")
    print(
        table(
            ["query", "rows counted", "seconds", "vs segment count"],
            [
                ["COUNT(*) of all contacts (floor)", f"{total:,}", f"{all_s:.3f}", f"{all_s / seg_s:.2f}x"],
                ["3-rule segment, compiled SQL", f"{count:,}", f"{seg_s:.3f}", "1.00x"],
                [
                    "3-rule segment, rules in Python (naive)",
                    f"{naive:,}",
                    f"{naive_s:.3f}",
                    f"{naive_s / seg_s:.1f}x",
                ],
            ],
        )
    )
    print(f"segment_count_s: {seg_s:.3f}")
    db.dispose()


if __name__ == "__main__":
    main()
