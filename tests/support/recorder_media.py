"""Helpers for the recorder media tests (no tests here): real frames encoded with av,
packetized into RTP the way aiortc (the bot SDK's peer) does it, a lossy network with a
fake clock, and the receive pipeline jitter → depacketize → timeline → segments."""

from __future__ import annotations

import fractions
import functools
import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

from recorder.media.depacketize import Frame, depacketizer_for
from recorder.media.jitter import JitterBuffer
from recorder.media.packet import MediaPacket
from recorder.media.segments import SegmentWriter
from recorder.media.timeline import ClockDomain, TrackTimeline
from sfu.wire import rtcp, rtp

VIDEO_RATE = 90000
AUDIO_RATE = 48000
FPS = 30


HAS_X264 = "libx264" in av.codecs_available


def packet(seq: int, ts: int = 0, payload: bytes = b"x", marker: bool = False, arrival: float = 0.0) -> MediaPacket:
    """A received media packet (sequence number and timestamp wrapped to their widths)."""
    return MediaPacket(seq & 0xFFFF, ts & 0xFFFFFFFF, marker, payload, arrival)


def seqs(packets) -> list[int]:
    return [p.sequence_number for p in packets]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Encoded:
    """One encoded frame and when it was captured (seconds from the sender's start)."""

    data: bytes
    keyframe: bool
    capture: float


_TEXTURE = np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8)


def picture(index: int, width: int, height: int) -> av.VideoFrame:
    """A textured, sliding background and a moving bar: key frames span several packets
    and every frame differs."""
    shift = index * 4
    image = np.roll(_TEXTURE[:height, :width], shift, axis=1).copy()
    x = (index * 9) % width
    image[:, x : x + 24] = (220, 200, 40)
    return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")


@functools.lru_cache(maxsize=16)
def encode_video(codec: str, frames: int, width: int = 320, height: int = 240, gop: int = FPS) -> tuple[Encoded, ...]:
    """Encode `frames` pictures at 30 fps with libvpx ("vp8") or libx264 ("h264")."""
    if codec == "vp8":
        encoder = av.CodecContext.create("libvpx", "w")
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    else:
        encoder = av.CodecContext.create("libx264", "w")
        encoder.options = {"tune": "zerolatency", "preset": "ultrafast", "bframes": "0", "scenecut": "0"}
        encoder.profile = "Constrained Baseline"
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.framerate = FPS
    encoder.gop_size = gop
    encoder.bit_rate = 400_000
    encoder.thread_count = 1  # the machine is shared
    out = []
    for index in range(frames):
        frame = picture(index, width, height)
        frame.pts = index
        out += [Encoded(bytes(p), p.is_keyframe, p.pts / FPS) for p in encoder.encode(frame)]
    out += [Encoded(bytes(p), p.is_keyframe, p.pts / FPS) for p in encoder.encode(None)]
    assert len(out) == frames
    return tuple(out)


def tone(freq: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    n = int(round(seconds * AUDIO_RATE))
    return (np.sin(2 * np.pi * freq * np.arange(n) / AUDIO_RATE) * amplitude).astype(np.float32)


def encode_opus(pcm: np.ndarray) -> list[Encoded]:
    """20 ms Opus packets of mono float samples."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = AUDIO_RATE
    encoder.layout = "mono"
    encoder.format = "flt"
    encoder.time_base = fractions.Fraction(1, AUDIO_RATE)
    encoder.bit_rate = 64000
    out = []
    for start in range(0, len(pcm) - 959, 960):
        frame = av.AudioFrame.from_ndarray(pcm[None, start : start + 960], format="flt", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        out += [bytes(p) for p in encoder.encode(frame)]
    # Packet i holds the 20 ms captured from i * 20 ms on (the encoder's own pts start
    # 6.5 ms early: its look-ahead).
    return [Encoded(data, True, i * 0.02) for i, data in enumerate(out)]


def rtp_payloads(codec: str, frame: Encoded) -> list[bytes]:
    """Packetize like aiortc: VP8 (RFC 7741, PictureID), H.264 (STAP-A / FU-A), Opus (1:1)."""
    if codec == "opus":
        return [frame.data]
    packet = av.Packet(frame.data)
    packet.pts = 0
    packet.time_base = fractions.Fraction(1, VIDEO_RATE)
    encoder = Vp8Encoder() if codec == "vp8" else H264Encoder()
    payloads, _ = encoder.pack(packet)
    return payloads


@dataclass
class SentStream:
    """A sender's RTP packets: (send time, bytes), plus its sender reports."""

    codec: str
    clock_rate: int
    ssrc: int
    packets: list[tuple[float, bytes]] = field(default_factory=list)
    reports: list[tuple[float, bytes]] = field(default_factory=list)
    frames: Sequence[Encoded] = ()
    frame_of_packet: list[int] = field(default_factory=list)


def send(
    codec: str,
    frames: Sequence[Encoded],
    *,
    first_seq: int,
    first_ts: int,
    ssrc: int,
    ntp_base: float,
    start: float = 0.0,
    report_every: float = 1.0,
) -> SentStream:
    """RTP packets for `frames` captured at `start + frame.capture`, and an SR every
    `report_every` seconds whose NTP time is `ntp_base + capture` (the sender's clock)."""
    clock_rate = AUDIO_RATE if codec == "opus" else VIDEO_RATE
    stream = SentStream(codec, clock_rate, ssrc, frames=frames)
    seq = first_seq
    next_report = start
    for index, frame in enumerate(frames):
        when = start + frame.capture
        ts = (first_ts + round(frame.capture * clock_rate)) & 0xFFFFFFFF
        payloads = rtp_payloads(codec, frame)
        for i, payload in enumerate(payloads):
            marker = i == len(payloads) - 1 and codec != "opus"
            stream.packets.append((when, rtp.build_packet(96, seq & 0xFFFF, ts, ssrc, payload, marker=marker)))
            stream.frame_of_packet.append(index)
            seq += 1
        if when >= next_report:
            ntp = rtcp.ntp_from_unix(ntp_base + frame.capture)
            stream.reports.append((when, rtcp.build_sr(ssrc, ntp, ts, 0, 0)))
            next_report += report_every
    return stream


@dataclass
class Network:
    """Delays, reorders, duplicates and drops packets; answers NACKs like the SFU's cache."""

    seed: int = 1
    delay: float = 0.010
    jitter: float = 0.015  # extra random delay: reorders packets sent close together
    duplicate: float = 0.0
    drop: float = 0.0
    answer_nacks: bool = True
    rtt: float = 0.020
    lose: frozenset[int] = frozenset()  # indexes of packets that never arrive

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def deliveries(self, stream: SentStream) -> list[tuple[float, int, bytes]]:
        """(arrival, order, bytes) of every packet that makes it; dropped ones are kept
        aside for retransmission."""
        out = []
        self.cache: dict[int, bytes] = {}
        for order, (when, data) in enumerate(stream.packets):
            seq = rtp.parse_header(data).sequence_number
            self.cache[seq] = data
            # The last packet always arrives: nobody can notice a loss at the very end.
            if self.random.random() < self.drop and order < len(stream.packets) - 1 or order in self.lose:
                continue
            arrival = when + self.delay + self.random.random() * self.jitter
            out.append((arrival, order, data))
            if self.random.random() < self.duplicate:
                out.append((arrival + self.random.random() * self.jitter, order, data))
        return out


class Receiver:
    """One track's receive path: jitter → depacketize → timeline (→ segments)."""

    def __init__(
        self,
        stream: SentStream,
        network: Network,
        recording_start: float,
        clock: FakeClock,
        *,
        directory: Path | None = None,
        track_id: str = "track",
        segment_seconds: float = 1.0,
        domain: ClockDomain | None = None,
    ) -> None:
        self.stream = stream
        self.network = network
        self.clock = clock
        self.jitter = JitterBuffer(clock=clock, max_delay_seconds=0.2)
        self.depacketizer = depacketizer_for(stream.codec)
        self.timeline = TrackTimeline(stream.clock_rate, recording_start, domain)
        self.writer = SegmentWriter(track_id, stream.codec, directory, segment_seconds) if directory else None
        self.frames: list[tuple[Frame, float]] = []  # (frame, pts)

    def events(self, clock_offset: float) -> list[tuple[float, int, str, bytes, Receiver]]:
        deliveries = self.network.deliveries(self.stream)
        out = [(arrival + clock_offset, order, "rtp", data, self) for arrival, order, data in deliveries]
        delay = self.network.delay + clock_offset
        out += [(when + delay, -1, "rtcp", data, self) for when, data in self.stream.reports]
        return out

    def poll_until(self, now: float) -> None:
        deadline = self.jitter.next_deadline()
        while deadline is not None and deadline < now:
            self.clock.now = deadline
            self.handle(self.jitter.poll())
            deadline = self.jitter.next_deadline()

    def deliver(self, now: float, kind: str, data: bytes) -> list[bytes]:
        """One arriving packet; returns the retransmissions its NACKs bring."""
        self.clock.now = now
        if kind == "rtcp":
            for report in rtcp.parse_compound(data):
                self.timeline.on_sender_report(report.ntp_timestamp, report.rtp_timestamp)
            return []
        self.handle(self.jitter.push(MediaPacket.parse(data, now)))
        if not self.network.answer_nacks:
            return []
        return [self.network.cache[seq] for seq in self.jitter.nacks()]

    def handle(self, released: list[MediaPacket]) -> None:
        for packet in released:
            for frame in self.depacketizer.push(packet):
                pts = self.timeline.seconds(frame.timestamp, frame.arrival)
                self.frames.append((frame, pts))
                if self.writer is not None:
                    self.writer.write(frame, pts)

    def finish(self) -> None:
        self.handle(self.jitter.flush())
        if self.writer is not None:
            self.writer.close()


def run(receivers: list[Receiver], clock: FakeClock, clock_offset: float = 0.0) -> None:
    """Deliver every track's packets in arrival order on one fake clock.
    `clock_offset`: the receiver's clock minus the senders' (arrival times shift by it)."""
    events = [event for receiver in receivers for event in receiver.events(clock_offset)]
    events.sort(key=lambda event: (event[0], event[1]))
    heap = [(when, i, kind, data, receiver) for i, (when, _, kind, data, receiver) in enumerate(events)]
    heapq.heapify(heap)
    tiebreak = len(heap)
    while heap:
        now, _, kind, data, receiver = heapq.heappop(heap)
        for each in receivers:
            each.poll_until(now)
        for resent in receiver.deliver(now, kind, data):
            tiebreak += 1
            heapq.heappush(heap, (now + receiver.network.rtt, tiebreak, "rtp", resent, receiver))
    for receiver in receivers:
        receiver.finish()


def receive(stream: SentStream, network: Network, recording_start: float, **kwargs) -> Receiver:
    """One track alone through the receive path (see Receiver for the keywords)."""
    clock = FakeClock()
    receiver = Receiver(stream, network, recording_start, clock, **kwargs)
    run([receiver], clock)
    return receiver


def decode_file(path: Path) -> list:
    """Every decoded frame of the first stream of a file, opened on its own."""
    with av.open(str(path)) as container:
        return list(container.decode(container.streams[0]))


def demux_file(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as container:
        return [p for p in container.demux(container.streams[0]) if p.size]
