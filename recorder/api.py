"""Typed messages between control and the recorder process, and how to start it.

Control imports this module and nothing else from `recorder`. The messages are
`common.messages.Message` subclasses (frozen dataclasses with an ``ENTITY_VERB`` name) so
that the same `common.channel` frames carry them; their names are distinct from the SFU's.

    cmd = recorder_command(child_fd, recorder_config_json(cfg))
    process = await asyncio.create_subprocess_exec(*cmd.argv, env=cmd.env, pass_fds=(child_fd,))
    # then: RECORDER_READY (notification), RECORDING_START -> RECORDING_STARTED, ...

A recording's lifecycle (entity id of every notification: the recording id):

    RECORDING_START    -> RECORDING_STARTED (ip, port: where the SFU's plain consumers send)
    RECORDING_CONNECT  -> EMPTY             (the SFU plain transport's address: RTCP goes there)
    TRACK_ADD / TRACK_REMOVE / TRANSCRIPTION_SET -> EMPTY
    RECORDING_STOP     -> RECORDING_STOPPED (last segments closed and queued)
    notifications: RECORDING_FILE_UPLOADED, RECORDING_FAILED, TRANSCRIPT_READY
    RECORDING_DISCARD  -> RECORDING_DISCARDED (the recording was deleted: everything of it
                          in this process goes, nothing more is uploaded; any time, any state)

A live mix for a meeting's WHEP viewers (entity of its notifications: the mix id; see
recorder/live_mixing.py), independent of any recording:

    MIX_START        -> MIX_STARTED (ip, port of its socket; the SSRC and payload type it sends)
    MIX_CONNECT      -> EMPTY       (the SFU plain transport's address: the mix goes there)
    MIX_TRACK_ADD / MIX_TRACK_REMOVE -> EMPTY (an Opus stream the SFU sends it, by SSRC)
    MIX_STOP         -> EMPTY       (harmless for a mix this process does not have)

After a recorder restart control sends RECORDING_START again with the same recording_id
and attempt + 1; the recording continues into new files that never collide with earlier
ones. See docs/recorder.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

from common.messages import Empty, Message

__all__ = [
    "CONFIG_ENVIRONMENT_VARIABLE",
    "RESPONSES",
    "MixConnect",
    "MixStart",
    "MixStarted",
    "MixStop",
    "MixTrackAdd",
    "MixTrackRemove",
    "RecorderCommand",
    "RecorderGetStats",
    "RecorderReady",
    "RecorderStats",
    "RecordingConnect",
    "RecordingDiscard",
    "RecordingDiscarded",
    "RecordingFailed",
    "RecordingFileUploaded",
    "RecordingStart",
    "RecordingStarted",
    "RecordingStop",
    "RecordingStopped",
    "TrackAdd",
    "TrackRemove",
    "TranscriptReady",
    "TranscriptionSet",
    "recorder_command",
    "recorder_config_json",
]

# ------------------------------------------------------------------------ requests


@dataclass(frozen=True)
class RecordingStart(Message):
    """Start (or, after a recorder restart, continue) one recording.

    storage: the customer's storage settings ({"kind": "local", "root": ...} or
    {"kind": "s3", ...}, see common/storage/settings.py). started_at: the recording's
    t=0, wall-clock epoch seconds. attempt: 0 first, +1 after every recorder restart.
    """

    NAME: ClassVar[str] = "RECORDING_START"
    recording_id: str
    meeting_id: str
    meeting_number: str
    title: str
    customer_id: str
    storage: dict[str, Any]
    key_prefix: str  # e.g. "recordings/<meeting_number>/<recording_id>/"
    started_at: float
    attempt: int = 0
    segment_seconds: float = 10.0
    transcribe: bool = False
    hints: list[str] = field(default_factory=list)
    mix_notice: bool = True

    def __repr__(self) -> str:
        # Storage settings hold credentials: never in a log line or a traceback.
        return f"RecordingStart(recording_id={self.recording_id!r}, attempt={self.attempt})"


@dataclass(frozen=True)
class RecordingStarted(Message):
    """Where the SFU's plain transport sends this recording's RTP (RTP and RTCP muxed)."""

    NAME: ClassVar[str] = "RECORDING_STARTED"
    recording_id: str
    ip: str
    port: int


@dataclass(frozen=True)
class RecordingConnect(Message):
    """The SFU plain transport's address: PLI, NACK and RR go there."""

    NAME: ClassVar[str] = "RECORDING_CONNECT"
    recording_id: str
    sfu_ip: str
    sfu_port: int


@dataclass(frozen=True)
class TrackAdd(Message):
    """A track the SFU now sends: its SSRC and payload type as the plain consumer has them
    (PLAIN_CONSUMER_INFO). A video track gets a PLI at once."""

    NAME: ClassVar[str] = "TRACK_ADD"
    recording_id: str
    track_id: str
    participant_id: str
    display_name: str
    kind: str  # "audio" | "video"
    source: str  # "microphone" | "camera" | "screen" | ...
    codec_name: str  # "opus" | "VP8" | "H264"
    clock_rate: int
    payload_type: int
    ssrc: int
    channels: int | None = None


@dataclass(frozen=True)
class TrackRemove(Message):
    NAME: ClassVar[str] = "TRACK_REMOVE"
    recording_id: str
    track_id: str


@dataclass(frozen=True)
class TranscriptionSet(Message):
    NAME: ClassVar[str] = "TRANSCRIPTION_SET"
    recording_id: str
    enabled: bool
    hints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RecordingStop(Message):
    """manifest: control's part of meeting.json (participants, consent ledger, chat log,
    start/stop times, software version); the recorder adds tracks, segments and its own."""

    NAME: ClassVar[str] = "RECORDING_STOP"
    recording_id: str
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordingStopped(Message):
    """Every file of the recording is closed and queued; uploads go on in the background
    (RECORDING_FILE_UPLOADED for each, the manifest among them)."""

    NAME: ClassVar[str] = "RECORDING_STOPPED"
    recording_id: str
    duration: float = 0.0  # seconds from started_at to the stop
    manifest_key: str = ""


@dataclass(frozen=True)
class RecordingDiscard(Message):
    """The recording was deleted: stop it if it runs (nothing is closed or queued), drop its
    files from the spool (an upload in flight is cut off; one that completes anyway is
    deleted from the storage again), stop its transcript, remove its work directory, and
    refuse it from now on (a later START or STOP of it gets `discarded`). Answered once
    nothing of it is left here; harmless for a recording this process never had."""

    NAME: ClassVar[str] = "RECORDING_DISCARD"
    recording_id: str


@dataclass(frozen=True)
class RecordingDiscarded(Message):
    """What went: spooled files (and their bytes) that were never uploaded."""

    NAME: ClassVar[str] = "RECORDING_DISCARDED"
    recording_id: str
    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class RecorderGetStats(Message):
    NAME: ClassVar[str] = "RECORDER_GET_STATS"


@dataclass(frozen=True)
class RecorderStats(Message):
    """gauges: active_recordings, spool_bytes, spool_files, lag_seconds,
    transcription_backlog_seconds, live_mixes. counters (since the process started): bytes_written,
    segments_flushed, upload_attempts, upload_failures, uploads_completed, packets_received,
    nacks_sent, plis_sent, packets_lost, mix_frames_sent, mix_frames_skipped."""

    NAME: ClassVar[str] = "RECORDER_STATS"
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------- live mixes (WHEP)


@dataclass(frozen=True)
class MixStart(Message):
    """Start mixing for a meeting's viewers: a UDP socket on 127.0.0.1, an Opus encoder."""

    NAME: ClassVar[str] = "MIX_START"
    mix_id: str
    meeting_id: str


@dataclass(frozen=True)
class MixStarted(Message):
    """Where the SFU's plain consumers send the voices, and what the mix's own RTP carries
    (control makes the plain producer that receives it with these)."""

    NAME: ClassVar[str] = "MIX_STARTED"
    mix_id: str
    ip: str
    port: int
    ssrc: int
    payload_type: int


@dataclass(frozen=True)
class MixConnect(Message):
    """The SFU plain transport's address: the mix's RTP goes there from now on."""

    NAME: ClassVar[str] = "MIX_CONNECT"
    mix_id: str
    sfu_ip: str
    sfu_port: int


@dataclass(frozen=True)
class MixTrackAdd(Message):
    """An Opus stream the SFU now sends the mix (PLAIN_CONSUMER_INFO's SSRC and type).
    ducks_others: while it plays the others are quieter (the announcer's notice)."""

    NAME: ClassVar[str] = "MIX_TRACK_ADD"
    mix_id: str
    track_id: str
    ssrc: int
    payload_type: int
    ducks_others: bool = False


@dataclass(frozen=True)
class MixTrackRemove(Message):
    NAME: ClassVar[str] = "MIX_TRACK_REMOVE"
    mix_id: str
    track_id: str


@dataclass(frozen=True)
class MixStop(Message):
    NAME: ClassVar[str] = "MIX_STOP"
    mix_id: str


RESPONSES: dict[type[Message], type[Message]] = {
    RecordingStart: RecordingStarted,
    RecordingConnect: Empty,
    TrackAdd: Empty,
    TrackRemove: Empty,
    TranscriptionSet: Empty,
    RecordingStop: RecordingStopped,
    RecordingDiscard: RecordingDiscarded,
    RecorderGetStats: RecorderStats,
    MixStart: MixStarted,
    MixConnect: Empty,
    MixTrackAdd: Empty,
    MixTrackRemove: Empty,
    MixStop: Empty,
}

# ------------------------------------------------------------------- notifications


@dataclass(frozen=True)
class RecorderReady(Message):
    """Sent once when the process is up (entity id "recorder"). `pending_uploads`: files
    left in the spool by an earlier process, which it now uploads."""

    NAME: ClassVar[str] = "RECORDER_READY"
    pid: int
    version: str
    pending_uploads: int = 0


@dataclass(frozen=True)
class RecordingFileUploaded(Message):
    """Customer storage confirmed a file (size and SHA-256 verified); the local copy is gone.
    kind: track | mix | manifest | transcript; start/end: recording seconds (0 when the
    file is not media)."""

    NAME: ClassVar[str] = "RECORDING_FILE_UPLOADED"
    recording_id: str
    key: str
    size: int
    sha256: str
    kind: str
    track_id: str = ""
    start: float = 0.0
    end: float = 0.0
    content_type: str = ""


@dataclass(frozen=True)
class RecordingFailed(Message):
    """The recorder stopped a recording by itself. reason: spool_full (the whole spool),
    customer_spool_full (this customer's share of it), storage, internal."""

    NAME: ClassVar[str] = "RECORDING_FAILED"
    recording_id: str
    reason: str
    message: str = ""


@dataclass(frozen=True)
class TranscriptReady(Message):
    """The transcript's files (WebVTT and JSON) are in customer storage."""

    NAME: ClassVar[str] = "TRANSCRIPT_READY"
    recording_id: str
    keys: list[str] = field(default_factory=list)


# ------------------------------------------------------------- starting the process

# The configuration goes through the environment, not the command line: it may hold the
# transcription service's API key, and any local user can read a process's argv. (Not
# CONCLAVE_-prefixed: those are settings, and config.loader refuses unknown ones.)
CONFIG_ENVIRONMENT_VARIABLE = "_CONCLAVE_RECORDER_CONFIG"


def recorder_config_json(cfg: Any) -> str:
    """What the recorder needs of a config.schema.Config: its own section, data_dir, the
    log level and the networks a customer's S3 endpoint may be in besides public
    addresses (outbound.allowed_networks: the recorder uploads there), as JSON."""
    return json.dumps(
        {
            "recorder": dataclasses.asdict(cfg.recorder),
            "data_dir": os.path.abspath(cfg.data_dir),
            "log_level": cfg.logging.level,
            "log_format": cfg.logging.format,
            "log_levels": list(cfg.logging.levels),
            "allowed_networks": list(cfg.outbound.allowed_networks),
        }
    )


@dataclass(frozen=True)
class RecorderCommand:
    argv: list[str]
    env: dict[str, str] = field(repr=False)  # holds the configuration (and its secrets)


def recorder_command(
    channel_fd: int, config_json: str, *, python: str = sys.executable, base_env: dict[str, str] | None = None
) -> RecorderCommand:
    """argv and environment of `python -m recorder --channel-fd N`; pass
    `pass_fds=(channel_fd,)` when spawning it."""
    env = dict(os.environ if base_env is None else base_env)
    env[CONFIG_ENVIRONMENT_VARIABLE] = config_json
    return RecorderCommand([python, "-m", "recorder", "--channel-fd", str(channel_fd)], env)


def response_type(request: Message) -> type[Message]:
    return RESPONSES[type(request)]
