"""recorder.manifest: meeting.json built from a journal of two attempts."""

from __future__ import annotations

import json

from recorder.manifest import build_manifest


def test_manifest_lists_every_attempt_in_timeline_order():
    entries = [
        {
            "type": "start",
            "recording_id": "r",
            "attempt": 0,
            "at": 10.0,
            "started_at": 10.0,
            "key_prefix": "p/",
            "meeting_id": "m",
            "meeting_number": "1",
            "title": "T",
            "customer_id": "c",
            "segment_seconds": 2.0,
        },
        {
            "type": "track",
            "track_id": "cam",
            "writer": "cam.a0",
            "participant_id": "p1",
            "display_name": "Al",
            "kind": "video",
            "source": "camera",
            "codec": "vp8",
        },
        {
            "type": "file",
            "kind": "track",
            "track_id": "cam",
            "key": "p/cam.a0-00000.webm",
            "start": 0.3,
            "end": 2.3,
            "size": 5,
            "attempt": 0,
        },
        {
            "type": "file",
            "kind": "mix",
            "track_id": "mix",
            "key": "p/mix.a0-00000.ogg",
            "start": 0.0,
            "end": 2.0,
            "size": 3,
            "attempt": 0,
        },
        {
            "type": "start",
            "recording_id": "r",
            "attempt": 1,
            "at": 15.0,
            "started_at": 10.0,
            "key_prefix": "p/",
        },
        {"type": "track", "track_id": "cam", "writer": "cam.a1", "display_name": "Alice"},
        {
            "type": "file",
            "kind": "track",
            "track_id": "cam",
            "key": "p/cam.a1-00000.webm",
            "start": 5.5,
            "end": 7.0,
            "size": 6,
            "attempt": 1,
        },
        {
            "type": "file",
            "kind": "track",
            "track_id": "cam",
            "key": "p/cam.a0-00001.webm",
            "start": 2.3,
            "end": 3.4,
            "size": 4,
            "attempt": 1,
            "salvaged": True,
        },
        {
            "type": "file",
            "kind": "track",
            "track_id": "cam",
            "key": "p/cam.a0-00001.webm",
            "start": 2.3,
            "end": 3.4,
            "size": 4,
            "attempt": 1,
            "salvaged": True,
        },  # journaled again after a second crash
        {"type": "stop", "at": 17.5},
    ]
    control = {"consent": [{"name": "Bob"}], "tracks": "control's, replaced"}
    document = build_manifest(control, entries, stopped_at=17.5, transcript_keys=["p/transcript.vtt"])
    assert document["consent"] == [{"name": "Bob"}]
    assert document["recording"]["duration"] == 7.5 and document["recording"]["started_at_iso"].endswith("Z")
    assert [a["attempt"] for a in document["recording"]["attempts"]] == [0, 1]
    [cam] = document["tracks"]
    assert cam["display_name"] == "Alice" and cam["offset"] == 0.3 and cam["end"] == 7.0
    assert [s["key"] for s in cam["segments"]] == [
        "p/cam.a0-00000.webm",
        "p/cam.a0-00001.webm",
        "p/cam.a1-00000.webm",
    ]
    assert [s["salvaged"] for s in cam["segments"]] == [False, True, False]
    assert document["mix"]["offset"] == 0.0 and len(document["mix"]["segments"]) == 1
    assert document["transcript"] == {"keys": ["p/transcript.vtt"]}
    json.dumps(document)  # all of it is JSON


def test_gaps_between_attempts_are_listed_from_the_track_segments():
    from recorder.manifest import attempt_gaps

    segments = [
        {"attempt": 0, "start": 0.0, "end": 2.0}, {"attempt": 0, "start": 2.0, "end": 3.5},
        {"attempt": 1, "start": 9.25, "end": 11.0}, {"attempt": 2, "start": 11.0, "end": 12.0},
    ]  # fmt: skip
    assert attempt_gaps(segments) == [
        {"after_attempt": 0, "before_attempt": 1, "from": 3.5, "to": 9.25, "seconds": 5.75},
        {"after_attempt": 1, "before_attempt": 2, "from": 11.0, "to": 11.0, "seconds": 0.0},
    ]
    assert attempt_gaps(segments[:2]) == []  # one attempt: nothing missing between attempts
