"""Shared by the benchmarks: a fresh schema (through the migrations) on a scratch database,
tables, and the processes (web, workers, stubs) a benchmark starts and must always stop."""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO

import psycopg
from flask import Flask
from redis import Redis
from sqlalchemy import text

import chatman.models  # noqa: F401
from chatman import create_app
from chatman.config import Settings, normalise_database_url
from chatman.db import Base

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/chatman_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
# The secret key of the app a benchmark runs (and of its processes): random, like an install's.
SECRET_KEY = secrets.token_urlsafe(48)


def ensure_pg_database(url: str) -> None:
    """Create the scratch database when it does not exist (connecting to `postgres`)."""
    dbname = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            conn.execute(f'CREATE DATABASE "{dbname}"')


def fresh_app(database_url: str) -> Flask:
    import flask_migrate

    database_url = normalise_database_url(database_url)
    if database_url.startswith("postgresql"):
        ensure_pg_database(database_url)
    app = create_app(Settings(database_url=database_url, redis_url=REDIS_URL, secret_key=SECRET_KEY))
    db = app.extensions["chatman.db"]
    with app.app_context():
        with db.engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        flask_migrate.upgrade()
    return app


def check_alone(redis: Redis, database_url: str = PG_URL) -> None:
    """Benchmarks share the scratch database and Redis db by default: one running now would
    lose its tables and queue to this one, and its workers would take this one's jobs."""
    from chatman.jobs import worker_count

    if worker_count(redis):
        raise RuntimeError(
            f"RQ workers are registered on {REDIS_URL}: another benchmark is running there (set "
            "BENCH_REDIS_URL to another db, or wait a few minutes if one was killed)"
        )
    dbname = database_url.rsplit("/", 1)[1]
    admin = normalise_database_url(database_url).replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin) as conn:
        (others,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)
        ).fetchone()
    if others:
        raise RuntimeError(f"{others} session(s) use {dbname}: set BENCH_DATABASE_URL to another database")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- Processes the benchmarks start -----------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def proc_stat(pid: str) -> tuple[str, list[str]] | None:
    """A process's command name and the fields of /proc/PID/stat after it (state first)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after its closing one.
    return raw[raw.index("(") + 1 : raw.rindex(")")], raw[raw.rindex(")") + 2 :].split()


def processes() -> Iterator[tuple[int, str, list[str]]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := proc_stat(entry)):
            yield int(entry), *stat


def session_members(session_id: int) -> list[int]:
    """Every live process of a session we started. RQ forks its work horse into a process group
    of its own, so a group kill misses it; the session still holds it, even once orphaned."""
    return [pid for pid, _, fields in processes() if int(fields[3]) == session_id and fields[0] != "Z"]


class Processes:
    """Processes this benchmark started, each in a session of its own, stopped on the way out."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.started: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, IO[str]] = {}

    def start(self, name: str, command: Sequence[str]) -> subprocess.Popen:
        log = self.logs[name] = (self.log_dir / f"{name}.log").open("w")
        # A session of its own: Ctrl-C reaches only this script, which stops it in order, and
        # its members, orphans included, can be found again by session id.
        proc = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.started[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        return "\n".join((self.log_dir / f"{name}.log").read_text().splitlines()[-lines:])

    def stop(self, name: str, grace_s: float = 5.0) -> None:
        proc = self.started.pop(name)
        if proc.poll() is None:
            proc.terminate()  # gunicorn and RQ shut down gracefully on SIGTERM
            with suppress(subprocess.TimeoutExpired):
                proc.wait(grace_s)
        for pid in session_members(proc.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        self.logs.pop(name).close()

    def stop_all(self) -> None:
        for name in reversed(list(self.started)):
            self.stop(name)


SERVERS = {"postgres": "postgres", "redis-server": "redis"}  # process name: CPU table family


def session_cpu(session_id: int) -> float:
    return cpu_snapshot({"family": session_id})["family"]


def cpu_snapshot(sessions: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each family of processes we started (by session), by the
    PostgreSQL and Redis servers (by name, whoever they serve), and by the whole machine."""
    family_of = {sid: family for family, sid in sessions.items()}
    ticks = dict.fromkeys([*sessions, "postgres", "redis"], 0)
    for _, name, fields in processes():
        family = family_of.get(int(fields[3])) or SERVERS.get(name)
        if family:
            # utime, stime, and cutime, cstime: children it reaped (work horses, PG backends)
            ticks[family] += sum(int(v) for v in fields[11:15])
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    ticks |= {"machine": user + nice + system + irq + softirq, "stolen": steal}
    return {family: n / CLK_TCK for family, n in ticks.items()}


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when this script dies, even by SIGKILL, where no
    `finally` runs."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base_url: str, procs: Processes, timeout_s: float = 60) -> None:
    """Until /healthz answers and the worker has registered (callbacks would wait otherwise)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, proc in procs.started.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=2) as response:
                if json.loads(response.read()).get("workers", 0) >= 1:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no healthy app at {base_url} after {timeout_s} s:\n{procs.log_tail('web')}")
