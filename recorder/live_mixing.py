"""Live mixes for WHEP viewers: the recorder's second kind of job, apart from recordings.

A WHEP player has one audio slot; to hear everyone at once it is given one stream, made
here (the SFU never decodes). Control (control.meeting.viewer_mix) asks for a mix per
meeting that has viewers:

    MIX_START      -> MixJob: a UDP socket on 127.0.0.1, an SSRC, a 20 ms timer
    MIX_CONNECT    -> where the SFU's plain transport listens: the mix's RTP goes there
                      (from the same socket: the transport hears its producer's source)
    MIX_TRACK_ADD  -> a voice by SSRC (a plain consumer of a microphone or the announcer):
                      reordered (JitterBuffer, short), decoded, into the LiveMix (the
                      announcer ducks the others while the notice plays)
    every 20 ms    -> one frame of the mix (recorder/media/live_mix.py), encoded with
                      libopus (48 kHz mono, 20 ms), sent as RTP; timestamps step 960 per
                      slot, skipped slots included, so the stream keeps real time
    MIX_STOP       -> the socket and timer go

Nothing is written to disk and nothing asks for retransmissions: what is late is silence.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import secrets
import socket
from collections.abc import Callable
from typing import Any

import av
import numpy as np

from common.channel import RequestFailed
from common.messages import Empty, Message
from common.notices import FRAME_SAMPLES, SAMPLE_RATE
from recorder import api
from recorder.media.jitter import JitterBuffer
from recorder.media.live_mix import FrameClock, LiveMix
from recorder.media.mixer import opus_decoder
from recorder.media.packet import MediaPacket
from sfu.wire import rtp
from sfu.wire.rtp import is_rtcp

log = logging.getLogger(__name__)

PAYLOAD_TYPE = 111  # what the mix's RTP carries (control's plain producer is made with it)
BITRATE = 64000
# Reordering waits this long for a hole (loopback: reordering is rare; latency is heard).
REORDER_SECONDS = 0.04
MAX_MIXES = 1000  # one per meeting with viewers; a bound, not a target


class MixCounters:
    __slots__ = ("decode_errors", "frames_sent", "frames_skipped", "malformed", "packets", "unknown_ssrc")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def add(self, other: MixCounters) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Voice:
    """One voice of the mix: its reorder buffer and its Opus decoder."""

    def __init__(self, track_id: str, ssrc: int, clock: Callable[[], float]) -> None:
        self.track_id = track_id
        self.ssrc = ssrc
        self.jitter = JitterBuffer(clock=clock, max_delay_seconds=REORDER_SECONDS)
        self.decoder = opus_decoder()

    def decode(self, packets: list[MediaPacket]) -> list[np.ndarray]:
        """Mono float samples of each packet (WebRTC's opus/48000/2 decodes to L = R: the
        channels are averaged, not added)."""
        out = []
        for packet in packets:
            for frame in self.decoder.decode(av.Packet(packet.payload)):
                out.append(mono(frame))
        return out


def mono(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame's channels averaged, as float32."""
    samples = frame.to_ndarray().astype(np.float32)
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        return samples.reshape(channels, -1).mean(axis=0)
    return samples.reshape(-1, channels).mean(axis=1)


def opus_encoder() -> av.CodecContext:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = "mono"
    encoder.format = "flt"
    encoder.time_base = fractions.Fraction(1, SAMPLE_RATE)
    encoder.bit_rate = BITRATE
    encoder.options = {"frame_duration": "20", "application": "audio"}
    return encoder


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, job: MixJob) -> None:
        self.job = job

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.job.on_datagram(data, addr)
        except Exception:  # one bad packet must not stop the mix
            log.exception("mix %s: a packet failed", self.job.mix_id)

    def error_received(self, exc: Exception) -> None:
        log.debug("mix %s: socket error %s", self.job.mix_id, exc)


class MixJob:
    """One meeting's live mix (see the module's doc)."""

    def __init__(self, mix_id: str, meeting_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.mix_id = mix_id
        self.meeting_id = meeting_id
        self.loop = loop
        self.ssrc = secrets.randbits(32) or 1
        self.mix = LiveMix()
        self.voices: dict[int, Voice] = {}  # by SSRC
        self.counters = MixCounters()
        self.sfu: tuple[str, int] | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self._transport: asyncio.DatagramTransport | None = None
        self._encoder = opus_encoder()
        self._sequence = secrets.randbits(16)
        self._timestamp_base = secrets.randbits(32)
        self._clock = FrameClock(loop.time())
        self._timer: asyncio.TimerHandle | None = None
        self._first = True
        self.closed = False

    async def open(self) -> tuple[str, int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        transport, _ = await self.loop.create_datagram_endpoint(lambda: _Socket(self), sock=sock)
        self._transport = transport
        self.address = sock.getsockname()[:2]
        self._clock = FrameClock(self.loop.time())
        self._arm()
        return self.address

    def connect(self, sfu: tuple[str, int]) -> None:
        self.sfu = sfu

    def add_track(self, track_id: str, ssrc: int, ducks_others: bool = False) -> None:
        self.remove_track(track_id)
        self.voices[ssrc] = Voice(track_id, ssrc, self.loop.time)
        self.mix.add(track_id, ducks_others)

    def remove_track(self, track_id: str) -> None:
        for ssrc in [s for s, voice in self.voices.items() if voice.track_id == track_id]:
            del self.voices[ssrc]
        self.mix.remove(track_id)

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------------ input

    def on_datagram(self, data: bytes, addr: Any) -> None:
        if len(data) < 12 or is_rtcp(data):
            return  # the SFU's sender reports: the mix plays in arrival order, it needs none
        try:
            packet = MediaPacket.parse(data, self.loop.time())
        except ValueError:
            self.counters.malformed += 1
            return
        voice = self.voices.get(packet.ssrc)
        if voice is None:
            self.counters.unknown_ssrc += 1  # sent before its MIX_TRACK_ADD, or after its removal
            return
        self.counters.packets += 1
        self._hear(voice, voice.jitter.push(packet))

    def _hear(self, voice: Voice, packets: list[MediaPacket]) -> None:
        if not packets:
            return
        try:
            decoded = voice.decode(packets)
        except (av.FFmpegError, ValueError):
            self.counters.decode_errors += 1
            return
        for pcm in decoded:
            self.mix.push(voice.track_id, pcm)

    # ------------------------------------------------------------------ output

    def _arm(self) -> None:
        if not self.closed:
            self._timer = self.loop.call_at(self._clock.at(self._clock.next_slot), self._tick)

    def _tick(self) -> None:
        try:
            for voice in list(self.voices.values()):
                self._hear(voice, voice.jitter.poll())  # holes given up on release what waited
            skipped = self._clock.skipped
            for slot in self._clock.due(self.loop.time()):
                self._send(slot, self.mix.next_frame())
            self.counters.frames_skipped += self._clock.skipped - skipped
        except Exception:
            log.exception("mix %s: a frame failed", self.mix_id)
        self._arm()

    def _send(self, slot: int, pcm: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = slot * FRAME_SAMPLES
        for packet in self._encoder.encode(frame):
            timestamp = (self._timestamp_base + int(packet.pts or 0)) & 0xFFFFFFFF
            self._send_rtp(bytes(packet), timestamp)

    def _send_rtp(self, payload: bytes, timestamp: int) -> None:
        if self.sfu is None or self._transport is None:
            return
        self._sequence = (self._sequence + 1) & 0xFFFF
        packet = rtp.build_packet(PAYLOAD_TYPE, self._sequence, timestamp, self.ssrc, payload, marker=self._first)
        self._first = False
        self._transport.sendto(packet, self.sfu)
        self.counters.frames_sent += 1


class LiveMixes:
    """Every live mix of this process, and its MIX_* requests."""

    def __init__(self) -> None:
        self.jobs: dict[str, MixJob] = {}
        self.retired = MixCounters()  # of the jobs that ended

    async def handle(self, request: Message) -> Message:
        if isinstance(request, api.MixStart):
            return await self._start(request)
        if isinstance(request, api.MixStop):
            self.stop(request.mix_id)
            return Empty()
        job = self._job(getattr(request, "mix_id", ""))
        if isinstance(request, api.MixConnect):
            job.connect((request.sfu_ip, request.sfu_port))
        elif isinstance(request, api.MixTrackAdd):
            job.add_track(request.track_id, request.ssrc, request.ducks_others)
        elif isinstance(request, api.MixTrackRemove):
            job.remove_track(request.track_id)
        else:
            raise RequestFailed("unsupported", f"{request.NAME} is not a mix request")
        return Empty()

    async def _start(self, request: api.MixStart) -> Message:
        if request.mix_id in self.jobs:
            job = self.jobs[request.mix_id]  # control asked again (its answer was lost): the same
        else:
            if len(self.jobs) >= MAX_MIXES:
                raise RequestFailed("busy", f"{MAX_MIXES} mixes run already")
            job = MixJob(request.mix_id, request.meeting_id, asyncio.get_running_loop())
            await job.open()
            self.jobs[request.mix_id] = job
            log.info("mix %s for meeting %s: started on %s:%d", job.mix_id, job.meeting_id, *job.address)
        ip, port = job.address
        return api.MixStarted(mix_id=job.mix_id, ip=ip, port=port, ssrc=job.ssrc, payload_type=PAYLOAD_TYPE)

    def _job(self, mix_id: str) -> MixJob:
        job = self.jobs.get(mix_id)
        if job is None:
            raise RequestFailed("not_found", f"no mix {mix_id}")
        return job

    def stop(self, mix_id: str) -> None:
        job = self.jobs.pop(mix_id, None)
        if job is not None:
            job.close()
            self.retired.add(job.counters)
            log.info("mix %s: stopped (%d frames sent)", mix_id, job.counters.frames_sent)

    def close_all(self) -> None:
        for mix_id in list(self.jobs):
            self.stop(mix_id)

    def counters(self) -> dict[str, int]:
        total = MixCounters()
        total.add(self.retired)
        for job in self.jobs.values():
            total.add(job.counters)
        return {"mix_frames_sent": total.frames_sent, "mix_frames_skipped": total.frames_skipped,
                "mix_packets_received": total.packets, "mix_decode_errors": total.decode_errors}  # fmt: skip
