"""Fixtures on real parts: SQLite and PostgreSQL (every DB test runs on both), and Redis.

Each backend's schema is built once per run by the Alembic migrations; each test then
starts from empty tables (truncation, so that other processes see the same state).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import text
from sqlalchemy.orm import Session

import chatman.models  # noqa: F401
from chatman import create_app
from chatman.auth.accounts import create_token
from chatman.config import Settings, normalise_database_url
from chatman.db import Base
from chatman.triggers import semantic

# The multilingual model's tests need `pip install ".[semantic]"`: .ci/run installs it after the
# suite has passed without it (everything works on n-grams alone) and runs them then.
collect_ignore = [] if semantic.available() else ["triggers/test_semantic.py"]

BACKENDS = [b.strip() for b in os.environ.get("CHATMAN_TEST_BACKENDS", "sqlite,postgresql").split(",")]
PG_URL = normalise_database_url(
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/test")
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Like an install's own key: random, never a value anyone could know.
SECRET_KEY = secrets.token_urlsafe(48)


def database_url(backend: str, tmp_dir) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_dir / 'chatman-test.db'}"
    if backend == "postgresql":
        return PG_URL
    raise pytest.UsageError(f"unknown backend {backend!r} in CHATMAN_TEST_BACKENDS")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def app(backend: str, tmp_path_factory) -> Iterator[Flask]:
    import flask_migrate

    settings = Settings(
        database_url=database_url(backend, tmp_path_factory.mktemp(backend)),
        redis_url=REDIS_URL,
        secret_key=SECRET_KEY,
        public_base_url="http://testserver",
    )
    app = create_app(settings)
    app.config["TESTING"] = True
    db = app.extensions["chatman.db"]
    with app.app_context():
        # Start from nothing, whatever an earlier run left, then build the schema the way
        # production does: through the migrations.
        with db.engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        flask_migrate.upgrade()
    yield app
    db.dispose()


@pytest.fixture(autouse=True)
def _clean_tables(request) -> Iterator[None]:
    yield
    if "app" not in request.fixturenames:
        return
    app: Flask = request.getfixturevalue("app")
    db = app.extensions["chatman.db"]
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.extensions["chatman.db"].sessionmaker() as session:
        yield session


@pytest.fixture
def redis() -> Iterator[Redis]:
    connection = Redis.from_url(REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()


def worker_env(app: Flask, **overrides: str) -> dict[str, str]:
    """The environment of a real worker process on the test database and Redis. Every
    setting a developer's .env could set is pinned, so tests never reach a real provider."""
    settings = app.extensions["chatman.settings"]
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": settings.secret_key,
        "PUBLIC_BASE_URL": settings.public_base_url,
        "SENDER_RATE_PER_S": "0",
        "TWILIO_ACCOUNT_SID": "",
        "TWILIO_AUTH_TOKEN": "",
        "TWILIO_WHATSAPP_FROM": "",
        "TWILIO_MESSAGING_SERVICE_SID": "",
        "SIMULATOR_CALLBACKS": "false",
    }
    return env | overrides


@pytest.fixture
def in_process_jobs(app: Flask, monkeypatch):
    """Run job functions in the test's own process, with the environment a worker would have
    (the test database and Redis); `in_process_jobs(**env)` changes settings."""
    from chatman import jobs

    def forget() -> None:
        if jobs._context.cache_info().currsize:
            jobs._context()[1].dispose()
        jobs._context.cache_clear()
        jobs._provider.cache_clear()

    def configure(**overrides: str) -> None:
        for name, value in worker_env(app, **overrides).items():
            monkeypatch.setenv(name, value)
        forget()

    configure()
    yield configure
    forget()


def worker_command() -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "app", "worker"]


@pytest.fixture
def run_worker(app: Flask):
    """Run real RQ workers (`flask worker --burst`) side by side until the queues are empty."""

    def run(timeout: float = 240, workers: int = 1, **env: str) -> subprocess.CompletedProcess:
        started = [
            subprocess.Popen(
                [*worker_command(), "--burst"],
                cwd=ROOT,
                env=worker_env(app, **env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]
        try:
            outputs = [worker.communicate(timeout=timeout) for worker in started]
        finally:
            for worker in started:
                worker.kill()
        for worker, (_, errors) in zip(started, outputs, strict=True):
            assert worker.returncode == 0, errors[-3000:]
        return subprocess.CompletedProcess(worker_command(), 0, outputs[0][0], "".join(e for _, e in outputs))

    return run


@pytest.fixture(scope="session")
def _stub_process():
    from tests.twilio_stub import start_stub

    with start_stub() as stub:
        yield stub


@pytest.fixture
def twilio_stub(_stub_process):
    """The local stand-in for Twilio's REST API (tests/twilio_stub.py), empty for each test."""
    _stub_process.reset()
    yield _stub_process
    _stub_process.reset()


TWILIO_ACCOUNT = "AC" + "f" * 32


def twilio_env(stub) -> dict[str, str]:
    """Worker settings that send through the Twilio adapter to the stub."""
    return {
        "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT,
        "TWILIO_AUTH_TOKEN": "stub-auth-token",
        "TWILIO_WHATSAPP_FROM": "+14155238886",
        "TWILIO_API_BASE_URL": stub.base_url,
    }


@pytest.fixture
def live_server(app: Flask):
    """The app served over HTTP on a free loopback port (for providers that call us back),
    with PUBLIC_BASE_URL set to that address so webhook signatures check out."""
    import threading
    from dataclasses import replace

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    original = app.extensions["chatman.settings"]
    app.extensions["chatman.settings"] = replace(original, public_base_url=url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    thread.join()
    app.extensions["chatman.settings"] = original


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def token(app: Flask) -> str:
    with app.extensions["chatman.db"].session() as session:
        _, secret = create_token(session, "tests")
    return secret


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def set_region(app: Flask):
    """Run a test with DEFAULT_REGION set (settings are immutable, so swap them)."""
    from dataclasses import replace

    original = app.extensions["chatman.settings"]

    def apply(region: str | None) -> None:
        app.extensions["chatman.settings"] = replace(original, default_region=region)

    yield apply
    app.extensions["chatman.settings"] = original


# A line per backend in the summary, so a run shows what ran on SQLite and on PostgreSQL.
_backend_of: dict[str, str] = {}
_tally: dict[str, Counter] = {}


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "postgresql: about PostgreSQL's concurrency (row locks), which SQLite does not have"
    )


def pytest_collection_modifyitems(config, items) -> None:
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        # SQLite runs one writer at a time: a test of concurrent writers means nothing there.
        if backend == "sqlite" and item.get_closest_marker("postgresql"):
            dropped.append(item)
            continue
        if backend is not None:
            _backend_of[item.nodeid] = backend
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_runtest_logreport(report) -> None:
    backend = _backend_of.get(report.nodeid, "no database")
    if report.when == "call":
        _tally.setdefault(backend, Counter())[report.outcome] += 1
    elif report.outcome == "failed":
        _tally.setdefault(backend, Counter())["error"] += 1
    elif report.outcome == "skipped":
        _tally.setdefault(backend, Counter())["skipped"] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if not _tally:
        return
    terminalreporter.section("tests per backend")
    for backend, counts in sorted(_tally.items()):
        parts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        terminalreporter.write_line(f"{backend}: {parts}")
