"""CI smoke of the plain-RTP fan-out bench (bench/plainrtp): correctness only, a few seconds.

The bare relay and a real sfu.worker each forward a tiny load to 16 receivers; packets
must flow and the report (table + JSON) must be produced, and every process the bench
started must be gone afterwards. Nothing here asserts a rate or a time. Janus is tried
only where it is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.plainrtp import hotpath, janus
from tests.support.native import native_sender
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.process

ROOT = REPO_ROOT


def run_bench(tmp_path: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.plainrtp", "--smoke", "--no-pin", "--json", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout


def assert_flowed(report: dict, name: str) -> None:
    contender = report["contenders"][name]
    (phase,) = contender["fixed"].values()
    assert phase["sent_total"] > 0
    assert phase["arrived_total"] > 0 and phase["packets_out"] > 0
    assert phase["cpu_us_per_packet"] is not None
    for pid in contender["pids"]:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie_or_other(pid), f"{name} pid {pid} still runs"


def _is_zombie_or_other(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_bare_relay_and_our_worker_forward_and_the_report_is_produced(tmp_path):
    report, text = run_bench(tmp_path)
    assert set(report["contenders"]) == {"bare", "ours"}
    assert_flowed(report, "bare")
    assert_flowed(report, "ours")
    assert "| bare |" in text and "| ours |" in text
    assert report["machine"]["python"] and report["command"].startswith("python -m bench.plainrtp")


def test_the_c_relay_and_both_forwarding_paths_forward(tmp_path):
    """The kernel's floor (bench/plainrtp/crelay.c) and our worker on each path
    (sfu.native on: "ours+srtp"; off: "ours+srtp-python") in one run."""
    native_sender()  # built in place if this checkout was not pip-installed
    report, text = run_bench(tmp_path, "--only", "c-relay,ours+srtp-python,ours+srtp")
    for name in ("c-relay", "ours+srtp-python", "ours+srtp"):
        assert_flowed(report, name)
        assert f"| {name} |" in text


def test_the_simulcast_contender_forwards_each_subscriber_its_layer_with_feedback(tmp_path):
    report, text = run_bench(tmp_path, "--only", "ours+srtp-simulcast")
    assert_flowed(report, "ours+srtp-simulcast")
    contender = report["contenders"]["ours+srtp-simulcast"]
    (phase,) = contender["fixed"].values()
    # 1 / 2 / 5 packets a frame on layers 0 / 1 / 2, 5 / 5 / 6 subscribers on them: 45
    # packets out per 8 in once every subscriber has started. A smoke's window is ~80
    # packets in: a subscriber may not have started yet, and the receivers also count
    # the worker's RTCP and ICE answers, so only "more than one copy a packet" is sure.
    assert phase["packets_out"] > phase["sent_in_window"] > 0
    allocations = contender["allocations"]
    assert [spatial for spatial, _, _, _ in allocations["allocated"]] == allocations["wanted"]
    assert allocations["counters"]["transport_feedback_received"] > 0 and allocations["feedbacks_sent_by_bench"] > 0
    assert "| ours+srtp-simulcast |" in text


@pytest.mark.skipif(not janus.available(), reason="Janus is not installed (apt-get install -y janus)")
def test_janus_forwards_the_same_workload(tmp_path):
    report, text = run_bench(tmp_path, "--only", "janus")
    assert_flowed(report, "janus")
    assert "| janus |" in text


def test_the_hot_path_breakdown_runs():
    native_sender()
    result = hotpath.measure(packets=200, fanout=4)
    assert result["floors"]["protect_us"] > 0
    assert result["engine"]["srtp"]["sent"] > 0
    assert "SFU logic" in hotpath.render(result)
    assert result["engine"]["native"]["srtp"]["sent"] > 0 and result["engine"]["webrtc_native_us"] > 0
