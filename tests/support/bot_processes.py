"""Bots of the SDK (client.bot.Bot) in child processes, for meetings too large for one event
loop: a dozen aiortc bots decode each other's audio and video in threads that share one
GIL, and in the test's own process (which also runs control) they fall seconds behind and
lose everything. Each `BotProcess` runs a few bots on its own uvloop and answers:

- `start()`: the bots join; {name: participant_id};
- `run(start_at, snapshot_at)`: their speech turns start at `start_at` (time.monotonic():
  CLOCK_MONOTONIC is the same in every process), and at each of `snapshot_at` each bot
  reports the video frames it decoded per sender and its tracks' pause states; then the
  bots leave and the process ends.

Processes are stopped by PID (join, then SIGTERM, then SIGKILL), each step bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Any

REPLY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class BotSpec:
    name: str
    turns: list[tuple[float, float]] = field(default_factory=list)  # speech, seconds after start_at
    publish_audio: bool = True


@dataclass(frozen=True)
class Join:
    base_url: str
    meeting_number: str
    passcode: str
    width: int = 512
    height: int = 32
    fps: int = 8


def _snapshot(bot: Any) -> dict[str, Any]:
    frames = {pid: sources["camera"].frames for pid, sources in bot.received.items() if "camera" in sources}
    cameras = {tid: t["participant_id"] for tid, t in bot.remote_tracks.items() if t["source"] == "camera"}
    return {"frames": frames, "paused": bot.track_states.paused(), "cameras": cameras}


async def _child_main(conn: Any, join: Join, specs: list[BotSpec]) -> None:
    from client.bot import Bot
    from tests.support.speech_audio import TurnTakingTrack, speech_samples

    speech = speech_samples()
    tracks = {spec.name: TurnTakingTrack(spec.turns, speech) for spec in specs}
    bots = {
        spec.name: Bot(join.base_url, join.meeting_number, spec.name, passcode=join.passcode, audio=tracks[spec.name],
                       width=join.width, height=join.height, fps=join.fps)  # fmt: skip
        for spec in specs
    }
    try:
        for spec in specs:
            await bots[spec.name].start(publish_audio=spec.publish_audio)
        conn.send({name: bot.participant_id for name, bot in bots.items()})
        start_at, snapshot_at = await asyncio.to_thread(conn.recv)
        for track in tracks.values():
            track.start(start_at)
        snapshots = []
        for moment in snapshot_at:
            await asyncio.sleep(max(0.0, moment - time.monotonic()))
            snapshots.append({name: _snapshot(bot) for name, bot in bots.items()})
        conn.send(snapshots)
    finally:
        await asyncio.gather(*(bot.stop() for bot in bots.values()), return_exceptions=True)


def _child(conn: Any, join: Join, specs: list[BotSpec]) -> None:
    import uvloop

    try:
        uvloop.run(_child_main(conn, join, specs))
    except BaseException as exc:  # the parent is waiting for a reply: give it the reason
        with contextlib.suppress(Exception):
            conn.send({"error": repr(exc)})
        raise


class BotProcess:
    def __init__(self, join: Join, specs: list[BotSpec]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_child, args=(child, join, specs), daemon=True)

    async def _reply(self) -> Any:
        ready = await asyncio.to_thread(self._conn.poll, REPLY_TIMEOUT_S)
        if not ready:
            raise TimeoutError("a bot process did not answer")
        reply = self._conn.recv()
        if isinstance(reply, dict) and "error" in reply:
            raise RuntimeError(f"bot process failed: {reply['error']}")
        return reply

    async def start(self) -> dict[str, str]:
        self.process.start()
        return await self._reply()

    async def run(self, start_at: float, snapshot_at: list[float]) -> list[dict[str, Any]]:
        self._conn.send((start_at, snapshot_at))
        return await self._reply()

    def stop(self) -> None:
        """By PID: wait for it to end, then SIGTERM, then SIGKILL, each bounded."""
        if self.process.pid is None:
            return
        self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(STOP_TIMEOUT_S)
