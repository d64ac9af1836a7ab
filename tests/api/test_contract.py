"""The OpenAPI document and the code agree: schemathesis (every check, its coverage, fuzzing
and stateful phases, a bounded number of examples) runs against the API served over HTTP,
once per database. A failure prints schemathesis' report with a curl line for each case."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Enough to cover every operation and its links, and fit CI's time (about 30 s a database).
EXAMPLES = os.environ.get("SCHEMATHESIS_EXAMPLES", "30")
SEED = os.environ.get("SCHEMATHESIS_SEED", "1")  # fixed, so that CI is reproducible


def test_the_api_does_what_its_openapi_document_says(live_server, token, redis, tmp_path):
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{live_server}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--no-shrink",
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-3000:]
    assert "passed" in done.stdout and "Stateful" in done.stdout
