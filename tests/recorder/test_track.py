"""The recorder process's small pure parts, without a process: receiver-report statistics,
the journal (torn lines), file names that never collide, and the manifest built from a
journal of two attempts."""

from __future__ import annotations

import json

import pytest

from recorder.journal import RecordingDirectory, list_recordings, safe_name
from recorder.manifest import build_manifest
from recorder.session import writer_stem
from recorder.track import ReceptionStats, peek_ssrc
from sfu.wire import rtcp, rtp


def test_reception_stats_follow_rfc_3550_across_a_sequence_wrap():
    stats = ReceptionStats(48000)
    seqs = [65530 + i for i in range(6)] + [0, 1, 3, 4]  # 65536..65541 wrap; 2 is lost
    for index, seq in enumerate(seqs):
        stats.on_packet(seq & 0xFFFF, 960 * index, 100.0 + 0.02 * index)
    stats.on_sender_report(rtcp.ntp_from_unix(1_700_000_000.5), 100.1)
    block = stats.report_block(ssrc=42, now=100.6)
    assert block.ssrc == 42
    assert block.highest_sequence == 65536 + 4  # one wrap (cycle count in the high 16 bits)
    assert block.cumulative_lost == 1
    assert block.fraction_lost == (1 << 8) // 11  # 1 of 11 expected, in 1/256
    assert block.jitter < 5  # packets arrive exactly on their timestamps
    assert block.lsr == rtcp.ntp_middle32(rtcp.ntp_from_unix(1_700_000_000.5))
    assert block.dlsr == pytest.approx(0.5 * 65536, abs=2)
    # The next interval counts only what happened since.
    stats.on_packet(5, 960 * 10, 100.2)
    assert stats.report_block(42, 101.0).fraction_lost == 0


def test_rtcp_is_told_from_rtp_and_ssrc_peeked():
    packet = rtp.build_packet(111, 7, 960, 0xDEADBEEF, b"\x01")
    assert not rtp.is_rtcp(packet) and peek_ssrc(packet) == 0xDEADBEEF
    assert rtp.is_rtcp(rtcp.build_pli(1, 2)) and rtp.is_rtcp(rtcp.build_rr(1))
    assert peek_ssrc(b"\x80\x00") is None and peek_ssrc(b"\x00" * 12) is None


def test_journal_survives_a_torn_last_line(tmp_path):
    directory = RecordingDirectory(tmp_path, "rec/1")
    directory.create()
    directory.append({"type": "start", "recording_id": "rec/1", "attempt": 0})
    directory.append({"type": "file", "key": "a"})
    with open(directory.journal_path, "a") as file:
        file.write('{"type": "file", "ke')  # a kill in the middle of a write
    assert [e["type"] for e in directory.entries()] == ["start", "file"]
    assert [d.recording_id for d in list_recordings(tmp_path)] == ["rec/1"]
    directory.save_storage({"kind": "local", "root": "/x", "secret": "s"})
    assert (directory.path / "storage.json").stat().st_mode & 0o777 == 0o600
    assert directory.load_storage()["secret"] == "s"


def test_names_are_file_names_and_never_collide():
    assert safe_name("alice-cam_1.x") == "alice-cam_1.x"
    odd = [safe_name(text) for text in ("a/b", "a_b", "a b", "é", ".hidden", "../x", "x" * 200)]
    assert len(set(odd)) == len(odd) and "a_b" in odd
    assert all(name[0].isalnum() and len(name) <= 96 and "/" not in name for name in odd)
    assert writer_stem("cam", 0) == "cam.a0" and writer_stem("cam", 1) == "cam.a1"
    # A track called "mix" must not pass for the mix's own files (mix.a<attempt>).
    assert writer_stem("mix", 0) == "track-mix.a0" and writer_stem("mix.a0", 2) == "track-mix.a0.a2"


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
