"""The recorder process: one uvloop, one channel to control, many recordings.

Started by control as `python -m recorder --channel-fd FD` (recorder/process.py) with its configuration in the
environment (recorder.api.recorder_command; `--config-json` works too, for people). It
rescans its spool (uploads left by an earlier process continue at once), announces
RECORDER_READY on the channel, then answers requests until the channel closes or SIGTERM
arrives; then it closes every open segment (so a restarted process continues the
recordings) and gives uploads in flight a few seconds. The live mixes of WHEP viewers
(MIX_* requests) are a job of their own: recorder/live_mixing.py.

Files on disk, under data_dir (umask 077: every file 0600, every directory 0700):
    spool/                       finished files until customer storage confirms them
    recordings/<recording_id>/   a recording's work directory (recorder/journal.py);
                                 removed once it is stopped and every file is uploaded,
                                 or at once when control discards the recording (deleted)

A work directory that an earlier process left unfinished (no stop in its journal: that
process, or control, was killed) waits `orphan_grace_s` for control to continue or stop
it; then it is finished from what is on disk and uploaded like any stopped recording
(control keeps or refuses the files). A directory without a journal, or one that cannot
be uploaded anywhere (no storage settings), is removed. Nothing stays forever.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any


from common.channel import ChannelServer, RequestFailed
from common.messages import Empty, Message
from common.storage import StorageBackend, StorageError, StoredObject, open_storage
from config.schema import RecorderConfig
from recorder import api
from recorder.journal import RecordingDirectory, list_recordings, stray_directories
from recorder.live_mixing import LiveMixes
from recorder.manifest import MANIFEST_NAME
from recorder.session import (
    Outgoing,
    Session,
    SessionError,
    Totals,
    manifest_queued,
    queue_file,
    queue_manifest,
    transcript_keys,
)
from recorder.speech import (
    SpeechRun,
    journaled_runs,
    run_seconds,
    transcribe_runs,
    transcription_was_on,
    write_transcript,
)
from recorder.storage import Spool, SpoolItem
from recorder.transcription import TranscriptionEngine, engine_from_settings

log = logging.getLogger("recorder")

SHUTDOWN_STEP_SECONDS = 10.0
# How long a failed recording's meeting.json waits for control's part (RECORDING_STOP).
MANIFEST_GRACE_SECONDS = 30.0
UPLOAD_GRACE_SECONDS = 5.0
REMEMBERED_DISCARDS = 10_000  # discarded recording ids refused from then on (the latest ones)
PRIVATE_DIRECTORY = 0o700


class RecorderService:
    def __init__(self, config: RecorderConfig, data_dir: Path, allowed_networks: tuple[str, ...] = ()) -> None:
        self.config = config
        # A customer's S3 endpoint is reached only at public addresses and these
        # (common.netguard): a customer must not make the recorder upload into our network.
        self.allowed_networks = allowed_networks
        self.data_dir = Path(data_dir)
        self.recordings_root = self.data_dir / "recordings"
        for directory in (self.data_dir, self.recordings_root, self.data_dir / "spool"):
            directory.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
            os.chmod(directory, PRIVATE_DIRECTORY)  # made by an older version: 0755
        self.totals = Totals()
        self.retired: dict[str, int] = {"packets": 0, "nacks_sent": 0, "plis_sent": 0, "lost": 0}
        self.sessions: dict[str, Session] = {}
        self.mixes = LiveMixes()  # WHEP viewers' live mixes (recorder/live_mixing.py)
        self.backends: dict[str, StorageBackend] = {}
        self.channel: ChannelServer | None = None
        self.transcribing: dict[str, float] = {}  # recording id -> audio seconds still to do
        self._engine: TranscriptionEngine | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._background_of: dict[str, set[asyncio.Task[Any]]] = {}  # recording id -> its tasks
        self.discarded: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._spool_task: asyncio.Task[None] | None = None
        # Blocking rescan of what an earlier process left: fine, nothing runs yet.
        self.spool = Spool(
            self.data_dir / "spool",
            self._backend_for,
            limit_bytes=config.spool_limit_bytes,
            on_uploaded=self._on_uploaded,
            group_of=lambda item: str(_target(item).get("recording_id", "")),
            account_of=lambda item: str(_target(item).get("customer_id", "")),
            account_limit_bytes=min(config.customer_spool_limit_bytes, config.spool_limit_bytes),
        )

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._spool_task = asyncio.create_task(self.spool.run(grace=UPLOAD_GRACE_SECONDS), name="spool")
        for stray in await asyncio.to_thread(stray_directories, self.recordings_root):
            log.warning("%s: a work directory without a journal (nothing in it was recorded); removed", stray)
            await asyncio.to_thread(shutil.rmtree, stray, True)
        for directory in await asyncio.to_thread(list_recordings, self.recordings_root):
            entries = await asyncio.to_thread(directory.entries)
            if _stop_entry(entries) is not None:
                self._follow_up(directory, entries)
            else:  # control continues or stops it; if not, it is finished after a while
                self._run_in_background(self._orphan(directory), f"orphan-{directory.recording_id}",
                                        directory.recording_id)  # fmt: skip

    async def shutdown(self) -> None:
        self.mixes.close_all()
        for session in list(self.sessions.values()):
            try:
                await asyncio.wait_for(session.shutdown(), SHUTDOWN_STEP_SECONDS)
            except Exception:
                log.exception("recording %s: closing at shutdown failed", session.recording_id)
        self.sessions.clear()
        for task in list(self._background):
            task.cancel()  # a transcript cut short is made again at the next start
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._engine is not None:
            await self._engine.close()
        await self.spool.stop()
        if self._spool_task is not None:
            await asyncio.gather(self._spool_task, return_exceptions=True)

    def notify(self, entity_id: str, message: Message) -> None:
        if self.channel is not None:
            self.channel.notify(entity_id, message)

    # ----------------------------------------------------------------- requests

    async def handle(self, request: Message) -> Message:
        if request.NAME.startswith("MIX_"):
            return await self.mixes.handle(request)
        handler = getattr(self, "_on_" + request.NAME.lower(), None)
        if handler is None:
            raise RequestFailed("unsupported", f"{request.NAME} is not a recorder request")
        try:
            return await handler(request)
        except SessionError as error:
            raise RequestFailed(error.code, str(error)) from None

    def _refuse_discarded(self, recording_id: str) -> None:
        if recording_id in self.discarded:
            raise RequestFailed("discarded", f"recording {recording_id} was deleted")

    async def _on_recording_start(self, request: api.RecordingStart) -> Message:
        self._refuse_discarded(request.recording_id)
        session = self.sessions.get(request.recording_id)
        if session is not None:
            if session.finishing:
                raise RequestFailed("invalid", f"recording {request.recording_id} is stopping")
            return api.RecordingStarted(request.recording_id, *session.address)
        if self.spool.full:
            raise RequestFailed(
                "spool_full", "the recorder's spool is full: customer storage is not taking files"
            )
        if self.spool.account_full(request.customer_id):
            raise RequestFailed(
                "spool_full", "this account's share of the recorder's spool is full: its storage is not taking files"
            )
        try:
            backend = open_storage(request.storage, allowed_networks=self.allowed_networks)
            directory = RecordingDirectory(self.recordings_root, request.recording_id)
        except (StorageError, ValueError) as error:
            raise RequestFailed("invalid", str(error)) from None
        entries = await asyncio.to_thread(directory.entries)
        if _stop_entry(entries) is not None:
            raise RequestFailed("invalid", f"recording {request.recording_id} was stopped")
        self.backends[request.recording_id] = backend
        session = await self._open_session(request, directory)
        return api.RecordingStarted(request.recording_id, *session.address)

    async def _open_session(self, start: api.RecordingStart, directory: RecordingDirectory) -> Session:
        try:
            session = Session(
                start,
                directory,
                self.spool,
                self.notify,
                self.totals,
                max_segment_seconds=self.config.segment_seconds,
            )
        except StorageError as error:
            raise RequestFailed("invalid", f"key_prefix: {error}") from None
        session.on_failed = self._after_stop
        await session.open()
        self.sessions[start.recording_id] = session
        return session

    async def _on_recording_connect(self, request: api.RecordingConnect) -> Message:
        session = self._session(request.recording_id)
        try:
            ip = str(ipaddress.IPv4Address(request.sfu_ip))
        except ValueError:
            raise RequestFailed("invalid", f"sfu_ip: {request.sfu_ip!r} is not an IPv4 address") from None
        if not 0 < request.sfu_port < 65536:
            raise RequestFailed("invalid", f"sfu_port: {request.sfu_port} is not a port")
        session.connect(ip, request.sfu_port)
        return Empty()

    async def _on_track_add(self, request: api.TrackAdd) -> Message:
        await self._session(request.recording_id).add_track(request)
        return Empty()

    async def _on_track_remove(self, request: api.TrackRemove) -> Message:
        self._session(request.recording_id).remove_track(request.track_id)
        return Empty()

    async def _on_transcription_set(self, request: api.TranscriptionSet) -> Message:
        self._session(request.recording_id).set_transcription(request.enabled, list(request.hints))
        return Empty()

    async def _on_recording_stop(self, request: api.RecordingStop) -> Message:
        recording_id = request.recording_id
        self._refuse_discarded(recording_id)
        session = self.sessions.get(recording_id)
        if session is None:
            directory, entries = await self._on_disk(recording_id)
            if _stop_entry(entries) is None:
                session = await self._reopen(directory, entries)
        if session is not None:
            duration = await session.finish(dict(request.manifest))
            self._after_stop(session)
            if session.failure is None:
                return api.RecordingStopped(
                    recording_id, round(duration, 3), session.key_prefix + MANIFEST_NAME
                )
            directory = session.directory  # it failed by itself meanwhile
            entries = await asyncio.to_thread(directory.entries)
        return await self._stop_failed(directory, entries, dict(request.manifest))

    async def _on_recording_discard(self, request: api.RecordingDiscard) -> Message:
        """The recording was deleted (see recorder.api.RecordingDiscard)."""
        recording_id = request.recording_id
        self.discarded[recording_id] = None
        self.discarded.move_to_end(recording_id)
        while len(self.discarded) > REMEMBERED_DISCARDS:
            self.discarded.popitem(last=False)
        files, size = await self.spool.discard(recording_id)  # later arrivals are dropped too
        session = self.sessions.pop(recording_id, None)
        if session is not None:
            await session.abort()
            for name, value in session.counters().items():
                self.retired[name] = self.retired.get(name, 0) + value
        tasks = self._background_of.pop(recording_id, set())
        for task in tasks:
            task.cancel()  # its transcript, its meeting.json, an orphan's finishing
        await asyncio.gather(*tasks, return_exceptions=True)
        self.transcribing.pop(recording_id, None)
        more_files, more_size = await self.spool.discard(recording_id)
        try:
            directory = RecordingDirectory(self.recordings_root, recording_id)
        except ValueError:
            raise RequestFailed("invalid", "recording_id: must not be empty") from None
        await asyncio.to_thread(directory.remove)
        self.backends.pop(recording_id, None)
        log.info("recording %s: discarded (%d file(s) never uploaded)", recording_id, files + more_files)
        return api.RecordingDiscarded(recording_id, files + more_files, size + more_size)

    async def _orphan(self, directory: RecordingDirectory) -> None:
        """A recording an earlier process left unfinished: control continues or stops it
        within the grace; else it is finished here and uploaded (or removed when it cannot
        be)."""
        await asyncio.sleep(self.config.orphan_grace_s)
        recording_id = directory.recording_id
        if recording_id in self.sessions or recording_id in self.discarded:
            return
        entries = await asyncio.to_thread(directory.entries)
        if _stop_entry(entries) is not None:
            return  # stopped by control meanwhile
        storage = await asyncio.to_thread(directory.load_storage)
        if storage is None or not any(e.get("type") == "start" for e in entries):
            log.warning("recording %s: left unfinished with nowhere to upload it; removed", recording_id)
            await asyncio.to_thread(directory.remove)
            return
        log.warning(
            "recording %s: left unfinished by an earlier process and not continued within %.0f s; finishing it",
            recording_id,
            self.config.orphan_grace_s,
        )
        try:
            session = await self._reopen(directory, entries)
        except (RequestFailed, SessionError, StorageError, ValueError, OSError) as error:
            log.error("recording %s: cannot finish it (%s); removed", recording_id, error)
            await asyncio.to_thread(directory.remove)
            return
        await session.finish({})  # meeting.json from what the recorder knows
        self._after_stop(session)

    async def _on_disk(self, recording_id: str) -> tuple[RecordingDirectory, list[dict[str, Any]]]:
        """A recording's directory and journal, if this recorder has one it can upload from."""
        try:
            directory = RecordingDirectory(self.recordings_root, recording_id)
        except ValueError:
            raise RequestFailed("not_found", f"no recording {recording_id!r}") from None
        entries = await asyncio.to_thread(directory.entries)
        storage = await asyncio.to_thread(directory.load_storage)
        if not any(e.get("type") == "start" for e in entries) or storage is None:
            raise RequestFailed("not_found", f"no recording {recording_id!r}")
        return directory, entries

    async def _reopen(self, directory: RecordingDirectory, entries: list[dict[str, Any]]) -> Session:
        """A stop for a recording this process never started (the recorder restarted and
        control stops it instead of continuing it): salvage and queue what is on disk."""
        starts = [e for e in entries if e.get("type") == "start"]
        first = starts[0]
        start = api.RecordingStart(
            recording_id=directory.recording_id,
            meeting_id=first.get("meeting_id", ""),
            meeting_number=first.get("meeting_number", ""),
            title=first.get("title", ""),
            customer_id=first.get("customer_id", ""),
            storage=directory.load_storage() or {},
            key_prefix=first.get("key_prefix", ""),
            started_at=float(first.get("started_at", 0.0)),
            attempt=max(int(e.get("attempt", 0)) for e in starts) + 1,
            segment_seconds=float(first.get("segment_seconds", self.config.segment_seconds)),
            hints=_last_hints(entries),
            mix_notice=False,
        )
        return await self._open_session(start, directory)

    async def _stop_failed(
        self, directory: RecordingDirectory, entries: list[dict[str, Any]], control: dict[str, Any]
    ) -> Message:
        """RECORDING_STOP of a recording that stopped by itself (RECORDING_FAILED): its
        meeting.json, now with control's part (participants, consent ledger, chat)."""
        stop = _stop_entry(entries) or {}
        first = next(e for e in entries if e.get("type") == "start")
        if manifest_queued(entries):
            key = first.get("key_prefix", "") + MANIFEST_NAME  # the fallback went first
        else:
            key = await queue_manifest(directory, self.spool, self.totals, control)
        stopped_at = float(stop.get("at", 0.0))
        duration = stopped_at - float(first.get("started_at", stopped_at))
        return api.RecordingStopped(directory.recording_id, round(duration, 3), key)

    def _manifest_fallback(self, directory: RecordingDirectory) -> None:
        """A failed recording whose RECORDING_STOP does not come still gets its manifest."""

        async def later() -> None:
            await asyncio.sleep(MANIFEST_GRACE_SECONDS)
            entries = await asyncio.to_thread(directory.entries)
            if _stop_entry(entries) is not None and not manifest_queued(entries):
                await queue_manifest(directory, self.spool, self.totals, {})
            self._cleanup_if_done(directory.recording_id)

        self._run_in_background(later(), f"manifest-{directory.recording_id}", directory.recording_id)

    def _run_in_background(self, work: Any, name: str, recording_id: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        mine = self._background_of.setdefault(recording_id, set())
        mine.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._background.discard(finished)
            mine.discard(finished)
            if not mine and self._background_of.get(recording_id) is mine:
                del self._background_of[recording_id]

        task.add_done_callback(done)

    async def _on_recorder_get_stats(self, _: api.RecorderGetStats) -> Message:
        counters = dict(self.retired)
        lag = 0.0
        backlog = sum(self.transcribing.values())
        active = 0
        for session in self.sessions.values():
            for name, value in session.counters().items():
                counters[name] = counters.get(name, 0) + value
            if not session.finishing:
                active += 1
                lag = max(lag, session.lag())
                backlog += session.speech_seconds()
        spool = self.spool.stats()
        return api.RecorderStats(
            gauges={
                "active_recordings": float(active),
                "spool_bytes": float(spool["pending_bytes"]),
                "spool_files": float(spool["pending_files"]),
                "lag_seconds": round(lag, 3),
                "transcription_backlog_seconds": round(backlog, 3),
                "live_mixes": float(len(self.mixes.jobs)),
            },
            counters={
                "bytes_written": self.totals.bytes_written,
                "segments_flushed": self.totals.segments_flushed,
                "upload_attempts": spool["upload_attempts"],
                "upload_failures": spool["upload_failures"],
                "uploads_completed": spool["uploads_completed"],
                "packets_received": counters["packets"],
                "packets_lost": counters["lost"],
                "nacks_sent": counters["nacks_sent"],
                "plis_sent": counters["plis_sent"],
                "packets_unknown_ssrc": self.totals.unknown_ssrc,
                "packets_unknown_peer": self.totals.unknown_peer,
                "packets_malformed": self.totals.malformed,
                **self.mixes.counters(),
            },
        )

    def _session(self, recording_id: str) -> Session:
        self._refuse_discarded(recording_id)
        session = self.sessions.get(recording_id)
        if session is None:
            raise RequestFailed("not_found", f"no active recording {recording_id!r}")
        return session

    # ----------------------------------------------------------------- after a stop

    def _after_stop(self, session: Session) -> None:
        """A session finished (stopped, or failed by itself): forget it, keep its counters."""
        if self.sessions.get(session.recording_id) is not session:
            return
        del self.sessions[session.recording_id]
        for name, value in session.counters().items():
            self.retired[name] = self.retired.get(name, 0) + value
        self._follow_up(session.directory, session.directory.entries())

    def _follow_up(self, directory: RecordingDirectory, entries: list[dict[str, Any]]) -> None:
        """What a stopped recording still needs: its meeting.json (a failed one's waits for
        control's part), its transcript, then the removal of its work directory."""
        if not manifest_queued(entries):
            self._manifest_fallback(directory)
        if _transcript_due(entries):
            runs = _speech_runs(directory, entries)
            self.transcribing[directory.recording_id] = sum(run_seconds(run.path) for run in runs)
            work = self._make_transcript(directory, entries, runs, _last_hints(entries))
            self._run_in_background(work, f"transcript-{directory.recording_id}", directory.recording_id)
        else:
            self._cleanup_if_done(directory.recording_id)

    async def _make_transcript(
        self,
        directory: RecordingDirectory,
        entries: list[dict[str, Any]],
        runs: list[SpeechRun],
        hints: list[str],
    ) -> None:
        recording_id = directory.recording_id
        starts = [e for e in entries if e.get("type") == "start"]
        first = starts[0] if starts else {}
        key_prefix = first.get("key_prefix", "")

        def progress(seconds: float) -> None:
            self.transcribing[recording_id] = max(0.0, self.transcribing.get(recording_id, 0.0) - seconds)

        try:
            engine = self._get_engine()
            segments = await transcribe_runs(engine, runs, hints, progress)
            meta = {
                "recording_id": recording_id,
                "meeting_id": first.get("meeting_id", ""),
                "meeting_number": first.get("meeting_number", ""),
                "title": first.get("title", ""),
                "started_at": first.get("started_at"),
                "engine": engine.name,
            }
            vtt, doc = await asyncio.to_thread(write_transcript, directory.out, segments, meta)
            keys = tuple(transcript_keys(key_prefix))
            attempt = max((int(e.get("attempt", 0)) for e in starts), default=0)
            for path, content_type in ((vtt, "text/vtt"), (doc, "application/json")):
                out = Outgoing(path, "transcript", content_type, group=keys)
                account = str(first.get("customer_id", ""))
                await queue_file(directory, self.spool, key_prefix, attempt, out, self.totals, account)
            await asyncio.to_thread(directory.append, {"type": "transcript", "keys": list(keys)})
            for run in runs:
                run.path.unlink(missing_ok=True)
            log.info("recording %s: transcript of %d segment(s) queued", recording_id, len(segments))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recording %s: the transcript failed", recording_id)
        finally:
            self.transcribing.pop(recording_id, None)
        self._cleanup_if_done(recording_id)

    def _get_engine(self) -> TranscriptionEngine:
        if self._engine is None:
            if self.config.transcription_engine == "openai":
                settings = {
                    "kind": "openai",
                    "base_url": self.config.openai_base_url,
                    "api_key": self.config.openai_api_key,
                    "model": self.config.openai_model,
                }
            else:
                settings = {"kind": "pocketsphinx"}
            self._engine = engine_from_settings(settings)
        return self._engine

    # ----------------------------------------------------------------- the spool

    def _backend_for(self, item: SpoolItem) -> StorageBackend:
        recording_id = _target(item).get("recording_id", "")
        backend = self.backends.get(recording_id)
        if backend is None:
            settings = (
                RecordingDirectory(self.recordings_root, recording_id).load_storage()
                if recording_id
                else None
            )
            if settings is None:
                raise StorageError(f"no storage settings for recording {recording_id!r}", code="settings")
            backend = self.backends[recording_id] = open_storage(settings, allowed_networks=self.allowed_networks)
        return backend

    def _on_uploaded(self, item: SpoolItem, stored: StoredObject) -> None:
        target = _target(item)
        recording_id = str(target.get("recording_id", ""))
        kind = str(target.get("kind", ""))
        self.notify(
            recording_id,
            api.RecordingFileUploaded(
                recording_id=recording_id,
                key=stored.key,
                size=stored.size,
                sha256=stored.sha256,
                kind=kind,
                track_id=str(target.get("track_id", "")),
                start=float(target.get("start", 0.0)),
                end=float(target.get("end", 0.0)),
                content_type=item.content_type,
            ),
        )
        group = [str(key) for key in target.get("group", [])]
        if kind == "transcript" and group:
            pending = {other.key for other in self.spool.pending()}
            if not pending.intersection(group):
                self.notify(recording_id, api.TranscriptReady(recording_id, group))
        self._cleanup_if_done(recording_id)

    def _cleanup_if_done(self, recording_id: str) -> None:
        """Remove a stopped recording's work directory once nothing of it is left to do."""
        if not recording_id or recording_id in self.sessions or recording_id in self.transcribing:
            return
        if any(_target(item).get("recording_id") == recording_id for item in self.spool.pending()):
            return
        try:
            directory = RecordingDirectory(self.recordings_root, recording_id)
        except ValueError:
            return
        entries = directory.entries()
        if _stop_entry(entries) is None:
            return
        if _transcript_due(entries) or not manifest_queued(entries):
            return
        directory.remove()
        self.backends.pop(recording_id, None)
        log.info("recording %s: every file uploaded; work directory removed", recording_id)


def _target(item: SpoolItem) -> dict[str, Any]:
    try:
        target = json.loads(item.target)
    except ValueError:
        return {}
    return target if isinstance(target, dict) else {}


def _speech_runs(directory: RecordingDirectory, entries: list[dict[str, Any]]) -> list[SpeechRun]:
    return [run for run in journaled_runs(entries, directory.speech) if run.path.is_file()]


def _stop_entry(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((e for e in entries if e.get("type") == "stop"), None)


def _transcript_due(entries: list[dict[str, Any]]) -> bool:
    """Transcription was on at some point and the transcript is not queued yet."""
    return transcription_was_on(entries) and not any(e.get("type") == "transcript" for e in entries)


def _last_hints(entries: list[dict[str, Any]]) -> list[str]:
    hints: list[str] = []
    for entry in entries:
        if entry.get("type") in ("start", "transcription") and isinstance(entry.get("hints"), list):
            hints = [str(h) for h in entry["hints"]] or hints
    return hints


# ------------------------------------------------------------------------- process
