"""recorder.journal: the recording's journal survives a torn last line; names of files made
from track names never collide (with recorder.session.writer_stem, the names it builds)."""

from __future__ import annotations

from recorder.journal import RecordingDirectory, list_recordings, safe_name
from recorder.session import writer_stem


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
