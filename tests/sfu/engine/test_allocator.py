"""sfu.engine.allocator: one subscriber's layer choice per video track, pure, on fake time.

Priority under a tight budget, last-N, hidden tiles, the tile's size as a cap, lowest
layers first then upgrades, pauses for bandwidth with what is wanted beyond the
estimate, hysteresis against a jittering estimate, the rate bound, a large meeting."""

from __future__ import annotations

import random

import pytest

from sfu.engine.allocator import (
    CAMERA,
    PAUSED_BANDWIDTH,
    PAUSED_HIDDEN,
    PAUSED_LAST_N,
    SCREEN,
    AllocationPolicy,
    Allocator,
    Layer,
    VideoTrack,
    ladder_for,
)

pytestmark = pytest.mark.unit

K = 1000
# A Chromium-like camera: three simulcast encodings, three temporal layers each; the
# bitrate of (s, t) includes its lower temporal layers.
CAMERA_LAYERS = (
    Layer(0, 0, 50 * K, 320, 180),
    Layer(0, 1, 80 * K, 320, 180),
    Layer(0, 2, 100 * K, 320, 180),
    Layer(1, 0, 200 * K, 640, 360),
    Layer(1, 1, 300 * K, 640, 360),
    Layer(1, 2, 400 * K, 640, 360),
    Layer(2, 0, 700 * K, 1280, 720),
    Layer(2, 1, 1000 * K, 1280, 720),
    Layer(2, 2, 1500 * K, 1280, 720),
)
# A screen share: one high layer, at a low and a full frame rate.
SCREEN_LAYERS = (Layer(0, 0, 300 * K, 1920, 1080), Layer(0, 1, 800 * K, 1920, 1080))
LOWEST_CAMERA = CAMERA_LAYERS[0].bitrate_bps


def camera(publisher: str, **kwargs) -> VideoTrack:
    return VideoTrack(f"{publisher}-cam", publisher, CAMERA, CAMERA_LAYERS, **kwargs)


def screen(publisher: str, **kwargs) -> VideoTrack:
    return VideoTrack(f"{publisher}-screen", publisher, SCREEN, SCREEN_LAYERS, **kwargs)


def chosen(allocation, track_id: str):
    """(spatial, temporal), or the pause reason."""
    return allocation.decisions[track_id].outcome


# --- priority ---------------------------------------------------------------------------------


def test_priority_order_under_a_tight_budget():
    # Listed in the reverse of their priority: the input order decides nothing.
    tracks = [
        camera("eve", tile_height=180),  # nobody in particular
        camera("dan", tile_height=180),  # spoke before
        camera("cat", tile_height=180, pinned=True),
        camera("bob", tile_height=180),  # the active speaker
        screen("ann"),
    ]
    speakers = ["bob", "dan"]
    # The screen's lowest layer and two cameras' lowest layers fit, not a third.
    estimate = SCREEN_LAYERS[0].bitrate_bps + 2 * LOWEST_CAMERA + LOWEST_CAMERA // 2
    allocation = Allocator().allocate(estimate, tracks, speakers, now=0.0)

    assert list(allocation.decisions) == ["ann-screen", "bob-cam", "cat-cam", "dan-cam", "eve-cam"]
    assert chosen(allocation, "ann-screen") == (0, 0)
    assert chosen(allocation, "bob-cam") == (0, 0)
    assert chosen(allocation, "cat-cam") == (0, 0)
    assert chosen(allocation, "dan-cam") == PAUSED_BANDWIDTH
    assert chosen(allocation, "eve-cam") == PAUSED_BANDWIDTH
    assert allocation.allocated_bps <= estimate

    # One more lowest layer's worth: the recent speaker before the others.
    allocation = Allocator().allocate(estimate + LOWEST_CAMERA, tracks, speakers, now=0.0)
    assert chosen(allocation, "dan-cam") == (0, 0)
    assert chosen(allocation, "eve-cam") == PAUSED_BANDWIDTH


def test_a_cheap_track_after_one_that_does_not_fit_still_gets_its_lowest_layer():
    tracks = [screen("ann"), camera("bob")]
    allocation = Allocator().allocate(200 * K, tracks, ["bob"], now=0.0)
    assert chosen(allocation, "ann-screen") == PAUSED_BANDWIDTH
    assert chosen(allocation, "bob-cam") != PAUSED_BANDWIDTH


def test_upgrades_go_to_the_screen_share_first_and_it_takes_them_eagerly():
    tracks = [camera("bob", tile_height=720), screen("ann")]
    lowest = SCREEN_LAYERS[0].bitrate_bps + LOWEST_CAMERA
    full_screen = SCREEN_LAYERS[1].bitrate_bps + LOWEST_CAMERA
    allocation = Allocator().allocate(int(full_screen * 1.25) + 1, tracks, ["bob"], now=0.0)
    assert chosen(allocation, "ann-screen") == (0, 1)
    assert chosen(allocation, "bob-cam") == (0, 0)
    assert allocation.allocated_bps == full_screen > lowest


# --- last-N -----------------------------------------------------------------------------------


def twelve() -> tuple[list[VideoTrack], list[str]]:
    people = [f"p{i:02d}" for i in range(12)]
    tracks = [camera(person, tile_height=180) for person in people]
    # Ten of them have spoken, most recent first; two never did.
    speakers = ["p07", "p03", "p11", "p00", "p05", "p09", "p01", "p02", "p04", "p06"]
    return tracks, speakers


def kept(allocation) -> set[str]:
    return {track_id.split("-")[0] for track_id, d in allocation.decisions.items() if not d.paused}


def test_last_n_keeps_exactly_the_n_most_recent_speakers():
    tracks, speakers = twelve()
    allocation = Allocator().allocate(100_000 * K, tracks, speakers, last_n=4, now=0.0)
    assert kept(allocation) == {"p07", "p03", "p11", "p00"}
    reasons = {d.reason for d in allocation.decisions.values() if d.paused}
    assert reasons == {PAUSED_LAST_N}
    assert len(allocation.decisions) == 12
    # In priority order, paused ones too: the speakers most recent first, then the others.
    assert [t.split("-")[0] for t in allocation.decisions] == speakers + ["p08", "p10"]


def test_last_n_puts_screen_shares_and_pinned_tiles_first():
    tracks, speakers = twelve()
    tracks.append(screen("p10"))  # p10 never spoke, but shares a screen
    tracks[2] = camera("p02", tile_height=180, pinned=True)
    allocation = Allocator().allocate(100_000 * K, tracks, speakers, last_n=4, now=0.0)
    assert kept(allocation) == {"p10", "p02", "p07", "p03"}
    # The sharer is one participant: their camera comes with their screen.
    assert not allocation.decisions["p10-cam"].paused
    assert not allocation.decisions["p10-screen"].paused


def test_a_hidden_tile_takes_no_place_in_last_n():
    tracks, speakers = twelve()
    tracks[3] = camera("p03", visible=False)
    allocation = Allocator().allocate(100_000 * K, tracks, speakers, last_n=4, now=0.0)
    assert chosen(allocation, "p03-cam") == PAUSED_HIDDEN
    assert kept(allocation) == {"p07", "p11", "p00", "p05"}


def test_last_n_zero_pauses_all_video():
    tracks, speakers = twelve()
    allocation = Allocator().allocate(100_000 * K, tracks, speakers, last_n=0, now=0.0)
    assert kept(allocation) == set()
    assert allocation.wanted_bps == 0


# --- what the tile needs ----------------------------------------------------------------------


def test_a_hidden_tile_gets_nothing():
    tracks = [camera("bob", visible=False), camera("cat", tile_width=0, tile_height=0)]
    allocation = Allocator().allocate(100_000 * K, tracks, now=0.0)
    assert chosen(allocation, "bob-cam") == PAUSED_HIDDEN
    assert chosen(allocation, "cat-cam") == PAUSED_HIDDEN
    assert allocation.allocated_bps == 0 and allocation.wanted_bps == 0


@pytest.mark.parametrize(
    ("tile", "top"),
    [
        ((320, 180), (0, 2)),
        ((160, 90), (0, 2)),
        ((321, 181), (1, 2)),
        ((640, 360), (1, 2)),
        ((1280, 720), (2, 2)),
        ((3840, 2160), (2, 2)),  # capped by the top layer
        ((None, None), (2, 2)),  # size unknown (a bot, the recorder): no cap
    ],
)
def test_the_tile_caps_the_resolution(tile, top):
    width, height = tile
    track = camera("bob", tile_width=width, tile_height=height)
    allocation = Allocator().allocate(100_000 * K, [track], now=0.0)
    assert chosen(allocation, "bob-cam") == top
    assert allocation.decisions["bob-cam"].target.key == top
    assert max(layer.key for layer in ladder_for(track)) == top


def test_a_320_pixel_tile_never_gets_more_than_the_layer_that_fits_whatever_the_estimate():
    allocator = Allocator()
    for step, estimate in enumerate([10 * K, 300 * K, 3_000 * K, 100_000 * K, 500 * K, 100_000 * K]):
        allocation = allocator.allocate(estimate, [camera("bob", tile_width=320, tile_height=180)], now=step * 10.0)
        decision = allocation.decisions["bob-cam"]
        assert decision.paused or decision.layer.height <= 180


# --- lowest layers first, then upgrades -------------------------------------------------------


def test_every_selected_track_gets_its_lowest_layer_before_anyone_is_upgraded():
    tracks = [camera(name, tile_height=720) for name in ("bob", "cat", "dan")]
    speakers = ["bob", "cat", "dan"]
    allocation = Allocator().allocate(3 * LOWEST_CAMERA + 20 * K, tracks, speakers, now=0.0)
    assert [chosen(allocation, t.track_id) for t in tracks] == [(0, 0)] * 3


def test_upgrades_are_shared_a_step_at_a_time_in_priority_order():
    tracks = [camera(name, tile_height=720) for name in ("bob", "cat", "dan")]
    speakers = ["bob", "cat", "dan"]
    # Room for one step above the lowest layers: the active speaker's.
    one_step = int((3 * LOWEST_CAMERA + 30 * K) * 1.25)
    allocation = Allocator().allocate(one_step, tracks, speakers, now=0.0)
    assert [chosen(allocation, t.track_id) for t in tracks] == [(0, 1), (0, 0), (0, 0)]
    # Room for everyone's (0, 2): nobody climbs to 360p while another is still at (0, 0).
    allocation = Allocator().allocate(int(3 * 100 * K * 1.25), tracks, speakers, now=0.0)
    assert [chosen(allocation, t.track_id) for t in tracks] == [(0, 2)] * 3
    # Plenty: everyone at the top of their ladder.
    allocation = Allocator().allocate(100_000 * K, tracks, speakers, now=0.0)
    assert [chosen(allocation, t.track_id) for t in tracks] == [(2, 2)] * 3
    assert allocation.probe_bps == 0 and allocation.deficit_bps == 0


# --- paused for bandwidth ---------------------------------------------------------------------


def test_below_the_lowest_layer_the_track_is_paused_and_more_is_wanted():
    allocation = Allocator().allocate(30 * K, [camera("bob", tile_height=720)], ["bob"], now=0.0)
    decision = allocation.decisions["bob-cam"]
    assert decision.paused and decision.reason == PAUSED_BANDWIDTH
    assert allocation.changed == ["bob-cam"]
    assert allocation.allocated_bps == 0
    assert allocation.wanted_bps == 1500 * K > allocation.estimate_bps
    assert allocation.deficit_bps == 1500 * K - 30 * K
    # The prober's goal: enough to resume the lowest layer, margin included.
    assert LOWEST_CAMERA < allocation.probe_bps <= LOWEST_CAMERA * 1.25 + 1


def test_audio_is_reserved_out_of_the_estimate_never_dropped_here():
    # 80 kbit/s would carry the lowest layer; with 40 kbit/s of audio it does not.
    allocation = Allocator().allocate(80 * K, [camera("bob")], ["bob"], now=0.0, reserved_bps=40 * K)
    assert chosen(allocation, "bob-cam") == PAUSED_BANDWIDTH
    assert allocation.wanted_bps == 1500 * K + 40 * K
    assert allocation.probe_bps > 40 * K + LOWEST_CAMERA


def test_a_paused_track_resumes_only_after_the_hold_and_with_the_margin():
    allocator = Allocator(AllocationPolicy(upgrade_margin=0.25, hold_s=3.0))
    tracks = [camera("bob", tile_height=180)]
    assert chosen(allocator.allocate(125 * K, tracks, now=0.0), "bob-cam") == (0, 2)
    assert chosen(allocator.allocate(40 * K, tracks, now=1.0), "bob-cam") == PAUSED_BANDWIDTH
    # Enough for the lowest layer with the margin, but held until 4.0.
    allocation = allocator.allocate(70 * K, tracks, now=2.0)
    assert chosen(allocation, "bob-cam") == PAUSED_BANDWIDTH
    assert allocation.wake_at == 4.0
    # The hold is over; the lowest layer needs 50 * 1.25 = 62.5 kbit/s.
    assert chosen(allocator.allocate(60 * K, tracks, now=4.5), "bob-cam") == PAUSED_BANDWIDTH
    allocation = allocator.allocate(63 * K, tracks, now=5.0)
    assert chosen(allocation, "bob-cam") == (0, 0)
    assert allocation.changed == ["bob-cam"]


def test_a_tile_change_applies_at_once_in_both_directions():
    allocator = Allocator()
    now = 0.0
    for _ in range(10):
        big = allocator.allocate(100_000 * K, [camera("bob", tile_height=720)], now=now)
        now += 0.1
        small = allocator.allocate(100_000 * K, [camera("bob", tile_height=180)], now=now)
        now += 0.1
        assert chosen(big, "bob-cam") == (2, 2) and chosen(small, "bob-cam") == (0, 2)
        assert big.changed == small.changed == ["bob-cam"]


# --- hysteresis -------------------------------------------------------------------------------


def run_jitter(tracks, threshold: float, seed: int, speakers=()) -> list[dict]:
    """30 s of an estimate jittering ±10 % around `threshold`, a run every 0.5 s; the
    outcomes of every run after the first."""
    rng = random.Random(seed)
    allocator = Allocator()
    outcomes = []
    now = 0.0
    while now <= 30.0:
        estimate = int(threshold * rng.uniform(0.9, 1.1))
        assert allocator.due(now)
        allocation = allocator.allocate(estimate, tracks, speakers, now=now)
        assert allocation.allocated_bps <= estimate
        outcomes.append({t: d.outcome for t, d in allocation.decisions.items()})
        now += 0.5
    return outcomes[1:]


def changes(outcomes: list[dict]) -> int:
    return sum(1 for before, after in zip(outcomes, outcomes[1:]) if before != after)


@pytest.mark.parametrize(
    "threshold", sorted({layer.bitrate_bps for layer in CAMERA_LAYERS} | {65 * K, 90 * K, 560 * K})
)
@pytest.mark.parametrize("seed", range(5))
def test_estimate_jitter_around_a_threshold_changes_one_track_at_most_once(threshold, seed):
    outcomes = run_jitter([camera("bob", tile_height=720)], threshold, seed)
    assert changes(outcomes) <= 1


def test_a_cut_settles_a_margin_below_the_estimate_so_deeper_dips_do_not_cut_again():
    tracks = [camera(name, tile_height=720) for name in ("bob", "cat", "dan")]
    allocator = Allocator()
    top = allocator.allocate(100_000 * K, tracks, ["bob"], now=0.0)
    assert top.allocated_bps == 3 * 1500 * K
    cut = allocator.allocate(4_400 * K, tracks, ["bob"], now=1.0)
    assert cut.changed and cut.allocated_bps * 1.25 <= 4_400 * K
    # The estimate keeps sinking, but stays above the settled allocation: no more cuts.
    for step, estimate in enumerate([4_200 * K, 4_000 * K, 3_800 * K, 3_600 * K], start=2):
        allocation = allocator.allocate(estimate, tracks, ["bob"], now=float(step))
        assert allocation.changed == [], estimate


def level(outcome) -> tuple[int, int]:
    return (-1, -1) if isinstance(outcome, str) else outcome


@pytest.mark.parametrize("threshold", [250 * K, 299 * K, 632 * K, 1_261 * K, 2_500 * K])
@pytest.mark.parametrize("seed", range(5))
def test_estimate_jitter_never_cuts_after_an_upgrade_with_several_tracks(threshold, seed):
    tracks = [camera("bob", tile_height=720), camera("cat", tile_height=360), camera("dan", tile_height=180)]
    tracks.append(screen("eve"))
    outcomes = run_jitter(tracks, threshold, seed, speakers=["bob", "cat"])
    # Several tracks make finer steps: a new high of the estimate may still buy one, but
    # a cut settles a margin below the estimate (no cascade of cuts on each new low) and
    # nothing is cut once anything went up: no track flips.
    went_up = False
    for before, after in zip(outcomes, outcomes[1:]):
        for track_id, outcome in before.items():
            if level(after[track_id]) > level(outcome):
                went_up = True
            assert not (went_up and level(after[track_id]) < level(outcome)), (track_id, before, after)


# --- the rate bound ---------------------------------------------------------------------------


def test_runs_are_rate_bound_unless_something_other_than_the_estimate_changed():
    allocator = Allocator(AllocationPolicy(min_interval_s=0.5))
    assert allocator.due(0.0)
    allocator.allocate(1000 * K, [camera("bob")], now=0.0)
    assert not allocator.due(0.2)
    assert allocator.due(0.5)
    allocator.invalidate()  # a tile changed
    assert allocator.due(0.1)
    allocator.allocate(1000 * K, [camera("bob", tile_height=180)], now=0.1)
    assert not allocator.due(0.3)


def test_gone_tracks_are_forgotten():
    allocator = Allocator()
    allocator.allocate(100_000 * K, [camera("bob"), camera("cat")], now=0.0)
    allocation = allocator.allocate(100_000 * K, [camera("cat")], now=1.0)
    assert list(allocation.decisions) == ["cat-cam"] and allocation.changed == []
    # Back again: new, so told again.
    assert allocator.allocate(100_000 * K, [camera("bob"), camera("cat")], now=2.0).changed == ["bob-cam"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="kind"):
        Allocator().allocate(0, [VideoTrack("t", "p", "audio", CAMERA_LAYERS)])
    with pytest.raises(ValueError, match="no layers"):
        Allocator().allocate(0, [VideoTrack("t", "p", CAMERA, ())])
    with pytest.raises(ValueError, match="twice"):
        Allocator().allocate(0, [camera("bob"), camera("bob")])
    with pytest.raises(ValueError):
        Layer(0, 0, -1, 320, 180)


# --- a large meeting --------------------------------------------------------------------------


def test_a_hundred_tracks_obey_last_n_and_the_budget():
    people = [f"p{i:03d}" for i in range(100)]
    tracks = [camera(person, tile_height=180, visible=i < 40) for i, person in enumerate(people)]
    speakers = people[::-1]
    allocation = Allocator().allocate(2_000 * K, tracks, speakers, last_n=25, now=0.0)
    assert len(allocation.decisions) == 100
    forwarded = [d for d in allocation.decisions.values() if not d.paused]
    assert 0 < len(forwarded) <= 25
    assert allocation.allocated_bps <= 2_000 * K
    reasons = [d.reason for d in allocation.decisions.values() if d.paused]
    assert reasons.count(PAUSED_HIDDEN) == 60
    assert reasons.count(PAUSED_LAST_N) == 40 - 25
    # The 25 kept are the most recent speakers among the visible ones.
    assert kept(allocation) <= {f"p{i:03d}" for i in range(15, 40)}


def test_without_pausing_every_track_keeps_its_lowest_layer_and_nothing_more_than_fits():
    """may_pause=False (a subscriber whose estimate cannot be probed past): far below the
    lowest layers, each track still gets its lowest; above them, upgrades need the estimate."""
    tracks = [camera("bob"), camera("cat")]
    allocation = Allocator().allocate(LOWEST_CAMERA // 2, tracks, now=0.0, may_pause=False)
    assert [d.layer.key for d in allocation.decisions.values()] == [CAMERA_LAYERS[0].key] * 2
    assert Allocator().allocate(LOWEST_CAMERA // 2, tracks, now=0.0).decisions["cat-cam"].reason == "bandwidth"
    rich = Allocator().allocate(100_000 * K, tracks, now=0.0, may_pause=False)
    assert all(d.layer.key == CAMERA_LAYERS[-1].key for d in rich.decisions.values())
