"""Admin UI fixtures: a signed-in test client, and for browser tests Debian's Chromium driven
by pytest-playwright against the app served over HTTP, with a real worker and clock."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import expect

from chatman.auth.accounts import create_user
from tests.conftest import ROOT, worker_env
from tests.processes import start_clock, start_worker

ADMIN_EMAIL = "marketer@example.com"
ADMIN_PASSWORD = "a long enough password"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Screenshots of each screen a browser test visits; README shows some of them.
ARTEFACTS = Path(ROOT) / "test-artefacts" / "screens"


@pytest.fixture
def admin_user(app: Flask) -> tuple[str, str]:
    with app.extensions["chatman.db"].session() as session:
        create_user(session, ADMIN_EMAIL, ADMIN_PASSWORD)
    return ADMIN_EMAIL, ADMIN_PASSWORD


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html) or re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token on the page"
    return next(g for g in match.groups() if g)


@pytest.fixture
def admin(app: Flask, admin_user, redis):
    """A test client signed in as a marketer; `admin.csrf` is a token for its posts."""
    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    answer = client.post(
        "/admin/login",
        data={"email": admin_user[0], "password": admin_user[1], "csrf_token": csrf_of(page)},
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)
    client.csrf = csrf_of(client.get("/admin/").get_data(as_text=True))
    return client


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # playwright cannot download a browser here; Debian's Chromium, offline and quiet.
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture
def services(app: Flask, live_server: str, redis) -> Iterator[str]:
    """A real worker and clock for the served app (simulator callbacks on); yields its URL."""
    env = worker_env(
        app,
        PUBLIC_BASE_URL=live_server,
        CLOCK_INTERVAL_S="0.5",
        # A network that delivers every message, once and in order, so that figures are exact.
        SIMULATOR_CALLBACKS="true",
        SIMULATOR_DELAY_S="0.2",
        SIMULATOR_FAILURE_RATE="0",
        SIMULATOR_DUPLICATE_RATE="0",
        SIMULATOR_DISORDER_RATE="0",
    )
    worker, clock = start_worker(env), start_clock(env)
    yield live_server
    for name, process in (("clock", clock), ("worker", worker)):
        print(f"--- {name} ---\n{process.stop()[-3000:]}")  # shown when the test failed


class Screens:
    """Saves a full-page screenshot of each screen under test-artefacts/screens."""

    def __init__(self, page, prefix: str) -> None:
        self.page, self.prefix = page, prefix
        ARTEFACTS.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str) -> Path:
        path = ARTEFACTS / f"{self.prefix}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def signed_in(page, services: str, admin_user, backend: str):
    """A browser page signed in to the admin; every dialog a page opens is recorded in
    `page.dialogs` (a script injected through data would show up there)."""
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    page.goto(f"{services}/admin/login")
    page.fill("input[name=email]", admin_user[0])
    page.fill("input[name=password]", admin_user[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{services}/admin/")
    page.base = services
    page.screens = Screens(page, backend)
    return page
