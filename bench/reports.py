"""A campaign's report and its 30-day time series over a ledger of 1M messages and 3M status
events, against a plain COUNT(*) over that ledger; and the peak memory of its CSV export.

    python bench/reports.py [--messages 1000000] [--repeat 7]

A scratch PostgreSQL database (through the migrations) gets, in SQL, `--messages` contacts
and one campaign run with a message each, spread over the last 30 days: about 8 % skipped
(dnd, missing_variable), 10 % failed (63016, 63049, 131049, 63024), and of the rest 15 %
sent, 25 % delivered and 60 % read, with a reply from 10 % and a click from 5 % of the
delivered; and the status callbacks those rows imply in `message_events`: queued for each
one handed over (Twilio reports it for a messaging service), then sent, delivered, read or
undelivered, about 3 per message. The counters and the 15-minute rollups are then what the running system
keeps: the ledger's recount (`counters.recount`, `series.recount`) inserted as their rows
(plus the unsquashed deltas of a last hour of activity: one row per counter touched), and
`reports.verify` checks them against the ledger before anything is timed.

Timed, each `--repeat` times, through the API (Flask's test client, a token):
- report: GET /campaigns/{id}/report (every counter, per run and step);
- timeseries: GET /reports/timeseries?campaign_id={id}&preset=last_30_days&granularity=day
  in Asia/Kolkata;
- count(*): SELECT count(*) FROM messages WHERE campaign_id = {id}, the baseline a report
  that scanned the ledger would cost at least.
Medians are reported with their ratio to the baseline. Then the export: a child process
streams GET /campaigns/{id}/export.csv (every recipient) to /dev/null and reports its peak RSS
(VmHWM) and its peak before the request (the app loaded); the rows it wrote are checked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from bench._common import PG_URL, REDIS_URL, SECRET_KEY, check_alone, fresh_app, median, table  # noqa: E402

DAYS = 30


def build(app, messages: int) -> int:
    from chatman.ledger import counters, series
    from chatman.ledger.models import CampaignSeries, CampaignStat
    from chatman.reports.verify import verify

    db = app.extensions["chatman.db"]
    with db.sessionmaker() as session:
        session.execute(
            text(
                """
                INSERT INTO contacts (phone, attributes, dnd, created_at, updated_at)
                SELECT '+9190' || lpad(g::text, 8, '0'), '{}'::jsonb, false, now(), now()
                FROM generate_series(1, :n) g
                """
            ),
            {"n": messages},
        )
        campaign_id = session.execute(
            text(
                "INSERT INTO campaigns (name, kind, status, created_at, updated_at) "
                "VALUES ('bench', 'one_time', 'completed', now(), now()) RETURNING id"
            )
        ).scalar_one()
        step_id = session.execute(
            text(
                "INSERT INTO campaign_steps (campaign_id, position, body, delay_s) "
                "VALUES (:c, 0, 'Hi, see https://shop.example/sale', 0) RETURNING id"
            ),
            {"c": campaign_id},
        ).scalar_one()
        run_id = session.execute(
            text(
                "INSERT INTO campaign_runs (campaign_id, occurrence_at, occurrence_key, status, "
                "frozen_through, created_at) VALUES (:c, now() - interval '30 days', 'bench', "
                "'completed', 0, now()) RETURNING id"
            ),
            {"c": campaign_id},
        ).scalar_one()
        # r: a uniform draw per row decides its outcome; t: when it was handed over.
        session.execute(
            text(
                """
                INSERT INTO messages (campaign_id, run_id, step_id, contact_id, purpose, status,
                    skip_reason, provider_sid, error_code, attempts, lookups, submitted_at,
                    sent_at, delivered_at, read_at, failed_at, replied_at, clicked_at, created_at)
                SELECT :c, :r, :s, c.id, 'campaign', o.status, o.skip_reason,
                    CASE WHEN o.status <> 'skipped' THEN 'SM' || lpad(c.id::text, 32, '0') END,
                    o.code, 1, 0,
                    CASE WHEN o.status <> 'skipped' THEN t END,
                    CASE WHEN o.status IN ('sent', 'delivered', 'read') THEN t + interval '5 seconds' END,
                    CASE WHEN o.status IN ('delivered', 'read') THEN t + interval '20 seconds' END,
                    CASE WHEN o.status = 'read' THEN t + interval '40 minutes' END,
                    CASE WHEN o.status = 'failed' THEN t + interval '10 seconds' END,
                    CASE WHEN o.status IN ('delivered', 'read') AND r2 < 0.10 THEN t + interval '1 hour' END,
                    CASE WHEN o.status IN ('delivered', 'read') AND r2 >= 0.95
                        THEN t + interval '2 hours' END,
                    t
                FROM (
                    SELECT id, random() AS r, random() AS r2,
                        now() - interval '30 days' + (id::float / :n) * interval '29 days' AS t
                    FROM contacts
                ) c
                CROSS JOIN LATERAL (
                    SELECT CASE
                        WHEN c.r < 0.08 THEN 'skipped' WHEN c.r < 0.18 THEN 'failed'
                        WHEN c.r < 0.18 + 0.82 * 0.15 THEN 'sent'
                        WHEN c.r < 0.18 + 0.82 * 0.40 THEN 'delivered' ELSE 'read' END AS status,
                    CASE WHEN c.r < 0.05 THEN 'dnd' WHEN c.r < 0.08 THEN 'missing_variable' END
                        AS skip_reason,
                    CASE WHEN c.r >= 0.08 AND c.r < 0.18 THEN
                        (ARRAY['63016', '63049', '131049', '63024'])[1 + floor((c.r - 0.08) * 40)::int]
                        END AS code
                ) o
                """
            ),
            {"c": campaign_id, "r": run_id, "s": step_id, "n": messages},
        )
        for status, column, condition in (
            ("queued", "submitted_at", "submitted_at IS NOT NULL"),
            ("sent", "sent_at", "sent_at IS NOT NULL OR status = 'failed'"),
            ("delivered", "delivered_at", "delivered_at IS NOT NULL"),
            ("read", "read_at", "read_at IS NOT NULL"),
            ("undelivered", "failed_at", "failed_at IS NOT NULL"),
        ):
            code = "error_code" if status == "undelivered" else "NULL"
            session.execute(
                text(
                    f"""
                    INSERT INTO message_events (provider_sid, status, error_code, payload, applied,
                        received_at, applied_at)
                    SELECT provider_sid, CAST(:status AS varchar), {code},
                        '{{}}'::jsonb, true, coalesce({column}, submitted_at),
                        coalesce({column}, submitted_at) + interval '1 second'
                    FROM messages WHERE campaign_id = :c AND ({condition})
                    """
                ),
                {"status": status, "c": campaign_id},
            )
        session.commit()
        for model, rows in (
            (CampaignStat, counters.recount(session, campaign_id)),
            (CampaignSeries, series.recount(session, campaign_id)),
        ):
            if model is CampaignStat:
                values = [
                    {"campaign_id": c, "run_id": r, "step_id": s, "metric": m, "value": v, "squashed": True}
                    for (c, r, s, m), v in rows.items()
                ]
            else:
                values = [
                    {"campaign_id": c, "bucket_at": b, "metric": m, "value": v, "squashed": True}
                    for (c, b, m), v in rows.items()
                ]
            session.execute(insert(model), values)
        # A last hour of activity not squashed yet: a +1 / -1 pair per counter touched.
        pairs = [
            {"campaign_id": campaign_id, "run_id": run_id, "step_id": step_id, "metric": m, "value": v}
            for m in ("sent", "delivered", "read", "replied", "failed:63049")
            for v in (1, -1)
        ]
        session.execute(insert(CampaignStat), [{**p, "squashed": False} for p in pairs * 50])
        session.commit()
        session.execute(text("ANALYZE"))
        session.commit()
        result = verify(session, campaign_id)
        assert not result.differences, result.differences[:5]
    return campaign_id


def timed(call, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, it starts afresh at exec,
    not with the forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def export_child(campaign_id: int, token: str) -> None:
    """In a child process: stream the export to /dev/null; print RSS figures and rows."""
    from chatman import create_app
    from chatman.config import Settings

    app = create_app(Settings(database_url=PG_URL, redis_url=REDIS_URL, secret_key=SECRET_KEY))
    client = app.test_client()
    before = peak_rss_mb()
    response = client.get(
        f"/api/v1/campaigns/{campaign_id}/export.csv",
        headers={"Authorization": f"Bearer {token}"},
        buffered=False,
    )
    lines = 0
    with open(os.devnull, "w") as sink:
        for chunk in response.response:
            text_chunk = chunk.decode() if isinstance(chunk, bytes) else chunk
            lines += text_chunk.count("\n")
            sink.write(text_chunk)
    peak = peak_rss_mb()
    print(json.dumps({"before_mb": before, "peak_mb": peak, "lines": lines, "status": response.status_code}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--export-child", nargs=2, metavar=("CAMPAIGN", "TOKEN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_child(int(args.export_child[0]), args.export_child[1])
        return
    check_alone(Redis.from_url(REDIS_URL))
    from chatman.auth.accounts import create_token

    app = fresh_app(PG_URL)
    started = time.perf_counter()
    campaign_id = build(app, args.messages)
    db = app.extensions["chatman.db"]
    with db.sessionmaker() as session:
        _, token = create_token(session, "bench")
        session.commit()
        events = session.execute(text("SELECT count(*) FROM message_events")).scalar_one()
    print(f"built {args.messages:,} messages and {events:,} events in {time.perf_counter() - started:.0f} s")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def report() -> None:
        answer = client.get(f"/api/v1/campaigns/{campaign_id}/report", headers=headers)
        assert answer.status_code == 200 and answer.get_json()["counts"]["targeted"] == args.messages

    def timeseries() -> None:
        answer = client.get(
            "/api/v1/reports/timeseries",
            query_string={
                "campaign_id": campaign_id,
                "preset": "last_30_days",
                "granularity": "day",
                "timezone": "Asia/Kolkata",
            },
            headers=headers,
        )
        assert answer.status_code == 200 and sum(answer.get_json()["series"][0]["sent"]) > 0

    def count() -> None:
        with db.sessionmaker() as session:
            n = session.execute(
                text("SELECT count(*) FROM messages WHERE campaign_id = :c"), {"c": campaign_id}
            ).scalar_one()
        assert n == args.messages

    report(), timeseries(), count()  # warm
    results = {
        name: timed(call, args.repeat)
        for name, call in (("report", report), ("timeseries", timeseries), ("count(*)", count))
    }
    baseline = median(results["count(*)"])
    rows = [
        (
            name,
            f"{median(times):.1f}",
            f"{min(times):.1f}",
            f"{max(times):.1f}",
            f"{median(times) / baseline:.3f}",
        )
        for name, times in results.items()
    ]
    print(table(("query", "median ms", "min ms", "max ms", "x count(*)"), rows))
    child = subprocess.run(
        [sys.executable, __file__, "--export-child", str(campaign_id), token],
        capture_output=True,
        text=True,
        check=True,
    )
    export = json.loads(child.stdout.strip().splitlines()[-1])
    assert export["status"] == 200 and export["lines"] == args.messages + 1, export
    print(
        table(
            ("export", "rows", "RSS before MB", "peak RSS MB"),
            [
                (
                    "export.csv",
                    f"{export['lines'] - 1:,}",
                    f"{export['before_mb']:.0f}",
                    f"{export['peak_mb']:.0f}",
                )
            ],
        )
    )
    print(f"report_ms: {median(results['report']):.1f}")
    print(f"timeseries_ms: {median(results['timeseries']):.1f}")
    print(f"count_ms: {baseline:.1f}")
    print(f"export_peak_rss_mb: {export['peak_mb']:.0f}")


if __name__ == "__main__":
    main()
