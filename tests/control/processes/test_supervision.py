"""control.processes.supervision (what the worker and recorder supervisors share) and the child's side
in common.channel (open_server, serve_until_stopped), with real child processes."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import textwrap
import time

import pytest

from common.messages import Empty, Message
from control.processes import supervision as processes
from sfu import api

pytestmark = pytest.mark.process

log = logging.getLogger("test_control_processes")

# A child like sfu.worker / the recorder: opens its channel from --channel-fd, answers
# every request with EMPTY, and shuts down (slowly when told to) on SIGTERM.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from common.channel import open_server, serve_until_stopped
    from common.messages import Empty
    from sfu import api

    async def main(fd, shutdown_s, second_signal_exits):
        async def handle(message):
            return Empty()

        async def shutdown():
            print("shutting down", flush=True)
            await asyncio.sleep(shutdown_s)

        channel = await open_server(fd, handle)
        channel.notify("child", api.WorkerReady(port=1, announced_ips=[]))
        await serve_until_stopped(channel, shutdown, second_signal_exits=second_signal_exits)

    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"))
    """
)


async def start_child(shutdown_s: float = 0.0, second_signal_exits: bool = False):
    notifications: list[tuple[str, Message]] = []
    process, sock = await processes.spawn_with_channel(
        lambda fd: ([sys.executable, "-c", CHILD, str(fd), str(shutdown_s), "1" if second_signal_exits else "0"], None)
    )
    child = await processes.ChildChannel.open(process, sock, lambda entity, msg: notifications.append((entity, msg)))
    return child, notifications


async def test_a_child_serves_its_inherited_channel_and_stops_on_sigterm():
    child, notifications = await start_child()
    try:
        assert isinstance(await child.client.request(api.WorkerGetStats(), timeout=20), Empty)
        assert [(entity, type(msg)) for entity, msg in notifications] == [("child", api.WorkerReady)]
        assert not child.gone()
        await child.shut(10.0, "child", log)
        assert child.process.returncode == 0  # it shut down by itself: no SIGKILL
    finally:
        processes.kill_now([child.process.pid] if child.process.returncode is None else [])


async def test_a_child_that_ignores_sigterm_is_killed_after_the_stop_timeout():
    process, sock = await processes.spawn_with_channel(
        lambda fd: (
            [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             "print('ready', flush=True); time.sleep(60)"],
            None,
        )
    )
    sock.close()
    try:
        await asyncio.sleep(1.0)  # let it install its handler
        started = time.monotonic()
        await processes.terminate(process, 0.5, "child", log)
        assert process.returncode == -signal.SIGKILL
        assert 0.4 < time.monotonic() - started < 10
    finally:
        processes.kill_now([process.pid] if process.returncode is None else [])


async def test_a_second_signal_while_shutting_down_ends_the_child_at_once():
    child, _ = await start_child(shutdown_s=60.0, second_signal_exits=True)
    try:
        assert isinstance(await child.client.request(api.WorkerGetStats(), timeout=20), Empty)
        child.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)  # now in its (60 s) shutdown
        assert child.process.returncode is None
        child.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(child.process.wait(), 10) == 1
    finally:
        await child.shut(1.0, "child", log)


async def test_supervise_restarts_with_a_doubling_backoff_until_stopped(caplog):
    starts: list[float] = []
    restarts = 0
    stopping = False

    async def run_once() -> None:
        starts.append(time.monotonic())
        raise RuntimeError("the child died")  # logged, never raised

    def restarted() -> None:
        nonlocal restarts, stopping
        restarts += 1
        stopping = restarts >= 4

    with caplog.at_level(logging.WARNING, logger=log.name):
        await asyncio.wait_for(
            processes.supervise(
                run_once,
                label="child 7",
                log=log,
                restart_backoff_s=0.05,
                stopping=lambda: stopping,
                restarted=restarted,
            ),
            10,
        )
    assert restarts == 4 and len(starts) == 4  # stopping before a fifth start
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2  # quick failures double it
    messages = [record.getMessage() for record in caplog.records]
    assert "child 7: supervision error" in messages
    assert "child 7: restarting in 0.1 s" in messages and "child 7: restarting in 0.2 s" in messages


def test_children_inherit_only_the_allow_listed_environment():
    control = {
        "PATH": "/usr/bin",
        "HOME": "/home/conclave",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": "/srv/conclave",
        "CONCLAVE_AUTH__OPERATOR_KEY": "op-key-0123456789abcdef",
        "CONCLAVE_AUTH__TOKEN_SECRET": "t" * 40,
        "CONCLAVE_RECORDER__OPENAI_API_KEY": "sk-openai",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "AWS_ACCESS_KEY_ID": "AKID",
        "DATABASE_URL": "postgres://user:pw@db/conclave",
        "HTTPS_PROXY": "http://proxy:3128",
        "SSL_CERT_FILE": "/etc/ssl/ca.pem",
        "LC": "not a locale variable",
    }
    worker = processes.child_environment(base=control)
    assert worker == {"PATH": "/usr/bin", "HOME": "/home/conclave", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                      "PYTHONPATH": "/srv/conclave"}  # fmt: skip
    recorder = processes.child_environment(processes.RECORDER_ENVIRONMENT, base=control)
    assert recorder == {**worker, "HTTPS_PROXY": "http://proxy:3128", "SSL_CERT_FILE": "/etc/ssl/ca.pem"}
