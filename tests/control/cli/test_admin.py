"""`conclave customer|host|meeting ...` against a real `conclave serve` subprocess: readable
tables, exit codes 0 (done), 1 (the server refused, its message printed), 2 (usage)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from control.cli import main
from tests.support.accounts_client import Api, HostAccount, make_meeting
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.process


def run(capsys, server, *args: str) -> tuple[int, str, str]:
    """`conclave ARGS --server URL --config FILE` in this process (the key comes from the
    data directory the config names)."""
    config = str(Path(server.log_path).parent / "conclave.yaml")
    code = main([*args, "--server", server.base_url, "--config", config])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def field(output: str, name: str) -> str:
    match = re.search(rf"^{name}\s+(\S+)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_operator_cli_end_to_end(server_process, capsys):
    code, out, err = run(capsys, server_process, "customer", "create", "Acme Corp", "--limit", "max_concurrent_meetings=3",
                         "--limit", "recording_allowed=no")
    assert code == 0, err
    customer_id, api_key = field(out, "id"), field(out, "api_key")
    assert api_key.startswith("ck_") and "shown only now" in err

    code, out, _ = run(capsys, server_process, "customer", "list")
    assert code == 0
    header, *rows = out.strip().splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "CREATED_AT"]
    assert any(row.startswith(customer_id) and "Acme Corp" in row and "active" in row for row in rows)
    assert any("Default" in row for row in rows)

    code, out, err = run(capsys, server_process, "host", "create", "--customer", customer_id,
                         "--email", "ann@acme.example", "--name", "Ann")
    assert code == 0, err
    host_id, password = field(out, "id"), field(out, "password")
    code, out, _ = run(capsys, server_process, "host", "list", "--customer", customer_id)
    assert code == 0 and "ann@acme.example" in out and host_id in out

    # The host signs in with the printed password and schedules a meeting.
    api = Api(server_process.base_url)

    async def schedule() -> dict:
        login = await api.ok("POST", "/auth/login", json={"email": "ann@acme.example", "password": password})
        return await make_meeting(api, HostAccount(host_id, customer_id, "ann@acme.example", login["token"]))

    meeting = asyncio.run(schedule())
    number = meeting["meeting_number"]
    code, out, _ = run(capsys, server_process, "meeting", "list", "--customer", customer_id)
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["MEETING_NUMBER", "TITLE", "STATUS"]
    assert number in out and "scheduled" in out

    code, out, _ = run(capsys, server_process, "meeting", "remove-content", number)
    assert code == 0 and f"meeting {number}: removed 0 chat message(s)" in out

    code, out, _ = run(capsys, server_process, "host", "suspend", host_id)
    assert code == 0 and "is suspended" in out
    code, out, _ = run(capsys, server_process, "customer", "suspend", customer_id)
    assert code == 0 and f"customer {customer_id} (Acme Corp) is suspended" in out
    code, out, _ = run(capsys, server_process, "customer", "unsuspend", customer_id)
    assert code == 0 and "is active" in out
    code, out, _ = run(capsys, server_process, "customer", "rotate-key", customer_id)
    assert code == 0 and field(out, "api_key") != api_key

    code, out, _ = run(capsys, server_process, "host", "delete", host_id)
    assert code == 0 and "deleted" in out
    code, out, _ = run(capsys, server_process, "customer", "delete", customer_id)
    assert code == 0

    # API errors: exit 1 with the server's message.
    code, out, err = run(capsys, server_process, "customer", "suspend", customer_id)
    assert code == 1 and out == ""
    assert "no such customer (not_found, HTTP 404)" in err
    code, _, err = run(capsys, server_process, "customer", "create", "X", "--limit", "bogus=1")
    assert code == 1 and "invalid_field" in err and "bogus" in err


def test_operator_key_sources_and_failures(server_process, capsys, monkeypatch):
    config = str(Path(server_process.log_path).parent / "conclave.yaml")
    key = server_process.operator_key

    server = ["--server", server_process.base_url]
    assert main(["customer", "list", *server, "--operator-key", key]) == 0
    # The settings' own variable, which `conclave serve` reads too.
    monkeypatch.setenv("CONCLAVE_AUTH__OPERATOR_KEY", key)
    assert main(["customer", "list", *server]) == 0
    capsys.readouterr()

    assert main(["customer", "list", *server, "--operator-key", "w" * 30]) == 1
    assert "invalid credentials (unauthorized, HTTP 401)" in capsys.readouterr().err

    monkeypatch.delenv("CONCLAVE_AUTH__OPERATOR_KEY")
    missing = Path(config).parent / "nothing.yaml"
    missing.write_text(f"data_dir: {Path(config).parent / 'elsewhere'}\n")
    assert main(["customer", "list", *server, "--config", str(missing)]) == 2
    assert "no operator key" in capsys.readouterr().err

    assert main(["customer", "list", "--server", "http://127.0.0.1:9", "--operator-key", key]) == 1
    assert "cannot reach the server" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    for argv in (["customer"], ["customer", "frobnicate"], ["host", "create", "--email", "a@b.c"], ["meeting", "list", "--status", "odd"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2, argv
    capsys.readouterr()


def test_exit_codes_of_the_real_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    usage = subprocess.run([sys.executable, "-m", "control.cli", "host"], env=env, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2
    unreachable = subprocess.run(
        [sys.executable, "-m", "control.cli", "meeting", "list", "--server", "http://127.0.0.1:9", "--operator-key", "k" * 20],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert unreachable.returncode == 1 and "cannot reach the server" in unreachable.stderr
