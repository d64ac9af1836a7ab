"""Real worker and clock processes for end-to-end tests, and killing them as a crash would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import ROOT, worker_command


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except FileNotFoundError:
        return []


class Process:
    """A `flask worker` or `flask clock`, its output kept in a file for when a test fails."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=self.log, start_new_session=True
        )

    def kill(self) -> None:
        """SIGKILL, as a crash of the machine would: the worker, which runs its jobs itself, and
        its scheduler process, with no chance to clean up."""
        for pid in [*children(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        for pid in children(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.log.seek(0)
        output = self.log.read().decode(errors="replace")
        self.log.close()
        return output


def start_worker(env: dict[str, str]) -> Process:
    return Process(worker_command(), env)


def start_clock(env: dict[str, str]) -> Process:
    return Process([sys.executable, "-m", "flask", "--app", "app", "clock"], env)
