"""Ingest helpers for tests: the webrtcbin WHIP client (tests/support/whip_gst.py) as a
subprocess of the system python3, read line by line and stopped by PID; REST shortcuts for
the host's ingest routes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

from tests.support.paths import REPO_ROOT

SYSTEM_PYTHON = "/usr/bin/python3"
WHIP_GST = REPO_ROOT / "tests" / "support" / "whip_gst.py"


def gstreamer_available() -> bool:
    """The system python3 with GStreamer's webrtcbin (scripts/test installs them)."""
    import subprocess

    probe = ("import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None); "
             "assert Gst.ElementFactory.find('webrtcbin') and Gst.ElementFactory.find('vp8enc')")  # fmt: skip
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class GstWhipPublisher:
    """`/usr/bin/python3 whip_gst.py URL TOKEN`: its events (JSON lines) in `events`."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.process: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self.output: list[str] = []  # everything else it printed (GStreamer warnings)
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self) -> GstWhipPublisher:
        self.process = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON, str(WHIP_GST), self.url, self.token,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, "GST_DEBUG": "1"},
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").strip()
            try:
                self.events.append(json.loads(line))
            except ValueError:
                if line:
                    self.output.append(line)
            self._changed.set()

    async def wait_event(self, event: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        """The first event named `event` (with these field values)."""

        async def seen() -> dict[str, Any]:
            while True:
                for found in self.events:
                    if found.get("event") == event and all(found.get(k) == v for k, v in fields.items()):
                        return found
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"the WHIP client exited before {event}: {self.events} {self.output[-20:]}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(seen(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {event} {fields} from the WHIP client: {self.events} {self.output[-20:]}") from None

    async def answered(self, timeout: float = 20.0) -> dict[str, Any]:
        """The 201 (or the refusal: AssertionError with it)."""
        found = await self.wait_event_any(("answered", "refused"), timeout)
        if found["event"] != "answered":
            raise AssertionError(f"the WHIP POST was refused: {found}")
        return found

    async def wait_event_any(self, names: tuple[str, ...], timeout: float) -> dict[str, Any]:
        tasks = [asyncio.create_task(self.wait_event(name, timeout)) for name in names]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        finally:
            for task in tasks:
                task.cancel()

    async def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it lingers."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                os.kill(process.pid, signal.SIGKILL)
                await process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def create_ingest(server: Any, meeting: dict[str, Any], kind: str, name: str, **fields: Any) -> dict[str, Any]:
    """POST /meetings/{number}/ingests as the meeting's host (201 asserted)."""
    body = {"kind": kind, "name": name, **fields}
    return await server.call("POST", f"/meetings/{meeting['number']}/ingests", token=meeting["host_session"],
                             json_body=body, expect=201)  # fmt: skip


async def list_ingests(server: Any, meeting: dict[str, Any]) -> list[dict[str, Any]]:
    reply = await server.call("GET", f"/meetings/{meeting['number']}/ingests", token=meeting["host_session"])
    return reply["ingests"]
