"""What a series of a receiver's inbound-rtp samples says (pure; the samples come from
tests/support/shaped_meeting.py's in-page sampler: dicts with `t` in ms and Chromium's
counters framesDecoded, frameWidth, bytesReceived, totalFreezesDuration, freezeCount...).

Two measures of freezing, because they answer different questions: Chromium's own
`totalFreezesDuration` (what the issue names: a frame shown later than max(3 x the
average frame interval, average + 150 ms)), and the longest time in which
framesDecoded did not move (at the sampler's resolution), which also catches the gap
before a stalled stream's next frame, which Chromium counts only once it ends.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

Sample = dict[str, Any]


def window(series: list[Sample], start_ms: float, end_ms: float | None = None) -> list[Sample]:
    return [s for s in series if s["t"] >= start_ms and (end_ms is None or s["t"] <= end_ms)]


def delta(series: list[Sample], key: str) -> float:
    """How much `key` grew from the first sample to the last (0 with fewer than two)."""
    if len(series) < 2:
        return 0.0
    return series[-1][key] - series[0][key]


def duration_s(series: list[Sample]) -> float:
    return (series[-1]["t"] - series[0]["t"]) / 1000 if len(series) >= 2 else 0.0


def decoded_fps(series: list[Sample]) -> float:
    """Frames decoded per second over the series."""
    seconds = duration_s(series)
    return delta(series, "framesDecoded") / seconds if seconds > 0 else 0.0


def longest_stall_ms(series: list[Sample]) -> float:
    """The longest time framesDecoded stood still, counting an unfinished stall at the end
    (and the whole series when it never moved)."""
    if len(series) < 2:
        return 0.0
    longest = 0.0
    since = series[0]["t"]
    last = series[0]["framesDecoded"]
    for sample in series[1:]:
        if sample["framesDecoded"] != last:
            longest = max(longest, sample["t"] - since)
            since, last = sample["t"], sample["framesDecoded"]
    return max(longest, series[-1]["t"] - since)


def first_time(series: list[Sample], predicate) -> float | None:
    """`t` of the first sample for which predicate(sample) holds, or None."""
    return next((s["t"] for s in series if predicate(s)), None)


def widths(series: list[Sample]) -> list[int]:
    """The widths of the frames decoded within the series, in the order they appeared
    (repeats collapsed). Only samples that show a new frame count: frameWidth stays at
    the last decoded frame's width long after the stream stopped."""
    out: list[int] = []
    for previous, sample in zip(series, series[1:]):
        if sample["framesDecoded"] == previous["framesDecoded"] or not sample["frameWidth"]:
            continue
        if not out or out[-1] != sample["frameWidth"]:
            out.append(sample["frameWidth"])
    return out


@dataclass
class Summary:
    seconds: float
    fps: float
    frames: int
    widths: list[int]
    last_width: int  # of the last frame decoded within the series; 0: none was
    freeze_s: float  # growth of Chromium's totalFreezesDuration
    freezes: int  # growth of Chromium's freezeCount
    longest_stall_ms: float
    bytes: int
    kbit_s: float
    plis: int
    dropped: int

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(series: list[Sample]) -> Summary:
    seconds = duration_s(series)
    received = int(delta(series, "bytesReceived"))
    seen = widths(series)
    return Summary(
        seconds=seconds,
        fps=decoded_fps(series),
        frames=int(delta(series, "framesDecoded")),
        widths=seen,
        last_width=seen[-1] if seen else 0,
        freeze_s=delta(series, "totalFreezesDuration"),
        freezes=int(delta(series, "freezeCount")),
        longest_stall_ms=longest_stall_ms(series),
        bytes=received,
        kbit_s=received * 8 / 1000 / seconds if seconds > 0 else 0.0,
        plis=int(delta(series, "pliCount")) if series and "pliCount" in series[0] else 0,
        dropped=int(delta(series, "framesDropped")) if series and "framesDropped" in series[0] else 0,
    )
