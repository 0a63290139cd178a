"""meeting.json: control's part (participants, consent ledger, chat log, its start/stop
times and version) with the recorder's part laid over it, built from the recording's
journal so that it covers every attempt (a recorder restart continues a recording into
new files; the manifest lists them all in timeline order).

The recorder's keys (they replace control's keys of the same name):

    "recording":  id, meeting, key prefix, started_at / stopped_at (epoch seconds and
                  ISO 8601 UTC), duration, segment_seconds, attempts, gaps (between
                  attempts: the last track media of one and the first of the next,
                  on the recording timeline, seconds), failure reason
    "recorder":   software name and version
    "tracks":     per track: participant, display name, kind, source, codec, offset (where
                  it starts on the recording timeline, seconds), end, and its segment
                  files (key, start, end, size, attempt, salvaged)
    "mix":        the mixed audio's segment files, likewise
    "transcript": {"keys": [...]} where the transcript goes (made after the stop, so its
                  files may land after meeting.json), or null without transcription
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
from collections.abc import Iterable, Mapping
from typing import Any

MANIFEST_VERSION = 1
MANIFEST_NAME = "meeting.json"


@functools.lru_cache(maxsize=1)
def software_version() -> str:
    try:
        return importlib.metadata.version("conclave")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return (
        datetime.datetime.fromtimestamp(epoch, datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def build_manifest(
    control: Mapping[str, Any],
    entries: Iterable[Mapping[str, Any]],
    *,
    stopped_at: float,
    failure: str | None = None,
    transcript_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """`transcript_keys`: where the transcript will be, when one is being made."""
    entries = list(entries)
    starts = [e for e in entries if e.get("type") == "start"]
    first = starts[0] if starts else {}
    started_at = float(first.get("started_at", stopped_at))
    files = _unique_files(entries)
    tracks: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.get("type") != "track":
            continue
        track = tracks.setdefault(
            entry["track_id"],
            {
                "track_id": entry["track_id"],
                "participant_id": entry.get("participant_id", ""),
                "display_name": entry.get("display_name", ""),
                "kind": entry.get("kind", ""),
                "source": entry.get("source", ""),
                "codec": entry.get("codec", ""),
                "offset": None,
                "end": None,
                "segments": [],
            },
        )
        # A later TRACK_ADD (after a restart) may carry a new display name: keep the last.
        track["display_name"] = entry.get("display_name", track["display_name"])
    mix: dict[str, Any] = {
        "codec": "opus",
        "content_type": "audio/ogg",
        "offset": None,
        "end": None,
        "segments": [],
    }
    transcript_keys = list(transcript_keys)
    for entry in files:
        segment = {
            "key": entry["key"],
            "start": entry.get("start", 0.0),
            "end": entry.get("end", 0.0),
            "size": entry.get("size", 0),
            "attempt": entry.get("attempt", 0),
            "salvaged": bool(entry.get("salvaged", False)),
        }
        kind = entry.get("kind")
        if kind == "track":
            owner = tracks.get(entry.get("track_id", ""))
            if owner is None:  # a salvaged file of a track whose TRACK_ADD was never journaled
                owner = tracks.setdefault(
                    entry["track_id"],
                    {
                        "track_id": entry["track_id"],
                        "participant_id": "",
                        "display_name": "",
                        "kind": "",
                        "source": "",
                        "codec": entry.get("codec", ""),
                        "offset": None,
                        "end": None,
                        "segments": [],
                    },
                )
            owner["segments"].append(segment)
        elif kind == "mix":
            mix["segments"].append(segment)
        elif kind == "transcript" and entry["key"] not in transcript_keys:
            transcript_keys.append(entry["key"])
    for holder in [*tracks.values(), mix]:
        holder["segments"].sort(key=lambda s: (s["start"], s["key"]))
        if holder["segments"]:
            holder["offset"] = holder["segments"][0]["start"]
            holder["end"] = max(s["end"] for s in holder["segments"])
    document = dict(control)
    document["manifest_version"] = MANIFEST_VERSION
    document["recording"] = {
        "id": first.get("recording_id", ""),
        "meeting_id": first.get("meeting_id", ""),
        "meeting_number": first.get("meeting_number", ""),
        "title": first.get("title", ""),
        "customer_id": first.get("customer_id", ""),
        "key_prefix": first.get("key_prefix", ""),
        "started_at": started_at,
        "started_at_iso": iso(started_at),
        "stopped_at": stopped_at,
        "stopped_at_iso": iso(stopped_at),
        "duration": round(max(0.0, stopped_at - started_at), 3),
        "segment_seconds": first.get("segment_seconds"),
        "attempts": [
            {"attempt": e.get("attempt", 0), "at": e.get("at"), "at_iso": iso(e.get("at"))} for e in starts
        ],
        "gaps": attempt_gaps(s for track in tracks.values() for s in track["segments"]),
        "failure": failure,
    }
    document["recorder"] = {"software": "conclave-recorder", "version": software_version()}
    document["tracks"] = sorted(
        tracks.values(), key=lambda t: (t["offset"] is None, t["offset"] or 0.0, t["track_id"])
    )
    document["mix"] = mix
    # The transcript is made after the stop: its files may land after meeting.json.
    document["transcript"] = {"keys": transcript_keys} if transcript_keys else None
    return document


def attempt_gaps(segments: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Where the timeline has no track media because the recording moved on to its next
    attempt (the recorder or control restarted): from the last end of one attempt's track
    segments to the first start of the next one's."""
    spans: dict[int, tuple[float, float]] = {}
    for segment in segments:
        attempt, start, end = int(segment["attempt"]), float(segment["start"]), float(segment["end"])
        low, high = spans.get(attempt, (start, end))
        spans[attempt] = (min(low, start), max(high, end))
    ordered = sorted(spans.items())
    return [
        {"after_attempt": before, "before_attempt": after, "from": round(ended, 3), "to": round(began, 3),
         "seconds": round(max(0.0, began - ended), 3)}  # fmt: skip
        for (before, (_, ended)), (after, (began, _)) in zip(ordered, ordered[1:])
    ]


def _unique_files(entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """ "file" entries, one per key (a file re-queued after a crash is journaled again)."""
    seen: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        if entry.get("type") == "file" and isinstance(entry.get("key"), str):
            seen[entry["key"]] = entry
    return list(seen.values())
