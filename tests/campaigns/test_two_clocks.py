"""Two clock processes tick through the same simulated day at once, with two real workers:
every occurrence, drip step, date fire and scheduled send reaches each contact exactly once,
counted at the provider stub."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

from chatman.campaigns import lifecycle
from chatman.timeutils import pinned
from tests.campaigns.clocked import everyone, sent, templates
from tests.conftest import ROOT, twilio_env, worker_env
from tests.factories import define, make_contact
from tests.processes import start_worker
from tests.simulated_clock import wait_idle

ZONES = ("UTC", "Europe/Berlin", "Asia/Kolkata")  # 10:00 there is 10:00, 09:00, 04:30 UTC
DAY = datetime(2027, 1, 13, tzinfo=UTC)


def test_two_clocks_over_a_simulated_day_send_nothing_twice(app, session, redis, twilio_stub):
    define(session, birthday="date")
    contacts = [
        make_contact(session, timezone=ZONES[i % 3], attributes={"birthday": "1990-01-13"} if i % 2 else {})
        for i in range(12)
    ]
    audience = [everyone(session).id]
    every_4h, d1, d2, d3, birthday, noon = templates(
        session, "every 4 hours", "drip 1", "drip 2", "drip 3", "happy birthday", "noon sale"
    )
    campaigns = [
        {
            "name": "Every 4 hours",
            "kind": "recurring",
            "template_id": every_4h,
            "recurrence": {"cron": "0 */4 * * *", "timezone": "UTC", "start": "2027-01-13"},
        },
        {
            "name": "Drip",
            "kind": "drip",
            "steps": [
                {"template_id": d1},
                {"template_id": d2, "wait": {"hours": 3}},
                {"template_id": d3, "wait": {"hours": 3}},
            ],
        },
        {
            "name": "Birthdays",
            "kind": "date",
            "template_id": birthday,
            "date_field": {"attribute": "birthday", "at": "10:00", "repeat": "yearly"},
        },
    ]
    with pinned(DAY):
        for data in campaigns:
            campaign = lifecycle.create_campaign(session, {**data, "include_segments": audience})
            session.flush()
            lifecycle.launch(session, campaign.id, now=DAY)
        scheduled = lifecycle.create_campaign(
            session, {"name": "Noon", "template_id": noon, "include_segments": audience}
        )
        session.flush()
        lifecycle.schedule(session, scheduled.id, datetime(2027, 1, 13, 12, 0), "UTC", now=DAY)
        session.commit()

    env = worker_env(app, **twilio_env(twilio_stub))
    workers = [start_worker(env) for _ in range(2)]
    try:
        clocks = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.simulated_clock", DAY.isoformat(), "23", "10", "2"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [c.communicate(timeout=900)[0] for c in clocks]
        for c, output in zip(clocks, outputs, strict=True):
            assert c.returncode == 0, output[-3000:]
        wait_idle(redis)  # what the last ticks enqueued is sent
    finally:
        logs = [w.stop() for w in workers]

    got = sent(twilio_stub)
    for i, contact in enumerate(contacts):
        # Occurrences at 04:00 to 20:00 (00:00 is the launch itself, not after it).
        want = Counter({"every 4 hours": 5, "drip 1": 1, "drip 2": 1, "drip 3": 1, "noon sale": 1})
        if i % 2:
            want["happy birthday"] = 1
        assert Counter(got[contact.phone]) == want, (contact.timezone, logs[0][-2000:])
