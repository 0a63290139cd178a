"""A recording's work directory and its journal: what survives a kill -9.

    <data_dir>/recordings/<recording_id>/
        journal.jsonl   one JSON object per line, appended and fsynced (see below)
        storage.json    the customer's storage settings (mode 0600: it holds credentials),
                        so that uploads of a stopped recording go on after a restart
        media/          segments being written (`.part`) or just closed
        speech/         16 kHz int16 audio kept for transcription
        out/            meeting.json and transcripts before they go to the spool

Journal entries ("type"): "start" (each attempt), "track" (a track added: its writer's
file name stem), "file" (a closed file handed to the spool: key, times, size),
"speech" (a run of audio kept for transcription), "transcription" (on/off, hints),
"stop", "transcript" (the transcript's files are queued). A torn last line (a kill
mid-write) is ignored; every other line is complete, because each append is one
write followed by fsync.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
STORAGE = "storage.json"


class RecordingDirectory:
    def __init__(self, root: Path, recording_id: str) -> None:
        self.recording_id = recording_id
        self.path = root / safe_directory_name(recording_id)
        self.media = self.path / "media"
        self.speech = self.path / "speech"
        self.out = self.path / "out"
        self.journal_path = self.path / JOURNAL

    def create(self) -> None:
        for directory in (self.path, self.media, self.speech, self.out):
            directory.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return self.journal_path.is_file()

    # --- journal ------------------------------------------------------------------------

    def append(self, entry: dict[str, Any]) -> None:
        """One entry, durable when this returns (blocking: call it in a thread when it
        matters; each call is a single write, so a kill leaves at most a torn last line)."""
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        try:
            text = self.journal_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                log.warning("%s: line %d is torn (a killed writer); ignored", self.journal_path, number)
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    # --- storage settings ---------------------------------------------------------------

    def save_storage(self, settings: dict[str, Any]) -> None:
        temporary = self.path / (STORAGE + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(settings).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path / STORAGE)

    def load_storage(self) -> dict[str, Any] | None:
        try:
            settings = json.loads((self.path / STORAGE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return settings if isinstance(settings, dict) else None

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def safe_directory_name(recording_id: str) -> str:
    """The recording id as one path component (ids are control's: hex or uuid-like)."""
    if not recording_id:
        raise ValueError("recording_id: must not be empty")
    return safe_name(recording_id)


def safe_name(text: str, limit: int = 96) -> str:
    """A file-name-safe stem for text: itself when it already is one (A-Z a-z 0-9 _ . -,
    starting with a letter or digit), else a cleaned copy with a hash of the original,
    so that two different texts never share a name."""
    safe_chars = all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in text)
    if text and text[0].isalnum() and len(text) <= limit and safe_chars:
        return text
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in text)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"x{cleaned[: limit - 12]}_{digest}"


def list_recordings(root: Path) -> list[RecordingDirectory]:
    """Every recording with a journal under root (for the startup rescan)."""
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if not child.is_dir() or not (child / JOURNAL).is_file():
            continue
        recording_id = _recording_id_of(child / JOURNAL) or child.name
        found.append(RecordingDirectory(root, recording_id))
    return found


def stray_directories(root: Path) -> list[Path]:
    """Directories under root without a journal (a start killed before its first entry)."""
    if not root.is_dir():
        return []
    return sorted(child for child in root.iterdir() if child.is_dir() and not (child / JOURNAL).is_file())


def _recording_id_of(journal: Path) -> str | None:
    try:
        with open(journal, encoding="utf-8") as file:
            first = json.loads(file.readline())
    except (OSError, ValueError):
        return None
    value = first.get("recording_id") if isinstance(first, dict) else None
    return value if isinstance(value, str) else None
