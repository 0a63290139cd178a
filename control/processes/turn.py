"""The managed coturn: control starts `turnserver`, reads its log, restarts it when it
dies, and stops it by PID at shutdown (turn.mode managed; control.processes.turn_settings
says what it is given).

coturn has no channel to control: it is "up" while its process runs once it has opened
its listeners. Debian's coturn has no Prometheus exporter, so what Conclave exports of it
(`conclave_turn_*`, control.metrics) comes from its log on stdout: each allocation is one
"session N: new, ..." line and ends with a "session N: closed ..." line. Unknown lines are
ignored; every line is passed to control's log at debug level only (they name users).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import time
from collections.abc import Sequence

from control.processes import supervision
from control.processes.turn_secrets import MeetingTurnSecrets
from control.processes.turn_settings import (
    TURN_DB,
    TurnSettings,
    coturn_command,
    ice_servers,
    state_dir_of,
    write_coturn_config,
)

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
# Open allocations tracked at most (a session id per entry): a log we misread can never
# grow control's memory without bound.
MAX_TRACKED = 100_000
LAST_LINES = 20  # shown when coturn exits, to say why

_NEW = re.compile(r"\bsession (\d+): new, realm=")
_CLOSED = re.compile(r"\bsession (\d+): closed\b")
_PEER_DENIED = re.compile(r"A peer IP \S+ denied in the range")
_LISTENING = re.compile(r"\b(UDP|TCP|TLS|DTLS) listener opened on")
_AUTH_REFUSED = re.compile(r"check_stun_auth: Cannot find credentials|\b401: Unauthorized.*user <[^>]+>")


class TurnLog:
    """What coturn's log says: open allocations, allocations and refusals so far."""

    def __init__(self) -> None:
        self.open_sessions: set[str] = set()
        self.allocations_total = 0
        self.auth_failures_total = 0
        self.peers_denied_total = 0
        self.listening = False

    def feed(self, line: str) -> None:
        if match := _NEW.search(line):
            self.allocations_total += 1
            if len(self.open_sessions) < MAX_TRACKED:
                self.open_sessions.add(match.group(1))
        elif match := _CLOSED.search(line):
            self.open_sessions.discard(match.group(1))
        elif _AUTH_REFUSED.search(line):
            self.auth_failures_total += 1
        elif _PEER_DENIED.search(line):
            self.peers_denied_total += 1
        elif _LISTENING.search(line):
            self.listening = True

    @property
    def allocations(self) -> int:
        return len(self.open_sessions)

    def restarted(self) -> None:
        """A new coturn process: the old one's allocations are gone with it."""
        self.open_sessions.clear()
        self.listening = False


class TurnSupervisor:
    """Runs the managed coturn for control's life (nothing in other modes)."""

    def __init__(
        self,
        settings: TurnSettings,
        data_dir: str,
        *,
        restart_backoff_s: float = 1.0,
        command: Sequence[str] | None = None,  # None: turnserver -c DATA_DIR/turn/turnserver.conf
    ) -> None:
        self.settings = settings
        self._data_dir = data_dir
        self._restart_backoff_s = restart_backoff_s
        self._command = None if command is None else list(command)
        self.log = TurnLog()
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        self.secrets = MeetingTurnSecrets(os.path.join(state_dir_of(data_dir), TURN_DB), settings.secret)

    @property
    def managed(self) -> bool:
        return self.settings.mode == "managed"

    @property
    def up(self) -> bool:
        process = self.process
        return process is not None and process.returncode is None and self.log.listening

    @property
    def pid(self) -> int | None:
        process = self.process
        return None if process is None or process.returncode is not None else process.pid

    async def start(self) -> None:
        """Write coturn's configuration and start supervising it (does not wait for it)."""
        if not self.managed:
            return
        path = write_coturn_config(self.settings, self._data_dir)
        self.secrets.reset()
        if self._command is None:
            self._command = coturn_command(path)
        self._tasks.append(asyncio.create_task(self._supervise(), name="turn"))

    def ice_servers(self, live_session_id: str | None, participant_id: str, now: float,
                    ends_at: float | None) -> list[dict]:  # fmt: skip
        """`joined.ice_servers` for a participant: with the managed coturn, signed with the
        meeting's own secret (valid while the meeting is live), else the server's."""
        if not self.settings.on:
            return []
        secret = None
        if self.managed:
            if live_session_id is None:  # not live: nobody is joined to it
                return []
            secret = self.secrets.grant(live_session_id)
        return ice_servers(self.settings, participant_id, now, ends_at, secret)

    def meeting_ended(self, live_session_id: str | None) -> None:
        """The meeting's credentials stop working."""
        if self.managed and live_session_id is not None:
            self.secrets.revoke(live_session_id)

    async def wait_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.up and time.monotonic() < deadline and not self._stopping:
            await asyncio.sleep(0.05)
        return self.up

    async def stop(self) -> None:
        self._stopping = True
        if self.process is not None:
            await supervision.terminate(self.process, STOP_TIMEOUT_S, "turnserver", log)
        await supervision.cancel_all(self._tasks)

    def kill_now(self) -> None:
        pid = self.pid
        supervision.kill_now([] if pid is None else [pid])

    async def _supervise(self) -> None:
        await supervision.supervise(
            self._run_once, label="turnserver", log=log, restart_backoff_s=self._restart_backoff_s,
            stopping=lambda: self._stopping, restarted=self._restarted,
        )  # fmt: skip

    def _restarted(self) -> None:
        self.restarts += 1

    async def _run_once(self) -> None:
        assert self._command is not None
        self.log.restarted()
        # Its environment is the allow-listed one: coturn needs none of control's secrets
        # (its own comes from its 0600 configuration file).
        process = await asyncio.create_subprocess_exec(
            *self._command,
            env=supervision.child_environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches control only; control stops it
        )
        self.process = process
        log.info("turnserver: started pid %d (%s)", process.pid, ", ".join(self.settings.urls))
        try:
            await self._read(process)
        finally:
            await supervision.terminate(process, STOP_TIMEOUT_S, "turnserver", log)
            self.log.restarted()
        if not self._stopping:
            log.error("turnserver: pid %d exited with code %s; its last lines:\n%s",
                      process.pid, process.returncode, "\n".join(self._last_lines))  # fmt: skip

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while raw := await process.stdout.readline():
            line = raw.decode("utf-8", "replace").rstrip()
            was_up = self.log.listening
            self.log.feed(line)
            self._last_lines.append(line)
            log.debug("turnserver: %s", line)
            if self.log.listening and not was_up:
                log.info("turnserver: listening (pid %d)", process.pid)
        await process.wait()
