"""Speech as the SFU sees it, for the active-speaker tests: RFC 6464 levels of talk and
silence, carried in real RTP packets, played into producers on a fake clock.

    talk = Talk().speak("mic-a", 1000, 4000)
    play(talk, {"mic-a": mic_a, "mic-b": mic_b}, clock, until_ms=6000, every_ms=50, on_tick=...)

A speaker talks in syllables of 120-300 ms around -20 dBov, with dips to the room's level
between them (speech swings with its syllables; that is what the detector looks for);
otherwise every microphone hears the room (-62..-68 dBov).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from sfu.wire import rtp

LEVEL_ID = 1  # the publisher's id of the audio-level extension in these tests
OPUS_PT = 109  # tests/support/tree.py's audio producers
FRAME_MS = 20


def audio_packet(seq: int, level: int, ssrc: int, level_id: int = LEVEL_ID) -> bytes:
    """An Opus packet as Chromium sends it: abs-send-time, transport-wide seq, the level
    (V bit set, as a voice-activity detector would), mid."""
    extensions = {2: b"\x00\x00\x00", 3: (seq & 0xFFFF).to_bytes(2, "big"), level_id: bytes([0x80 | level]), 4: b"0"}
    return rtp.build_packet(OPUS_PT, seq & 0xFFFF, seq * 960, ssrc, payload=b"\xfc" + b"o" * 60, extensions=extensions)


class Talk:
    """Who speaks when: syllables and dips in each speech segment, room noise elsewhere."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.syllables: dict[str, list[tuple[int, int]]] = {}

    def speak(self, who: str, start_ms: int, end_ms: int) -> Talk:
        t, syllables = start_ms, self.syllables.setdefault(who, [])
        while t < end_ms:
            length = self.rng.randint(120, 300)
            syllables.append((t, min(end_ms, t + length)))
            t += length + self.rng.randint(30, 100)
        return self

    def level(self, who: str, t_ms: int) -> int:
        if any(start <= t_ms < end for start, end in self.syllables.get(who, ())):
            return self.rng.randint(15, 28)
        return self.rng.randint(62, 68)


def play(
    talk: Talk,
    producers: dict[str, object],
    clock: Callable[[], float] | object,
    start_ms: int,
    until_ms: int,
    every_ms: int,
    on_tick: Callable[[int], None],
) -> None:
    """Every 20 ms each producer (by name) gets one packet of `talk`'s level at that time,
    through `Producer.on_rtp`; every `every_ms` `on_tick(t_ms)` runs. `clock` is the
    producers' settable clock (`clock.now`, seconds): it reads t_ms / 1000."""
    for t in range(start_ms, until_ms, FRAME_MS):
        clock.now = t / 1000  # type: ignore[attr-defined]
        for who, producer in producers.items():
            ssrc = producer.ssrc  # type: ignore[attr-defined]
            producer.on_rtp(audio_packet(t // FRAME_MS, talk.level(who, t), ssrc), ssrc)  # type: ignore[attr-defined]
        if t % every_ms == 0:
            on_tick(t)
