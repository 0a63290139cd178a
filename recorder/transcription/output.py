"""A meeting's transcript: segments placed on the meeting timeline, merged, and written as
WebVTT (W3C WebVTT: cue timings, voice spans, NOTE blocks) and JSON.

Every transcript says that it may be incomplete or inaccurate (the product promises it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from recorder.transcription.base import Segment

DISCLAIMER = "Transcripts may be incomplete or inaccurate."
JSON_FORMAT_VERSION = 1


def place(segments: Iterable[Segment], speaker: str, offset: float) -> list[Segment]:
    """Segments of one participant's audio on the meeting timeline, with their name.

    offset: where that audio starts on the meeting timeline (seconds since the recording
    started), e.g. the track's offset from the recorder's timeline.
    """
    return [
        Segment(
            start=round(max(0.0, segment.start + offset), 3),
            end=round(max(0.0, segment.end + offset), 3),
            text=segment.text,
            speaker=speaker,
        )
        for segment in segments
    ]


def merge(per_participant_segments: Iterable[Iterable[Segment]]) -> list[Segment]:
    """All participants' (placed) segments in one list, in order of time."""
    merged = [segment for segments in per_participant_segments for segment in segments]
    return sorted(merged, key=_order)


def format_timestamp(seconds: float) -> str:
    """WebVTT timestamp hh:mm:ss.ttt (hours always shown, at least two digits)."""
    milliseconds = _milliseconds(seconds)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}.{millis:03d}"


def to_webvtt(segments: Iterable[Segment], disclaimer: str = DISCLAIMER) -> str:
    """A WebVTT file: the disclaimer as a NOTE, then one cue per segment with a voice span."""
    lines = ["WEBVTT", "", "NOTE", *_note_lines(disclaimer), ""]
    for number, segment in enumerate(merge([segments]), start=1):
        text = _cue_text(segment.text)
        if not text:
            continue
        start, end = _cue_times(segment)
        lines.append(str(number))
        lines.append(f"{format_timestamp(start)} --> {format_timestamp(end)}")
        speaker = " ".join(segment.speaker.split())
        lines.append(f"<v {_escape(speaker)}>{text}</v>" if speaker else text)
        lines.append("")
    return "\n".join(lines)


def to_json(
    segments: Iterable[Segment], meta: Mapping[str, Any], disclaimer: str = DISCLAIMER
) -> dict[str, Any]:
    """The transcript as a JSON-ready dict: meta, disclaimer, speakers, timed segments."""
    ordered = [segment for segment in merge([segments]) if segment.text.strip()]
    return {
        "version": JSON_FORMAT_VERSION,
        "disclaimer": disclaimer,
        "meta": dict(meta),
        "speakers": sorted({segment.speaker for segment in ordered if segment.speaker}),
        "segments": [
            {
                "start": start,
                "end": end,
                "speaker": segment.speaker,
                "text": " ".join(segment.text.split()),
            }
            for segment in ordered
            for start, end in [_cue_times(segment)]
        ],
    }


def _order(segment: Segment) -> tuple[int, int, str, str]:
    # By the times as written (NaN and negative times count as 0), so files stay ordered.
    start, end = _cue_times(segment)
    return int(start * 1000), int(end * 1000), segment.speaker, segment.text


def _milliseconds(seconds: float) -> int:
    if not math.isfinite(seconds) or seconds < 0:
        return 0
    return int(round(seconds * 1000))


def _cue_times(segment: Segment) -> tuple[float, float]:
    """Start and end in seconds, rounded to ms; the end strictly after the start (WebVTT)."""
    start = _milliseconds(segment.start)
    end = max(_milliseconds(segment.end), start + 1)
    return start / 1000, end / 1000


def _cue_text(text: str) -> str:
    # One line per cue: a blank line would end the cue, "-->" would read as a timing.
    return _escape(" ".join(text.split()))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _note_lines(disclaimer: str) -> list[str]:
    # A NOTE ends at the first blank line and may not contain "-->".
    lines = [" ".join(line.split()).replace("-->", "->") for line in disclaimer.splitlines()]
    return [line for line in lines if line] or [DISCLAIMER]
