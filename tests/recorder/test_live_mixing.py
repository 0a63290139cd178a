"""recorder.live_mixing: a live mix job over loopback UDP with real Opus. Two voices (440
and 1000 Hz, libopus packets as the SFU's plain consumers send them) go in; what comes
out to the "SFU" socket is one RTP stream of the mix's SSRC, 20 ms Opus frames with
timestamps stepping 960, which decodes to both tones at once."""

from __future__ import annotations

import asyncio
import itertools
import socket

import av
import numpy as np
import pytest

from recorder import api
from recorder.live_mixing import LiveMixes, mono, opus_encoder
from sfu.wire import rtp

pytestmark = [pytest.mark.process, pytest.mark.timeout(30)]

RATE = 48000


def level(pcm: np.ndarray, frequency: float) -> float:
    t = np.arange(len(pcm)) / RATE
    return float(2 * abs(np.dot(pcm, np.exp(-2j * np.pi * frequency * t))) / len(pcm))


def tone(frequency: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


async def test_two_voices_come_out_as_one_continuous_opus_stream():
    mixes = LiveMixes()
    sfu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sfu.bind(("127.0.0.1", 0))
    sfu.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        started = await mixes.handle(api.MixStart("mix1", "meeting1"))
        assert isinstance(started, api.MixStarted)
        await mixes.handle(api.MixConnect("mix1", *sfu.getsockname()))
        await mixes.handle(api.MixTrackAdd("mix1", "ann", 1111, 100))
        await mixes.handle(api.MixTrackAdd("mix1", "bob", 2222, 100))
        voices = {1111: (opus_encoder(), tone(440, 2.0)), 2222: (opus_encoder(), tone(1000, 2.0))}
        received: list[bytes] = []
        loop = asyncio.get_running_loop()
        begin = loop.time()
        for n in range(100):  # 2 s of both, paced like a sender
            for ssrc, (encoder, pcm) in voices.items():
                frame = av.AudioFrame.from_ndarray(pcm[None, n * 960 : (n + 1) * 960], format="flt", layout="mono")
                frame.sample_rate, frame.pts = RATE, n * 960
                for packet in encoder.encode(frame):
                    sender.sendto(rtp.build_packet(100, n, n * 960, ssrc, bytes(packet)), (started.ip, started.port))
            sender.sendto(rtp.build_packet(100, n, n * 960, 3333, b"\xf8\xff\xfe"), (started.ip, started.port))
            await asyncio.sleep(max(0.0, begin + (n + 1) * 0.02 - loop.time()))
            received += drain(sfu)
        await asyncio.sleep(0.2)
        received += drain(sfu)
        counters = mixes.counters()
        job = mixes.jobs["mix1"]
        assert job.counters.unknown_ssrc >= 100  # a stream nobody added: dropped, counted
        await mixes.handle(api.MixStop("mix1"))
    finally:
        sfu.close()
        sender.close()
    assert not mixes.jobs
    headers = [rtp.parse_header(p) for p in received]
    assert {h.ssrc for h in headers} == {started.ssrc} and {h.payload_type for h in headers} == {started.payload_type}
    steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(headers)}
    sequence = {(b.sequence_number - a.sequence_number) & 0xFFFF for a, b in itertools.pairwise(headers)}
    assert sequence == {1}
    assert steps <= {960 * k for k in range(1, 6)} and 960 in steps  # 20 ms frames; a late loop skips slots
    assert counters["mix_frames_sent"] >= 80
    decoder = av.CodecContext.create("opus", "r")
    decoder.sample_rate, decoder.layout = RATE, "stereo"
    pcm = np.concatenate([mono(f) for p, h in zip(received, headers)
                          for f in decoder.decode(av.Packet(p[h.header_length:]))])  # fmt: skip
    middle = pcm[len(pcm) // 4 : 3 * len(pcm) // 4]
    assert level(middle, 440) > 0.1 and level(middle, 1000) > 0.1  # both voices at once
    assert level(middle, 700) < 0.02
