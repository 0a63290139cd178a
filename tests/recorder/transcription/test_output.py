"""Transcript output: placing segments on the meeting timeline, merging participants, and
the WebVTT / JSON files (checked by the strict WebVTT reader of tests/support/webvtt.py)."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.transcription import (
    DISCLAIMER,
    Segment,
    format_timestamp,
    merge,
    place,
    to_json,
    to_webvtt,
)
from tests.support.webvtt import TIMESTAMP, parse_webvtt, seconds_of


def test_place_shifts_onto_the_meeting_timeline_and_names_the_speaker():
    own = [Segment(1.0, 2.5, "hello"), Segment(4.0, 5.0, "again")]
    placed = place(own, "Alice", offset=10.25)
    assert placed == [Segment(11.25, 12.75, "hello", "Alice"), Segment(14.25, 15.25, "again", "Alice")]


def test_merge_orders_every_participant_by_time():
    alice = place([Segment(0.5, 1.0, "a1"), Segment(6.0, 7.0, "a2")], "Alice", 2.0)
    bob = place([Segment(0.0, 1.0, "b1"), Segment(3.0, 4.0, "b2")], "Bob", 0.0)
    merged = merge([alice, bob])
    assert [(s.speaker, s.text, s.start) for s in merged] == [
        ("Bob", "b1", 0.0),
        ("Alice", "a1", 2.5),
        ("Bob", "b2", 3.0),
        ("Alice", "a2", 8.0),
    ]


def test_webvtt_has_the_disclaimer_names_and_meeting_times():
    segments = merge(
        [
            place([Segment(0.0, 1.5, "the meeting is being recorded")], "Alice", 3.0),
            place([Segment(0.25, 2.0, "welcome")], "Bob <the host> & co", 3600.0),
        ]
    )
    vtt = to_webvtt(segments)
    notes, cues = parse_webvtt(vtt)
    assert notes == [DISCLAIMER]
    assert "Transcripts may be incomplete or inaccurate." in vtt
    assert cues == [
        {"start": 3.0, "end": 4.5, "speaker": "Alice", "text": "the meeting is being recorded"},
        {"start": 3600.25, "end": 3602.0, "speaker": "Bob <the host> & co", "text": "welcome"},
    ]
    assert "01:00:00.250 --> 01:00:02.000" in vtt


def test_webvtt_survives_hostile_text_and_degenerate_times():
    segments = [
        Segment(5.0, 5.0, "zero\n\nlength --> cue", "Eve\n"),
        Segment(-3.0, -1.0, "before the start", ""),
        Segment(float("nan"), 2.0, "<b>bold</b>", "x"),
        Segment(1.0, 2.0, "   ", "blank"),
    ]
    notes, cues = parse_webvtt(to_webvtt(segments, disclaimer="line one\n\n--> two"))
    assert notes == ["line one\n-> two"]
    assert [cue["text"] for cue in cues] == ["before the start", "<b>bold</b>", "zero length --> cue"]
    assert all(cue["end"] > cue["start"] >= 0 for cue in cues)
    assert cues[0]["speaker"] == "" and cues[2]["speaker"] == "Eve"


@given(st.floats(min_value=0, max_value=400_000, allow_nan=False))
def test_timestamps_are_well_formed(seconds):
    stamp = format_timestamp(seconds)
    match = re.fullmatch(TIMESTAMP, stamp)
    assert match
    assert math.isclose(seconds_of(*match.groups()), round(seconds * 1000) / 1000, abs_tol=1e-6)


@given(
    st.lists(
        st.builds(
            Segment,
            st.floats(0, 10_000, allow_nan=False),
            st.floats(0, 10_000, allow_nan=False),
            st.text(max_size=40),
            st.text(max_size=20),
        ),
        max_size=8,
    )
)
def test_any_segments_give_well_formed_webvtt_and_json(segments):
    parse_webvtt(to_webvtt(segments))
    document = json.loads(json.dumps(to_json(segments, {"meeting_id": "m"})))
    assert all(item["end"] > item["start"] for item in document["segments"])


def test_json_has_names_times_meta_and_the_disclaimer():
    segments = merge(
        [
            place([Segment(1.0, 2.0, "hello  there")], "Alice", 10.0),
            place([Segment(0.5, 1.25, "hi")], "Bob", 10.0),
        ]
    )
    document = to_json(segments, {"meeting_id": "abc", "engine": "pocketsphinx"})
    assert json.loads(json.dumps(document)) == {
        "version": 1,
        "disclaimer": "Transcripts may be incomplete or inaccurate.",
        "meta": {"meeting_id": "abc", "engine": "pocketsphinx"},
        "speakers": ["Alice", "Bob"],
        "segments": [
            {"start": 10.5, "end": 11.25, "speaker": "Bob", "text": "hi"},
            {"start": 11.0, "end": 12.0, "speaker": "Alice", "text": "hello there"},
        ],
    }


@pytest.mark.parametrize(
    "seconds, expected",
    [(0, "00:00:00.000"), (59.9995, "00:01:00.000"), (360000.5, "100:00:00.500")],
)
def test_timestamp_examples(seconds, expected):
    assert format_timestamp(seconds) == expected
