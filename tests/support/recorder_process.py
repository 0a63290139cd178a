"""Helpers for the recorder process tests (no tests here): the real recorder process on a
socketpair channel (spawned the way control spawns it), a stand-in for the SFU's plain
transport (sends RTP and sender reports from one UDP port, answers NACKs from a packet
cache, counts PLIs and receiver reports), and real media: VP8 and Opus encoded with av and
packetized like aiortc."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from common.channel import ChannelClient, encode_frame
from common.messages import Message
from config.schema import Config, RecorderConfig
from recorder import api
from sfu.wire import rtcp, rtp
from tests.support.paths import REPO_ROOT
from tests.support.recorder_media import (
    AUDIO_RATE,
    FPS,
    VIDEO_RATE,
    encode_opus,
    encode_video,
    rtp_payloads,
    tone,
)

READY_TIMEOUT_S = 30.0


class RecorderProcess:
    """`python -m recorder` with a channel, as control runs it; notifications collected."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.client: ChannelClient | None = None
        self.notifications: list[tuple[str, Message]] = []
        self.changed = asyncio.Event()

    @classmethod
    async def start(cls, data_dir: Path, **recorder_settings: Any) -> RecorderProcess:
        self = cls()
        cfg = Config(data_dir=str(data_dir), recorder=RecorderConfig(**recorder_settings))
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        command = api.recorder_command(child.fileno(), api.recorder_config_json(cfg), base_env=env)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *command.argv,
                env=command.env,
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        self.client = ChannelClient(reader, writer, self._on_notification)
        await self.wait_for(lambda: self.of(api.RecorderReady), READY_TIMEOUT_S)
        return self

    def _on_notification(self, entity_id: str, message: Message) -> None:
        self.notifications.append((entity_id, message))
        self.changed.set()

    def of(self, kind: type) -> list:
        return [message for _, message in self.notifications if isinstance(message, kind)]

    async def wait_for(self, condition: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out waiting; notifications: {[m.NAME for _, m in self.notifications]}"
                )
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.2))
            except TimeoutError:
                pass

    async def request(self, message: Message, timeout: float = 20.0) -> Message:
        return await self.client.request(message, timeout=timeout)

    async def raw_request(self, envelope: dict[str, Any], timeout: float = 10.0) -> Message:
        """Send a hand-made request envelope (to send what the typed API would refuse)."""
        future = asyncio.get_running_loop().create_future()
        self.client._pending[envelope["id"]] = future
        self.client._writer.write(encode_frame(envelope))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.client._pending.pop(envelope["id"], None)

    async def stats(self) -> api.RecorderStats:
        return await self.request(api.RecorderGetStats())

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
            except ProcessLookupError:
                pass
        if self.client is not None:
            self.client.close()


@dataclass
class Stream:
    """One track's RTP as the SFU's plain consumer would send it."""

    track_id: str
    participant_id: str
    display_name: str
    kind: str
    codec: str  # "VP8" | "opus"
    payload_type: int
    ssrc: int
    packets: list[tuple[float, bytes]] = field(default_factory=list)  # (capture seconds, packet)
    reports: list[tuple[float, bytes]] = field(default_factory=list)
    frames: int = 0

    @property
    def clock_rate(self) -> int:
        return VIDEO_RATE if self.kind == "video" else AUDIO_RATE

    def track_add(self, recording_id: str) -> api.TrackAdd:
        return api.TrackAdd(
            recording_id=recording_id,
            track_id=self.track_id,
            participant_id=self.participant_id,
            display_name=self.display_name,
            kind=self.kind,
            source="camera" if self.kind == "video" else "microphone",
            codec_name=self.codec,
            clock_rate=self.clock_rate,
            payload_type=self.payload_type,
            ssrc=self.ssrc,
            channels=2 if self.kind == "audio" else None,
        )


def make_stream(
    track_id: str,
    participant_id: str,
    display_name: str,
    kind: str,
    seconds: float,
    *,
    ssrc: int,
    sender_epoch: float,
    begin: float = 0.0,
    freq: float = 440.0,
    first_seq: int = 1000,
    first_ts: int = 5000,
    report_every: float = 0.5,
    gop: int = FPS,
    pcm: np.ndarray | None = None,
) -> Stream:
    """Media captured from `begin` to `begin + seconds` (sender seconds); SRs carry the
    sender's wall clock `sender_epoch + capture`, as the SFU forwards them. Audio is a
    tone at `freq`, or `pcm` (48 kHz mono float) when given."""
    codec = "VP8" if kind == "video" else "opus"
    stream = Stream(track_id, participant_id, display_name, kind, codec, 96 if kind == "video" else 111, ssrc)
    if kind == "video":
        encoded = encode_video("vp8", round(seconds * FPS), gop=gop)
    else:
        encoded = encode_opus(tone(freq, seconds + 0.02) if pcm is None else pcm)
    stream.frames = len(encoded)
    seq = first_seq
    next_report = begin
    for frame in encoded:
        capture = begin + frame.capture
        ts = (first_ts + round(capture * stream.clock_rate)) & 0xFFFFFFFF
        payloads = rtp_payloads(codec.lower(), frame)
        for index, payload in enumerate(payloads):
            marker = kind == "video" and index == len(payloads) - 1
            stream.packets.append(
                (capture, rtp.build_packet(stream.payload_type, seq & 0xFFFF, ts, ssrc, payload, marker))
            )
            seq += 1
        if capture >= next_report:
            ntp = rtcp.ntp_from_unix(sender_epoch + capture)
            stream.reports.append((capture, rtcp.build_sr(ssrc, ntp, ts, 0, 0)))
            next_report += report_every
    return stream


class FakeSfu(asyncio.DatagramProtocol):
    """The SFU plain transport's side: one UDP port sends RTP + SRs; NACKs are answered
    from a cache of what was sent (under the same sequence number), PLIs and RRs counted."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.cache: dict[tuple[int, int], bytes] = {}
        self.nacked: list[tuple[int, int]] = []
        self.resent = 0
        self.sent_rtp = 0
        self.plis: list[int] = []
        self.receiver_reports: list[rtcp.ReceiverReport] = []
        self.destination: tuple[str, int] | None = None

    @classmethod
    async def open(cls) -> FakeSfu:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return protocol

    @property
    def address(self) -> tuple[str, int]:
        return self.transport.get_extra_info("sockname")[:2]

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, packet: bytes, *, cache: bool = True) -> None:
        if cache and not 192 <= packet[1] <= 223:
            header = rtp.parse_header(packet)
            self.cache[(header.ssrc, header.sequence_number)] = packet
            self.sent_rtp += 1
        self.transport.sendto(packet, self.destination)

    def remember(self, packet: bytes) -> None:
        """A packet "lost on the way": cached for retransmission, not sent."""
        header = rtp.parse_header(packet)
        self.cache[(header.ssrc, header.sequence_number)] = packet

    def datagram_received(self, data: bytes, addr) -> None:
        for packet in rtcp.parse_compound(data):
            if isinstance(packet, rtcp.Nack):
                for seq in packet.lost:
                    self.nacked.append((packet.media_ssrc, seq))
                    cached = self.cache.get((packet.media_ssrc, seq))
                    if cached is not None and self.destination is not None:
                        self.resent += 1
                        self.transport.sendto(cached, self.destination)
            elif isinstance(packet, rtcp.Pli):
                self.plis.append(packet.media_ssrc)
            elif isinstance(packet, rtcp.ReceiverReport):
                self.receiver_reports.append(packet)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def schedule(
    streams: list[Stream], *, lose: set[tuple[int, int]] = frozenset(), swap_every: int = 0
) -> list[tuple[float, bytes, bool]]:
    """Every packet and SR of the streams in send order: (capture seconds, bytes, sent?).
    `lose`: (ssrc, index) of packets that never arrive (until NACKed); `swap_every`: every
    n-th video packet changes places with the next one (reordering on the way)."""
    events: list[tuple[float, int, bytes, bool]] = []
    order = 0
    for stream in streams:
        packets = list(stream.packets)
        if swap_every and stream.kind == "video":
            for index in range(swap_every, len(packets) - 1, swap_every):
                packets[index], packets[index + 1] = packets[index + 1], packets[index]
        for index, (when, packet) in enumerate(packets):
            events.append((when, order, packet, (stream.ssrc, index) not in lose))
            order += 1
        for when, report in stream.reports:
            events.append((when, order, report, True))
            order += 1
    events.sort(key=lambda event: (event[0], event[1]))
    return [(when, packet, sent) for when, _, packet, sent in events]


async def play(
    sfu: FakeSfu, events: list[tuple[float, bytes, bool]], origin: float, until: float | None = None
) -> int:
    """Send each event at `origin + capture` (monotonic clock), in real time; return how
    many events were handled (stops before the first one captured at or after `until`)."""
    done = 0
    for when, packet, sent in events:
        if until is not None and when >= until:
            break
        delay = origin + when - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if sent:
            sfu.send(packet)
        else:
            sfu.remember(packet)
        done += 1
    return done


def speech(text: str, seconds: float, at: float) -> np.ndarray:
    """`seconds` of 48 kHz mono float audio: silence with espeak-ng saying `text` from `at`."""
    wav = subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True, timeout=30).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
    spoken = np.concatenate(
        [f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]]
    )
    out = np.zeros(int(seconds * AUDIO_RATE), dtype=np.float32)
    first = int(at * AUDIO_RATE)
    out[first : first + len(spoken)] = spoken[: len(out) - first]
    return out


def storage_files(root: Path) -> dict[str, str]:
    """key -> SHA-256 of every file under a local storage root."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".conclave-partial-" not in path.name:
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def read_manifest(root: Path, key: str) -> dict[str, Any]:
    return json.loads((root / key).read_text(encoding="utf-8"))
