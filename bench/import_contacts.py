"""Import 100k generated CSV rows through the streamed importer, on SQLite and PostgreSQL.

Baseline, measured in the same run: the straightforward way, one create_contact() call
(and one INSERT) per row, on the first rows of the same file.

    python bench/import_contacts.py [--rows 100000] [--repeat 3] [--baseline-rows 3000]
"""

from __future__ import annotations

import argparse
import csv
import logging
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


def run_import(url: str, path: Path) -> tuple[float, object, int]:
    app = fresh_app(url)
    db = app.extensions["chatman.db"]
    with db.sessionmaker() as session, path.open("rb") as f:
        start = time.perf_counter()
        report = import_contacts(session, f, default_region=None, batch_size=1000)
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

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.csv"
        generate(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        backends = {"sqlite": f"sqlite:///{tmp}/bench.db", "postgresql": PG_URL}
        results, rows = {}, []
        for name, url in backends.items():
            rates = []
            for _ in range(args.repeat):
                elapsed, report, stored = run_import(url, path)
                rates.append(args.rows / elapsed)
            baseline = run_baseline(url, path, args.baseline_rows)
            results[name] = median(rates)
            rows.append(
                [
                    name,
                    args.rows,
                    f"{size_mb:.1f}",
                    report.created,
                    report.merged + report.updated,
                    report.failed,
                    stored,
                    f"{median(rates):,.0f}",
                    f"{min(rates):,.0f}",
                    f"{baseline:,.0f}",
                    f"{median(rates) / baseline:.0f}x",
                ]
            )
        print(
            f"CSV import, {args.rows:,} rows, median of {args.repeat} runs; baseline = one "
            f"create_contact() per row over {args.baseline_rows:,} rows"
        )
        print(
            table(
                [
                    "backend",
                    "rows",
                    "MB",
                    "created",
                    "dupes",
                    "rejected",
                    "in db",
                    "rows/s median",
                    "rows/s min",
                    "baseline rows/s",
                    "speed-up",
                ],
                rows,
            )
        )
    print(f"import_rows_per_s_sqlite: {results['sqlite']:.0f}")
    print(f"import_rows_per_s: {results['postgresql']:.0f}")


if __name__ == "__main__":
    main()
