"""sfu.engine.subscription through the worker's clockwork, on a fake clock: real simulcast
producers fed real VP8 packets (measured bitrates), real consumers, a real estimator fed
REMB, the router's real dominant-speaker detector and last-N; what the subscriber is told
(SUBSCRIBER_ALLOCATION's tracks) and what the publisher is told (dynacast)."""

from __future__ import annotations

import pytest

from sfu.clockwork import ALLOCATION_POLL_S, Clockwork
from sfu.engine.allocator import Decision, Layer
from sfu.engine.notice_clock import NoticeClock
from sfu.engine.stats import Counters
from sfu.engine.subscription import AUDIO_RESERVE_BPS, Subscription
from sfu.wire import rtp
from tests.support.adaptive import send_frame, simulcast_producer, subscriber
from tests.support.simulcast import Simulcast
from tests.support.speech import LEVEL_ID, Talk, play
from tests.support.tree import OPUS, VP8, Clock, new_tree, producer, wire

FPS = 30


class Told:
    """What the clockwork tells the worker: allocations and wanted layers, in order."""

    def __init__(self) -> None:
        self.allocations: list[tuple[str, int, list[dict]]] = []
        self.layers: list[tuple[str, list[str]]] = []

    def allocation(self, transport_id: str, estimate_bps: int, tracks: list[dict]) -> None:
        self.allocations.append((transport_id, estimate_bps, tracks))

    def wanted(self, producer_id: str, rids: list[str]) -> None:
        self.layers.append((producer_id, rids))

    def tracks(self) -> dict[str, dict]:
        """The latest report of each consumer."""
        latest = {}
        for _, _, tracks in self.allocations:
            for track in tracks:
                latest[track["consumer_id"]] = track
        return latest


def clockwork_for(registry, clock, told: Told) -> Clockwork:
    return Clockwork(registry, NoticeClock(), 1.0, clock=clock, on_allocation=told.allocation,
                     on_layers_wanted=told.wanted)


class Meeting:
    """Simulcast publishers a, b, c... and one subscriber of all of them."""

    def __init__(self, names=("a", "b", "c")) -> None:
        self.registry, self.router = new_tree()
        self.clock = Clock(100.0)
        self.told = Told()
        self.clockwork = clockwork_for(self.registry, self.clock, self.told)
        self.producers = {}
        self.sources = {}
        for name in names:
            self.producers[name] = simulcast_producer(wire(self.router, f"pub-{name}"), f"cam-{name}", self.clock)
            self.sources[name] = Simulcast(now=100.0)
        self.sub = subscriber(self.router)
        self.consumers = {name: self.sub.consume(f"sub-{name}", p, VP8) for name, p in self.producers.items()}
        self.frame = 0

    def run(self, seconds: float) -> None:
        """Media at 30 fps (a keyframe on every layer each second), the clockwork's tick
        every ALLOCATION_POLL_S."""
        every = round(ALLOCATION_POLL_S * FPS)
        for _ in range(round(seconds * FPS)):
            for name, published in self.producers.items():
                send_frame(self.sources[name], published, self.clock, self.frame % FPS == 0)
            self.frame += 1
            if self.frame % every == 0:
                self.clockwork.tick_allocations()

    def remb(self, bps: int, transport_cc: bool = True) -> None:
        """The subscriber's estimate, given as a REMB. transport_cc: it also sends
        transport-wide feedback (as Chromium does: its estimate can be probed), counted
        as the estimator counts it; False: a REMB-only client (aiortc)."""
        estimator = self.sub.estimator
        if transport_cc and estimator.feedbacks == 0:
            estimator.feedbacks = 1
        estimator.on_remb(bps, int(self.clock.now * 1e6))

    def targets(self) -> dict[str, int]:
        return {name: c.selector.target for name, c in self.consumers.items()}

    def forwarding(self) -> dict[str, int]:
        return {name: c.selector.current for name, c in self.consumers.items()}


def test_without_feedback_the_subscriber_is_unconstrained_and_gets_the_top_layers():
    meeting = Meeting()
    meeting.run(3)
    assert meeting.targets() == meeting.forwarding() == {"a": 2, "b": 2, "c": 2}
    first = meeting.told.allocations[0]
    assert first[0] == "sub" and first[1] == 0  # no estimate yet
    assert {t["consumer_id"]: (t["spatial"], t["layers"], t["paused"]) for t in first[2]} == {
        "sub-a": (2, 3, ""), "sub-b": (2, 3, ""), "sub-c": (2, 3, "")
    }
    assert meeting.sub.probe_target_bps == 0
    # Measured: ~140, ~510, ~910 kbit/s (tests.support.adaptive.EXTRA).
    rates = [layer.meter.bps for layer in meeting.producers["a"].layers]
    assert 110_000 < rates[0] < 180_000 and 420_000 < rates[1] < 600_000 and 800_000 < rates[2] < 1_050_000


def outcomes(meeting) -> dict[str, tuple[int, int]]:
    """Each consumer's (spatial, temporal) target; (-1, -1) while paused."""
    return {name: (c.selector.target, c.selector.munger.target_tid) if c.selector.target >= 0 else (-1, -1)
            for name, c in meeting.consumers.items()}


def test_a_falling_estimate_steps_the_layers_down_then_pauses_for_bandwidth():
    meeting = Meeting()
    meeting.run(3)
    meeting.remb(4_000_000)
    meeting.run(2)
    assert outcomes(meeting) == {"a": (2, 2), "b": (2, 2), "c": (2, 2)}
    seen = len(meeting.told.allocations)
    assert seen == 1  # the first allocation; the estimate changed, the outcome did not
    layers = meeting.producers["a"].layers
    # Measured per temporal layer (the source's TIDs 0, 2, 1, 2): up to TID 0 about a
    # third of the layer, up to TID 1 about half; 7.5, 15 and 30 frames a second.
    assert 0.2 < layers[2].tid_meters[0].bps / layers[2].meter.bps < 0.4
    assert 0.4 < layers[2].tid_meters[1].bps / layers[2].meter.bps < 0.6
    assert [round(fps) for fps in layers[2].fps] in ([7, 15, 30], [8, 15, 30])

    meeting.remb(1_600_000)  # the three top layers (~2.8 Mbit/s) no longer fit
    meeting.run(2)
    down = outcomes(meeting)
    # Lowest layers first, then one ladder step each, (spatial, temporal) ascending, in
    # priority (input) order while the total with the margin fits; above the lowest layer
    # whole layers only (UPPER_LAYERS_AT_REDUCED_RATES): 1.25 x (510 + 510 + 140) kbit/s
    # < 1.6 Mbit/s, one step more not.
    assert down == {"a": (1, 2), "b": (1, 2), "c": (0, 2)}
    allocated = sum(meeting.producers[n].layers[s].meter.cost_bps for n, (s, _) in down.items())
    assert allocated <= 1_600_000
    assert meeting.forwarding() == {name: spatial for name, (spatial, _) in down.items()}
    assert len(meeting.told.allocations) == seen + 1
    for _, estimate, tracks in meeting.told.allocations[seen:]:
        assert estimate == 1_600_000 and len(tracks) == 3
        for track in tracks:
            spatial, temporal = down[track["consumer_id"][-1]]
            assert (track["spatial"], track["temporal"], track["layers"]) == (spatial, temporal, 3)
            assert track["height"] == (180, 360, 720)[spatial] and track["paused"] == ""
            assert track["fps"] == 30.0

    meeting.remb(300_000)  # the three lowest layers whole (~430 kbit/s) do not fit: at 15 fps they do
    meeting.run(2)
    assert outcomes(meeting) == {"a": (0, 1), "b": (0, 1), "c": (0, 1)}
    meeting.remb(150_000)  # at 7.5 fps before anyone is paused
    meeting.run(2)
    assert outcomes(meeting) == {"a": (0, 0), "b": (0, 0), "c": (0, 0)}
    assert meeting.sub.subscription.paused_counts() == {"bandwidth": 0, "hidden": 0, "last_n": 0}

    meeting.remb(90_000)  # two lowest layers at 7.5 fps (~80 kbit/s) fit; not three
    meeting.run(2)
    assert outcomes(meeting) == {"a": (0, 0), "b": (0, 0), "c": (-1, -1)}
    latest = meeting.told.tracks()
    assert latest["sub-c"] == {"consumer_id": "sub-c", "spatial": -1, "temporal": -1, "layers": 3, "height": 0,
                               "fps": 0.0, "paused": "bandwidth"}
    assert (latest["sub-a"]["spatial"], latest["sub-a"]["temporal"], latest["sub-a"]["height"]) == (0, 0, 180)
    assert meeting.sub.subscription.paused_counts() == {"bandwidth": 1, "hidden": 0, "last_n": 0}
    sent = {name: c.packets_sent for name, c in meeting.consumers.items()}
    meeting.run(3)
    assert meeting.consumers["c"].packets_sent == sent["c"]  # nothing for c
    assert meeting.consumers["a"].packets_sent > sent["a"] and meeting.consumers["b"].packets_sent > sent["b"]
    # Once the hold is over, the cheapest step the budget blocks is resuming c: the
    # prober is asked to look that high (a third lowest layer at 7.5 fps, with the margin).
    assert meeting.sub.probe_target_bps > 1.25 * 3 * 30_000

    meeting.remb(30_000)
    meeting.run(1)
    assert outcomes(meeting) == {"a": (-1, -1), "b": (-1, -1), "c": (-1, -1)}
    assert meeting.sub.counters.layer_switches >= 6 and meeting.sub.counters.allocations >= 7


def test_a_remb_only_subscriber_keeps_the_lowest_layers_however_low_its_remb():
    """Without transport-cc there is no probing past a receive-side REMB, which follows
    what arrives: a pause would be for good. The lowest layers stay; REMB picks above."""
    meeting = Meeting()
    meeting.run(3)
    meeting.remb(50_000, transport_cc=False)
    meeting.run(2)
    assert meeting.targets() == {"a": 0, "b": 0, "c": 0}
    assert not any(reason for reason in meeting.sub.subscription.paused_counts().values())
    meeting.remb(4_000_000, transport_cc=False)
    meeting.run(5)
    assert meeting.targets() == {"a": 2, "b": 2, "c": 2}


def test_a_paused_track_sends_nothing_and_resumes_from_a_keyframe_after_the_hold():
    meeting = Meeting(("a", "b"))
    meeting.run(2)
    # The estimator's floor (30 kbit/s) fits one lowest layer at 7.5 fps (~36 kbit/s)
    # within the tolerance, not two: the second is paused.
    meeting.remb(30_000)
    meeting.run(1)
    assert meeting.consumers["a"].selector.target == 0
    consumer = meeting.consumers["b"]
    assert consumer.selector.target == -1
    before = consumer.packets_sent
    meeting.run(1)
    assert consumer.packets_sent == before
    meeting.remb(3_000_000)
    meeting.run(0.5)  # held: the cut was less than hold_s (3 s) ago
    assert consumer.selector.target == -1
    meeting.run(4)
    assert consumer.selector.target >= 0 and consumer.packets_sent > before
    assert meeting.told.tracks()["sub-b"]["paused"] == ""


def test_audio_is_reserved_before_video():
    meeting = Meeting(("a",))
    mic = producer(wire(meeting.router, "pub-m"), "mic", 77, "audio", meeting.clock)
    meeting.sub.consume("sub-mic", mic, OPUS)
    meeting.run(2)
    lowest = meeting.producers["a"].layers[0].tid_meters[0].cost_bps  # at 7.5 fps
    # The lowest layer alone fits (even without the pause tolerance), with the audio it
    # does not, even with it.
    estimate = int((lowest + AUDIO_RESERVE_BPS) / 1.2)  # holds for a lowest layer under 5 x the audio
    assert lowest <= estimate
    meeting.remb(estimate)
    meeting.run(1)
    assert meeting.consumers["a"].selector.target == -1


def test_an_estimate_below_what_is_sent_cuts_at_the_next_tick_whatever_the_rate_bound():
    meeting = Meeting(("a",))
    meeting.remb(4_000_000)
    meeting.run(3)
    assert meeting.consumers["a"].selector.target == 2
    subscription = meeting.sub.subscription
    meeting.clockwork.tick_allocations()  # a run now: the next may not come on the estimate alone for 0.5 s
    meeting.remb(3_900_000)
    assert not subscription.due(meeting.clock.now)  # a small change waits for the rate bound
    meeting.remb(300_000)
    assert subscription.due(meeting.clock.now)  # short of what is sent: at once
    meeting.clockwork.tick_allocations()
    selector = meeting.consumers["a"].selector
    assert (selector.target, selector.munger.target_tid) == (0, 2)


def test_the_last_layer_is_kept_until_the_estimate_is_short_of_it_by_the_tolerance():
    """Pausing freezes the tile: a track on its lowest layer (the low one at 7.5 fps)
    keeps it at 85 % of its cost, is paused at 75 %, and resumes only with the margin
    (125 %) after the hold."""
    meeting = Meeting(("a",))
    meeting.run(5)  # the meters' whole window: the cost holds still from here
    lowest = meeting.producers["a"].layers[0].tid_meters[0].cost_bps
    meeting.remb(int(lowest * 1.1))
    meeting.run(1)
    assert meeting.consumers["a"].selector.target == 0
    meeting.remb(int(lowest * 0.85))
    meeting.run(1)
    assert meeting.consumers["a"].selector.target == 0
    meeting.remb(int(lowest * 0.75))
    meeting.run(1)
    assert meeting.consumers["a"].selector.target == -1
    meeting.remb(int(lowest * 1.1))
    meeting.run(5)
    assert meeting.consumers["a"].selector.target == -1  # short of the resume margin
    meeting.remb(int(lowest * 1.3))
    meeting.run(5)
    assert meeting.consumers["a"].selector.target == 0


def test_a_hidden_tile_is_paused_hidden_and_a_small_one_capped():
    meeting = Meeting(("a", "b"))
    meeting.run(1)
    meeting.sub.subscription.set_viewport("sub-a", 0, 0, False)
    meeting.sub.subscription.set_viewport("sub-b", 320, 180, True)
    meeting.clockwork.tick_allocations()  # at once: not the estimate, no rate limit
    assert meeting.targets() == {"a": -1, "b": 0}
    assert meeting.told.tracks()["sub-a"]["paused"] == "hidden"


LEVELS = {rtp.URI_AUDIO_LEVEL: LEVEL_ID}


def test_last_n_keeps_the_most_recent_speakers_and_pauses_the_others():
    registry, router = new_tree()
    clock = Clock(0.0)
    told = Told()
    clockwork = clockwork_for(registry, clock, told)
    sub = subscriber(router)
    mics, cams = {}, {}
    for index, name in enumerate("abcd"):
        pub = wire(router, f"pub-{name}")
        mics[name] = producer(pub, name, 100 + index, "audio", clock, extmap=LEVELS)
        cams[name] = producer(pub, f"cam-{name}", 200 + index, "video", clock)
        sub.consume(f"sub-{name}", mics[name], OPUS)
        sub.consume(f"sub-cam-{name}", cams[name], VP8)
    router.set_last_n(2)

    def tick(t_ms: int) -> None:
        clockwork.tick_speakers()
        clockwork.tick_allocations()

    talk = Talk().speak("c", 500, 3000).speak("d", 3000, 6000)
    play(talk, mics, clock, 0, 2500, 200, tick)
    paused = {name: sub.consumers[f"sub-cam-{name}"].paused for name in "abcd"}
    assert paused == {"a": False, "b": True, "c": False, "d": True}  # c spoke; then input order
    assert told.tracks()["sub-cam-b"]["paused"] == "last_n"
    play(talk, mics, clock, 2500, 6000, 200, tick)
    paused = {name: sub.consumers[f"sub-cam-{name}"].paused for name in "abcd"}
    assert paused == {"a": True, "b": True, "c": False, "d": False}
    latest = told.tracks()
    assert (latest["sub-cam-a"]["paused"], latest["sub-cam-d"]["paused"]) == ("last_n", "")
    assert latest["sub-cam-d"]["layers"] == 1 and latest["sub-cam-d"]["spatial"] == 0
    assert sub.subscription.paused_counts()["last_n"] == 2

    router.set_last_n(0)
    clockwork.tick_allocations()
    assert not any(sub.consumers[f"sub-cam-{name}"].paused for name in "abcd")
    with pytest.raises(ValueError):
        router.set_last_n(-1)


def test_dynacast_a_layer_is_unwanted_after_the_hold_and_wanted_again_at_once():
    meeting = Meeting(("a",))
    meeting.sub.subscription.set_viewport("sub-a", 320, 180, True)
    meeting.clockwork.tick_allocations()  # before any media: the small tile takes layer 0 only
    meeting.run(2.4)
    assert meeting.told.layers == []  # within the hold (3 s) every layer is still wanted
    meeting.run(1)
    assert meeting.told.layers == [("cam-a", ["q"])]
    assert meeting.producers["a"].demand.paused == 2
    # The publisher stops the two upper layers; the subscriber's tile grows.
    for layer in meeting.sources["a"].layers[1:]:
        layer.active = False
    meeting.run(5)  # long enough for the meters to see them stop
    assert meeting.producers["a"].layers[2].meter.bps == 0
    assert meeting.producers["a"].layers[2].meter.cost_bps > 800_000  # what it cost while it flowed
    meeting.sub.subscription.set_viewport("sub-a", 1280, 720, True)
    meeting.clockwork.tick_allocations()
    assert meeting.consumers["a"].selector.target == 2
    assert meeting.told.layers[-1] == ("cam-a", ["q", "h", "f"])  # at once, with h (its way up); q still flows
    meeting.run(1)  # the selector falls back to what flows while f is paused
    assert meeting.forwarding() == {"a": 0}
    for layer in meeting.sources["a"].layers[1:]:
        layer.active = True
    meeting.run(4)
    assert meeting.forwarding() == {"a": 2}
    assert meeting.told.layers[-1] == ("cam-a", ["q", "h", "f"])  # the tile's way up stays wanted


def test_a_consumer_without_viewport_or_allocation_keeps_the_top_layer_wanted():
    registry, router = new_tree()
    clock = Clock(100.0)
    told = Told()
    clockwork = clockwork_for(registry, clock, told)
    cam = simulcast_producer(wire(router, "pub"), "cam", clock)
    recorder = wire(router, "recorder")  # a plain transport: no allocation
    consumer = recorder.consume("rec", cam, VP8)
    source = Simulcast(now=100.0)
    for frame in range(5 * FPS):
        send_frame(source, cam, clock, frame % FPS == 0)
        if frame % 6 == 0:
            clockwork.tick_allocations()
    assert told.layers == [("cam", ["f"])]
    assert consumer.selector.current == 2
    consumer.close()
    for frame in range(4 * FPS):
        send_frame(source, cam, clock, False)
        if frame % 6 == 0:
            clockwork.tick_allocations()
    assert told.layers[-1] == ("cam", [])  # nobody: nothing wanted after the hold


def test_temporal_layers_are_offered_at_their_cost_and_frame_rate():
    from sfu.engine.simulcast import Layer as SimulcastLayer
    from sfu.engine.subscription import temporal_layers

    def offered(layer, height):
        return [(made.spatial, made.temporal, made.bitrate_bps) for made in temporal_layers(layer, height)]

    low, middle = SimulcastLayer(0, "q", 16, 0.5), SimulcastLayer(1, "h", 16, 0.5)
    # Nothing measured, no TIDs seen (H.264, or not yet): whole, at the nominal rate.
    assert offered(middle, 360) == [(1, 2, 500_000)]
    # TIDs seen, no rates yet: nominal shares; above the lowest layer, no frame rate known: whole only.
    low.tid_octets[2] = middle.tid_octets[2] = 1
    assert offered(low, 180) == [(0, 0, 60_000), (0, 1, 90_000), (0, 2, 150_000)]
    assert offered(middle, 360) == [(1, 2, 500_000)]
    # Measured: a 15 fps camera's middle layer at 7.5 fps (TIDs 0-1) is offered, at 3.75 not.
    clock = 10.0
    for second in range(6):
        for layer in (low, middle):
            layer.octets += 60_000
            layer.tid_octets[0] += 20_000
            layer.tid_octets[1] += 10_000
            layer.tid_octets[2] += 30_000
            layer.tid_frames[0] += 4
            layer.tid_frames[1] += 4
            layer.tid_frames[2] += 7
            layer.measure(clock + second)
    assert middle.fps == [4.0, 8.0, 15.0]
    assert offered(middle, 360) == [(1, 2, 480_000)]  # above the lowest: whole (UPPER_LAYERS_AT_REDUCED_RATES)
    reduced = [(made.spatial, made.temporal, made.bitrate_bps) for made in temporal_layers(middle, 360, True)]
    assert reduced == [(1, 1, 240_000), (1, 2, 480_000)]
    assert offered(low, 180) == [(0, 0, 160_000), (0, 1, 240_000), (0, 2, 480_000)]


def test_a_reduced_frame_rate_is_offered_with_hysteresis():
    """Measured around the threshold, the ladder does not flap: a layer above the lowest is
    offered (when upper layers are) at TIDs up to 1 from 7 fps on, withdrawn only below 5.5."""
    from sfu.engine.simulcast import Layer as SimulcastLayer
    from sfu.engine.subscription import temporal_layers

    middle = SimulcastLayer(1, "h", 16, 0.5)
    middle.tid_octets[2] = 1
    now = 10.0
    middle.measure(now)
    seen = []
    for fps in (7.5, 6.5, 6.0, 5.0, 6.5, 7.0):  # frames a second of TIDs 0-1 over each 2 s
        middle.tid_frames[1] += round(fps * 2)
        now += 2.0
        middle.measure(now)
        seen.append(any(made.temporal == 1 for made in temporal_layers(middle, 360, upper_reduced=True)))
    assert seen == [True, True, True, False, False, True]


def test_dynacast_keeps_the_layer_a_tile_asks_for_while_the_estimate_is_short_of_it():
    meeting = Meeting(("a",))
    meeting.sub.subscription.set_viewport("sub-a", 1280, 720, True)
    meeting.remb(300_000)  # a subscriber starting at 300 kbit/s, to be probed up
    meeting.run(5)
    assert meeting.targets() == {"a": 0}  # its bandwidth allows the lowest layer only
    assert meeting.told.layers == []  # but its tile asks for the top one: every layer stays wanted
    assert meeting.producers["a"].demand.paused == 0
    meeting.sub.subscription.set_viewport("sub-a", 320, 180, True)  # a small tile: only q is watched
    meeting.run(4)
    assert meeting.told.layers == [("cam-a", ["q"])]
    meeting.sub.subscription.set_viewport("sub-a", 1280, 720, False)  # hidden: asks for nothing
    meeting.run(4)
    assert meeting.told.layers[-1] == ("cam-a", [])


def test_the_delivered_ratio_is_the_chosen_bitrate_over_what_the_tiles_need():
    subscription = Subscription(None, Counters())  # type: ignore[arg-type]  # decisions given below
    assert subscription.delivered_ratio() == -1.0  # nothing asked for
    top, low = Layer(2, 0, 1_500_000, 1280, 720), Layer(0, 0, 150_000, 320, 180)
    subscription.decisions = {
        "a": Decision("a", low, None, top),  # the lowest layer of a 720p tile's need
        "b": Decision("b", None, "bandwidth", top),  # paused for bandwidth: nothing of it
        "c": Decision("c", None, "hidden", None),  # hidden: not asked for
    }
    assert subscription.delivered_ratio() == pytest.approx(150_000 / 3_000_000)
    subscription.decisions = {"a": Decision("a", top, None, top), "c": Decision("c", None, "last_n", None)}
    assert subscription.delivered_ratio() == 1.0
