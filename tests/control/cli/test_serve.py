"""`conclave serve` as a real process: serves, and SIGTERM shuts it down cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest
import yaml

from control.cli import main
from tests.support.servers import OPERATOR_KEY, ConclaveServer, spawn_serve, stop_serve


async def test_serve_and_graceful_sigterm(server_process, signaling_socket):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server_process.base_url}/healthz") as response:
            assert response.status == 200
    meeting = await server_process.create_meeting("process test")
    assert meeting["join_url"].startswith(server_process.base_url + "/m/")
    socket = await signaling_socket(server_process.ws_url(meeting["meeting_id"]))
    await socket.join("ann")
    children = server_process.worker_pids()  # one SFU worker and the recorder
    commands = sorted(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[2] for pid in children)
    assert commands == [b"recorder", b"sfu.worker"], commands
    workers = children

    os.kill(server_process.pid, signal.SIGTERM)
    assert await socket.expect_close(20) == aiohttp.WSCloseCode.GOING_AWAY  # (after its credential)
    assert server_process.process.wait(20) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    log = server_process.log_text()
    assert "Traceback" not in log
    assert "shutting down" in log


def test_cli_without_command_prints_help(capsys):
    assert main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_cli_rejects_bad_config(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("http:\n  port: lots\nnonsense: 1\n")
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "http.port" in err and "nonsense" in err


def _umask(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:"))


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw.split(b"\0") if item)


@pytest.mark.process
async def test_serve_keeps_its_secrets_from_its_children_and_its_files_private(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # made by hand (or an older version) for everyone to read
    data.chmod(0o755)
    config_path = tmp_path / "conclave.yaml"
    config_path.write_text(yaml.safe_dump({
        "data_dir": str(data),
        "http": {"host": "127.0.0.1", "port": 0},
        "sfu": {"workers": 1, "port_base": 0, "listen_ip": "127.0.0.1"},
        "turn": {"mode": "off"},  # no coturn: not what this test is about
    }))  # fmt: skip
    # The operator's way: secrets in the environment (and cloud credentials lying around).
    token_secret = "token-secret-" + "x" * 40
    secrets_env = {
        "CONCLAVE_AUTH__OPERATOR_KEY": OPERATOR_KEY,
        "CONCLAVE_AUTH__TOKEN_SECRET": token_secret,
        "AWS_SECRET_ACCESS_KEY": "aws-secret-lying-around",
        "AWS_ACCESS_KEY_ID": "AKIALYINGAROUND",
    }
    server = spawn_serve(config_path, tmp_path / "serve.log", extra_env=secrets_env)
    children = server.worker_pids()
    try:
        api = ConclaveServer(server.base_url)
        await api.create_meeting("private files")  # the store, a customer, a host, a meeting
        assert _umask(server.pid) == "0077"
        assert sorted(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[2] for pid in children) == [
            b"recorder", b"sfu.worker"]  # fmt: skip
        for pid in children:
            assert _umask(pid) == "0077"
            environ = _environ(pid)
            leaked = [k for k in environ if k.startswith("CONCLAVE_") or k in secrets_env]
            assert leaked == [], (pid, leaked)
            values = "\n".join(environ.values())
            for secret in secrets_env.values():
                assert secret not in values, pid
            assert "PATH" in environ
        # DATA_DIR and what is in it: the server user's only (the recorder's part once it is up).
        for _ in range(100):
            if (data / "spool").is_dir() and (data / "recordings").is_dir():
                break
            await asyncio.sleep(0.2)
        assert data.stat().st_mode & 0o777 == 0o700
        exposed = [str(p) for p in [data, *data.rglob("*")] if p.stat().st_mode & 0o077]
        assert exposed == [], exposed
        assert (data / "conclave.db").is_file() and (data / "spool").is_dir() and (data / "recordings").is_dir()
    finally:
        stop_serve(server, children)
