"""`conclave serve` as a real process: serves, and SIGTERM shuts it down cleanly."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import aiohttp

from control.cli import main


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
    closing = await socket.ws.receive(20)
    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert closing.data == aiohttp.WSCloseCode.GOING_AWAY
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
