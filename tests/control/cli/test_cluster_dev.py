"""`conclave cluster dev --nodes 3` as an operator runs it: Redis, PostgreSQL and three
nodes that know each other; the operator key in a file, never on the screen; a meeting
created through one node is placed on the cluster; Ctrl-C stops every process it started
and removes its temporary directory."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from control.cli.local_servers import postgres_bin
from tests.support.paths import REPO_ROOT

pytestmark = [
    pytest.mark.process,
    pytest.mark.timeout(240),
    pytest.mark.skipif(postgres_bin() is None, reason="needs PostgreSQL (scripts/test installs it)"),
]

NODES = 3
READY = "conclave cluster dev: ready"


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports."""
    for first in range(21000, 30000, 37):
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError("no free consecutive ports")


def read_until(process: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    fd = process.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and marker.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
    text = seen.decode(errors="replace")
    assert marker in text, f"no {marker!r} within {timeout}s; exit {process.poll()}; output:\n{text}"
    return text


def call(url: str, key: str, method: str = "GET", body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=20) as answer:
        return json.loads(answer.read() or b"null")


def test_a_trial_cluster_of_three_nodes_starts_and_stops_cleanly():
    port = consecutive_free_ports(NODES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    process = subprocess.Popen(
        [sys.executable, "-m", "control.cli", "cluster", "dev", "--nodes", str(NODES), "--port", str(port)],
        cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        shown = read_until(process, READY, 180)
        key_file = Path(re.search(r"operator key: in (\S+)", shown).group(1))
        key = key_file.read_text().strip()
        assert key and key not in shown and oct(key_file.stat().st_mode & 0o777) == "0o600"
        node_pids = [int(pid) for pid in re.findall(r"\(pid (\d+),", shown)]
        assert len(node_pids) == NODES
        urls = [f"http://127.0.0.1:{port + i}" for i in range(NODES)]
        status = call(f"{urls[-1]}/api/v1/cluster", key)
        assert sorted(n["node_id"] for n in status["nodes"]) == [f"node-{i + 1}" for i in range(NODES)]
        assert sorted(n["public_url"] for n in status["nodes"]) == urls

        # One store for all: a customer made through the last node is seen by the first.
        made = call(f"{urls[-1]}/api/v1/customers", key, "POST", {"name": "Trial"})
        listed = call(f"{urls[0]}/api/v1/customers", key)
        assert made["customer"]["id"] in [c["id"] for c in listed["customers"]]
        root = key_file.parent
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        process.stdout.close()
    assert code == 0
    for pid in node_pids:  # every node it started has exited (and been reaped by it)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not root.exists()  # its temporary directory went with it
