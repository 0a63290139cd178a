"""One subscriber's video, allocated: the per-subscriber `sfu.engine.allocator.Allocator`
fed from the running tree, and its decisions applied to the consumers.

A `Subscription` belongs to one subscribe transport (`sfu.transport.webrtc.WebRtcTransport.subscription`).
It is the one owner of what its video consumers forward: a simulcast consumer's target
layer (`LayerSelector.set_target`; -1 while paused), a single-stream consumer's pause.
The tile (`set_viewport`, from CONSUMER_SET_VIEWPORT) is one of its inputs: it caps the
layer through the allocator's ladder and hides a track; it sets no target itself.

Inputs, gathered at each run (control path, never per packet):

- the estimate: the transport's `estimator.estimate_bps`, from its start value (300 kbit/s,
  probed up at once) for a subscriber that negotiated transport-cc; one that negotiated
  neither transport-cc nor sent a REMB has told us nothing about its link and would be
  starved by the start value: until it does, it is unconstrained (`estimate_bps` 0: none
  yet; budget UNCONSTRAINED_BPS); one that sends
  REMB but no transport-cc feedback cannot be probed: it always gets the lowest layer of
  each track it is shown (`Allocator.allocate`'s `may_pause`), REMB choosing above that;
- reserved for audio: AUDIO_RESERVE_BPS per audio consumer whose producer is not paused
  (Opus at ~32 kbit/s plus 50 packets a second of RTP/SRTP/UDP/IP headers); audio is
  never dropped for video;
- each video consumer as a `VideoTrack` (track id = consumer id): kind screen when the
  producer's source is "screen", else camera; publisher = the producer's publish
  transport (a participant's producers share it); its layers with their measured
  bitrates (`sfu.engine.bitrate.BitrateMeter.cost_bps`: the smoothed rate, or the last
  one while the layer does not flow (dynacast), or a nominal rate by height before
  anything was measured), heights (`SimulcastProducer.heights`) and widths; a spatial
  layer that carries VP8 temporal layers is offered at each (`temporal_layers`: TIDs up
  to 0, 1 and 2, at their metered cost, `simulcast.Layer.tid_meters`, or a nominal share
  of the layer's before that), so that the allocation steps down the frame rate before
  it pauses the lowest layer; a layer above the lowest whole (UPPER_LAYERS_AT_REDUCED_RATES
  says why: taking a higher layer at a lower frame rate rather than a lower one at the
  full rate, as Jitsi Videobridge's allocation does, is built, limited to rates worth it,
  `simulcast.Layer.reduced`, and off); a layer without TIDs (H.264, a stream without
  temporal layers) only whole (TOP_TEMPORAL); the tile (visible, width, height; a
  visible tile of size 0 x 0 is one whose size is not known yet: no cap) and pinned;
- the speakers, most recent first: the router's `DominantSpeaker.speakers_by_recency`,
  microphone producer ids mapped to their publish transport;
- last-N: the router's `last_n`.

When it runs (`due`): at once after anything but the estimate changed (`changed`: a
consumer added or removed, a tile; the router's speaker order or last-N, noticed by
comparing), and at once when the estimate falls below what the decisions send (a queue
is building: every 200 ms tick counts); when the estimate changed otherwise, at most
every `AllocationPolicy.min_interval_s`;
when a hold ends (`Allocation.wake_at`); and every REFRESH_S for the measured rates.

Out of a run: the consumers' targets changed, `transport.probe_target_bps` set to the
allocation's `probe_bps` (the prober's goal; 0 while unconstrained), and a report of
the consumers whose outcome changed, as `sfu.api.SubscriberAllocation.tracks` wants it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sfu.engine.allocator import (
    CAMERA,
    PAUSED_BANDWIDTH,
    PAUSED_HIDDEN,
    PAUSED_LAST_N,
    SCREEN,
    AllocationPolicy,
    Allocator,
    Decision,
    Layer,
    VideoTrack,
)
from sfu.engine.simulcast import SimulcastConsumer, SimulcastProducer
from sfu.engine.stats import Counters

if TYPE_CHECKING:
    from sfu.engine.bwe import BandwidthEstimator
    from sfu.engine.consumer import Consumer
    from sfu.engine.producer import Producer
    from sfu.engine.router import Router

AUDIO_RESERVE_BPS = 40_000
UNCONSTRAINED_BPS = 1_000_000_000
# The allocator's defaults, but a track's last layer is kept until the estimate is short
# of it by a quarter: pausing is the cut a subscriber sees (a frozen tile), a small
# overshoot only the odd loss the receiver repairs. Measured behind a 350 kbit/s link:
# the estimate wanders 200-360 kbit/s around a low layer of ~140 kbit/s plus audio, and
# without the tolerance the track was paused for seconds at a time.
POLICY = AllocationPolicy(pause_tolerance=0.25)
REFRESH_S = 1.0
TOP_TEMPORAL = 2  # every temporal layer (VP8 L1T3's TIDs 0..2)
PAUSE_REASONS = (PAUSED_BANDWIDTH, PAUSED_HIDDEN, PAUSED_LAST_N)
# What a layer costs before anything was measured (by height, Chromium's defaults for
# VP8 simulcast roughly): enough to order the ladder and not to oversubscribe at once.
NOMINAL_BPS = ((180, 150_000), (360, 500_000), (540, 1_000_000), (720, 1_700_000))
NOMINAL_TOP_BPS = 2_500_000


# The cost of TIDs up to 0, 1 and 2 as a share of the whole layer before per-TID rates are
# measured (libwebrtc's VP8 rate split for three temporal layers, cumulative).
TEMPORAL_SHARES = (0.4, 0.6, 1.0)


def nominal_bps(height: int) -> int:
    return next((bps for tall, bps in NOMINAL_BPS if height <= tall), NOMINAL_TOP_BPS)


# Layers above the lowest at a reduced frame rate (a sharper picture at 7.5 fps rather
# than a smaller one at the full rate): off. Offered, the shaped-link proof's subscriber
# behind 350 kbit/s stalled for 6.4 s (tests/control/static/test_adaptive_shaped.py,
# 2026-12-07): the new next step, 360p at 7.5 fps, costs about that link's rate, and
# probing for it and taking it overflowed the link. The lowest layer's steps (7.5 and 15
# fps before a pause) are on. To turn this on, the allocation's upgrade to such a step
# needs a closer look first.
UPPER_LAYERS_AT_REDUCED_RATES = False


def temporal_layers(layer, height: int, upper_reduced: bool = UPPER_LAYERS_AT_REDUCED_RATES) -> list[Layer]:
    """The allocator's layers of one simulcast layer: whole, or at each temporal layer
    (a layer above the lowest only with `upper_reduced`)."""
    full = layer.meter.cost_bps or nominal_bps(height)
    width = layer.width or height * 16 // 9
    if not layer.temporal:
        return [Layer(layer.index, TOP_TEMPORAL, full, width, height)]
    made = []
    cost = 0
    for temporal in (0, 1):
        cost = max(cost, min(layer.tid_meters[temporal].cost_bps or int(full * TEMPORAL_SHARES[temporal]), full))
        # Above the lowest layer, only a frame rate worth it (`simulcast.Layer.reduced`):
        # a sharper picture at 3.75 fps is worse than a smaller one at 15.
        if layer.index == 0 or (upper_reduced and layer.reduced[temporal]):
            made.append(Layer(layer.index, temporal, cost, width, height))
    made.append(Layer(layer.index, TOP_TEMPORAL, full, width, height))
    return made


class SubscriberTransport(Protocol):
    """What a subscription needs of its transport (sfu.transport.webrtc.WebRtcTransport)."""

    id: str
    router: Router
    consumers: dict[str, Consumer]
    estimator: BandwidthEstimator | None
    probe_target_bps: int


class Viewport:
    __slots__ = ("width", "height", "visible", "pinned")

    def __init__(self, width: int, height: int, visible: bool, pinned: bool) -> None:
        self.width = max(0, width)
        self.height = max(0, height)
        self.visible = visible
        self.pinned = pinned


class Subscription:
    __slots__ = ("transport", "counters", "allocator", "viewports", "decisions", "estimate_bps",
                 "allocated_bps", "_dirty", "_speaker_changes", "_last_n", "_wake_at")

    def __init__(self, transport: SubscriberTransport, counters: Counters,
                 policy: AllocationPolicy = POLICY) -> None:
        self.transport = transport
        self.counters = counters
        self.allocator = Allocator(policy)
        self.viewports: dict[str, Viewport] = {}  # by consumer id, as the client reported
        self.decisions: dict[str, Decision] = {}  # the last run's, by consumer id
        self.estimate_bps = 0  # what the last run was given (0: none yet, unconstrained)
        self.allocated_bps = 0  # what the last run's decisions send, within its budget
        self._dirty = True
        self._speaker_changes = -1
        self._last_n: int | None = None
        self._wake_at: float | None = None

    # ------------------------------------------------------------------ inputs

    def set_viewport(self, consumer_id: str, width: int, height: int, visible: bool, pinned: bool = False) -> None:
        self.viewports[consumer_id] = Viewport(width, height, visible, pinned)
        self.changed()

    def changed(self) -> None:
        """Something other than the estimate changed: run at the next look."""
        self._dirty = True
        self.allocator.invalidate()

    def current_estimate(self) -> int:
        """The transport's estimate; 0 (unconstrained) while a subscriber that negotiated
        no transport-cc has sent no REMB either. One that negotiated transport-cc starts
        at the estimator's start value, as a libwebrtc sender does, and is probed up: sent
        everything at once, a subscriber behind a slow link froze for seconds before its
        first feedback could cut it."""
        estimator = self.transport.estimator
        if estimator is None:
            return 0
        if estimator.feedbacks == 0 and estimator.remb_bps is None and not self._measurable():
            return 0
        return estimator.estimate_bps

    def _measurable(self) -> bool:
        """Some active video consumer carries transport-wide numbers the subscriber will
        report on (it answered with the transport-cc extension)."""
        return any(c.tcc_id and c.active for c in self.transport.consumers.values() if c.kind == "video")

    def due(self, now: float) -> bool:
        router = self.transport.router
        if router.speaker.changes != self._speaker_changes or router.last_n != self._last_n:
            self.changed()
        if self._dirty:
            return True
        last_run = self.allocator.last_run
        if last_run is None:
            return True
        estimate = self.current_estimate()
        if estimate and estimate < self.allocated_bps:
            return True  # short of what is sent now: a queue is building, cut at once
        if not self.allocator.due(now):
            return False
        if estimate != self.estimate_bps:
            return True
        if self._wake_at is not None and now >= self._wake_at:
            return True
        return now - last_run >= REFRESH_S

    # ------------------------------------------------------------------ a run

    def run(self, now: float) -> list[dict]:
        """Allocate and apply; the changed consumers, reported as SubscriberAllocation's tracks."""
        transport = self.transport
        router = transport.router
        self._dirty = False
        self._speaker_changes = router.speaker.changes
        self._last_n = router.last_n
        self.estimate_bps = estimate = self.current_estimate()
        consumers = {cid: c for cid, c in transport.consumers.items() if c.kind == "video" and not c.closed}
        for consumer_id in [cid for cid in self.viewports if cid not in transport.consumers]:
            del self.viewports[consumer_id]
        tracks = [self._track(consumer) for consumer in consumers.values()]
        reserved = self._reserved_bps()
        budget = estimate or UNCONSTRAINED_BPS
        # REMB but no transport-cc feedback: its own receive-side estimate follows what it
        # receives (libwebrtc's and aiortc's cap it at 1.5 x the incoming rate), and without
        # transport-wide numbers nothing can probe past it: a track paused for bandwidth
        # would stay paused for good. It keeps each track's lowest layer; REMB chooses above.
        probeable = not estimate or self.transport.estimator.feedbacks > 0  # type: ignore[union-attr]
        allocation = self.allocator.allocate(
            budget, tracks, self._speakers(router), router.last_n, now, reserved, may_pause=probeable
        )
        self.counters.allocations += 1
        self._wake_at = allocation.wake_at
        # What the decisions send (video and the audio reserve), above the pause tolerance
        # only when the lowest layers are kept over the estimate: not a reason to re-run.
        self.allocated_bps = min(allocation.allocated_bps + reserved, budget)
        transport.probe_target_bps = allocation.probe_bps if estimate else 0
        reports = []
        for consumer_id in allocation.changed:
            decision = allocation.decisions[consumer_id]
            consumer = consumers[consumer_id]
            if consumer_id in self.decisions:
                self.counters.layer_switches += 1
            _apply(consumer, decision)
            reports.append(_report(consumer, decision))
        for consumer_id, decision in allocation.decisions.items():  # what each tile asks for, changed or not
            consumer = consumers[consumer_id]
            if isinstance(consumer, SimulcastConsumer):
                consumer.tile_layer = decision.target.spatial if decision.target is not None else -1
        self.decisions = allocation.decisions
        return reports

    def paused_counts(self) -> dict[str, int]:
        """Tracks paused now, by reason (every reason listed)."""
        counts = dict.fromkeys(PAUSE_REASONS, 0)
        for decision in self.decisions.values():
            if decision.reason is not None:
                counts[decision.reason] = counts.get(decision.reason, 0) + 1
        return counts

    def delivered_ratio(self) -> float:
        """What the last run sends of the video its subscriber's tiles need, as a share of
        bitrate (LiveKit's "bitrate vs expected"): the chosen layers' over the tops of their
        ladders, for the tracks it selected (a pause for bandwidth counts 0; hidden and
        last-N tracks are not asked for). -1: no video asked for."""
        wanted = delivered = 0
        for decision in self.decisions.values():
            if decision.target is None:
                continue
            wanted += max(1, decision.target.bitrate_bps)
            if decision.layer is not None:
                delivered += max(1, decision.layer.bitrate_bps)
        return min(1.0, delivered / wanted) if wanted else -1.0

    def _track(self, consumer: Consumer) -> VideoTrack:
        producer = consumer.producer
        view = self.viewports.get(consumer.id)
        kind = SCREEN if producer.params.source == "screen" else CAMERA
        if view is None:
            return VideoTrack(consumer.id, producer.stream_id, kind, _layers(producer))
        known = view.width > 0 or view.height > 0 or not view.visible
        return VideoTrack(
            consumer.id,
            producer.stream_id,
            kind,
            _layers(producer),
            visible=view.visible,
            tile_width=view.width if known else None,
            tile_height=view.height if known else None,
            pinned=view.pinned,
        )

    def _speakers(self, router: Router) -> list[str]:
        """The publishers (publish transport ids) of the speakers' microphones, most recent first."""
        producers = router.producers
        return [producers[p].stream_id for p in router.speaker.speakers_by_recency() if p in producers]

    def _reserved_bps(self) -> int:
        audio = sum(
            1 for c in self.transport.consumers.values() if c.kind == "audio" and not c.closed and not c.producer.paused
        )
        return audio * AUDIO_RESERVE_BPS


def _layers(producer: Producer) -> list[Layer]:
    if isinstance(producer, SimulcastProducer):
        heights = producer.heights()
        return [made for layer, height in zip(producer.layers, heights) for made in temporal_layers(layer, height)]
    return [Layer(0, TOP_TEMPORAL, producer.meter.cost_bps or NOMINAL_TOP_BPS, 0, 0)]


def _apply(consumer: Consumer, decision: Decision) -> None:
    """One owner of what the consumer forwards: the target layer (or none), resumed from
    a keyframe of it (the selector asks for one; a single stream's `set_paused` too)."""
    layer = decision.layer
    if isinstance(consumer, SimulcastConsumer):
        if layer is None:
            consumer.selector.set_target(-1)
        else:
            consumer.selector.set_target(layer.spatial, layer.temporal)
    elif consumer.paused != (layer is None):
        consumer.set_paused(layer is None)


def _report(consumer: Consumer, decision: Decision) -> dict:
    producer = consumer.producer
    layer = decision.layer
    return {
        "consumer_id": consumer.id,
        "spatial": layer.spatial if layer is not None else -1,
        "temporal": layer.temporal if layer is not None else -1,
        "layers": len(producer.layers) if isinstance(producer, SimulcastProducer) else 1,
        "height": layer.height if layer is not None else 0,
        "fps": _fps(producer, layer),
        "paused": decision.reason or "",
    }


def _fps(producer: Producer, layer: Layer | None) -> float:
    """The measured frame rate of what the decision forwards (0: not measured, or paused)."""
    if layer is None or not isinstance(producer, SimulcastProducer) or layer.spatial >= len(producer.layers):
        return 0.0
    return producer.layers[layer.spatial].fps[min(layer.temporal, TOP_TEMPORAL)]
