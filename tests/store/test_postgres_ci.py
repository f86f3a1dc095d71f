"""Issue #15: the PostgreSQL tests skip with a clear message where no server is reachable, and
``.ci/run`` fails if they were skipped under CI. Checked on a real pytest run of one
PostgreSQL test, with ``PBX_BRIDGE_TEST_POSTGRES`` pointed at a dead port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.postgres import ENV
from tests.reliability.process import free_port

ROOT = Path(__file__).resolve().parents[2]
ONE_PG_TEST = "tests/store/test_storage_contract.py::test_notify_wakes_another_process"


def run_pytest(**env: str) -> subprocess.CompletedProcess[str]:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    base = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", ONE_PG_TEST],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**base, ENV: dead, **env},
    )


def test_without_a_server_the_postgres_tests_skip_saying_why_and_fail_under_ci() -> None:
    local = run_pytest()
    assert local.returncode == 0, local.stdout + local.stderr
    assert re.search(r"SKIPPED .*no PostgreSQL at postgresql://\S+:\d+/test", local.stdout)
    assert ENV in local.stdout  # the message says what to set
    ci = run_pytest(CI="1")
    assert ci.returncode != 0 and "Under CI the PostgreSQL tests must run" in ci.stdout


def test_ci_run_sets_ci() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r'^export CI="\$\{CI:-1\}"', script, re.M)
    assert ".venv/bin/python -m pytest" in script
