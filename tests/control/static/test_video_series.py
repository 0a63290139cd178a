"""The analysis of inbound-rtp sample series (tests/support/video_series.py) on
hand-made series: the numbers the shaped-link proofs report must mean what they say."""

from __future__ import annotations

from tests.support.video_series import first_time, longest_stall_ms, summarize, widths, window


def series(frames: list[int], width: list[int] | int = 320, step_ms: float = 100.0, **more) -> list[dict]:
    sizes = width if isinstance(width, list) else [width] * len(frames)
    out = []
    for i, (decoded, size) in enumerate(zip(frames, sizes)):
        sample = {"t": 1000.0 + i * step_ms, "framesDecoded": decoded, "frameWidth": size,
                  "bytesReceived": 1000 * i, "totalFreezesDuration": 0.0, "freezeCount": 0}
        sample.update({k: v[i] for k, v in more.items()})
        out.append(sample)
    return out


def test_fps_and_rate_over_the_series():
    summary = summarize(series([0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15]))  # 15 frames in 1 s
    assert summary.seconds == 1.0
    assert summary.fps == 15.0
    assert summary.kbit_s == 80.0  # 10000 bytes in 1 s


def test_the_longest_stall_counts_the_one_still_going_at_the_end():
    assert longest_stall_ms(series([1, 2, 2, 2, 3, 4])) == 300.0
    assert longest_stall_ms(series([1, 2, 3, 3, 3, 3, 3])) == 400.0  # unfinished, still counted
    assert longest_stall_ms(series([0] * 11)) == 1000.0  # never moved: the whole series


def test_widths_in_order_of_appearance_without_repeats_or_zeros():
    assert widths(series(list(range(6)), width=[0, 1280, 1280, 320, 320, 1280])) == [1280, 320, 1280]


def test_widths_count_only_frames_decoded_within_the_series():
    # The width of a frame decoded before the series, then nothing: no width, none last.
    stalled = series([7] * 5, width=640)
    assert widths(stalled) == [] and summarize(stalled).last_width == 0
    assert widths(series([7, 7, 8, 8], width=[640, 640, 320, 320])) == [320]


def test_window_and_first_time():
    made = series(list(range(10)), width=[1280] * 5 + [640] * 5)
    assert [s["t"] for s in window(made, 1200, 1400)] == [1200, 1300, 1400]
    assert first_time(made, lambda s: s["frameWidth"] < 1280) == 1500
    assert first_time(made, lambda s: s["frameWidth"] < 320) is None


def test_chromium_freeze_and_pli_growth():
    made = series([1, 2, 3], totalFreezesDuration=[0.5, 0.5, 1.25], freezeCount=[1, 1, 2], pliCount=[3, 3, 7])
    summary = summarize(made)
    assert (summary.freeze_s, summary.freezes, summary.plis) == (0.75, 1, 4)
