"""`conclave doctor` (control/cli/doctor.py): its pure parts with bytes and /proc texts,
then the real command against a real `conclave serve` (self-signed HTTPS, redirect port,
a fixed worker port, the managed coturn), and against nothing."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from config import Config, HttpConfig, SfuConfig, TurnConfig
from control.cli import doctor
from control.cli.tls import fingerprints
from tests.support.servers import OPERATOR_KEY, REPO_ROOT, spawn_serve, stop_serve
from tests.support.turn import coturn_available, free_port, relay_range


def test_stun_binding_request_and_its_success_answer():
    tid = bytes(range(12))
    request = doctor.stun_binding_request(tid)
    assert request == bytes.fromhex("000100002112a442") + tid
    success = bytes.fromhex("010100002112a442") + tid
    assert doctor.is_binding_success(success, tid)
    assert not doctor.is_binding_success(success, bytes(12))  # another transaction
    assert not doctor.is_binding_success(bytes.fromhex("011100002112a442") + tid, tid)  # an error answer
    assert not doctor.is_binding_success(success[:19], tid)


UDP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:A0EA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0
  124: 00000000:0D96 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0
  125: 0100007F:1F90 0200007F:1F91 01 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0
"""
UDP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
   1: 00000000000000000000000001000000:9C41 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0
"""


def test_bound_udp_ports_from_proc_net():
    bound = doctor.bound_udp_ports([UDP, UDP6])
    assert bound == {("127.0.0.1", 41194), ("0.0.0.0", 3478), ("::1", 40001)}  # a connected socket is not "bound"
    assert doctor.port_is_bound(bound, "127.0.0.1", 41194)
    assert doctor.port_is_bound(bound, "10.0.0.5", 3478)  # bound on every address
    assert not doctor.port_is_bound(bound, "10.0.0.5", 41194)
    assert not doctor.port_is_bound(bound, "127.0.0.1", 8080)


TCP = """  sl  local_address rem_address   st tx_queue rx_queue  tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C41 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 30 10 -1
"""


def test_listening_tcp_ports_from_proc_net():
    assert doctor.listening_tcp_ports([TCP]) == {("127.0.0.1", 40000)}  # an established one is not listening


def test_what_a_client_is_offered(tmp_path):
    cfg = Config(
        data_dir=str(tmp_path),
        sfu=SfuConfig(workers=2, port_base=40000, listen_ip="10.0.0.5", announced_ips=("203.0.113.10",)),
        turn=TurnConfig(mode="external", urls=("turn:turn.example.com:3478?transport=udp",), secret="s" * 20),
    )
    assert doctor.offered(cfg) == [
        "ICE host candidates: udp 203.0.113.10 port 40000, 40001 (one port per worker)",
        "ICE host candidates: tcp (passive) 203.0.113.10 port 40000, 40001 (one port per worker)",
        "TURN: turn:turn.example.com:3478?transport=udp",
    ]
    off = Config(data_dir=str(tmp_path), turn=TurnConfig(mode="off"), http=HttpConfig())
    assert doctor.offered(off)[-1] == "TURN: none (turn.mode: off)"


def run_doctor(config_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run([sys.executable, "-m", "control.cli", "doctor", "--config", str(config_path)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip


async def wait_ready(server, timeout: float = 30.0) -> None:
    """Until /readyz says so (the recorder starts after the server prints its URL)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # only readiness here
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        while time.monotonic() < deadline:
            async with session.get(f"{server.base_url}/readyz") as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError("the server did not become ready")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.process
@pytest.mark.timeout(120)
@pytest.mark.skipif(not coturn_available(), reason="needs coturn (apt-get install coturn)")
async def test_doctor_checks_a_running_server_and_fails_without_one(tmp_path):
    https_port, redirect_port, worker_port = free_port(), free_port(), free_udp_port()
    turn = {"mode": "managed", "port": free_port(), "tls_port": free_port(), "allow_loopback_peers": True,
            **relay_range()}  # fmt: skip
    config = tmp_path / "conclave.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "http": {"host": "127.0.0.1", "port": https_port, "tls": "self-signed",
                 "public_url": f"https://127.0.0.1:{https_port}", "redirect_port": redirect_port},
        "sfu": {"workers": 1, "port_base": worker_port, "listen_ip": "127.0.0.1"},
        "turn": turn,
        "auth": {"operator_key": OPERATOR_KEY},
    }))  # fmt: skip

    server = spawn_serve(config, tmp_path / "serve.log")
    try:
        await wait_ready(server)
        result = run_doctor(config)
    finally:
        stop_serve(server)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    sha256, _ = fingerprints(tmp_path / "data" / "tls" / "self-signed.crt")
    for line in (
        f"ok    HTTPS answers on 127.0.0.1:{https_port}: ready, every worker up (1), store and recorder up",
        f"ok    HTTP port {redirect_port} redirects to https://127.0.0.1:{https_port}/",
        f"ok    worker 0: UDP 127.0.0.1:{worker_port} is bound",
        f"ok    worker 0: ICE-TCP 127.0.0.1:{worker_port} is listening",
        f"ok    TURN answers: turn:127.0.0.1:{turn['port']}?transport=udp",
        f"ok    TURN answers: turn:127.0.0.1:{turn['port']}?transport=tcp",
        f"ok    TURN answers: turns:127.0.0.1:{turn['tls_port']}?transport=tcp",
        f"  ICE host candidates: udp 127.0.0.1 port {worker_port} (one port per worker)",
        f"  ICE host candidates: tcp (passive) 127.0.0.1 port {worker_port} (one port per worker)",
    ):  # fmt: skip
        assert line in out.splitlines(), f"{line!r} not in:\n{out}"
    # The certificate `serve` made, as it printed it; a year to go.
    assert re.search(rf"^ok    HTTPS self-signed certificate valid for 127\.0\.0\.1, 36[45] days left "
                     rf"\(SHA-256 fingerprint {sha256}\)$", out, re.M), out  # fmt: skip

    # The server stopped: every check fails, each naming what is missing.
    result = run_doctor(config)
    assert result.returncode == 1, result.stdout
    assert f"FAIL  nothing answers on 127.0.0.1:{https_port}" in result.stdout
    assert f"FAIL  worker 0: nothing is bound to UDP 127.0.0.1:{worker_port}" in result.stdout
    assert f"FAIL  TURN does not answer: turn:127.0.0.1:{turn['port']}?transport=tcp" in result.stdout


@pytest.mark.process
def test_bad_settings_are_named(tmp_path):
    config = tmp_path / "conclave.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "sfu": {"port_base": "forty"}}))
    result = run_doctor(config)
    assert result.returncode == 2
    assert "sfu.port_base" in result.stderr
