"""sfu.engine.speaker: the dominant speaker from RFC 6464 levels, on fake time.

A small simulated meeting: every participant sends a level every 20 ms (room noise, or
speech with syllables and dips, or a cough, or constant noise), and the detector ticks
every 100 ms; the tests read the dominant speaker's timeline."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from sfu.engine.speaker import BLOCKS_PER_LONG, DECISION_INTERVAL_MS, SILENT, DominantSpeaker

pytestmark = pytest.mark.unit

TICK_MS = 100


class Script:
    """What each participant sends when: segments (start_ms, end_ms, sound), room noise
    elsewhere. Sounds: "speech", "cough", "noise" (constant -50 dBov), "mute" (no packets)."""

    def __init__(self, seed: int = 1, steady: bool = False) -> None:
        self.rng = random.Random(seed)
        self.steady = steady  # syllables at an even level (a synthetic voice) rather than varied
        self.segments: dict[str, list[tuple[int, int, str]]] = {}
        self.voiced: dict[str, list[tuple[int, int]]] = {}  # syllables of each speech segment

    def add(self, participant: str, start: int, end: int, sound: str) -> Script:
        self.segments.setdefault(participant, []).append((start, end, sound))
        if sound == "speech":
            # Syllables of 120-300 ms, each followed by a dip of 20-120 ms.
            t, voiced = start, self.voiced.setdefault(participant, [])
            while t < end:
                length = self.rng.randint(120, 300)
                voiced.append((t, min(end, t + length)))
                t += length + self.rng.randint(20, 120)
        return self

    def level(self, participant: str, t: int) -> int | None:
        sound = "room"
        for start, end, what in self.segments.get(participant, ()):
            if start <= t < end:
                sound = what
        rng = self.rng
        if sound == "mute":
            return None
        if sound == "speech":
            # Around -20 dBov in a syllable; between them down to the room's level.
            if any(start <= t < end for start, end in self.voiced[participant]):
                return rng.randint(18, 22) if self.steady else rng.randint(15, 30)
            return rng.randint(45, 68) if self.steady else rng.randint(40, 68)
        if sound == "cough":  # a burst from -8 dBov, fading by 3 dB per 20 ms
            start = next(start for start, end, what in self.segments[participant] if start <= t < end)
            return 8 + 3 * ((t - start) // 20) + rng.randint(0, 2)
        if sound == "noise":
            return rng.randint(49, 51)
        return rng.randint(62, 68)  # room noise


def play(script: Script, participants: list[str], until_ms: int, packet_ms: int = 20, detector=None):
    """Feed the script; the dominant speaker at every tick: [(t, dominant)]."""
    detector = detector or DominantSpeaker()
    timeline = []
    for t in range(0, until_ms, 20):
        for participant in participants:
            level = script.level(participant, t)
            if level is not None and t % packet_ms == 0:
                detector.on_level(participant, level, t)
        if t % TICK_MS == 0:
            detector.tick(t)
            timeline.append((t, detector.dominant))
    return detector, timeline


def changes(timeline) -> list[tuple[int, object]]:
    """(when, who) each time the dominant speaker changed, starting with the first tick."""
    found: list[tuple[int, object]] = []
    last: object = changes  # a sentinel no tick returns
    for t, who in timeline:
        if who != last:
            found.append((t, who))
            last = who
    return found


# --- following the conversation ---------------------------------------------------------------


@pytest.mark.parametrize("steady", [False, True])
@pytest.mark.parametrize("packet_ms", [20, 60])
@pytest.mark.parametrize("seed", range(3))
def test_two_speakers_alternating_every_3_s_are_followed_within_1_5_s(seed, packet_ms, steady):
    script = Script(seed, steady)
    turns = []
    for turn in range(6):  # room noise first, then A, B, A, B, A, B
        start = 2000 + 3000 * turn
        speaker = "A" if turn % 2 == 0 else "B"
        script.add(speaker, start, start + 3000, "speech")
        turns.append((start, speaker))
    _, timeline = play(script, ["A", "B", "C"], 2000 + 3000 * 6, packet_ms)

    switches = changes(timeline)
    assert [who for _, who in switches] == [None, "A", "B", "A", "B", "A", "B"]
    for (start, speaker), (when, who) in zip(turns, switches[1:]):
        assert who == speaker and start < when <= start + 1500, (start, when)


def test_a_short_pause_mid_speech_changes_nothing():
    script = Script().add("A", 1000, 3000, "speech").add("A", 3300, 6000, "speech")
    _, timeline = play(script, ["A", "B"], 8000)
    assert [who for _, who in changes(timeline)] == [None, "A"]


def test_a_short_answer_in_the_speakers_pause_does_not_take_over():
    script = Script().add("A", 1000, 3000, "speech").add("A", 3300, 6000, "speech")
    script.add("B", 3000, 3300, "speech")  # "mm-hm" in the pause
    _, timeline = play(script, ["A", "B"], 8000)
    assert [who for _, who in changes(timeline)] == [None, "A"]


def test_a_cough_does_not_take_over_while_the_speaker_talks_nor_while_they_are_quiet():
    script = Script().add("A", 1000, 4000, "speech")
    script.add("C", 2530, 2730, "cough")  # while A talks
    script.add("C", 6050, 6250, "cough")  # while A is quiet
    script.add("C", 8070, 8270, "cough")
    _, timeline = play(script, ["A", "B", "C"], 10_000)
    assert [who for _, who in changes(timeline)] == [None, "A"]


def test_constant_noise_never_wins_over_a_speaker():
    script = Script().add("N", 0, 30_000, "noise")  # -50 dBov, from the start to the end
    script.add("A", 2000, 5000, "speech").add("A", 15_000, 18_000, "speech")
    detector, timeline = play(script, ["A", "N", "B"], 30_000)
    assert [who for _, who in changes(timeline)] == [None, "A"]
    assert detector.speakers_by_recency() == ["A"]


def test_a_noise_that_starts_later_does_not_take_over_from_a_quiet_speaker():
    # A spoke, then a fan starts at N's place (room noise before): it is as loud as
    # speech over N's floor at first, but steady, not modulated like speech.
    script = Script().add("A", 1000, 3000, "speech").add("N", 4000, 40_000, "noise")
    script.add("B", 20_000, 23_000, "speech")
    detector, timeline = play(script, ["A", "N", "B"], 40_000)
    assert [who for _, who in changes(timeline)] == [None, "A", "B"]
    assert "N" not in detector.speakers_by_recency()


def test_constant_noise_alone_is_nobody_speaking():
    script = Script().add("N", 0, 20_000, "noise")
    detector, timeline = play(script, ["N", "B"], 20_000)
    assert all(who is None for _, who in timeline)
    assert detector.speakers_by_recency() == []


def test_silence_keeps_the_last_speaker():
    # After speaking, A goes quiet (room noise); later everyone is muted (no packets).
    script = Script().add("A", 1000, 3000, "speech")
    script.add("A", 20_000, 80_000, "mute").add("B", 20_000, 80_000, "mute")
    detector, timeline = play(script, ["A", "B"], 80_000)
    assert [who for _, who in changes(timeline)] == [None, "A"]
    assert detector.changes == 1


def test_the_speaker_keeps_the_floor_while_another_joins_in():
    # B talks over A for a second; A keeps talking: A stays dominant.
    script = Script().add("A", 1000, 8000, "speech").add("B", 4000, 5000, "speech")
    _, timeline = play(script, ["A", "B"], 9000)
    assert [who for _, who in changes(timeline)] == [None, "A"]


# --- the API ----------------------------------------------------------------------------------


def test_tick_says_who_took_over_once_and_recency_orders_the_speakers():
    script = Script()
    for turn, speaker in enumerate(["A", "B", "C", "A"]):
        script.add(speaker, 1000 + 3000 * turn, 4000 + 3000 * turn, "speech")
    detector = DominantSpeaker()
    told = []
    for t in range(0, 14_000, 20):
        for participant in "ABC":
            detector.on_level(participant, script.level(participant, t), t)
        if (news := detector.tick(t)) is not None:
            told.append(news)
            if news == "C":
                assert detector.speakers_by_recency() == ["C", "B", "A"]
    assert told == ["A", "B", "C", "A"]
    assert detector.speakers_by_recency() == ["A", "C", "B"]
    assert detector.changes == 4
    # Decisions are rate bound: a tick right after one decides nothing.
    assert detector.next_tick_ms is not None and detector.next_tick_ms > t
    assert detector.tick(detector.next_tick_ms - 1) is None


def test_a_dominant_speaker_who_leaves_is_forgotten():
    script = Script().add("A", 1000, 3000, "speech").add("B", 6000, 8000, "speech")
    detector, _ = play(script, ["A", "B"], 4000)
    assert detector.dominant == "A"
    detector.remove("A")
    assert detector.dominant is None and detector.speakers_by_recency() == []
    for t in range(4000, 9000, 20):
        detector.on_level("B", script.level("B", t), t)
        detector.tick(t)
    assert detector.dominant == "B"


def test_levels_out_of_range_or_late_are_taken_without_harm():
    detector = DominantSpeaker()
    detector.on_level("A", -5, 1000)
    detector.on_level("A", 500, 1020)
    detector.on_level("A", SILENT, 1040)
    detector.on_level("A", 20, 900)  # late: counted in the frame being filled
    assert detector.tick(1000 + DECISION_INTERVAL_MS) is None


# --- bounded -----------------------------------------------------------------------------------


def test_memory_per_participant_is_bounded_whatever_the_meeting_length():
    participants = [f"p{i}" for i in range(200)]
    rng = random.Random(7)
    detector = DominantSpeaker()

    def feed(start: int, end: int) -> None:
        for t in range(start, end, 20):
            for participant in participants:
                detector.on_level(participant, rng.randint(10, 70), t)
            if t % TICK_MS == 0:
                detector.tick(t)

    feed(0, 2000)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        feed(2000, 12_000)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 20_000  # bytes, for 200 participants and 10 s more
    for speaker in detector._speakers.values():
        assert len(speaker.blocks) == BLOCKS_PER_LONG
