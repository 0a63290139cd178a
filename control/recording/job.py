"""One recorder job: a recording (or a transcription-only run) of one live meeting.

The job owns what exists for it outside control: the recording in the recorder process
(RECORDING_START ... RECORDING_STOP) and, on the meeting's worker, a plain RTP transport
connected to the recorder's UDP port with one consumer per published track (TRACK_ADD
tells the recorder what each SSRC is). Everything that touches those runs through the
job's `Serial`, one operation after the other in the order asked, so a track published
during setup is added after it and an unpublished track is removed after its add.

Restarts: when the recorder process is restarted the job `resume`s (attempt + 1: a new
RECORDING_START of the same recording id, whose segment names never collide with the
earlier attempt's, a new plain transport, every current track again). When the meeting's
worker dies the job loses its transport (`lose_router`) and `rebind`s to the meeting's
new router once it exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from common.channel import ChannelError
from common.messages import Message
from control.meeting.model import LiveMeeting, Participant, PublishedTrack, new_id
from control.recording.consent import ConsentLedger
from recorder import api as recorder_api
from sfu import api

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_TIMEOUT_S = 30.0  # RECORDING_STOP closes the last segments of every track


class Serial:
    """Runs coroutine functions one at a time, in the order they were submitted."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tail: asyncio.Task[Any] | None = None

    def run(self, fn: Callable[[], Awaitable[T]], what: str = "") -> asyncio.Task[T]:
        previous = self._tail

        async def step() -> T:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            return await fn()

        task = asyncio.ensure_future(step())
        task.set_name(f"{self._name}:{what}")
        task.add_done_callback(_log_failure)
        self._tail = task
        return task

    async def drain(self) -> None:
        if self._tail is not None and not self._tail.done():
            await asyncio.wait([self._tail])


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s failed: %s", task.get_name(), task.exception())


class Job:
    """A recording or transcription of `meeting` (see the module's doc)."""

    def __init__(
        self,
        *,
        conference: Any,
        recorder: Any,
        meeting: LiveMeeting,
        recording_id: str,
        kind: str,
        customer_id: str,
        storage: dict[str, Any],
        key_prefix: str,
        started_at: float,
        started_by: str,
        by_name: str,
        policy: str,
        segment_seconds: float,
        hints: list[str],
    ) -> None:
        self.conference = conference
        self.recorder = recorder
        self.meeting = meeting
        self.recording_id = recording_id
        self.kind = kind
        self.customer_id = customer_id
        self.storage = storage
        self.key_prefix = key_prefix
        self.started_at = started_at
        self.started_by = started_by
        self.by_name = by_name
        self.policy = policy  # consent policy: notify | require
        self.segment_seconds = segment_seconds
        self.hints = hints
        self.attempt = -1  # the first RECORDING_START is attempt 0
        self.recorder_generation: int | None = None  # the recorder process it lives in
        self.recorder_addr: tuple[str, int] | None = None  # its UDP socket in that process
        self.transport_id: str | None = None  # the plain transport on the meeting's worker
        self.tracks: dict[str, str] = {}  # track id -> consumer id on that transport
        self.consent = ConsentLedger(policy)  # who was told, how, what they decided
        self.consent_rows: dict[str, str] = {}  # participant id -> the store's ledger row
        self.people: dict[str, dict[str, Any]] = {}  # everyone present during it (manifest)
        self.active = True
        self.serial = Serial(f"recording-{recording_id}")
        self.ledger = Serial(f"ledger-{recording_id}")

    @property
    def transcribe(self) -> bool:
        return self.kind == "transcription"

    def wants(self, track: PublishedTrack) -> bool:
        """A transcription needs the voices only; a recording takes every track."""
        return track.kind == "audio" or not self.transcribe

    def note_present(self, participant: Participant, now: float) -> None:
        entry = self.people.get(participant.participant_id)
        if entry is None:
            self.people[participant.participant_id] = {
                "participant_id": participant.participant_id,
                "name": participant.name,
                "role": participant.role,
                "joined_at": now,
                "left_at": None,
            }
        else:
            entry["left_at"] = None

    # ------------------------------------------------------------------ operations
    # Each runs inside `serial` (callers submit them); none raises for a lost peer except
    # `setup`, whose failure the starter reports.

    async def setup(self) -> None:
        """RECORDING_START in the current recorder, a plain transport to it, every track."""
        self.attempt += 1
        generation = self.recorder.generation
        started = await self.recorder.request(
            recorder_api.RecordingStart(
                recording_id=self.recording_id,
                meeting_id=self.meeting.meeting_id,
                meeting_number=self.meeting.number,
                title=self.meeting.title,
                customer_id=self.customer_id,
                storage=self.storage,
                key_prefix=self.key_prefix,
                started_at=self.started_at,
                attempt=self.attempt,
                segment_seconds=self.segment_seconds,
                transcribe=self.transcribe,
                hints=list(self.hints),
                mix_notice=not self.transcribe,
            )
        )
        assert isinstance(started, recorder_api.RecordingStarted)
        self.recorder_generation = generation
        self.recorder_addr = (started.ip, started.port)
        await self._bind()
        await self._add_current_tracks()

    async def _bind(self) -> None:
        """A plain transport on the meeting's router, sending to the recorder's socket."""
        placement = self.meeting.placement
        if placement is None or self.recorder_addr is None:
            raise ChannelError("worker_down", "the meeting has no media server")
        transport_id = f"rec-{new_id()}"
        info = await self.conference.request(
            self.meeting, api.PlainTransportCreate(router_id=placement.router_id, transport_id=transport_id)
        )
        assert isinstance(info, api.PlainTransportInfo)
        self.transport_id = transport_id
        self.tracks = {}
        ip, port = self.recorder_addr
        await self.conference.request(
            self.meeting, api.PlainTransportConnect(transport_id=transport_id, remote_ip=ip, remote_port=port)
        )
        await self.recorder.request(
            recorder_api.RecordingConnect(recording_id=self.recording_id, sfu_ip=info.ip, sfu_port=info.port)
        )

    async def _add_current_tracks(self) -> None:
        for participant in list(self.meeting.participants.values()):
            for track in list(participant.tracks.values()):
                await self.add_track(track)

    async def add_track(self, track: PublishedTrack) -> None:
        """Consume `track` onto our transport and tell the recorder (idempotent)."""
        if not self.active or self.transport_id is None or track.track_id in self.tracks or not self.wants(track):
            return
        owner = self.meeting.participants.get(track.participant_id)
        if owner is None or track.track_id not in owner.tracks:
            return  # gone meanwhile
        consumer_id = new_id()
        try:
            info = await self.conference.request(
                self.meeting,
                api.ConsumerCreate(
                    transport_id=self.transport_id, consumer_id=consumer_id, producer_id=track.producer_id
                ),
            )
        except ChannelError as exc:
            log.info("recording %s: track %s not consumed: %s", self.recording_id, track.track_id, exc)
            return
        assert isinstance(info, api.PlainConsumerInfo)
        self.tracks[track.track_id] = consumer_id
        try:
            await self.recorder.request(
                recorder_api.TrackAdd(
                    recording_id=self.recording_id,
                    track_id=track.track_id,
                    participant_id=track.participant_id,
                    display_name=owner.name,
                    kind=info.kind,
                    source=track.source,
                    codec_name=info.codec_name,
                    clock_rate=info.clock_rate,
                    payload_type=info.payload_type,
                    ssrc=info.ssrc,
                    channels=info.channels or (2 if info.kind == "audio" else 1),
                )
            )
        except ChannelError as exc:  # the recorder died: resume() adds it again
            log.warning("recording %s: TRACK_ADD %s failed: %s", self.recording_id, track.track_id, exc)

    async def remove_track(self, track: PublishedTrack) -> None:
        """The track's producer is closed (its consumer with it): tell the recorder."""
        await self._forget(track.track_id)

    async def _forget(self, track_id: str) -> None:
        if self.tracks.pop(track_id, None) is None:
            return
        await self._quiet_recorder(recorder_api.TrackRemove(recording_id=self.recording_id, track_id=track_id))

    async def resume(self, generation: int) -> None:
        """The recorder process was restarted: the same recording, next attempt."""
        if not self.active or self.recorder_generation == generation:
            return
        await self._close_transport()
        try:
            await self.setup()
        except (ChannelError, AssertionError) as exc:
            log.error("recording %s: resuming (attempt %d) failed: %s", self.recording_id, self.attempt, exc)
            return
        log.info("recording %s: resumed, attempt %d", self.recording_id, self.attempt)

    async def lose_router(self) -> None:
        """The meeting's worker died with our transport and every producer."""
        self.transport_id = None
        for track_id in list(self.tracks):
            await self._forget(track_id)

    async def rebind(self) -> None:
        """The meeting has a router again: a new transport to the same recorder socket."""
        if not self.active or self.transport_id is not None:
            return
        if self.recorder_generation != self.recorder.generation or self.recorder_addr is None:
            await self.resume(self.recorder.generation)
            return
        try:
            await self._bind()
            await self._add_current_tracks()
        except ChannelError as exc:
            log.error("recording %s: reconnecting to the new media server failed: %s", self.recording_id, exc)

    async def stop(self, manifest: dict[str, Any]) -> bool:
        """RECORDING_STOP (the recorder closes and queues its last segments and writes the
        manifest), then the transport goes. True if the recorder confirmed."""
        confirmed = False
        try:
            await self.recorder.request(
                recorder_api.RecordingStop(recording_id=self.recording_id, manifest=manifest), timeout=STOP_TIMEOUT_S
            )
            confirmed = True
        except ChannelError as exc:
            # not_found: the recorder stopped it by itself (RECORDING_FAILED) already.
            level = logging.INFO if exc.code == "not_found" else logging.ERROR
            log.log(level, "recording %s: RECORDING_STOP failed: %s", self.recording_id, exc)
        await self._close_transport()
        return confirmed

    async def close_transport(self) -> None:
        """The plain transport goes (the recording is deleted: no RECORDING_STOP)."""
        await self._close_transport()

    async def _close_transport(self) -> None:
        transport_id, self.transport_id = self.transport_id, None
        self.tracks = {}
        if transport_id is None or self.conference.stopping:
            return
        try:
            await self.conference.request(self.meeting, api.TransportClose(transport_id=transport_id))
        except ChannelError as exc:
            log.debug("recording %s: closing its transport failed (ignored): %s", self.recording_id, exc)

    async def _quiet_recorder(self, message: Message) -> None:
        try:
            await self.recorder.request(message)
        except ChannelError as exc:
            log.debug("recording %s: %s failed (ignored): %s", self.recording_id, message.NAME, exc)
