"""One recording in the recorder process: its UDP socket, tracks, mix, speech and files.

    RECORDING_START  -> Session.open(): work directory, journal, salvage of what a killed
                        process left, the mixer, a UDP socket on 127.0.0.1 (RTP + RTCP)
    TRACK_ADD/REMOVE -> Track objects (recorder/track.py), keyed by SSRC for demuxing
    RECORDING_STOP   -> Session.finish(): tracks flushed, last segments closed, the mix
                        closed, meeting.json written; every file is queued in the spool

Every closed file goes through one hand-off task, in order: journal it (so a restarted
process knows it exists), then move it into the spool (which uploads it). File names
carry the attempt (`<track>.a<attempt>-<index>.webm`, `mix.a<attempt>-<index>.ogg`), so
a later attempt of the same recording never reuses a name. See docs/recorder.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from common.messages import Message
from common.storage import check_key
from recorder import api
from recorder.journal import RecordingDirectory, safe_name
from recorder.manifest import MANIFEST_NAME, build_manifest
from recorder.media.depacketize import Frame, codec_key
from recorder.media.mixer import MIX_KIND, AudioMixer
from recorder.media.segments import CONTAINERS, PART_SUFFIX, ClosedSegment, SegmentWriter, salvage_partial
from recorder.media.timeline import ClockDomain
from recorder.speech import (
    TRANSCRIPT_JSON,
    TRANSCRIPT_VTT,
    SpeechCollector,
    SpeechRun,
    journaled_runs,
    run_seconds,
    transcription_was_on,
)
from recorder.storage import Spool
from recorder.track import Track, peek_ssrc
from sfu.wire import rtcp
from sfu.wire.rtp import is_rtcp

log = logging.getLogger(__name__)

TICK_SECONDS = 0.02
MIX_EVERY_SECONDS = 0.2
REPORT_EVERY_SECONDS = 1.0
# The mix is made this far behind live: every track's audio up to then has arrived (the
# jitter buffer holds a packet up to 0.5 s).
MIX_DELAY_SECONDS = 1.0
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
CNAME = "conclave-recorder"
_SEGMENT_FILE = re.compile(r"(?P<stem>.+)-(?P<index>\d{5})(?P<ext>\.webm|\.mkv|\.ogg)(?P<part>\.part)?")


class Totals:
    """Counters of the whole process (they never go back, whatever sessions end)."""

    __slots__ = (
        "bytes_written",
        "segments_flushed",
        "packets",
        "nacks_sent",
        "plis_sent",
        "packets_lost",
        "unknown_ssrc",
        "unknown_peer",
        "malformed",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass
class Outgoing:
    """A closed file on its way to the spool."""

    path: Path
    kind: str  # track | mix | manifest | transcript
    content_type: str
    track_id: str = ""
    writer: str = ""
    start: float = 0.0
    end: float = 0.0
    salvaged: bool = False
    journaled: bool = False  # already in the journal (re-queued after a crash)
    group: tuple[str, ...] = ()  # transcript: all keys of the transcript


class SessionError(Exception):
    """A request this session cannot carry out; `code` is the channel error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


MIX_PREFIX = "mix.a"  # the mix's files: mix.a<attempt>-<index>.ogg


def writer_stem(track_id: str, attempt: int) -> str:
    """A track's file name stem, `<track>.a<attempt>`: no two tracks, attempts (or the
    mix) share one."""
    stem = safe_name(track_id)
    if stem.split(".")[0].lower() == MIX_PREFIX.split(".")[0]:
        stem = "track-" + stem  # a track named "mix..." must not pass for the mix
    return f"{stem}.a{attempt}"


def transcript_keys(key_prefix: str) -> list[str]:
    """Where a recording's transcript goes (speech.write_transcript writes these names)."""
    return [key_prefix + TRANSCRIPT_VTT, key_prefix + TRANSCRIPT_JSON]


def spool_target(recording_id: str, out: Outgoing, account: str = "") -> str:
    """What the spool keeps beside a file (it survives restarts): where it goes, whose it
    is (`customer_id`: the spool's account) and what the RECORDING_FILE_UPLOADED
    notification says about it."""
    return json.dumps(
        {
            "recording_id": recording_id,
            "customer_id": account,
            "kind": out.kind,
            "track_id": out.track_id,
            "start": round(out.start, 3),
            "end": round(out.end, 3),
            "group": list(out.group),
        },
        separators=(",", ":"),
    )


async def queue_file(
    directory: RecordingDirectory,
    spool: Spool,
    key_prefix: str,
    attempt: int,
    out: Outgoing,
    totals: Totals,
    account: str = "",
) -> str:
    """Journal a closed file, then move it into the spool (in that order: after a crash a
    journaled file still in the work directory is queued again, never lost), counted
    against `account` (the customer). Its key."""
    key = key_prefix + out.path.name
    size = out.path.stat().st_size
    if not out.journaled:
        await asyncio.to_thread(
            directory.append,
            {
                "type": "file",
                "kind": out.kind,
                "track_id": out.track_id,
                "writer": out.writer,
                "key": key,
                "start": round(out.start, 3),
                "end": round(out.end, 3),
                "size": size,
                "attempt": attempt,
                "salvaged": out.salvaged,
                "content_type": out.content_type,
            },
        )
    await spool.enqueue(out.path, key, out.content_type, spool_target(directory.recording_id, out, account))
    totals.bytes_written += size
    totals.segments_flushed += 1
    return key


def manifest_queued(entries: list[dict[str, Any]]) -> bool:
    return any(e.get("type") == "file" and e.get("kind") == "manifest" for e in entries)


async def queue_manifest(
    directory: RecordingDirectory, spool: Spool, totals: Totals, control: dict[str, Any]
) -> str:
    """Write meeting.json of a stopped recording from its journal and control's part,
    and queue it; its key."""
    entries = await asyncio.to_thread(directory.entries)
    starts = [e for e in entries if e.get("type") == "start"]
    stop = next((e for e in entries if e.get("type") == "stop"), {})
    key_prefix = starts[0].get("key_prefix", "") if starts else ""
    document = build_manifest(
        control,
        entries,
        stopped_at=float(stop.get("at", time.time())),
        failure=stop.get("failure"),
        transcript_keys=transcript_keys(key_prefix) if transcription_was_on(entries) else [],
    )
    path = directory.out / MANIFEST_NAME
    text = json.dumps(document, indent=1, ensure_ascii=False)
    await asyncio.to_thread(path.write_text, text, "utf-8")
    attempt = max((int(e.get("attempt", 0)) for e in starts), default=0)
    out = Outgoing(path, "manifest", "application/json")
    account = str(starts[0].get("customer_id", "")) if starts else ""
    return await queue_file(directory, spool, key_prefix, attempt, out, totals, account)


# The worker's consumer exists (and may send) a moment before control's TRACK_ADD for it
# reaches us: packets of an SSRC not announced yet are held this long, then replayed.
EARLY_PACKETS = 256
EARLY_MAX_AGE_S = 2.0


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, session: Session) -> None:
        self.session = session
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self.session.on_datagram(data, addr)
        except Exception:  # one bad packet must not stop the recording
            log.exception("recording %s: packet from %s failed", self.session.recording_id, addr)

    def error_received(self, exc) -> None:  # e.g. ICMP port unreachable for our RTCP
        log.debug("recording %s: socket error %s", self.session.recording_id, exc)


class Session:
    def __init__(
        self,
        start: api.RecordingStart,
        directory: RecordingDirectory,
        spool: Spool,
        notify: Callable[[str, Message], None],
        totals: Totals,
        *,
        max_segment_seconds: float = 10.0,
    ) -> None:
        self.start_message = start
        self.recording_id = start.recording_id
        self.directory = directory
        self.spool = spool
        self.notify = notify
        self.totals = totals
        self.segment_seconds = min(start.segment_seconds, max_segment_seconds)
        if not self.segment_seconds > 0:
            raise SessionError("invalid", "segment_seconds must be more than 0")
        self.key_prefix = (
            start.key_prefix
            if not start.key_prefix or start.key_prefix.endswith("/")
            else start.key_prefix + "/"
        )
        check_key(self.key_prefix + MANIFEST_NAME)  # StorageError: a key prefix storage refuses
        self.attempt = start.attempt
        self.sender_ssrc = secrets.randbits(32) or 1
        self.tracks: dict[str, Track] = {}
        self.by_ssrc: dict[int, Track] = {}
        self.early: deque[tuple[int, bytes, float]] = deque(maxlen=EARLY_PACKETS)
        self.writers: dict[tuple[str, str], SegmentWriter] = {}  # (track_id, codec) -> writer
        self.domains: dict[str, ClockDomain] = {}  # participant -> their sender clock
        self.collectors: dict[str, SpeechCollector] = {}
        self.speech_runs: list[SpeechRun] = []
        self.transcribe = start.transcribe
        self.hints = list(start.hints)
        self.transcription_ever = start.transcribe
        self.address: tuple[str, int] = ("127.0.0.1", 0)  # our socket, once open
        self.remote: tuple[str, int] | None = None  # from RECORDING_CONNECT
        self.learned_remote: tuple[str, int] | None = None  # where RTP comes from
        self.mixer: AudioMixer | None = None
        self.start_mono = 0.0
        self.failure: str | None = None
        self.stopped_at: float | None = None
        self.retired = {"packets": 0, "nacks_sent": 0, "plis_sent": 0, "lost": 0}
        self._socket: _Socket | None = None
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self._finishing: asyncio.Task[None] | None = None
        self.on_failed: Callable[[Session], None] | None = None
        self.account = start.customer_id  # whose share of the spool its files count against
        self.discarding = False  # deleted: closed files are thrown away, nothing is queued

    # ------------------------------------------------------------------ start

    async def open(self) -> tuple[str, int]:
        """Prepare the directory, salvage an earlier attempt, bind the socket."""
        try:
            return await self._open()
        except BaseException:
            for task in self._tasks:
                task.cancel()
            if self._socket is not None and self._socket.transport is not None:
                self._socket.transport.close()
            raise

    async def _open(self) -> tuple[str, int]:
        await asyncio.to_thread(self.directory.create)
        await asyncio.to_thread(self.directory.save_storage, dict(self.start_message.storage))
        entries = await asyncio.to_thread(self.directory.entries)
        used = [int(e.get("attempt", 0)) for e in entries if e.get("type") == "start"]
        if used and self.attempt <= max(used):
            # Control's count is behind what this directory saw: never reuse a name.
            log.warning(
                "recording %s: attempt %d already used, continuing as %d",
                self.recording_id,
                self.attempt,
                max(used) + 1,
            )
            self.attempt = max(used) + 1
        message = self.start_message
        await asyncio.to_thread(
            self.directory.append,
            {
                "type": "start",
                "recording_id": self.recording_id,
                "attempt": self.attempt,
                "at": time.time(),
                "meeting_id": message.meeting_id,
                "meeting_number": message.meeting_number,
                "title": message.title,
                "customer_id": message.customer_id,
                "key_prefix": self.key_prefix,
                "started_at": message.started_at,
                "segment_seconds": self.segment_seconds,
                "transcribe": message.transcribe,
                "hints": list(message.hints),
            },
        )
        # t=0 of the recording on the monotonic clock every track and timer uses.
        self.start_mono = time.monotonic() - (time.time() - message.started_at)
        self._tasks.append(asyncio.create_task(self._hand_off_forever(), name=f"handoff-{self.recording_id}"))
        mix_start = await self._recover(entries)
        notice = message.mix_notice and mix_start == 0.0
        self.mixer = AudioMixer(
            self.directory.media,
            self.segment_seconds,
            self._mix_closed,
            start=mix_start,
            notice=True if notice else None,
            name=f"{MIX_PREFIX}{self.attempt}",
        )
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        except OSError:
            pass
        sock.bind(("127.0.0.1", 0))
        _, protocol = await loop.create_datagram_endpoint(lambda: _Socket(self), sock=sock)
        self._socket = protocol
        self._tasks.append(asyncio.create_task(self._tick_forever(), name=f"tick-{self.recording_id}"))
        ip, port = sock.getsockname()[:2]
        self.address = (ip, port)
        log.info("recording %s attempt %d: receiving on %s:%d", self.recording_id, self.attempt, ip, port)
        return ip, port

    async def _recover(self, entries: list[dict[str, Any]]) -> float:
        """Queue what earlier attempts left in media/ (salvaging `.part` files); learn the
        speech runs; return where the mix continues (recording seconds)."""
        journaled = {
            e["key"]: e for e in entries if e.get("type") == "file" and isinstance(e.get("key"), str)
        }
        writers = {
            e["writer"]: e for e in entries if e.get("type") == "track" and isinstance(e.get("writer"), str)
        }
        mix_end = max(
            (float(e.get("end", 0.0)) for e in journaled.values() if e.get("kind") == "mix"), default=0.0
        )
        self.speech_runs = journaled_runs(entries, self.directory.speech)
        self.transcription_ever = self.transcription_ever or transcription_was_on(entries)
        for path in sorted(self.directory.media.iterdir()):
            if path.name.endswith(".salvage"):
                path.unlink(missing_ok=True)  # a salvage cut short: its .part is still there
                continue
            match = _SEGMENT_FILE.fullmatch(path.name)
            if match is None:
                continue
            stem, index = match["stem"], int(match["index"])
            is_mix = stem.startswith(MIX_PREFIX)
            final_name = path.name[: -len(PART_SUFFIX)] if match["part"] else path.name
            known = journaled.get(self.key_prefix + final_name)
            if not match["part"] and known is not None:
                # Closed and journaled, the move into the spool cut short: queue it again.
                self._queue.put_nowait(self._outgoing_from_entry(path, known))
                continue
            if not match["part"]:
                path = path.rename(path.with_name(path.name + PART_SUFFIX))
            owner = writers.get(stem)
            codec = "opus" if is_mix else (owner or {}).get("codec") or _probe_codec(path)
            if codec is None:
                log.error(
                    "recording %s: cannot tell what %s holds; left in place", self.recording_id, path.name
                )
                continue
            kind = MIX_KIND if is_mix else None
            closed = await asyncio.to_thread(salvage_partial, path, stem, index, codec, kind)
            if closed is None:
                continue
            if is_mix:
                mix_end = max(mix_end, closed.end)
                self._mix_closed(closed)
            else:
                self._queue.put_nowait(
                    self._outgoing(closed, "track", (owner or {}).get("track_id", stem), stem)
                )
        return mix_end

    def _outgoing_from_entry(self, path: Path, entry: dict[str, Any]) -> Outgoing:
        return Outgoing(
            path=path,
            kind=entry.get("kind", "track"),
            content_type=entry.get("content_type", "application/octet-stream"),
            track_id=entry.get("track_id", ""),
            writer=entry.get("writer", ""),
            start=float(entry.get("start", 0.0)),
            end=float(entry.get("end", 0.0)),
            salvaged=bool(entry.get("salvaged", False)),
            journaled=True,
        )

    # ------------------------------------------------------------------ requests

    def connect(self, ip: str, port: int) -> None:
        self.remote = (ip, port)
        for track in self.tracks.values():
            track.start()  # the key frame asked for before the address was known

    async def add_track(self, message: api.TrackAdd) -> None:
        if self._finishing is not None:
            raise SessionError("invalid", "the recording is stopping")
        if message.kind not in ("audio", "video"):
            raise SessionError("invalid", "kind must be audio or video")
        try:
            codec = codec_key(message.codec_name)
        except ValueError as error:
            raise SessionError("invalid", str(error)) from None
        if (codec == "opus") != (message.kind == "audio"):
            raise SessionError("invalid", f"a {message.kind} track cannot be {message.codec_name}")
        if not 0 <= message.ssrc <= 0xFFFFFFFF or message.clock_rate <= 0:
            raise SessionError("invalid", "ssrc must be 0..2^32-1 and clock_rate positive")
        existing = self.tracks.get(message.track_id)
        if existing is not None and not existing.closed:
            if existing.info == message:
                return  # a repeated request
            self.remove_track(message.track_id)
        other = self.by_ssrc.get(message.ssrc)
        if other is not None:
            raise SessionError("invalid", f"ssrc {message.ssrc} is already track {other.track_id}")
        writer = self.writers.get((message.track_id, codec))
        if writer is None:
            stem = writer_stem(message.track_id, self.attempt)
            same_track = sum(1 for track_id, _ in self.writers if track_id == message.track_id)
            if same_track:
                stem += f".{same_track}"  # the track came back with another codec
            writer = SegmentWriter(
                stem,
                codec,
                self.directory.media,
                self.segment_seconds,
                lambda closed, track_id=message.track_id, stem=stem: self._queue.put_nowait(
                    self._outgoing(closed, "track", track_id, stem)
                ),
                audio_channels=1 if message.channels == 1 else 2,
            )
            self.writers[(message.track_id, codec)] = writer
        await asyncio.to_thread(
            self.directory.append,
            {
                "type": "track",
                "attempt": self.attempt,
                "track_id": message.track_id,
                "writer": writer.track_id,
                "participant_id": message.participant_id,
                "display_name": message.display_name,
                "kind": message.kind,
                "source": message.source,
                "codec": codec,
                "ssrc": message.ssrc,
                "at": self.now(),
            },
        )
        track = Track(
            message,
            writer,
            self.start_mono,
            self.domains.setdefault(message.participant_id, ClockDomain()),
            self.send_rtcp,
            self.sender_ssrc,
            on_audio=self._on_audio,
        )
        self.tracks[message.track_id] = track
        self.by_ssrc[message.ssrc] = track
        if self.transcribe and message.kind == "audio":
            self._collect_speech(track)
        track.start()
        self._replay_early(track)

    def remove_track(self, track_id: str) -> None:
        track = self.tracks.pop(track_id, None)
        if track is None:
            return
        self._retire(track)
        if self.mixer is not None:
            self.mixer.remove_track(track_id)
        collector = self.collectors.pop(track_id, None)
        if collector is not None:
            collector.close()
        self.directory.append({"type": "track_removed", "track_id": track_id, "at": self.now()})

    def set_transcription(self, enabled: bool, hints: list[str]) -> None:
        self.transcribe = enabled
        self.hints = list(hints) or self.hints
        self.transcription_ever = self.transcription_ever or enabled
        self.directory.append(
            {"type": "transcription", "enabled": enabled, "hints": self.hints, "at": self.now()}
        )
        if enabled:
            for track in self.tracks.values():
                if not track.is_video and track.track_id not in self.collectors:
                    self._collect_speech(track)
        else:
            for collector in self.collectors.values():
                collector.close()
            self.collectors.clear()

    # ------------------------------------------------------------------ media

    def now(self) -> float:
        """Recording seconds now."""
        return time.monotonic() - self.start_mono

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        arrival = time.monotonic()
        # Once the SFU's address is known, only it may feed the recording: another local
        # process must not slip packets (or sender reports) into a customer's files.
        expected = self.remote or self.learned_remote
        if expected is not None and (addr[0], addr[1]) != expected:
            self.totals.unknown_peer += 1
            return
        if is_rtcp(data):
            try:
                packets = rtcp.parse_compound(data)
            except ValueError:
                self.totals.malformed += 1
                return
            for packet in packets:
                if isinstance(packet, rtcp.SenderReport):
                    track = self.by_ssrc.get(packet.ssrc)
                    if track is not None:
                        track.on_sender_report(packet, arrival)
            return
        ssrc = peek_ssrc(data)
        track = self.by_ssrc.get(ssrc) if ssrc is not None else None
        if track is None:
            if ssrc is None or len(self.early) == EARLY_PACKETS:
                self.totals.unknown_ssrc += 1  # unreadable, or the oldest held one goes
            if ssrc is not None:
                self.early.append((ssrc, data, arrival))
            return
        if self.learned_remote is None:
            self.learned_remote = (addr[0], addr[1])
        track.on_rtp(data, arrival)

    def _replay_early(self, track: Track) -> None:
        """The new track's packets that came before its TRACK_ADD; stale others count as dropped."""
        now = time.monotonic()
        held, self.early = self.early, deque(maxlen=EARLY_PACKETS)
        for ssrc, data, arrival in held:
            if now - arrival > EARLY_MAX_AGE_S:
                self.totals.unknown_ssrc += 1
            elif ssrc == track.ssrc:
                track.on_rtp(data, arrival)
            else:
                self.early.append((ssrc, data, arrival))

    def send_rtcp(self, data: bytes) -> None:
        destination = self.remote or self.learned_remote
        if destination is None or self._socket is None or self._socket.transport is None:
            return
        self._socket.transport.sendto(data, destination)

    def _on_audio(self, track: Track, frame: Frame, pts: float) -> None:
        if self.mixer is not None:
            self.mixer.push(track.track_id, frame.data, pts)
        collector = self.collectors.get(track.track_id)
        if collector is not None:
            collector.push(frame.data, pts)

    def _collect_speech(self, track: Track) -> None:
        info = track.info

        def journal_run(run: SpeechRun) -> None:
            self.speech_runs.append(run)
            self.directory.append(
                {
                    "type": "speech",
                    "file": run.path.name,
                    "start": run.start,
                    "track_id": run.track_id,
                    "participant_id": run.participant_id,
                    "display_name": run.display_name,
                }
            )

        stem = f"{track.writer.track_id}.s{sum(1 for r in self.speech_runs if r.track_id == info.track_id)}"
        self.collectors[info.track_id] = SpeechCollector(
            self.directory.speech, stem, info.track_id, info.participant_id, info.display_name, journal_run
        )

    async def _tick_forever(self) -> None:
        next_mix = next_report = 0.0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            try:
                for track in list(self.tracks.values()):
                    track.tick(now)
                if now >= next_mix:
                    next_mix = now + MIX_EVERY_SECONDS
                    if self.mixer is not None:
                        self.mixer.mix_until(now - self.start_mono - MIX_DELAY_SECONDS)
                if now >= next_report:
                    next_report = now + REPORT_EVERY_SECONDS
                    self._send_reports(now)
            except Exception:
                log.exception("recording %s: timer step failed", self.recording_id)

    def _send_reports(self, now: float) -> None:
        blocks = [b for b in (t.report_block(now) for t in self.tracks.values()) if b is not None]
        for first in range(0, len(blocks), rtcp.MAX_COUNT):
            self.send_rtcp(
                rtcp.build_rr(self.sender_ssrc, blocks[first : first + rtcp.MAX_COUNT])
                + rtcp.build_sdes(self.sender_ssrc, CNAME)
            )

    def _retire(self, track: Track) -> None:
        track.close()
        if self.by_ssrc.get(track.ssrc) is track:
            del self.by_ssrc[track.ssrc]
        stats = track.stats()
        self.retired["packets"] += stats["packets"]
        self.retired["nacks_sent"] += stats["nacks_sent"]
        self.retired["plis_sent"] += stats["plis_sent"]
        self.retired["lost"] += stats["lost"]

    # ------------------------------------------------------------------ files

    def _outgoing(self, closed: ClosedSegment, kind: str, track_id: str, writer: str) -> Outgoing:
        return Outgoing(
            path=closed.path,
            kind=kind,
            content_type=closed.content_type,
            track_id=track_id,
            writer=writer,
            start=closed.start,
            end=closed.end,
            salvaged=closed.salvaged,
        )

    def _mix_closed(self, closed: ClosedSegment) -> None:
        self._queue.put_nowait(self._outgoing(closed, "mix", "mix", closed.track_id))

    async def _hand_off_forever(self) -> None:
        while True:
            out = await self._queue.get()
            try:
                await self._hand_off(out)
            except Exception as error:
                log.exception("recording %s: cannot queue %s", self.recording_id, out.path.name)
                self._fail_soon("storage", f"cannot queue {out.path.name}: {error}")
            finally:
                self._queue.task_done()

    async def _hand_off(self, out: Outgoing) -> None:
        if self.discarding:
            await asyncio.to_thread(out.path.unlink, True)
            return
        await queue_file(self.directory, self.spool, self.key_prefix, self.attempt, out, self.totals, self.account)
        if self.spool.full:
            self._fail_soon("spool_full", "the local spool is full: customer storage is not taking files")
        elif self.spool.account_full(self.account):
            self._fail_soon(
                "customer_spool_full",
                "this account's share of the local spool is full: its storage is not taking files",
            )

    async def drain(self) -> None:
        await self._queue.join()

    # ------------------------------------------------------------------ stop

    async def finish(self, control_manifest: dict[str, Any], failure: str | None = None) -> float:
        """Close everything and queue every file with meeting.json; the recording's
        duration. A second call waits for the first."""
        if self._finishing is None:
            self._finishing = asyncio.ensure_future(self._finish(control_manifest, failure))
        await asyncio.shield(self._finishing)
        return (self.stopped_at or time.time()) - self.start_message.started_at

    async def _finish(self, control_manifest: dict[str, Any], failure: str | None) -> None:
        self.failure = failure
        self._close_media()
        await self.drain()
        self.stopped_at = time.time()
        await asyncio.to_thread(
            self.directory.append, {"type": "stop", "at": self.stopped_at, "failure": failure}
        )
        if failure is None:
            # A failed recording's meeting.json waits for control's part (its RECORDING_STOP
            # follows RECORDING_FAILED), so that only one is ever uploaded.
            await queue_manifest(self.directory, self.spool, self.totals, control_manifest)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("recording %s: stopped%s", self.recording_id, f" ({failure})" if failure else "")

    def _close_media(self) -> None:
        """Stop receiving; close every track's open segment and the mix's."""
        if self._socket is not None and self._socket.transport is not None:
            self._socket.transport.close()
        for task in self._tasks:
            if task.get_name().startswith("tick-"):
                task.cancel()
        tracks, self.tracks = list(self.tracks.values()), {}
        for track in tracks:
            try:
                self._retire(track)
            except Exception:
                log.exception("recording %s: closing track %s failed", self.recording_id, track.track_id)
        for collector in self.collectors.values():
            collector.close()
        self.collectors.clear()
        if self.mixer is not None:
            try:
                self.mixer.close(end=max(self.now(), self.mixer.mixed_until))
            except Exception:
                log.exception("recording %s: closing the mix failed", self.recording_id)
            self.mixer = None

    async def shutdown(self) -> None:
        """The process is stopping (not the recording): close the open segments so they
        are playable and queued; a restarted process continues the recording."""
        if self._finishing is not None:
            await asyncio.shield(self._finishing)
            return
        self._close_media()
        await self.drain()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def abort(self) -> None:
        """The recording was deleted: stop receiving and close what is open, but queue
        nothing (every file closed now is deleted); no stop entry, no meeting.json. The
        caller removes the work directory and drops what the spool holds of it."""
        self.discarding = True
        if self._finishing is not None:  # a stop under way settles first (the spool drops it)
            await asyncio.gather(asyncio.shield(self._finishing), return_exceptions=True)
        else:
            self._close_media()
            await self.drain()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("recording %s: discarded", self.recording_id)

    def _fail_soon(self, reason: str, message: str) -> None:
        """Stop this recording by itself (from the hand-off task: so not awaited here)."""
        if self._finishing is not None or self.discarding:
            return
        log.error("recording %s: stopping: %s", self.recording_id, message)
        self._finishing = asyncio.ensure_future(self._finish({}, reason))

        def announce(_: asyncio.Future[None]) -> None:
            self.notify(self.recording_id, api.RecordingFailed(self.recording_id, reason, message))
            if self.on_failed is not None:
                self.on_failed(self)

        self._finishing.add_done_callback(announce)

    # ------------------------------------------------------------------ stats

    @property
    def finishing(self) -> bool:
        return self._finishing is not None

    def lag(self) -> float:
        now = time.monotonic()
        lags = [lag for lag in (t.lag(now) for t in self.tracks.values()) if lag is not None]
        return max(lags, default=0.0)

    def counters(self) -> dict[str, int]:
        out = dict(self.retired)
        for track in self.tracks.values():
            stats = track.stats()
            out["packets"] += stats["packets"]
            out["nacks_sent"] += stats["nacks_sent"]
            out["plis_sent"] += stats["plis_sent"]
            out["lost"] += stats["lost"]
        return out

    def speech_seconds(self) -> float:
        return sum(run_seconds(run.path) for run in self.speech_runs)


def _probe_codec(path: Path) -> str | None:
    """The codec of the first stream of a (damaged) segment file, if readable."""
    try:
        with av.open(str(path)) as container:
            if container.streams:
                name = container.streams[0].codec_context.name
                return name if name in CONTAINERS else None
    except (av.FFmpegError, OSError):
        return None
    return None
