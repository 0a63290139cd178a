"""Recordings that go on across a restart of control (issue 13, item 7).

A single node that stops (SIGTERM) leaves its recordings `active` in the store: the
recorder closes every open segment on its way down and keeps the recording's journal
(recorder/service.py), and a kill -9 leaves the same with at most the last unflushed
second lost. When the node starts again and the recording's live session is still live
(control.meeting.resumption took it up), the recording gets its job back here: the same
recording id, the consent ledger and who was present read back from the store. Its
meeting gets a router at once (not at its first participant back: the recorder finishes
a recording nobody continues within `recorder.orphan_grace_s`), and the job is set up on
it as after a worker restart: RECORDING_START of the next attempt (once the recorder is
up), whose files never collide with the earlier ones (the recorder's journal knows the
attempts used), a new plain transport, every track as it comes back. The recorder's
meeting.json lists the attempts and the gap between them.

A recording whose meeting did not come back (ended meanwhile) is `failed`
(`server_restart`), as before; the recorder finishes its files from what is on disk.
"""

from __future__ import annotations

import logging

from common.channel import ChannelError
from config import RecorderConfig
from control.errors import SignalingError
from control.meeting.model import LiveMeeting, MeetingRegistry
from control.recording.consent import Consent
from control.recording.job import Job
from control.recording.service import Recordings
from control.store.base import Recording, Store

log = logging.getLogger(__name__)

FAILED_REASON = "server_restart"


async def continue_recordings(recordings: Recordings, store: Store, registry: MeetingRegistry,
                              settings: RecorderConfig) -> int:  # fmt: skip
    """At start: each active recording continues with its meeting, or fails without it.
    Returns how many continue."""
    continued = 0
    for row in await store.active_recordings():
        meeting = registry.get(row.meeting_id)
        storage = await store.get_recording_storage(row.id)
        if meeting is None or meeting.live_session_id != row.live_session_id or meeting.limits is None or not storage:
            await store.update_recording(row.id, state="failed", error=FAILED_REASON)
            continue
        job = Job(
            conference=recordings.conference, recorder=recordings.recorder, meeting=meeting, recording_id=row.id,
            kind=row.kind, customer_id=row.customer_id, storage=storage, key_prefix=row.key_prefix,
            started_at=row.started_at, started_by=row.started_by, by_name=await _starter_name(store, row),
            policy=meeting.limits.account.consent_policy, segment_seconds=settings.segment_seconds, hints=[],
        )  # fmt: skip
        await _read_back_ledger(store, job, meeting)
        recordings.adopt(meeting, job)
        log.info("recording %s of meeting %s continues after the restart", row.id, row.meeting_id)
        await _router_for(recordings, meeting)
        continued += 1
    return continued


async def _router_for(recordings: Recordings, meeting: LiveMeeting) -> None:
    """The meeting's router now: the job sets up on it (`router_created`)."""
    async with meeting.lock:
        try:
            await recordings.conference.ensure_router(meeting)
        except (SignalingError, ChannelError) as exc:  # then with the first participant back
            log.warning("meeting %s: no router for its recording yet: %s", meeting.meeting_id, exc)


async def _starter_name(store: Store, row: Recording) -> str:
    person = await store.get_participant(row.started_by) if row.started_by else None
    return person.name if person is not None else ""


async def _read_back_ledger(store: Store, job: Job, meeting: LiveMeeting) -> None:
    """Who was told, how, and what they decided; who was present (the manifest's list):
    nobody is asked again for what they answered before the restart."""
    for entry in await store.list_consent(meeting.meeting_id, meeting.live_session_id):
        if entry.recording_id != job.recording_id:
            continue
        consent = Consent(entry.name, entry.decision)
        consent.channels = list(entry.channels)
        consent.notified = True
        job.consent.entries[entry.participant_id] = consent
        job.consent_rows[entry.participant_id] = entry.id
        person = await store.get_participant(entry.participant_id)
        job.people[entry.participant_id] = {
            "participant_id": entry.participant_id,
            "name": entry.name,
            "role": person.role if person is not None else "participant",
            "joined_at": entry.notified_at,
            "left_at": None,
        }
