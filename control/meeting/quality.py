"""Call quality, the rule (issue 14, item 1; docs/signaling.md "Connection quality").

Pure: windows of what the media server measured and what the client reported go in, with
the time; a level comes out. No I/O, no clock of its own. The service around it is
`control.meeting.call_quality.CallQuality`.

What a participant's score is made of (the latest of each, while fresh):

- from the media server, per transport and report window (`sfu.api.TransportQuality`):
  the loss and jitter of what we send them (their receiver reports) and of what they send
  us (our reception of their streams), and the round trip (LSR/DLSR of their reports);
- from their client: the share of the last report interval their received video spent
  frozen (Chromium's inbound-rtp `totalFreezesDuration`, the `media_stats` message);
- from the allocation: a video track of theirs paused for bandwidth.

The rule, in the order it caps the level:

1. A MOS-like score from the simplified E-model (ITU-T G.107 as VoIP monitors use it):
   effective latency = RTT/2 + 2 x jitter + 10 ms; R = 93.2 - latency/40 (latency
   below 160 ms) or 93.2 - (latency - 120)/10; R -= 2.5 per percent lost (the worse of
   the two directions); MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R), in 1..4.5.
   **excellent** from MOS 4.0 (no delay: under ~5 % loss), **good** from 3.5 (under
   ~10 % loss, or 400 ms RTT with 30 ms jitter), **poor** below.
2. Freezes: 10 % or more of the interval frozen is **poor**; 2 % or more is at most
   **good**.
3. Bitrate against what is needed (LiveKit's "bitrate vs expected"): a subscriber sent
   less than half the bitrate its visible tiles need (lower simulcast layers for lack of
   bandwidth) is at most **good**; a video track paused for bandwidth (the server could
   not send even its lowest layer) is **poor**. Chromium counts that pause as one long freeze once the video comes back:
   freezes reported within `PAUSE_FREEZE_GRACE_S` of the last pause seen are the pause
   itself, scored poor while it lasted, and are not counted again.

Hysteresis (LiveKit's habit: down fast, up slow): a worse level applies at once; a
better one only once every evaluation for `UPGRADE_HOLD_S` said so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

POOR, GOOD, EXCELLENT = "poor", "good", "excellent"
LEVELS = (POOR, GOOD, EXCELLENT)  # worst first: a level's rank is its index
MOS_EXCELLENT = 4.0
MOS_GOOD = 3.5
FREEZE_POOR = 0.10  # share of the interval frozen
FREEZE_GOOD = 0.02
DELIVERED_GOOD = 0.5  # share of the needed video bitrate below which excellent is out of reach
UPGRADE_HOLD_S = 6.0
# A window older than this says nothing about now (the worker reports every 2 s, the web
# client every 5 s): a participant who stopped publishing is judged on what is left.
FRESH_S = 12.0
# Two of the web client's freeze reports (every 5 s) and some: the one that carries a
# pause's freeze comes within this of the pause's end.
PAUSE_FREEZE_GRACE_S = 12.0
MAX_RTT_S = 10.0
MAX_ESTIMATE_BPS = 10_000_000_000.0  # more is a worker's bug, not a link
MAX_JITTER_S = 10.0


def mos(loss_ratio: float, jitter_s: float, rtt_s: float) -> float:
    """The simplified E-model's mean opinion score (1..4.5) for the given loss (0..1),
    jitter and round trip (seconds; a negative RTT is unknown: taken as 0)."""
    latency_ms = max(0.0, rtt_s) * 1000 / 2 + 2 * max(0.0, jitter_s) * 1000 + 10
    r = 93.2 - latency_ms / 40 if latency_ms < 160 else 93.2 - (latency_ms - 120) / 10
    r -= 2.5 * 100 * min(1.0, max(0.0, loss_ratio))
    r = min(100.0, max(0.0, r))
    score = 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)
    return min(4.5, max(1.0, score))


def level_of(score: float, freeze_ratio: float = 0.0, paused_for_bandwidth: int = 0, delivered: float = -1.0) -> str:
    """The level the rule gives (the module's three steps), before hysteresis.
    `delivered`: the share of the needed video bitrate sent (-1: no video asked for)."""
    level = EXCELLENT if score >= MOS_EXCELLENT else GOOD if score >= MOS_GOOD else POOR
    if freeze_ratio >= FREEZE_POOR or paused_for_bandwidth > 0:
        return POOR
    short = 0.0 <= delivered < DELIVERED_GOOD
    if (freeze_ratio >= FREEZE_GOOD or short) and level == EXCELLENT:
        return GOOD
    return level


class Hysteresis:
    """A level that drops at once and rises only after holding `hold_s`."""

    __slots__ = ("level", "hold_s", "_rising_to", "_rising_since")

    def __init__(self, hold_s: float = UPGRADE_HOLD_S) -> None:
        self.level: str | None = None  # None until the first evaluation
        self.hold_s = hold_s
        self._rising_to: str | None = None
        self._rising_since = 0.0

    def update(self, raw: str, now: float) -> bool:
        """Feed the rule's level at `now`; True when the shown level changed."""
        if self.level is None or LEVELS.index(raw) < LEVELS.index(self.level):
            changed = raw != self.level
            self.level, self._rising_to = raw, None
            return changed
        if raw == self.level:
            self._rising_to = None
            return False
        # Better: the lowest better level seen since the rise began is what it rises to.
        if self._rising_to is None:
            self._rising_to, self._rising_since = raw, now
        elif LEVELS.index(raw) < LEVELS.index(self._rising_to):
            self._rising_to = raw
        if now - self._rising_since >= self.hold_s:
            self.level, self._rising_to = self._rising_to, None
            return True
        return False


@dataclass(frozen=True)
class LinkWindow:
    """One report window of a transport (`sfu.api.TransportQuality`), bounded."""

    loss_ratio: float
    jitter_s: float
    rtt_s: float  # -1: not measured
    at: float
    delivered: float = -1.0  # share of the needed video bitrate sent; -1: none asked for
    estimate_bps: float = 0.0  # the subscribe transport's bandwidth estimate; 0: none

    @classmethod
    def bounded(
        cls, loss_ratio: float, jitter_s: float, rtt_s: float, at: float, delivered: float = -1.0,
        estimate_bps: float = 0.0,
    ) -> LinkWindow:  # fmt: skip
        """What a worker said, held to sane ranges (NaN and infinities are unknown)."""
        return cls(
            loss_ratio=_clamp(loss_ratio, 0.0, 1.0, 0.0),
            jitter_s=_clamp(jitter_s, 0.0, MAX_JITTER_S, 0.0),
            rtt_s=_clamp(rtt_s, 0.0, MAX_RTT_S, -1.0) if rtt_s >= 0 else -1.0,
            at=at,
            delivered=_clamp(delivered, 0.0, 1.0, -1.0) if delivered >= 0 else -1.0,
            estimate_bps=_clamp(estimate_bps, 0.0, MAX_ESTIMATE_BPS, 0.0),
        )

    def summary(self) -> dict[str, float | None]:
        """For the host's participant list: milliseconds, a ratio, bits per second."""
        return {
            "loss_ratio": round(self.loss_ratio, 4),
            "jitter_ms": round(self.jitter_s * 1000, 1),
            "rtt_ms": round(self.rtt_s * 1000, 1) if self.rtt_s >= 0 else None,
            "bandwidth_bps": int(self.estimate_bps) if self.estimate_bps > 0 else None,
        }


def _clamp(value: float, low: float, high: float, unknown: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return unknown
    return min(high, max(low, float(value)))


class ParticipantQuality:
    """One participant's inputs, the latest of each, and their level with hysteresis."""

    __slots__ = ("links", "freeze_ratio", "freezes_at", "_freeze_total_s", "_freeze_seen_at", "paused_at", "shown",
                 "score")  # fmt: skip

    def __init__(self, hold_s: float = UPGRADE_HOLD_S) -> None:
        self.links: dict[str, LinkWindow] = {}  # direction ("publish", "subscribe") -> window
        self.freeze_ratio = 0.0
        self.freezes_at: float | None = None
        self._freeze_total_s: float | None = None
        self._freeze_seen_at = 0.0
        self.paused_at: float | None = None  # when a video of theirs was last seen paused for bandwidth
        self.shown = Hysteresis(hold_s)
        self.score = 0.0  # the last MOS computed

    @property
    def level(self) -> str | None:
        return self.shown.level

    def on_link(self, direction: str, window: LinkWindow) -> None:
        self.links[direction] = window

    def on_freezes(self, total_freeze_s: float, now: float) -> None:
        """The client's running total of seconds its received video spent frozen. The share
        frozen is the growth over the time since its last report; a total that went down
        (a new connection after a reconnect) starts over; growth just after a pause for
        bandwidth is that pause (the module's rule 3)."""
        previous, seen_at = self._freeze_total_s, self._freeze_seen_at
        self._freeze_total_s, self._freeze_seen_at = total_freeze_s, now
        if previous is None or total_freeze_s < previous or now <= seen_at:
            return
        excused = self.paused_at is not None and now - self.paused_at <= PAUSE_FREEZE_GRACE_S
        self.freeze_ratio = 0.0 if excused else min(1.0, (total_freeze_s - previous) / (now - seen_at))
        self.freezes_at = now

    def evaluate(self, now: float, paused_for_bandwidth: int = 0) -> bool:
        """Score what is fresh at `now`; True when the shown level changed. Nothing fresh
        (no window yet): nothing to say, the level stays."""
        if paused_for_bandwidth > 0:
            self.paused_at = now
        fresh = [w for w in self.links.values() if now - w.at <= FRESH_S]
        if not fresh:
            return False
        loss = max(w.loss_ratio for w in fresh)
        jitter = max(w.jitter_s for w in fresh)
        rtt = max(w.rtt_s for w in fresh)
        delivered = min((w.delivered for w in fresh if w.delivered >= 0), default=-1.0)
        freezes = self.freeze_ratio if self.freezes_at is not None and now - self.freezes_at <= FRESH_S else 0.0
        self.score = round(mos(loss, jitter, rtt), 2)
        return self.shown.update(level_of(self.score, freezes, paused_for_bandwidth, delivered), now)


class Distribution:
    """A histogram's cumulative counts, kept as plain numbers (exported by control.metrics)."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)  # observations <= each bound
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += 1
