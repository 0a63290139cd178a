"""The router's dominant speaker (sfu/engine/router.py + Producer.hear_levels), fed by real
RTP packets carrying the RFC 6464 audio level through `Producer.on_rtp`, on a fake clock:
who is heard (microphones with levels, forwarded), what a change looks like, and that a
closed producer is forgotten."""

from __future__ import annotations

from sfu.engine.speaker import DECISION_INTERVAL_MS
from sfu.wire import rtp
from tests.support.speech import LEVEL_ID, Talk, audio_packet, play
from tests.support.tree import OPUS, Clock, new_tree, producer, wire

LEVELS = {rtp.URI_AUDIO_LEVEL: LEVEL_ID}


def meeting(*names: str, extmap=LEVELS, source: str = "microphone"):
    """A router with one microphone per name (each on its own publish transport) and a
    subscriber receiving them all."""
    registry, router = new_tree()
    clock = Clock(0.0)
    mics = {}
    for index, name in enumerate(names):
        mics[name] = producer(wire(router, f"pub-{name}"), name, 1000 + index, "audio", clock,
                              source=source, extmap=extmap)  # fmt: skip
    sub = wire(router, "sub")
    for mic in mics.values():
        sub.consume(f"sub-{mic.id}", mic, OPUS)
    return router, clock, mics, sub


def changes(router, talk, mics, clock, start_ms, until_ms):
    """(t, producer id) each time the router's detector changed its mind, ticked every 50 ms."""
    found = []

    def tick(t):
        winner = router.tick_speaker(t)
        if winner is not None:
            found.append((t, winner))

    play(talk, mics, clock, start_ms, until_ms, 50, tick)
    return found


def test_the_router_follows_alternating_speakers_through_their_packets():
    router, clock, mics, sub = meeting("a", "b", "c")
    talk = Talk().speak("a", 1000, 4000).speak("b", 4000, 7000).speak("a", 7000, 10_000)
    found = changes(router, talk, mics, clock, 0, 11_000)
    assert [who for _, who in found] == ["a", "b", "a"]
    for (when, _), start in zip(found, (1000, 4000, 7000)):
        assert start < when <= start + 1500, found
    assert router.speaker.dominant == "a" and router.speaker.changes == 3
    assert len(sub.rtp) == 3 * 11_000 // 20  # every packet was forwarded as well


def test_a_short_pause_and_long_silence_change_nothing():
    router, clock, mics, _ = meeting("a", "b")
    talk = Talk().speak("a", 1000, 3000).speak("a", 3300, 5000)  # a 0.3 s pause, then silence
    assert [who for _, who in changes(router, talk, mics, clock, 0, 12_000)] == ["a"]


def test_decisions_come_every_decision_interval_whatever_the_tick_rate():
    router, clock, mics, _ = meeting("a")
    decided = []

    def tick(t):
        before = router.speaker.next_tick_ms
        router.tick_speaker(t)
        if router.speaker.next_tick_ms != before:
            decided.append(t)

    play(Talk(), mics, clock, 0, 2000, 20, tick)
    assert decided and all(b - a == DECISION_INTERVAL_MS for a, b in zip(decided, decided[1:]))


def test_only_microphones_that_carry_levels_are_heard():
    registry, router = new_tree()
    pub = wire(router, "pub")
    mic = producer(pub, "mic", 1, "audio", extmap=LEVELS)
    assert mic.speaker is router.speaker and mic.level_id == LEVEL_ID
    without_levels = producer(pub, "plain-mic", 2, "audio")
    screen_audio = producer(pub, "screen-audio", 3, "audio", source="screen-audio", extmap=LEVELS)
    camera = producer(pub, "cam", 4, "video", extmap=LEVELS)
    for other in (without_levels, screen_audio, camera):
        assert other.speaker is None and other.level_id == 0


def test_screen_share_audio_never_becomes_the_speaker():
    router, clock, mics, _ = meeting("movie", source="screen-audio")
    talk = Talk().speak("movie", 500, 5000)
    assert changes(router, talk, mics, clock, 0, 6000) == []


def test_a_paused_microphone_is_not_heard():
    router, clock, mics, _ = meeting("a", "b")
    mics["b"].set_paused(True)  # the host muted b
    talk = Talk().speak("b", 1000, 4000).speak("a", 5000, 8000)
    assert [who for _, who in changes(router, talk, mics, clock, 0, 9000)] == ["a"]


def test_a_closed_producer_leaves_the_detector_and_someone_else_can_take_over():
    router, clock, mics, _ = meeting("a", "b")
    found = changes(router, Talk().speak("a", 500, 3000), mics, clock, 0, 3000)
    assert [who for _, who in found] == ["a"]
    mics["a"].close()
    assert router.speaker.dominant is None and router.speaker.speakers_by_recency() == []
    assert "a" not in router.producers
    del mics["a"]
    found = changes(router, Talk(2).speak("b", 3500, 6000), mics, clock, 3000, 6000)
    assert [who for _, who in found] == ["b"]


def test_a_packet_without_the_level_is_forwarded_and_not_heard():
    router, clock, mics, sub = meeting("a")
    mic = mics["a"]
    plain = rtp.build_packet(109, 1, 960, mic.ssrc, payload=b"\xfco")
    other_id = audio_packet(2, 20, mic.ssrc, level_id=5)  # a level under an id we did not negotiate
    for packet in (plain, other_id):
        mic.on_rtp(packet, mic.ssrc)
    assert len(sub.rtp) == 2 and router.speaker.next_tick_ms is None  # nothing heard yet
