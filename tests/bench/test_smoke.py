"""CI smoke of the load generator: a few seconds of `fanout` with two subscribers.

`python -m bench run fanout -k 2` as a subprocess starts its own `conclave serve` and its
client processes, all on 127.0.0.1. Correctness only: everyone joins, packets flow end
to end and arrive in sequence, the report is printed and written, every process it
started is gone afterwards. No rate or time is asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.process

RUN_TIMEOUT_S = 100


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_fanout_smoke_run_produces_a_report(tmp_path):
    out = tmp_path / "report.json"
    env = dict(os.environ)
    env["CONCLAVE_BENCH_CACHE"] = str(tmp_path / "cache")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "bench", "run", "fanout", "-k", "2",
            "--duration", "3", "--warmup", "1", "--size", "320x180", "--fps", "15", "--video-kbps", "300",
            "--json", str(out),
        ],
        cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        for pid in _descendants(process.pid):  # the server, its workers, the clients
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"bench run did not finish: {stderr.decode()[-3000:]}") from None
    text = stdout.decode()
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert "packets/s out of the SFU" in text and "join time" in text, text

    report = json.loads(out.read_text())
    assert report["scenario"] == "fanout" and report["joined"] == report["participants"] == 3
    assert report["loss"]["received"] > 0 and report["loss"]["subscribers_receiving"] == 2
    assert {"lost", "loss_pct", "gaps"} <= set(report["loss"])  # loss is reported, not judged
    assert report["join_time_ms"]["count"] == 2  # both subscribers got a keyframe
    assert report["checks"]["srtp_failed"] == 0 and report["checks"]["unknown_ssrc"] == 0
    assert report["latency_us"]["samples"] > 0
    # Two subscribers × audio + video, and every participant's consumer of the announcer.
    assert report["workers"] and report["workers"][0]["consumers"] == 2 * 2 + 3
    assert report["cpu_us_per_packet_out"] is not None

    started = [w["pid"] for w in report["workers"]] + report["generator"]["pids"]
    assert not [pid for pid in started if _alive(pid)], "a process the bench started outlived it"
