"""`meeting.json`, the manifest the recorder writes beside a recording's files: what it
is of, who was there, who was told and what they decided, the chat while it ran.

The recorder adds what only it knows (tracks with their offsets and segments, the mix);
control gives the rest at RECORDING_STOP. Pure: the job, the ledger rows and the chat in,
a JSON-able dict out.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from typing import Any

from control.clock import iso_time
from control.recording.job import Job
from control.store.base import ChatMessage, ConsentEntry

MANIFEST_VERSION = 1


def software_version() -> str:
    try:
        return importlib.metadata.version("conclave")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_manifest(
    job: Job, ledger: Sequence[ConsentEntry], chat: Sequence[ChatMessage], stopped_at: float, stopped_by: str
) -> dict[str, Any]:
    """The manifest of `job`: the ledger rows of this recording and the chat written while
    it ran (`ledger` and `chat` may hold the whole meeting's)."""
    meeting = job.meeting
    low, high = job.started_at * 1000, stopped_at * 1000
    return {
        "manifest_version": MANIFEST_VERSION,
        "software": {"name": "conclave", "version": software_version()},
        "recording_id": job.recording_id,
        "kind": job.kind,
        "meeting": {"id": meeting.meeting_id, "number": meeting.number, "title": meeting.title},
        "live_session_id": meeting.live_session_id,
        "started_at": job.started_at,
        "started_at_iso": iso_time(job.started_at),
        "stopped_at": stopped_at,
        "stopped_at_iso": iso_time(stopped_at),
        "started_by": job.by_name,
        "stopped_by": stopped_by,
        "attempts": job.attempt + 1,
        "consent_policy": job.policy,
        "participants": list(job.people.values()),
        "consent": [
            {
                "participant_id": e.participant_id,
                "name": e.name,
                "notified_at": e.notified_at,
                "channels": list(e.channels),
                "decision": e.decision,
                "decided_at": e.decided_at,
            }
            for e in ledger
            if e.recording_id == job.recording_id
        ],
        "chat": [
            {"seq": m.seq, "participant_id": m.participant_id, "name": m.name, "text": m.text, "ts": m.ts}
            for m in chat
            if low <= m.ts <= high
        ],
    }
