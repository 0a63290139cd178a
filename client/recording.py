"""Recording and transcription notices as a bot receives them (docs/signaling.md, "Recording").

The server sends `recording_state` to everyone whenever recording or transcription is
turned on or off, and to each joiner while anything is on. `RecordingState` is one such
message; `RecordingWatcher` keeps the latest, calls the callbacks registered for it and
wakes whoever waits for the next one. No I/O here: the bot feeds it messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from typing import Any, Callable

log = logging.getLogger(__name__)

ANNOUNCEMENT_SOURCE = "announcement"  # the server's spoken notices (a track of nobody)
CONSENT_DECISIONS = ("continue", "leave")


@dataclasses.dataclass(frozen=True)
class RecordingState:
    """One `recording_state`: what is on, the consent policy, whether we must consent."""

    recording: bool = False
    transcription: bool = False
    consent_policy: str = "notify"  # notify | require
    consent_required: bool = False  # we must send consent (continue or leave)
    by: str | None = None  # who turned it on

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> RecordingState:
        """Reads a message strictly: anything but the documented values counts as off."""
        by = msg.get("by")
        return cls(
            recording=msg.get("recording") is True,
            transcription=msg.get("transcription") is True,
            consent_policy="require" if msg.get("consent_policy") == "require" else "notify",
            consent_required=msg.get("consent_required") is True,
            by=by if isinstance(by, str) and by else None,
        )

    @property
    def active(self) -> bool:
        """Recording or transcription is on."""
        return self.recording or self.transcription

    def describe(self, before: RecordingState | None = None) -> str:
        """A one-line notice for people: what is on (and who started it) or what stopped."""
        if self.recording and self.transcription:
            text = "this meeting is being recorded and transcribed"
        elif self.recording:
            text = "this meeting is being recorded"
        elif self.transcription:
            text = "this meeting is being transcribed"
        else:
            stopped = [
                what
                for what, was in (("recording", before and before.recording), ("transcription", before and before.transcription))
                if was
            ]
            return " and ".join(stopped).capitalize() + " stopped" if stopped else "Recording and transcription are off"
        if self.by:
            text += f" (started by {self.by})"
        if self.consent_required:
            text += "; consent required: continue or leave"
        return text[0].upper() + text[1:]


StateCallback = Callable[[RecordingState], Any]


class RecordingWatcher:
    """The latest `recording_state` of one participant, its callbacks and its waiters."""

    def __init__(self) -> None:
        self.state = RecordingState()
        self.history: list[RecordingState] = []  # every state received, oldest first
        self._callbacks: list[StateCallback] = []
        self._waiters: list[tuple[Callable[[RecordingState], bool], asyncio.Future[RecordingState]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def on_change(self, callback: StateCallback) -> Callable[[], None]:
        """callback(state) on every `recording_state` (a coroutine function runs as a task).
        Returns a function that removes it."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    def handle(self, msg: dict[str, Any]) -> RecordingState:
        state = RecordingState.from_message(msg)
        self.state = state
        self.history.append(state)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(state):
                future.set_result(state)
        for callback in list(self._callbacks):
            self._call(callback, state)
        return state

    def consented(self) -> None:
        """The server acknowledged our Continue: nothing is pending any more."""
        self.state = dataclasses.replace(self.state, consent_required=False)

    async def next(
        self, predicate: Callable[[RecordingState], bool] | None = None, timeout: float = 10.0
    ) -> RecordingState:
        """The next state received from now on (that matches `predicate`)."""
        future: asyncio.Future[RecordingState] = asyncio.get_running_loop().create_future()
        entry = (predicate or (lambda state: True), future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(entry)

    async def wait(self, predicate: Callable[[RecordingState], bool], timeout: float = 10.0) -> RecordingState:
        """The current state if it matches `predicate`, else the next one that does."""
        if predicate(self.state):
            return self.state
        return await self.next(predicate, timeout)

    def close(self) -> None:
        for _, future in self._waiters:
            if not future.done():
                future.cancel()
        for task in list(self._tasks):
            task.cancel()

    def _call(self, callback: StateCallback, state: RecordingState) -> None:
        try:
            result = callback(state)
        except Exception:  # one bad callback must not keep the notice from the others
            log.exception("recording_state callback failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("recording_state callback task failed", exc_info=task.exception())
