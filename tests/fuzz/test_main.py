"""`python -m tests.fuzz` end to end, small: a real target runs its inputs and passes, the
self-test target fails and its reproducer is saved, named and replays the failure; the
Hypothesis engine does the same where atheris is missing (and here, when forced)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.fuzz.__main__ import atheris_available
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.process  # child processes

ENGINES = ["hypothesis"] + (["atheris"] if atheris_available() else [])


def fuzz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.fuzz", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


@pytest.mark.parametrize("engine", ENGINES)
def test_a_campaign_reports_rates_and_saves_what_fails(tmp_path, engine):
    report = tmp_path / "report.json"
    done = fuzz("--engine", engine, "--parser", "dtls", "--parser", "_selftest", "--count", "300", "--time-limit", "60",
                "--out", str(tmp_path / "work"), "--json", str(report))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # the self-test fails on purpose
    results = {r["parser"]: r for r in json.loads(report.read_text())["results"]}
    assert results["dtls"]["inputs"] >= 300 and not results["dtls"]["failures"] and results["dtls"]["rate"] > 0
    assert re.search(r"^dtls\s+" + engine + r"\s+\d+", done.stdout, re.MULTILINE), done.stdout
    (failure,) = results["_selftest"]["failures"]
    assert "selftest" in failure["error"] and failure["file"].startswith(str(tmp_path / "work"))
    assert f"--reproduce {failure['file']}" in done.stdout

    replay = fuzz("--parser", "_selftest", "--reproduce", failure["file"])
    assert replay.returncode == 1 and "RuntimeError: selftest" in replay.stderr
