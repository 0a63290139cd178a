"""Recording and transcription of live meetings: who may start them, the notice everyone
gets, the consent ledger, and the recorder jobs (control.recording.job) behind them.

Called by the REST API (control.http.recordings) and by signaling:

    await recordings.start(meeting_record, "recording", by)       -> store Recording (active)
    await recordings.stop(meeting_record, "recording", by)        -> store Recording (stopped)
    await recordings.start(meeting_record, "transcription", by, hints=[...])

`by` is who asks: a control.meeting.model.Participant (signaling: checked here), a name (REST:
control.http.recordings checked who may), a control.accounts.service.Actor (a host: checked here)
or None (the customer's `auto_record`). Refusals are ApiError: 409 `not_live`,
403 `forbidden` (only the host; for transcription also participants when the customer
allows it), 403 `recording_not_allowed`/`transcription_not_allowed` (customer limits),
409 `storage_not_configured`, 409 `already_active`, 409 `not_active`, 503
`recorder_unavailable`, 502 `media_error`.

A start, and every participant who joins while something is on, gets the notice three
ways: `recording_state` on signaling (the banner and the bot SDK's event), the spoken
notice played on the meeting's notice track (control.meeting.conference.SERVER_TRACKS: to everyone at the start; to a late joiner once
their subscribe transport is up), and a consent-ledger row in the store (channels banner,
event, audio). Under the customer's consent policy `require`, everything a participant
publishes stays paused on the media server until they send `consent` continue; `leave`
(or closing the socket) while pending is recorded as left. The host is consented
implicitly: only the host starts a recording.

The service listens to the conference (control.meeting.conference.ConferenceListener: it
follows tracks, joins and leaves into the active jobs), to the meetings' lifecycle
(control.meeting.lifecycle.LifecycleListener: `auto_record` at the start, every job stops
at the end) and to the recorder process (restarts, uploads, failures); the app wires them.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import time
from typing import Any

from common.channel import ChannelError
from common.messages import Message
from common.notices import notice_frames
from config import LimitsConfig, RecorderConfig
from control.errors import ApiError, SignalingError
from control.meeting.attendance import Attendance
from control.meeting.conference import NOTICE_TRACK_ID, Conference
from control.meeting.limits import LimitsPolicy
from control.meeting.listeners import ConferenceListener
from control.meeting.model import LiveMeeting, Participant, PublishedTrack, new_id
from control.processes.recorders import RecorderSupervisor
from control.recording.consent import CONTINUED, LEFT, LedgerChange
from control.recording.deletion import StorageDeletions
from control.recording.events import RecordingEvents
from control.recording.job import Job
from control.recording.manifest import build_manifest
from control.recording.starter import Starter, starter_for
from control.store.base import (
    LiveSession,
    MeetingRecord,
    NotFound,
    Recording,
    RecordingActive,
    Store,
)
from control.tasks import BackgroundTasks
from recorder import api as recorder_api

log = logging.getLogger(__name__)

KINDS = ("recording", "transcription")
RECORDER_WAIT_S = 15.0  # a start while the recorder (re)starts waits this long for it
DISCARD_TIMEOUT_S = 30.0  # the recorder lets an upload in flight finish (5 s), then cuts it off


@functools.lru_cache(maxsize=None)
def notice_b64(kind: str) -> tuple[str, ...]:
    """The spoken notice `kind` as base64 Opus frames for NOTICE_PLAY."""
    return tuple(base64.b64encode(frame).decode("ascii") for frame in notice_frames(kind))


class Recordings(ConferenceListener):
    """The live side of recording for one app (see the module's doc)."""

    def __init__(
        self,
        *,
        store: Store,
        conference: Conference,
        attendance: Attendance,
        recorder: RecorderSupervisor,
        limits: LimitsPolicy,
        events: RecordingEvents,
        tasks: BackgroundTasks,
        settings: RecorderConfig,
        deletions: StorageDeletions,
    ) -> None:
        self._store = store
        self.conference = conference
        self._attendance = attendance
        self.recorder = recorder
        self._limits = limits
        self._events = events
        self._tasks = tasks
        self._settings = settings
        self._deletions = deletions
        # The active jobs of each live meeting (by meeting id), by kind.
        self._jobs: dict[str, dict[str, Job]] = {}
        # Deleted recordings the recorder has not confirmed discarding (it was down).
        self._owed_discards: set[str] = set()
        # The last notification task of each recording (they are handled in order).
        self._notices: dict[str, asyncio.Task[Any]] = {}

    # ------------------------------------------------------------------ helpers

    def jobs(self) -> list[Job]:
        return [job for jobs in self._jobs.values() for job in jobs.values()]

    def active(self, meeting: LiveMeeting) -> dict[str, Job]:
        """The meeting's active jobs by kind (an empty dict when none: not kept)."""
        return self._jobs.get(meeting.meeting_id, {})

    def _add_job(self, meeting: LiveMeeting, job: Job) -> None:
        self._jobs.setdefault(meeting.meeting_id, {})[job.kind] = job

    def adopt(self, meeting: LiveMeeting, job: Job) -> None:
        """A recording that went on across a restart (control.recording.continuation): set
        up when the meeting has a router again (`router_created`), or the recorder is up."""
        self._add_job(meeting, job)

    def _drop_job(self, meeting: LiveMeeting, job: Job) -> None:
        jobs = self._jobs.get(meeting.meeting_id, {})
        if jobs.get(job.kind) is job:
            del jobs[job.kind]
        if not jobs:
            self._jobs.pop(meeting.meeting_id, None)

    def state_message(
        self, meeting: LiveMeeting, participant: Participant | None, by: str | None = None, stopped: Job | None = None
    ) -> dict[str, Any]:
        """`recording_state`: what is on; the consent policy is the latest active job's (or,
        once nothing is on, that of the job that just `stopped`)."""
        jobs = self.active(meeting)
        starter = jobs.get("recording") or jobs.get("transcription")
        latest = next(reversed(jobs.values()), stopped)
        return {
            "type": "recording_state",
            "recording": "recording" in jobs,
            "transcription": "transcription" in jobs,
            "consent_policy": latest.policy if latest is not None else "notify",
            "consent_required": participant is not None and self.consent_required(meeting, participant),
            "by": by if by is not None else (starter.by_name if starter else ""),
        }

    def consent_required(self, meeting: LiveMeeting, participant: Participant) -> bool:
        return any(job.consent.holds(participant.participant_id) for job in self.active(meeting).values())

    def _broadcast_state(self, meeting: LiveMeeting, by: str | None = None, stopped: Job | None = None) -> None:
        for participant in list(meeting.participants.values()):
            participant.send(self.state_message(meeting, participant, by, stopped))

    async def _play(self, meeting: LiveMeeting, kind: str, participants: list[Participant] | None) -> list[Participant]:
        """Play a notice; returns whom it reached (their subscribe transport is up)."""
        targets = list(meeting.participants.values()) if participants is None else participants
        reached = [p for p in targets if p.active_consumer_for(NOTICE_TRACK_ID) and p.subscribe_connected and not p.closed]
        if not reached and participants is not None:
            return []
        try:
            # To everyone: played even when no participant can hear it yet, for the
            # meeting's WHEP viewers (control.meeting.viewers), who have no banner.
            targets = None if participants is None else reached
            await self.conference.play(meeting, NOTICE_TRACK_ID, list(notice_b64(kind)), targets)
        except ChannelError as exc:
            log.warning("meeting %s: notice %s not played: %s", meeting.meeting_id, kind, exc)
            return []
        return reached

    # ------------------------------------------------------------------ start / stop

    async def _starter(
        self, row: MeetingRecord, meeting: LiveMeeting, kind: str, by: Any, limits: LimitsConfig | None
    ) -> Starter:
        host = await self._store.get_host(row.host_id)
        return starter_for(row, meeting, kind, by, host.name if host else "", limits)

    async def _live(self, row: MeetingRecord) -> tuple[LiveMeeting, LiveSession]:
        session = await self._store.get_live_session(row.id)
        if session is None:
            raise ApiError(409, "not_live", "the meeting is not live")
        try:
            return await self._attendance.live_meeting(row, session), session
        except SignalingError:
            raise ApiError(409, "not_live", "the meeting is not available") from None

    async def start(self, row: MeetingRecord, kind: str, by: Any, hints: list[str] | None = None) -> Recording:
        store = self._store
        meeting, session = await self._live(row)
        customer = await store.get_customer(row.customer_id)
        if customer is None:
            raise ApiError(409, "not_live", "the meeting is not available")
        limits = self._limits.account(customer)
        starter = await self._starter(row, meeting, kind, by, limits)
        allowed = limits.recording_allowed if kind == "recording" else limits.transcription_allowed
        if not allowed:
            raise ApiError(403, f"{kind}_not_allowed", f"{kind} is not allowed for this account")
        storage = await store.get_customer_storage(row.customer_id)
        if not storage:
            raise ApiError(409, "storage_not_configured", f"{kind} needs storage: the account has none configured")
        if kind in self.active(meeting):
            raise ApiError(409, "already_active", f"{kind} is on already")
        if not await self.recorder.wait_up(RECORDER_WAIT_S):
            raise ApiError(503, "recorder_unavailable", "the recorder is not running; try again in a moment")
        recording_id = new_id()
        started_at = time.time()
        try:
            stored = await store.create_recording(
                meeting_id=row.id,
                customer_id=row.customer_id,
                kind=kind,
                started_by=starter.started_by,
                live_session_id=session.id,
                key_prefix=f"recordings/{row.meeting_number}/{recording_id}/",
                started_at=started_at,
                recording_id=recording_id,
                storage=storage,  # deletion finds its files there whatever the customer sets later
            )
        except RecordingActive:
            raise ApiError(409, "already_active", f"{kind} is on already") from None
        job = Job(
            conference=self.conference,
            recorder=self.recorder,
            meeting=meeting,
            recording_id=recording_id,
            kind=kind,
            customer_id=row.customer_id,
            storage=storage,
            key_prefix=stored.key_prefix,
            started_at=started_at,
            started_by=starter.started_by,
            by_name=starter.name,
            policy=limits.consent_policy,
            segment_seconds=self._settings.segment_seconds,
            hints=[h for h in (hints or []) if isinstance(h, str) and h.strip()],
        )
        try:
            async with meeting.lock:
                if kind in self.active(meeting):
                    raise ApiError(409, "already_active", f"{kind} is on already")
                try:
                    await self.conference.ensure_router(meeting)
                except SignalingError as exc:
                    raise ApiError(503 if exc.code == "unavailable" else 409, exc.code, exc.message) from None
                self._add_job(meeting, job)
                # Held before the recorder gets anything: under `require` nobody is
                # recorded (or heard) before they consent.
                for participant in list(meeting.participants.values()):
                    await self._enter(meeting, job, participant, starter)
            await job.serial.run(job.setup, "setup")
        except BaseException as exc:
            await self._abandon(meeting, job, exc)
            if isinstance(exc, ChannelError):
                status, code = (503, "recorder_unavailable") if exc.code == "recorder_down" else (502, "media_error")
                raise ApiError(status, code, f"{kind} could not start: {exc.message}") from None
            raise
        log.info("meeting %s: %s %s started by %s", row.id, kind, recording_id, starter.name)
        reached = await self._play(meeting, f"{kind}-started", None)
        for participant in list(meeting.participants.values()):
            if participant.negotiation is not None and participant not in reached:
                participant.negotiation.ensure_offered()  # they hear it once connected
        self._broadcast_state(meeting)
        now = time.time()
        for participant in list(meeting.participants.values()):
            self._record(job, job.consent.notified(participant.participant_id, audio=participant in reached), now)
        self._events.emit(row.customer_id, "recording.started", meeting_id=row.id,
                        meeting_number=row.meeting_number, recording_id=recording_id, kind=kind,
                        live_session_id=session.id, started_by=starter.name, started_at=started_at)  # fmt: skip
        return stored

    async def _abandon(self, meeting: LiveMeeting, job: Job, exc: BaseException) -> None:
        """A start that failed half-way: undo what exists, the row is `failed`."""
        job.active = False
        self._drop_job(meeting, job)
        await self._release_holds(meeting)
        if job.recorder_addr is not None:
            await job.stop({})
        try:
            await self._store.update_recording(job.recording_id, state="failed", error=str(exc)[:200])
        except NotFound:
            pass

    async def stop(self, row: MeetingRecord, kind: str, by: Any) -> Recording:
        meeting, _ = await self._live(row)
        customer = await self._store.get_customer(row.customer_id)
        limits = self._limits.account(customer) if customer else None
        starter = await self._starter(row, meeting, kind, by, limits)
        job = self.active(meeting).get(kind)
        if job is None:
            raise ApiError(409, "not_active", f"{kind} is not on")
        return await self.finish(job, "stopped", by_name=starter.name)

    async def finish(self, job: Job, final: str, *, by_name: str = "", error: str = "") -> Recording:
        """Stop `job` (stop, failure, meeting end, shutdown): notice, ledger, manifest,
        RECORDING_STOP, the row `final`, the webhook."""
        meeting = job.meeting
        if job.active:
            job.active = False
            self._drop_job(meeting, job)
            await self._release_holds(meeting)
            if meeting.participants:
                self._broadcast_state(meeting, by_name or None, job)
                self._tasks.spawn(self._play(meeting, f"{job.kind}-stopped", None), f"notice-{job.recording_id}")
            stopped_at = time.time()
            for change in job.consent.settle_at_stop():  # under `notify` staying is continuing
                self._record(job, change)
            await job.ledger.drain()
            manifest = await self._manifest(job, stopped_at, by_name)
            await job.serial.run(lambda: job.stop(manifest), "stop")
            log.info("meeting %s: %s %s %s", meeting.meeting_id, job.kind, job.recording_id, final)
            try:
                stored = await self._store.update_recording(job.recording_id, state=final, stopped_at=stopped_at,
                                                                 error=error)  # fmt: skip
            except NotFound:
                stored = None
            event = "recording.failed" if final == "failed" else "recording.stopped"
            extra = {"reason": error} if final == "failed" else {"stopped_at": stopped_at, "stopped_by": by_name}
            self._events.emit(job.customer_id, event, meeting_id=meeting.meeting_id,
                            meeting_number=meeting.number, recording_id=job.recording_id, kind=job.kind,
                            **extra)  # fmt: skip
            if stored is not None:
                return stored
        stored = await self._store.get_recording(job.recording_id)
        if stored is None:
            raise ApiError(404, "not_found", "no such recording")
        return stored

    # ------------------------------------------------------------------ meeting lifecycle

    def meeting_started(self, record: MeetingRecord, meeting: LiveMeeting) -> None:
        """The customer records every meeting from its start (`auto_record`)."""
        limits = meeting.limits
        if limits is not None and limits.account.auto_record and limits.account.recording_allowed:
            self._tasks.spawn(self._auto_record(record), f"auto-record-{record.id}")

    async def _auto_record(self, record: MeetingRecord) -> None:
        try:
            await self.start(record, "recording", None)
        except ApiError as exc:
            log.warning("meeting %s: automatic recording did not start: %s", record.id, exc.message)

    async def stop_everything(self, record: MeetingRecord, by: str) -> None:
        """Stop whatever runs in the meeting (its content is being removed)."""
        for kind in KINDS:
            try:
                await self.stop(record, kind, by)
            except ApiError:
                pass  # not running
            except Exception:
                log.exception("cannot stop %s of meeting %s before removing it", kind, record.id)

    async def limits_changed(self, meeting: LiveMeeting) -> None:
        """The operator changed the customer's limits: what they no longer allow stops now."""
        limits = meeting.limits
        if limits is None:
            return
        allowed = {"recording": limits.account.recording_allowed, "transcription": limits.account.transcription_allowed}
        for kind, job in list(self.active(meeting).items()):
            if not allowed.get(kind, True):
                await self.finish(job, "stopped", by_name="the operator")
                log.info("meeting %s: %s %s stopped: no longer allowed", meeting.meeting_id, kind, job.recording_id)

    async def meeting_ended(self, meeting: LiveMeeting, reason: str) -> None:
        """The meeting ended (everyone is out already): its jobs stop."""
        for job in list(self.active(meeting).values()):
            await self.finish(job, "stopped", by_name="", error="")
            log.info("meeting %s ended (%s): %s %s stopped", meeting.meeting_id, reason, job.kind, job.recording_id)

    async def shutdown(self, timeout: float) -> None:
        """Server shutdown: every active job stops (bounded) before the recorder does."""
        jobs = self.jobs()
        if jobs:
            done, pending = await asyncio.wait([asyncio.ensure_future(self.finish(j, "stopped")) for j in jobs],
                                               timeout=timeout)  # fmt: skip
            if pending:
                log.error("%d recordings did not stop within %.0f s", len(pending), timeout)

    def suspend(self) -> None:
        """Shutdown of a node that will start again (control.recording.continuation): the
        jobs are let go without RECORDING_STOP, their rows stay active; the recorder closes
        their open segments as it stops."""
        for job in self.jobs():
            job.active = False
        self._jobs.clear()

    async def _manifest(self, job: Job, stopped_at: float, stopped_by: str) -> dict[str, Any]:
        meeting = job.meeting
        try:
            ledger = await self._store.list_consent(meeting.meeting_id)
            chat = await self._store.list_chat(meeting.meeting_id)
        except Exception:  # the manifest must not stop the stop
            log.exception("recording %s: reading the ledger/chat failed", job.recording_id)
            ledger, chat = [], []
        return build_manifest(job, ledger, chat, stopped_at, stopped_by)

    # ------------------------------------------------------------------ consent

    async def _enter(self, meeting: LiveMeeting, job: Job, participant: Participant, starter: Starter | None) -> None:
        """`participant` is in the meeting while `job` is on (under the meeting's lock)."""
        implicit = starter is not None and starter.participant is participant
        self._present(job, participant, time.time(), implicit=implicit)
        if job.consent.holds(participant.participant_id) and not participant.media_held:
            await self.conference.set_media_held(meeting, participant, True)

    @staticmethod
    def _present(job: Job, participant: Participant, now: float, *, implicit: bool = False) -> None:
        """Note `participant` present in `job`, with a consent entry (the host, and the
        starter when `implicit`, have consented)."""
        job.note_present(participant, now)
        job.consent.present(participant.participant_id, participant.name, consented=participant.is_host or implicit)

    def _record(self, job: Job, change: LedgerChange | None, now: float | None = None) -> None:
        """Write one ledger change to the store, in the job's ledger order (a row is made
        before its updates)."""
        if change is None:
            return
        meeting, entry, participant_id = job.meeting, change.entry, change.participant_id

        async def write() -> None:
            if change.kind == "notified":
                row = await self._store.add_consent(
                    meeting_id=meeting.meeting_id, participant_id=participant_id, name=entry.name,
                    live_session_id=meeting.live_session_id, recording_id=job.recording_id,
                    channels=list(entry.channels), notified_at=now if now is not None else time.time(),
                    decision=entry.decision,
                )  # fmt: skip
                job.consent_rows[participant_id] = row.id
                return
            row_id = job.consent_rows.get(participant_id)
            if row_id is None:
                return  # never notified: nothing in the store to change
            if change.kind == "channels":
                await self._store.update_consent(row_id, channels=list(entry.channels))
            else:
                await self._store.update_consent(row_id, decision=change.decision)

        job.ledger.run(write, f"consent-{change.kind}-{participant_id}")

    async def from_signaling(
        self, meeting: LiveMeeting, participant: Participant, kind: str, action: str, hints: list[str] | None = None
    ) -> None:
        """`recording` / `transcription` messages: ApiError becomes the client's `error`."""
        row = await self._store.get_meeting(meeting.meeting_id)
        if row is None:
            raise SignalingError("meeting_ended", "the meeting has ended")
        try:
            if action == "start":
                await self.start(row, kind, participant, hints)
            else:
                await self.stop(row, kind, participant)
        except ApiError as exc:
            raise SignalingError(exc.code, exc.message) from None

    async def consent(self, meeting: LiveMeeting, participant: Participant, decision: str) -> None:
        """`consent` from signaling: continue (media goes) or leave (recorded; the caller
        ends their session)."""
        if meeting.participants.get(participant.participant_id) is not participant:
            raise SignalingError("not_joined", "you are not in the meeting")
        value = CONTINUED if decision == "continue" else LEFT
        changed = False
        for job in list(self.active(meeting).values()):
            change = job.consent.decide(participant.participant_id, value)
            self._record(job, change)
            changed |= change is not None
        if value == LEFT:
            return
        await self._release_holds(meeting, [participant])
        if changed:
            participant.send(self.state_message(meeting, participant))

    async def _release_holds(self, meeting: LiveMeeting, participants: list[Participant] | None = None) -> None:
        """After a job went (or `participants` consented): media of those no job holds any
        more goes again."""
        candidates = meeting.participants.values() if participants is None else participants
        held = [p for p in candidates if p.media_held and not self.consent_required(meeting, p)]
        if not held:
            return
        async with meeting.lock:
            for participant in held:
                if participant.media_held and not self.consent_required(meeting, participant):
                    await self.conference.set_media_held(meeting, participant, False)

    # ------------------------------------------------------------------ conference listener

    def participant_joined(self, meeting: LiveMeeting, participant: Participant) -> bool:
        if not self.active(meeting):
            return False
        now = time.time()
        for job in self.active(meeting).values():
            self._present(job, participant, now)
            job.consent.new_connection(participant.participant_id)  # they hear it again
            if job.consent.holds(participant.participant_id):
                participant.media_held = True  # nothing published yet: nothing to pause
        participant.send(self.state_message(meeting, participant))
        for job in self.active(meeting).values():
            self._record(job, job.consent.notified(participant.participant_id, audio=False), now)
        return True  # they hear the notice once their subscribe connection is up

    def subscriber_connected(self, meeting: LiveMeeting, participant: Participant) -> None:
        jobs = [j for j in self.active(meeting).values() if not j.consent.heard(participant.participant_id)]
        if jobs:
            kind = "recording" if any(j.kind == "recording" for j in jobs) else "transcription"
            self._tasks.spawn(self._late_notice(meeting, participant, jobs, kind), f"notice-{participant.participant_id}")

    async def _late_notice(self, meeting: LiveMeeting, participant: Participant, jobs: list[Job], kind: str) -> None:
        if not await self._play(meeting, f"{kind}-started", [participant]):
            return
        for job in jobs:
            if job.active:
                self._record(job, job.consent.audio_reached(participant.participant_id))

    def participant_left(self, meeting: LiveMeeting, participant: Participant) -> None:
        now = time.time()
        for job in self.active(meeting).values():
            person = job.people.get(participant.participant_id)
            if person is not None:
                person["left_at"] = now
            self._record(job, job.consent.gone(participant.participant_id, participant.exit_reason))

    def track_published(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        for job in self.active(meeting).values():
            if job.wants(track):
                job.serial.run(functools.partial(job.add_track, track), f"add-{track.track_id}")

    def track_unpublished(self, meeting: LiveMeeting, track: PublishedTrack) -> None:
        for job in self.active(meeting).values():
            job.serial.run(functools.partial(job.remove_track, track), f"remove-{track.track_id}")

    def router_created(self, meeting: LiveMeeting) -> None:
        for job in self.active(meeting).values():
            if job.recorder_generation is None and not self.recorder.up:
                continue  # continued after a restart: set up once the recorder is (recorder_up)
            job.serial.run(job.rebind, "rebind")

    def router_lost(self, meeting: LiveMeeting) -> None:
        for job in self.active(meeting).values():
            job.serial.run(job.lose_router, "lose-router")

    # ------------------------------------------------------------------ deletion

    async def discard(self, recording_id: str) -> bool:
        """The recording is being deleted: the recorder drops whatever it still holds of it
        (running, spooled, being transcribed) and uploads nothing more. True once it said
        so; when it is down, it is told when it is up again (until then, an upload of it is
        refused here: `_file_uploaded`)."""
        job = self._find(recording_id)
        if job is not None:  # could not be stopped: it goes without its stop
            job.active = False
            self._drop_job(job.meeting, job)
            await self._release_holds(job.meeting)
            job.serial.run(job.close_transport, "close-for-deletion")
        try:
            await self.recorder.request(recorder_api.RecordingDiscard(recording_id=recording_id), timeout=DISCARD_TIMEOUT_S)
        except ChannelError as exc:
            log.warning("recording %s: the recorder did not confirm discarding it (%s); told again later",
                        recording_id, exc)  # fmt: skip
            self._owed_discards.add(recording_id)
            return False
        self._owed_discards.discard(recording_id)
        return True

    async def _tell_owed_discards(self) -> None:
        for recording_id in list(self._owed_discards):
            await self.discard(recording_id)

    # ------------------------------------------------------------------ the recorder

    def recorder_up(self, generation: int) -> None:
        if self._owed_discards:
            self._tasks.spawn(self._tell_owed_discards(), "owed-discards")
        for job in self.jobs():
            # Also a job continued after a restart, waiting for the recorder with its router.
            known = job.recorder_generation is not None or job.meeting.placement is not None
            if known and job.recorder_generation != generation:
                job.serial.run(functools.partial(job.resume, generation), f"resume-{generation}")

    def _find(self, recording_id: str) -> Job | None:
        return next((j for j in self.jobs() if j.recording_id == recording_id), None)

    def recorder_notification(self, entity_id: str, message: Message) -> None:
        if isinstance(message, recorder_api.RecordingFileUploaded):
            self._in_order(message.recording_id, self._file_uploaded(message), "uploaded")
        elif isinstance(message, recorder_api.RecordingFailed):
            self._in_order(message.recording_id, self._failed(message), "failed")
        elif isinstance(message, recorder_api.TranscriptReady):
            self._in_order(message.recording_id, self._transcript_ready(message), "transcript")

    def _in_order(self, recording_id: str, work: Any, what: str) -> None:
        """Handle a recording's notifications one after the other, in the order they came
        (TRANSCRIPT_READY after the uploads of its files are in the store)."""
        previous = self._notices.get(recording_id)

        async def step() -> None:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            await work

        task = self._tasks.spawn(step(), f"{what}-{recording_id}")
        if task is None:
            work.close()  # shutting down
            return
        self._notices[recording_id] = task

        def forget(done: asyncio.Task[Any]) -> None:
            if self._notices.get(recording_id) is done:
                del self._notices[recording_id]

        task.add_done_callback(forget)

    async def _recording_row(self, recording_id: str) -> tuple[Recording, MeetingRecord] | None:
        recording = await self._store.get_recording(recording_id)
        meeting = await self._store.get_meeting(recording.meeting_id) if recording else None
        if recording is None or meeting is None:
            log.warning("recorder: news of unknown recording %s", recording_id)
            return None
        return recording, meeting

    async def _file_uploaded(self, message: Any) -> None:
        recording = await self._store.get_recording(message.recording_id)
        if recording is None:
            await self._refuse_upload(message)
            return
        row = await self._store.get_meeting(recording.meeting_id)
        if row is None:
            log.warning("recorder: news of recording %s of an unknown meeting", recording.id)
            return
        stored = await self._store.add_recording_file(
            recording.id, key=message.key, kind=message.kind, size=message.size, sha256=message.sha256,
            content_type=message.content_type, track_id=message.track_id, start=message.start, end=message.end,
        )  # fmt: skip
        self._events.emit(recording.customer_id, "recording.uploaded", meeting_id=row.id,
                        meeting_number=row.meeting_number, recording_id=recording.id, file_id=stored.id,
                        key=stored.key, file_kind=stored.kind, size=stored.size, sha256=stored.sha256,
                        content_type=stored.content_type)  # fmt: skip

    async def _refuse_upload(self, message: Any) -> None:
        """A file of a recording control no longer has (deleted, maybe while the recorder
        was down or mid-upload): no row, no webhook; the file goes from the storage and the
        recorder is told to drop the rest."""
        deletion = await self._deletions.late_upload(message.recording_id, message.key)
        if deletion is None:
            log.warning("recorder: upload %s of unknown recording %s refused (its storage is unknown: not deleted)",
                        message.key, message.recording_id)  # fmt: skip
        else:
            log.info("recorder: late upload of deleted recording %s refused and deleted", message.recording_id)
        await self.discard(message.recording_id)

    async def _failed(self, message: Any) -> None:
        reason = message.reason
        job = self._find(message.recording_id)
        if job is None:
            found = await self._recording_row(message.recording_id)
            if found is not None and found[0].state == "active":
                await self._store.update_recording(found[0].id, state="failed", error=reason)
            return
        text = {
            "spool_full": "the recorder's local spool is full (customer storage unreachable?)",
            "storage": "the customer's storage refused the recording",
        }.get(reason, message.message or reason)
        notice = {
            "type": "error",
            "code": "recording_failed",
            "message": f"{job.kind} stopped: {text}",
            "reason": reason,
            "recording_id": job.recording_id,
        }
        for participant in job.meeting.moderators():
            participant.send(notice)
        log.error("recording %s failed: %s", job.recording_id, reason)
        await self.finish(job, "failed", error=reason)

    async def _transcript_ready(self, message: Any) -> None:
        found = await self._recording_row(message.recording_id)
        if found is None:
            return
        recording, row = found
        self._events.emit(recording.customer_id, "transcript.ready", meeting_id=row.id,
                        meeting_number=row.meeting_number, recording_id=recording.id,
                        keys=list(message.keys))  # fmt: skip
