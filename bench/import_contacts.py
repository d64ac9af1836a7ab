"""Import 100k generated CSV rows through the streamed importer, on SQLite and PostgreSQL.

Baseline, measured in the same run: the straightforward way, one create_contact() call
(and one INSERT) per row, on the first rows of the same file.

    python bench/import_contacts.py [--rows 100000] [--repeat 3] [--baseline-rows 3000]
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from bench._common import PG_URL, fresh_app, median, table  # noqa: E402
from chatman.contacts.crud import create_contact  # noqa: E402
from chatman.contacts.csv_import import import_contacts  # noqa: E402
from chatman.contacts.models import Contact  # noqa: E402
from chatman.errors import DomainError  # noqa: E402

CITIES = ["Mumbai", "Pune", "Delhi", "Bengaluru", "Chennai", "Kolkata", "Jaipur"]


def generate(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["phone", "name", "timezone", "city", "orders", "vip", "signup"])
        for i in range(rows):
            # about 1% duplicate spellings and 1% invalid numbers, as real lists have
            n = rng.randrange(rows) if i % 100 == 7 else i
            phone = f"+91 98{n:08d}" if i % 100 != 13 else f"12{n}"
            out.writerow(
                [
                    phone,
                    f"Customer {i}",
                    "Asia/Kolkata",
                    rng.choice(CITIES),
                    rng.randrange(50),
                    rng.choice(["true", "false"]),
                    f"202{rng.randrange(6)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                ]
            )


def run_import(url: str, path: Path, workers: int = 1) -> tuple[float, object, int]:
    app = fresh_app(url)
    db = app.extensions["chatman.db"]
    with db.sessionmaker() as session, path.open("rb") as f:
        start = time.perf_counter()
        report = import_contacts(session, f, default_region=None, batch_size=1000, workers=workers)
        elapsed = time.perf_counter() - start
        stored = session.scalar(select(func.count()).select_from(Contact))
    db.dispose()
    return elapsed, report, stored


def run_baseline(url: str, path: Path, rows: int) -> float:
    app = fresh_app(url)
    db = app.extensions["chatman.db"]
    with db.sessionmaker() as session, path.open(newline="") as f:
        reader = csv.DictReader(f)
        start = time.perf_counter()
        for i, row in enumerate(reader):
            if i == rows:
                break
            attrs = {
                "city": row["city"],
                "orders": int(row["orders"]),
                "vip": row["vip"] == "true",
                "signup": row["signup"],
            }
            try:
                create_contact(
                    session,
                    {
                        "phone": row["phone"],
                        "name": row["name"],
                        "timezone": row["timezone"],
                        "attributes": attrs,
                    },
                    None,
                )
                session.commit()
            except DomainError:
                session.rollback()
        elapsed = time.perf_counter() - start
    db.dispose()
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-rows", type=int, default=3000)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    # What `flask contacts import` uses for a file of this size.
    cli_workers = min(os.cpu_count() or 1, 4)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.csv"
        generate(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        backends = {"sqlite": f"sqlite:///{tmp}/bench.db", "postgresql": PG_URL}
        results, rows = {}, []
        for name, url in backends.items():
            baseline = run_baseline(url, path, args.baseline_rows)
            rows.append([name, "baseline: create_contact() per row", "", "", "", f"{baseline:,.0f}", "1x"])
            rates: dict[int, list[float]] = {1: [], cli_workers: []}
            for _ in range(args.repeat):  # interleaved, so both see the same machine
                for workers in rates:
                    elapsed, report, stored = run_import(url, path, workers)
                    rates[workers].append(args.rows / elapsed)
            for workers, measured in rates.items():
                rows.append(
                    [
                        name,
                        f"import_contacts, {workers} parsing process(es)",
                        f"{report.created:,} / {report.merged + report.updated:,} / {report.failed:,}",
                        f"{stored:,}",
                        f"{min(measured):,.0f}",
                        f"{median(measured):,.0f}",
                        f"{median(measured) / baseline:.0f}x",
                    ]
                )
            results[name] = median(rates[cli_workers])
        print(
            f"CSV import of {args.rows:,} rows ({size_mb:.1f} MB, ~1% repeated numbers, ~1% invalid); "
            f"median of {args.repeat} runs; baseline over the first {args.baseline_rows:,} rows"
        )
        print(
            table(
                [
                    "backend",
                    "method",
                    "created / dupes / rejected",
                    "in db",
                    "rows/s min",
                    "rows/s median",
                    "vs baseline",
                ],
                rows,
            )
        )
    print(f"import_rows_per_s_sqlite: {results['sqlite']:.0f}")
    print(f"import_rows_per_s: {results['postgresql']:.0f}")


if __name__ == "__main__":
    main()
