"""Which layer of each video track one subscriber receives: the per-subscriber allocator.

Pure: no clock of its own (`allocate` is given `now`, in seconds), no I/O. One
`Allocator` per subscriber transport; it keeps only what its hysteresis needs (each
track's last decision and hold), pruned to the tracks of the last run.

Input, per run: the subscriber's bandwidth estimate (bps, the whole transport), what is
reserved out of it (`reserved_bps`: audio, which is out of scope here and never dropped
for video, plus anything else sent unmanaged), its video tracks (`VideoTrack`: kind
camera or screen, publisher, available layers with their measured bitrates and
resolutions, visibility and rendered tile size as the client reports them, pinned), the
meeting's speakers most recent first (`sfu.engine.speaker.DominantSpeaker.speakers_by_recency`,
index 0 the active speaker) and last-N.

The steps (after Jitsi Videobridge's doc/allocation.md, LiveKit's stream allocator):

1. **Hidden.** A track whose tile is not visible (or has no area) gets nothing:
   paused `hidden`.
2. **Last-N.** Participants with something visible are ordered: screen sharers first,
   then those with a pinned tile, then the speakers most recent first, then the others
   (in input order); only the first N keep their video, the rest is paused `last_n`.
   A participant counts once, however many tracks they have. `last_n=None`: no limit.
3. **Need.** Each track's ladder is its layers up to the smallest spatial layer whose
   height covers the tile's height (the top layer when none does, or when the tile size
   is unknown), ordered by (spatial, temporal): a 180-pixel tile never gets 720p. A
   layer's bitrate is what forwarding it costs (a temporal layer's includes the lower
   ones); for a layer the publisher is not sending now (dynacast) the caller passes its
   last measured or nominal bitrate, or the allocator could never ask for it back.
4. **Priority.** Screen share > the active speaker's camera > pinned > the other speakers
   (most recent first) > everyone else (input order).
5. **Lowest first.** In priority order every selected track gets its lowest layer while
   it fits; one that does not is paused `bandwidth` (a cheaper one after it may still fit).
6. **Upgrades.** Rounds in priority order, one ladder step per track per round (screen
   shares step eagerly, as far as they fit, in their turn), until no track can step:
   first back up to what each track keeps (below), then beyond.

Hysteresis, so that jitter of the estimate does not flip a track:

- keeping what a track already has (any layer up to the one it forwards now, or its
  lowest for a track that was not paused for bandwidth) needs only that the total fits
  the budget; for the lowest layer, the budget plus `pause_tolerance` (0 here; the
  worker's `sfu.engine.subscription.POLICY` uses 0.25): a pause freezes the tile, the
  worst cut there is, so it may wait until the estimate is clearly short (paused below
  1/1.25 of the cost, resumed above 1.25 times it);
- anything more (an upgrade, a resume after a `bandwidth` pause) needs the total, with
  the step, times (1 + `upgrade_margin`) to fit. An estimate wandering ±10 % around a
  threshold spans a factor 1.1 / 0.9 = 1.22, so the default margin is 0.25: no layer can
  be both resumed at the top of that band and cut at its bottom;
- when the budget does cut something (a downgrade or a pause), the run is redone with
  every layer above each track's lowest needing the margin too, so the allocation
  settles a margin below the estimate and the next, deeper dip does not cut again;
- after a cut the track is held (`hold_s`): no upgrade or resume before the hold ends
  (`Allocation.wake_at` says when to run again to let it go up). Changes of tile,
  visibility, last-N or speakers are not jitter: they apply at once, in both directions,
  and set no hold.

The layers' bitrates jitter too (an encoder's rate control swings ±20 %): feed a
smoothed value (e.g. the highest one-second rate over the last few seconds), or the
margin is spent on that.

Rate: `Allocator.due(now)` is False for `min_interval_s` after a run unless `invalidate()`
(a track added or removed, a tile, pin or visibility change, last-N, the speaker order)
was called since: an estimate that changes every feedback packet re-runs at most twice a
second; structural changes re-run at once.

Out: `Allocation.decisions` by track id in priority order (`Decision.layer` the chosen
`Layer`, or None with `Decision.reason` one of PAUSED_*), `changed` (the tracks whose
decision differs from the last run: the layer switches to make, `track_paused` /
`track_resumed` to tell the client), `wanted_bps` (what every selected track at the top
of its ladder would take, with the reserved part: above the estimate, the subscriber is
short) and `probe_bps` (the estimate that would allow the cheapest blocked step: the
prober's goal, or 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

CAMERA = "camera"
SCREEN = "screen"
KINDS = (CAMERA, SCREEN)

PAUSED_BANDWIDTH = "bandwidth"
PAUSED_HIDDEN = "hidden"
PAUSED_LAST_N = "last_n"

# Priority classes (lower first).
_SCREEN, _ACTIVE, _PINNED, _SPEAKER, _OTHER = range(5)
_NEVER = float("-inf")
_ALWAYS = 1 << 62  # a budget every lowest layer fits in (allocate's may_pause=False)


class Layer:
    """One forwardable layer of a track: spatial × temporal, what it costs, its resolution."""

    __slots__ = ("spatial", "temporal", "bitrate_bps", "width", "height")

    def __init__(self, spatial: int, temporal: int, bitrate_bps: int, width: int, height: int) -> None:
        if spatial < 0 or temporal < 0 or bitrate_bps < 0 or width < 0 or height < 0:
            raise ValueError("layer: spatial, temporal, bitrate and resolution must be >= 0")
        self.spatial = spatial
        self.temporal = temporal
        self.bitrate_bps = bitrate_bps
        self.width = width
        self.height = height

    @property
    def key(self) -> tuple[int, int]:
        return (self.spatial, self.temporal)

    def __repr__(self) -> str:
        return f"Layer({self.spatial}, {self.temporal}, {self.bitrate_bps} bps, {self.width}x{self.height})"


class VideoTrack:
    """One video track the subscriber consumes, as the allocator sees it.

    `tile_width`/`tile_height`: the size the client renders the video at, in device
    pixels (None: unknown, no cap). `visible`: the tile is on screen."""

    __slots__ = ("track_id", "publisher", "kind", "layers", "visible", "tile_width", "tile_height", "pinned")

    def __init__(
        self,
        track_id: str,
        publisher: str,
        kind: str,
        layers: Iterable[Layer],
        visible: bool = True,
        tile_width: int | None = None,
        tile_height: int | None = None,
        pinned: bool = False,
    ) -> None:
        self.track_id = track_id
        self.publisher = publisher
        self.kind = kind
        self.layers = tuple(layers)
        self.visible = visible
        self.tile_width = tile_width
        self.tile_height = tile_height
        self.pinned = pinned


class Decision:
    """What one track gets: `layer`, or None and the `reason` it is paused; `target` the
    top of its ladder (None when it is not selected)."""

    __slots__ = ("track_id", "layer", "reason", "target")

    def __init__(self, track_id: str, layer: Layer | None, reason: str | None, target: Layer | None) -> None:
        self.track_id = track_id
        self.layer = layer
        self.reason = reason
        self.target = target

    @property
    def paused(self) -> bool:
        return self.layer is None

    @property
    def outcome(self) -> tuple[int, int] | str:
        """(spatial, temporal), or the pause reason: what `changed` compares."""
        return self.layer.key if self.layer is not None else str(self.reason)

    def __repr__(self) -> str:
        return f"Decision({self.track_id!r}, {self.outcome!r})"


class Allocation:
    __slots__ = ("decisions", "changed", "estimate_bps", "allocated_bps", "wanted_bps", "probe_bps", "wake_at")

    def __init__(self, estimate_bps: int) -> None:
        self.decisions: dict[str, Decision] = {}  # by track id, in priority order
        self.changed: list[str] = []
        self.estimate_bps = estimate_bps
        self.allocated_bps = 0  # the chosen layers' bitrates (video only)
        self.wanted_bps = 0  # reserved + every selected track at the top of its ladder
        self.probe_bps = 0  # the estimate the cheapest blocked step needs (0: none blocked by the budget)
        self.wake_at: float | None = None  # run again then, even without news (a hold ends)

    @property
    def deficit_bps(self) -> int:
        """How much is wanted beyond the estimate."""
        return max(0, self.wanted_bps - self.estimate_bps)


class AllocationPolicy:
    __slots__ = ("upgrade_margin", "pause_tolerance", "hold_s", "min_interval_s")

    def __init__(
        self, upgrade_margin: float = 0.25, hold_s: float = 3.0, min_interval_s: float = 0.5,
        pause_tolerance: float = 0.0,
    ) -> None:  # fmt: skip
        if upgrade_margin < 0 or hold_s < 0 or min_interval_s < 0 or pause_tolerance < 0:
            raise ValueError("allocation policy: margins, hold and interval must be >= 0")
        self.upgrade_margin = upgrade_margin
        self.pause_tolerance = pause_tolerance
        self.hold_s = hold_s
        self.min_interval_s = min_interval_s


DEFAULT_POLICY = AllocationPolicy()


class _Kept:
    """What the allocator remembers of a track between runs."""

    __slots__ = ("outcome", "held_until")

    def __init__(self, outcome: tuple[int, int] | str, held_until: float) -> None:
        self.outcome = outcome
        self.held_until = held_until


class _Entry:
    """One selected track during a run."""

    __slots__ = ("track", "ladder", "index", "free", "held_until", "held", "eager", "done", "top")

    def __init__(self, track: VideoTrack, ladder: list[Layer], free: int, held_until: float, now: float) -> None:
        self.track = track
        self.ladder = ladder
        self.index = -1  # into ladder; -1: nothing yet
        self.free = free  # the highest index reachable without the margin (-1: none)
        self.held_until = held_until
        self.held = now < held_until  # no step above `free`
        self.eager = track.kind == SCREEN
        self.done = False
        self.top = 0  # the highest index of the current phase

    def cost(self, index: int) -> int:
        return self.ladder[index].bitrate_bps if index >= 0 else 0


def ladder_for(track: VideoTrack) -> list[Layer]:
    """The layers the track may use, (spatial, temporal) ascending, capped by its tile."""
    heights: dict[int, int] = {}
    for layer in track.layers:
        heights[layer.spatial] = max(heights.get(layer.spatial, 0), layer.height)
    spatials = sorted(heights)
    cap = spatials[-1]
    if track.tile_height is not None:
        for spatial in spatials:
            if heights[spatial] >= track.tile_height:
                cap = spatial
                break
    return sorted((layer for layer in track.layers if layer.spatial <= cap), key=lambda layer: layer.key)


def _free_index(ladder: list[Layer], kept: _Kept | None) -> int:
    """How far up the ladder the track may go without the margin."""
    if kept is None or not isinstance(kept.outcome, tuple):
        if kept is not None and kept.outcome == PAUSED_BANDWIDTH:
            return -1  # resuming is an upgrade
        return 0  # new, or back from hidden / last-N: its lowest layer is not an upgrade
    free = 0
    for index, layer in enumerate(ladder):
        if layer.key <= kept.outcome:
            free = index
    return free


class Allocator:
    """One subscriber's allocator (see the module docstring)."""

    __slots__ = ("policy", "_kept", "last_run", "_invalid")

    def __init__(self, policy: AllocationPolicy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self._kept: dict[str, _Kept] = {}
        self.last_run: float | None = None
        self._invalid = True

    def invalidate(self) -> None:
        """Something other than the estimate changed: the next `due` is True at once."""
        self._invalid = True

    def due(self, now: float) -> bool:
        """May `allocate` run now? Always after `invalidate`, else `min_interval_s` after the last run."""
        return self._invalid or self.last_run is None or now - self.last_run >= self.policy.min_interval_s

    def forget(self, track_id: str) -> None:
        """The track is gone (it is also forgotten by the next run that does not list it)."""
        self._kept.pop(track_id, None)
        self._invalid = True

    def allocate(
        self,
        estimate_bps: int,
        tracks: Sequence[VideoTrack],
        speakers: Sequence[str] = (),
        last_n: int | None = None,
        now: float = 0.0,
        reserved_bps: int = 0,
        may_pause: bool = True,
    ) -> Allocation:
        """Decide every track's layer now (whether `due` or not: the caller asks that).

        `may_pause` False: no track is paused for bandwidth, each keeps at least its
        lowest layer whatever the estimate (for a subscriber whose estimate cannot be
        probed past: a pause would last); everything above the lowest still needs the
        estimate."""
        policy = self.policy
        margin = 1.0 + policy.upgrade_margin
        budget = max(0, estimate_bps - reserved_bps)
        result = Allocation(estimate_bps)
        recency: dict[str, int] = {}
        for position, participant in enumerate(speakers):
            recency.setdefault(participant, position)
        active = speakers[0] if speakers else None
        never = len(recency)

        seen: set[str] = set()
        for track in tracks:
            if track.track_id in seen:
                raise ValueError(f"track {track.track_id}: listed twice")
            if track.kind not in KINDS:
                raise ValueError(f"track {track.track_id}: kind {track.kind!r}, not one of {KINDS}")
            if not track.layers:
                raise ValueError(f"track {track.track_id}: no layers")
            seen.add(track.track_id)

        def shown(track: VideoTrack) -> bool:
            return (
                track.visible
                and (track.tile_height is None or track.tile_height > 0)
                and (track.tile_width is None or track.tile_width > 0)
            )

        # Last-N: rank the participants with something visible.
        visible = [track for track in tracks if shown(track)]
        kept_participants: set[str] | None = None
        if last_n is not None:
            ranks: dict[str, tuple[int, int, int]] = {}
            for index, track in enumerate(visible):
                if track.kind == SCREEN:
                    klass = 0
                elif track.pinned:
                    klass = 1
                elif track.publisher in recency:
                    klass = 2
                else:
                    klass = 3
                key = (klass, recency.get(track.publisher, never), index)
                best = ranks.get(track.publisher)
                if best is None or key < best:
                    ranks[track.publisher] = key
            ordered = sorted(ranks, key=ranks.__getitem__)
            kept_participants = set(ordered[: max(0, last_n)])

        # Priority order of what is selected.
        def priority(item: tuple[int, VideoTrack]) -> tuple[int, bool, int, int]:
            index, track = item
            if track.kind == SCREEN:
                klass = _SCREEN
            elif track.publisher == active:
                klass = _ACTIVE
            elif track.pinned:
                klass = _PINNED
            elif track.publisher in recency:
                klass = _SPEAKER
            else:
                klass = _OTHER
            return (klass, not track.pinned, recency.get(track.publisher, never), index)

        entries: list[_Entry] = []
        paused: dict[str, Decision] = {}
        order = [track for _, track in sorted(enumerate(tracks), key=priority)]
        for track in order:
            if not shown(track):
                paused[track.track_id] = Decision(track.track_id, None, PAUSED_HIDDEN, None)
            elif kept_participants is not None and track.publisher not in kept_participants:
                paused[track.track_id] = Decision(track.track_id, None, PAUSED_LAST_N, None)
            else:
                ladder = ladder_for(track)
                kept = self._kept.get(track.track_id)
                held_until = kept.held_until if kept is not None else _NEVER
                entries.append(_Entry(track, ladder, _free_index(ladder, kept), held_until, now))

        keep_lowest = int(budget * (1.0 + policy.pause_tolerance)) if may_pause else _ALWAYS
        total, blocked, result.wake_at = _fill(entries, budget, margin, strict=False, keep_lowest=keep_lowest)
        if any(entry.index < entry.free for entry in entries):
            # The budget took something away: settle where the next dip does not cut again.
            total, blocked, result.wake_at = _fill(entries, budget, margin, strict=True, keep_lowest=keep_lowest)

        # Decisions (in priority order), what changed, the holds.
        kept_now: dict[str, _Kept] = {}
        selected = {entry.track.track_id: entry for entry in entries}
        for track in order:
            track_id = track.track_id
            old = self._kept.get(track_id)
            held_until = old.held_until if old is not None else _NEVER
            entry = selected.get(track_id)
            if entry is None:
                decision = paused[track_id]
            else:
                layer = entry.ladder[entry.index] if entry.index >= 0 else None
                decision = Decision(track_id, layer, PAUSED_BANDWIDTH if layer is None else None, entry.ladder[-1])
                if entry.index < entry.free:  # the budget cut it
                    held_until = now + policy.hold_s
                result.wanted_bps += entry.ladder[-1].bitrate_bps
            result.decisions[track_id] = decision
            kept_now[track_id] = _Kept(decision.outcome, held_until)
            if old is None or old.outcome != decision.outcome:
                result.changed.append(track_id)

        result.allocated_bps = total
        result.wanted_bps += reserved_bps
        if blocked is not None:
            result.probe_bps = int((total + blocked) * margin) + 1 + reserved_bps
        self._kept = kept_now
        self.last_run = now
        self._invalid = False
        return result


def _fill(
    entries: list[_Entry], budget: int, margin: float, strict: bool, keep_lowest: int
) -> tuple[int, int | None, float | None]:
    """One allocation pass over `entries` (in priority order), from nothing, in three
    phases: every track's lowest layer; then back up to what each keeps (its `free`
    index); then upgrades above that. Within a phase, rounds of one step per track
    (screen shares: as many as fit in their turn). A step up to `free` needs the total to
    fit the budget (in a strict pass, only the lowest layer: the rest needs the margin
    too); a step above needs the total times `margin` to fit, and no hold. Upgrades come
    last so that the margin is measured on everything kept. Keeping a track's lowest
    layer needs only `keep_lowest` (the budget with the pause tolerance): a pause is the
    one cut the subscriber sees as a frozen tile, so a total a little over the estimate
    keeps the video (the receiver repairs the odd loss); resuming still needs the margin.

    Returns the total, the cost of the cheapest step the budget refused (None: none), and
    when the earliest hold that refused a step ends (None: none)."""
    total = 0
    blocked: int | None = None
    wake_at: float | None = None

    def attempt(entry: _Entry) -> bool:
        nonlocal total, blocked, wake_at
        step = entry.index + 1
        delta = entry.cost(step) - entry.cost(entry.index)
        after = total + delta
        if step <= entry.free and (step == 0 or not strict):
            if after <= (keep_lowest if step == 0 else budget):
                entry.index, total = step, after
                return True
        elif step > entry.free and entry.held:
            wake_at = _earliest(wake_at, entry.held_until)
            return False
        elif after * margin <= budget:
            entry.index, total = step, after
            return True
        blocked = delta if blocked is None else min(blocked, delta)
        return False

    for entry in entries:
        entry.index = -1
    for phase in range(3):
        for entry in entries:
            top = 0 if phase == 0 else entry.free if phase == 1 else len(entry.ladder) - 1
            entry.done = entry.index >= top or (phase > 0 and entry.index < 0)
            entry.top = top
        stepped = True
        while stepped:
            stepped = False
            for entry in entries:
                if entry.done:
                    continue
                while entry.index < entry.top and attempt(entry):
                    stepped = True
                    if not entry.eager:
                        break
                else:
                    entry.done = True
    return total, blocked, wake_at


def _earliest(current: float | None, candidate: float) -> float:
    return candidate if current is None or candidate < current else current
