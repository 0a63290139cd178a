"""Recording in a live meeting, end to end: control + a real SFU worker + the real recorder
process, bots (client) on 127.0.0.1, the customer's storage a local directory.

What is checked: who may start; the notice (recording_state, the spoken notice on the
announcer track, decoded by a bot; the consent ledger); consent `require` holding media
back; files in the customer's storage; the recorder killed mid-recording.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from client.bot import Bot
from client.signaling import SignalingError

NOTICE_FRAMES = 25  # 0.5 s of the spoken notice decoded by a bot (the clip is ~2 s)


# ---------------------------------------------------------------------- helpers


async def recording_host(server, storage: Path | None, **limits: Any) -> dict[str, Any]:
    """A host of a new customer with `limits` (and the fixtures' room for meetings) and,
    when `storage` is given, that directory as the customer's storage."""
    host = await server.new_host(limits={"max_live_meetings_per_host": 10, "max_concurrent_meetings": 10, **limits})
    if storage is not None:
        body = {"kind": "local", "root": str(storage)}
        await server.call("PUT", f"/customers/{host['customer_id']}/storage", token=server.operator_key, json_body=body)
    return host


async def host_bot(server, meeting: dict[str, Any], name: str = "host", **start: Any) -> Bot:
    bot = Bot(server.base_url, meeting["meeting_number"], name, token=meeting["host_token"])
    await bot.start(**start)
    return bot


def states(bot: Bot) -> list[dict[str, Any]]:
    return [m for m in bot.pushes if m.get("type") == "recording_state"]


async def wait_state(bot: Bot, recording: bool, count: int = 1, timeout: float = 20.0) -> dict[str, Any]:
    """The `count`th recording_state with `recording` as given."""

    def found() -> bool:
        return len([s for s in states(bot) if s["recording"] is recording]) >= count

    await bot.wait_until(found, timeout, f"recording_state recording={recording}")
    return [s for s in states(bot) if s["recording"] is recording][count - 1]


def announcement(bot: Bot):
    return bot.find_stats(None, "announcement")


async def stop_all(*bots: Bot) -> None:
    await asyncio.gather(*(bot.stop() for bot in bots), return_exceptions=True)


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------- without a recording


async def test_everyone_is_subscribed_to_the_announcer(conclave_server):
    meeting = await conclave_server.create_meeting()
    solo = conclave_server.bot(meeting, "solo")
    speaker = conclave_server.bot(meeting, "speaker")
    live = conclave_server.services.registry
    try:
        await solo.start(publish_audio=False, publish_video=False)
        participant = live.get(meeting["meeting_id"]).participants[solo.participant_id]
        for _ in range(100):  # `joined` goes out first; the consumers follow under the meeting's lock
            if participant.active_consumer_for("announcer") is not None:
                break
            await asyncio.sleep(0.02)
        assert participant.active_consumer_for("announcer") is not None
        # Alone with nothing to receive, the announcer's m-line waits for a first offer...
        await asyncio.sleep(0.5)
        assert not [m for m in solo.pushes if m.get("type") == "offer"]
        # ...and is in every offer, described as the server's announcement.
        await speaker.start(publish_video=False)
        await solo.wait_for_frames(speaker.participant_id, "microphone", 5, timeout=20)
        entries = sorted(solo.subscriber.tracks.values(), key=lambda e: e["source"])
        assert [(e["track_id"], e["participant_id"], e["source"], e["kind"]) for e in entries] == [
            ("announcer", None, "announcement", "audio"),
            (entries[1]["track_id"], speaker.participant_id, "microphone", "audio"),
        ]
        assert announcement(solo) is not None and announcement(solo).frames == 0  # silent between notices
    finally:
        await stop_all(solo, speaker)


async def test_first_joins_of_meetings_at_once_spread_over_workers(conclave_server_factory, signaling_socket):
    server = await conclave_server_factory(sfu={"workers": 2})
    meetings = [await server.create_meeting(f"m{n}") for n in range(2)]
    sockets = [await signaling_socket(server.ws_url(m["meeting_id"], token=m["host_token"])) for m in meetings]
    await asyncio.gather(*(s.join("host") for s in sockets))
    placements = [server.services.registry.get(m["meeting_id"]).placement.worker_index for m in meetings]
    assert sorted(placements) == [0, 1]
    assert [len(w.routers) for w in server.services.workers.workers] == [1, 1]


async def test_who_may_start_and_what_is_refused(conclave_server, tmp_path):
    server = conclave_server
    storage = tmp_path / "storage"
    allowed = await recording_host(server, storage)
    meeting = await server.create_meeting(host=allowed)
    host = await host_bot(server, meeting, publish_audio=False, publish_video=False)
    guest = server.bot(meeting, "guest")
    no_limits = await recording_host(server, storage, recording_allowed=False, transcription_allowed=False)
    refused_meeting = await server.create_meeting(host=no_limits)
    refused_host = await host_bot(server, refused_meeting, publish_audio=False, publish_video=False)
    no_storage = await recording_host(server, None)
    bare_meeting = await server.create_meeting(host=no_storage)
    bare_host = await host_bot(server, bare_meeting, publish_audio=False, publish_video=False)
    try:
        await guest.start(publish_audio=False, publish_video=False)
        for kind in ("recording", "transcription"):
            with pytest.raises(SignalingError) as caught:
                await guest.signaling.request({"type": kind, "action": "start"})
            assert caught.value.code == "forbidden"
            with pytest.raises(SignalingError) as caught:
                await refused_host.signaling.request({"type": kind, "action": "start"})
            assert caught.value.code == f"{kind}_not_allowed"
            with pytest.raises(SignalingError) as caught:
                await bare_host.signaling.request({"type": kind, "action": "start"})
            assert caught.value.code == "storage_not_configured"
        with pytest.raises(SignalingError) as caught:
            await host.signaling.request({"type": "recording", "action": "stop"})
        assert caught.value.code == "not_active"
        with pytest.raises(SignalingError) as caught:
            await host.signaling.request({"type": "consent", "decision": "maybe"})
        assert caught.value.code == "invalid_field"
        # Over REST the same rules: the guest's token is not the host's.
        status, body, _ = await server.api("POST", f"/meetings/{meeting['number']}/recording",
                                           token=guest.token, json_body={"action": "start"})  # fmt: skip
        assert status == 403, body
        assert not states(host) and not states(guest)  # nothing was ever on
        assert await server.services.store.list_recordings(meeting["meeting_id"]) == []

        # Nobody publishes, so nobody had a subscribe connection: the start makes them.
        await host.signaling.request({"type": "recording", "action": "start"}, timeout=30)
        await guest.wait_for_frames(None, "announcement", NOTICE_FRAMES, timeout=15)

        async def heard() -> bool:
            rows = await server.services.store.list_consent(meeting["meeting_id"])
            return any(r.participant_id == guest.participant_id and "audio" in r.channels for r in rows)

        await wait_for(heard, 10, "the guest's ledger row to say audio")
        with pytest.raises(SignalingError) as caught:
            await host.signaling.request({"type": "recording", "action": "start"})
        assert caught.value.code == "already_active"
    finally:
        await stop_all(host, guest, refused_host, bare_host)


# ---------------------------------------------------------------------- recording


async def files_of(server, recording_id: str) -> list[Any]:
    return await server.services.store.list_recording_files(recording_id)


async def wait_files(server, recording_id: str, predicate, timeout: float = 40.0) -> list[Any]:
    """The recording's file rows once `predicate(rows)` holds (uploads go on after the stop)."""
    result: list[Any] = []

    async def ready() -> bool:
        nonlocal result
        result = await files_of(server, recording_id)
        return predicate(result)

    await wait_for(ready, timeout, f"the files of recording {recording_id}", interval=0.5)
    return result


async def test_recording_notice_ledger_and_files(conclave_server, tmp_path):
    server = conclave_server
    storage = tmp_path / "storage"
    owner = await recording_host(server, storage)
    meeting = await server.create_meeting(host=owner)
    host = await host_bot(server, meeting)
    guest = server.bot(meeting, "guest")
    late = server.bot(meeting, "late")
    try:
        await guest.start()
        await host.wait_for_frames(guest.participant_id, "camera", 3, timeout=20)
        await host.signaling.request({"type": "recording", "action": "start"}, timeout=30)
        host_name = (await server.services.store.get_host(owner["host_id"])).name
        for bot in (host, guest):
            state = await wait_state(bot, True)
            assert state["transcription"] is False and state["consent_policy"] == "notify"
            assert state["consent_required"] is False and state["by"] == host_name
        # The spoken notice reaches everyone in-band, on the announcer track.
        heard = await guest.wait_for_frames(None, "announcement", NOTICE_FRAMES, timeout=15)
        assert heard.peak > 0 and heard.sample_rate == 48000
        await host.send_chat("said while recording")

        # A late joiner: the state right away, the notice once connected, a ledger row.
        await late.start(publish_video=False)
        assert (await wait_state(late, True))["recording"] is True
        await late.wait_for_frames(None, "announcement", NOTICE_FRAMES, timeout=15)
        [recording] = await server.services.store.list_recordings(meeting["meeting_id"])
        assert recording.state == "active" and recording.kind == "recording"

        await asyncio.sleep(3)  # a few seconds of everyone's media
        # Host and guest camera + microphone, the late joiner's microphone.
        published = {t.track_id for t in server.services.registry.get(meeting["meeting_id"]).tracks()}
        assert len(published) == 5
        await host.signaling.request({"type": "recording", "action": "stop"}, timeout=40)
        for bot in (host, guest, late):
            assert (await wait_state(bot, False))["recording"] is False
        stopped = await server.services.store.get_recording(recording.id)
        assert stopped.state == "stopped" and stopped.stopped_at > stopped.started_at

        ledger = {e.participant_id: e for e in await server.services.store.list_consent(meeting["meeting_id"])}
        assert set(ledger) == {host.participant_id, guest.participant_id, late.participant_id}
        for bot in (guest, late):  # under notify, staying until the stop is continuing
            entry = ledger[bot.participant_id]
            assert entry.recording_id == recording.id and entry.decision == "continued", entry
            assert set(entry.channels) == {"banner", "event", "audio"}, entry
        assert ledger[host.participant_id].decision == "continued"

        def complete(rows: list[Any]) -> bool:
            kinds = [r.kind for r in rows]
            tracks = {r.track_id for r in rows if r.kind == "track"}
            return "manifest" in kinds and "mix" in kinds and len(tracks) >= 5

        rows = await wait_files(server, recording.id, complete)
        for row in rows:
            path = storage / row.key
            assert path.is_file() and path.stat().st_size == row.size, row
            assert row.key.startswith(recording.key_prefix)
        assert {r.track_id for r in rows if r.kind == "track"} == published  # one file (or more) per track
        manifest_row = next(r for r in rows if r.kind == "manifest")
        manifest = json.loads((storage / manifest_row.key).read_text())
        assert {p["participant_id"] for p in manifest["participants"]} == set(ledger)
        assert {c["participant_id"]: c["decision"] for c in manifest["consent"]} == {
            pid: "continued" for pid in ledger
        }
        assert [m["text"] for m in manifest["chat"]] == ["said while recording"]
        assert manifest["stopped_at"] > manifest["started_at"] and manifest["software"]["name"] == "conclave"
        assert {t["track_id"] for t in manifest["tracks"]} == published and manifest["mix"]["segments"]

        # What an SRE sees: the notices the worker played, what the recorder wrote.
        await server.services.workers.refresh_stats()
        await server.services.recorder.refresh_stats()
        metrics = await scrape(server)
        assert metrics["conclave_worker_notice_plays_total"] >= 3  # start, late joiner, stop
        assert metrics["conclave_worker_notice_packets_sent_total"] >= 3 * NOTICE_FRAMES
        assert metrics["conclave_recording_segments_flushed_total"] >= len([r for r in rows if r.kind == "track"])
        assert metrics["conclave_recording_bytes_written_total"] > 0
        assert metrics["conclave_recorder_packets_received_total"] > 0
        assert metrics["conclave_recorder_plis_sent_total"] >= 1  # a keyframe for each camera at start
        # Nothing foreign or malformed. (A track's first packets can reach the recorder just
        # before its TRACK_ADD and count as unknown_ssrc: the PLI at TRACK_ADD covers video.)
        assert metrics['conclave_recorder_packets_dropped_total{reason="malformed"}'] == 0
        assert metrics['conclave_recorder_packets_dropped_total{reason="unknown_peer"}'] == 0
    finally:
        await stop_all(host, guest, late)


async def scrape(server) -> dict[str, float]:
    """/metrics by sample name summed over labels, and by name{labels} for labelled ones."""
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as session, session.get(server.base_url + "/metrics") as response:
        text = await response.text()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            if sample.labels:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                totals[f"{sample.name}{{{labels}}}"] = sample.value
    return totals


def frames(bot: Bot, participant_id: str, source: str) -> int:
    stats = bot.find_stats(participant_id, source)
    return stats.frames if stats is not None else 0


async def test_require_consent_holds_media_until_continue(conclave_server, tmp_path):
    server = conclave_server
    owner = await recording_host(server, tmp_path / "storage", consent_policy="require")
    meeting = await server.create_meeting(host=owner)
    host = await host_bot(server, meeting, publish_video=False)
    early = server.bot(meeting, "early")
    late = server.bot(meeting, "late")
    try:
        await early.start(publish_video=False)
        await host.wait_for_frames(early.participant_id, "microphone", 10, timeout=20)
        await host.signaling.request({"type": "recording", "action": "start"}, timeout=30)
        assert (await wait_state(host, True))["consent_required"] is False  # the host started it
        held = await wait_state(early, True)
        assert held["consent_policy"] == "require" and held["consent_required"] is True
        # Present when it started: paused on the media server (what is in flight drains).
        await asyncio.sleep(1.0)
        before = frames(host, early.participant_id, "microphone")
        await asyncio.sleep(2.0)
        assert frames(host, early.participant_id, "microphone") - before <= 3

        # Joining while it is on: asked at once, nothing of theirs reaches anyone.
        await late.start(publish_video=False)
        assert (await wait_state(late, True))["consent_required"] is True
        await late.wait_for_frames(None, "announcement", NOTICE_FRAMES, timeout=15)
        await asyncio.sleep(2.0)
        assert frames(host, late.participant_id, "microphone") == 0
        assert frames(early, late.participant_id, "microphone") == 0

        # Muting and unmuting does not release anything.
        await early.set_muted("microphone", True)
        await early.set_muted("microphone", False)
        await asyncio.sleep(1.0)
        assert frames(host, early.participant_id, "microphone") - before <= 3

        # Continue: their media goes again, and they are told.
        assert (await early.signaling.request({"type": "consent", "decision": "continue"}))["type"] == "ok"
        await host.wait_for_frames(early.participant_id, "microphone", before + 25, timeout=15)
        assert states(early)[-1]["consent_required"] is False
        # Leave: acknowledged, the session ends, recorded as left.
        assert (await late.signaling.request({"type": "consent", "decision": "leave"}))["type"] == "ok"
        await host.wait_until(lambda: late.participant_id not in host.participants, 10, "late gone")
        assert frames(host, late.participant_id, "microphone") == 0

        async def decided() -> bool:
            rows = await server.services.store.list_consent(meeting["meeting_id"])
            return {r.participant_id: r.decision for r in rows} == {
                host.participant_id: "continued", early.participant_id: "continued", late.participant_id: "left"
            }

        await wait_for(decided, 10, "the ledger's decisions")
        for row in await server.services.store.list_consent(meeting["meeting_id"]):
            if row.participant_id != host.participant_id:
                assert row.decided_at is not None and row.decided_at >= row.notified_at
    finally:
        await stop_all(host, early, late)


async def test_recorder_killed_mid_recording_continues(conclave_server_factory, tmp_path):
    server = await conclave_server_factory(sfu={"restart_backoff_s": 0.2})
    storage = tmp_path / "storage"
    owner = await recording_host(server, storage)
    meeting = await server.create_meeting(host=owner)
    host = await host_bot(server, meeting)
    guest = server.bot(meeting, "guest")
    recorder = server.services.recorder
    try:
        await guest.start(publish_video=False)
        await host.signaling.request({"type": "recording", "action": "start"}, timeout=30)
        live_meeting = server.services.registry.get(meeting["meeting_id"])
        job = server.services.recordings.active(live_meeting)["recording"]
        await asyncio.sleep(3)
        first_pid = recorder.pid
        os.kill(first_pid, signal.SIGKILL)

        async def resumed() -> bool:
            return recorder.up and recorder.pid != first_pid and job.attempt == 1 and len(job.tracks) == 3

        await wait_for(resumed, 30, "the recording to resume in a new recorder")
        assert recorder.restarts == 1
        await asyncio.sleep(3)
        await host.signaling.request({"type": "recording", "action": "stop"}, timeout=40)

        def both_attempts(rows: list[Any]) -> bool:
            keys = [r.key for r in rows if r.kind == "track"]
            return any(".a0-" in k for k in keys) and any(".a1-" in k for k in keys) and any(
                r.kind == "manifest" for r in rows
            )

        rows = await wait_files(server, job.recording_id, both_attempts)
        for row in rows:
            assert (storage / row.key).stat().st_size == row.size
        manifest = json.loads((storage / next(r for r in rows if r.kind == "manifest").key).read_text())
        assert [a["attempt"] for a in manifest["recording"]["attempts"]] == [0, 1]
        assert manifest["attempts"] == 2
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.base_url}/metrics") as response:
                assert "conclave_recorder_restarts_total 1.0" in await response.text()
    finally:
        await stop_all(host, guest)


async def test_full_spool_stops_the_recording_and_tells_the_host(conclave_server_factory, tmp_path):
    # Any closed segment fills a spool of 1 byte: the recorder gives up on the recording.
    server = await conclave_server_factory(recorder={"spool_limit_bytes": 1, "segment_seconds": 1.0})
    owner = await recording_host(server, tmp_path / "storage")
    meeting = await server.create_meeting(host=owner)
    host = await host_bot(server, meeting, publish_video=False)
    guest = server.bot(meeting, "guest")
    try:
        await guest.start(publish_video=False)
        await host.signaling.request({"type": "recording", "action": "start"}, timeout=30)
        await wait_state(guest, True)
        await host.wait_until(lambda: any(e.get("code") == "recording_failed" for e in host.errors), 20, "failure")
        failure = next(e for e in host.errors if e.get("code") == "recording_failed")
        assert failure["reason"] == "spool_full" and "spool" in failure["message"]
        assert not any(e.get("code") == "recording_failed" for e in guest.errors)  # the host is told
        for bot in (host, guest):
            assert (await wait_state(bot, False))["recording"] is False
        assert server.services.recordings.active(server.services.registry.get(meeting["meeting_id"])) == {}

        async def failed() -> bool:
            [recording] = await server.services.store.list_recordings(meeting["meeting_id"])
            return (recording.state, recording.error) == ("failed", "spool_full")

        await wait_for(failed, 10, "the recording marked failed")
    finally:
        await stop_all(host, guest)


async def test_auto_record_from_the_start_and_the_end_stops_it(conclave_server, tmp_path):
    server = conclave_server
    storage = tmp_path / "storage"
    owner = await recording_host(server, storage, auto_record=True, consent_policy="require")
    meeting = await server.create_meeting(host=owner)  # started: recording begins by itself

    async def recording_rows() -> list[Any]:
        return await server.services.store.list_recordings(meeting["meeting_id"])

    async def active() -> bool:
        return [r.state for r in await recording_rows()] == ["active"]

    await wait_for(active, 20, "the automatic recording")
    host = await host_bot(server, meeting, publish_video=False)
    try:
        state = await wait_state(host, True)
        assert state["consent_required"] is False  # the host is never asked
        await host.wait_for_frames(None, "announcement", NOTICE_FRAMES, timeout=15)
        [row] = await recording_rows()
        assert row.started_by == "auto"
        await asyncio.sleep(2)
        await server.call("POST", f"/meetings/{meeting['number']}/end", token=meeting["host_session"])

        async def stopped() -> bool:
            return [r.state for r in await recording_rows()] == ["stopped"]

        await wait_for(stopped, 30, "the recording stopped with the meeting")
        rows = await wait_files(server, row.id, lambda rows: any(r.kind == "manifest" for r in rows))
        manifest = json.loads((storage / next(r for r in rows if r.kind == "manifest").key).read_text())
        assert [(c["participant_id"], c["decision"]) for c in manifest["consent"]] == [
            (host.participant_id, "continued")
        ]
    finally:
        await host.stop()


async def test_transcription_on_its_own(conclave_server, tmp_path):
    server = conclave_server
    storage = tmp_path / "storage"
    owner = await recording_host(server, storage)
    meeting = await server.create_meeting(host=owner)
    host = await host_bot(server, meeting)
    guest = server.bot(meeting, "guest")
    try:
        await guest.start(publish_video=False)
        request = {"type": "transcription", "action": "start", "hints": ["Conclave"]}
        await host.signaling.request(request, timeout=30)
        state = await wait_state(guest, False)  # recording stays off...
        assert state["transcription"] is True  # ...transcription is on
        await guest.wait_for_frames(None, "announcement", NOTICE_FRAMES, timeout=15)
        job = server.services.recordings.active(server.services.registry.get(meeting["meeting_id"]))["transcription"]
        assert job.hints == ["Conclave"] and len(job.tracks) == 2  # the voices only, no camera
        await asyncio.sleep(2)
        # Stopped over REST by the host: the same job, the same announcements.
        reply = await server.call("POST", f"/meetings/{meeting['number']}/transcription", token=meeting["host_session"],
                                  json_body={"action": "stop"})  # fmt: skip
        assert reply["transcription"] is False
        await guest.wait_until(lambda: states(guest)[-1]["transcription"] is False, 10, "transcription off")
        rows = await wait_files(server, job.recording_id, lambda rows: any(r.kind == "transcript" for r in rows), 60)
        assert {r.kind for r in rows} >= {"track", "transcript"}
        [stored] = await server.services.store.list_recordings(meeting["meeting_id"])
        assert (stored.kind, stored.state) == ("transcription", "stopped")
    finally:
        await stop_all(host, guest)


async def test_recording_follows_the_meeting_to_a_new_worker(conclave_server_factory, tmp_path):
    server = await conclave_server_factory(sfu={"restart_backoff_s": 0.2})
    owner = await recording_host(server, tmp_path / "storage")
    meeting = await server.create_meeting(host=owner)
    host = await host_bot(server, meeting, publish_video=False)
    guest = server.bot(meeting, "guest")
    worker = server.services.workers.workers[0]
    try:
        await guest.start(publish_video=False)
        await host.signaling.request({"type": "recording", "action": "start"}, timeout=30)
        job = server.services.recordings.active(server.services.registry.get(meeting["meeting_id"]))["recording"]
        before = set(job.tracks)
        assert len(before) == 2
        await asyncio.sleep(2)  # media of the first router's tracks
        os.kill(worker.pid, signal.SIGKILL)  # everyone is told to reconnect
        for bot in (host, guest):
            await bot.wait_until(lambda bot=bot: bot.reconnects == 1, 30, "rejoin")

        async def rebound() -> bool:
            return job.transport_id is not None and len(job.tracks) == 2 and not set(job.tracks) & before

        await wait_for(rebound, 30, "the recording to take the republished tracks")
        assert job.attempt == 0  # the same recorder session: no new attempt
        # Back in, they are told again and hear it again.
        for bot in (host, guest):
            await wait_state(bot, True, count=2)
        await guest.wait_for_frames(None, "announcement", NOTICE_FRAMES, timeout=15)
        await asyncio.sleep(2)
        after = set(job.tracks)
        await host.signaling.request({"type": "recording", "action": "stop"}, timeout=40)
        rows = await wait_files(server, job.recording_id, lambda rows: any(r.kind == "manifest" for r in rows))
        assert {r.track_id for r in rows if r.kind == "track"} == before | after  # both routers' tracks
    finally:
        await stop_all(host, guest)


async def test_participants_transcribe_only_where_the_customer_allows_it(conclave_server, tmp_path):
    server = conclave_server
    allowed = await recording_host(server, tmp_path / "a", participants_may_transcribe=True)
    refused = await recording_host(server, tmp_path / "b")
    bots: list[Bot] = []
    try:
        for owner, may in ((allowed, True), (refused, False)):
            meeting = await server.create_meeting(host=owner)
            host = await host_bot(server, meeting, publish_video=False)
            guest = server.bot(meeting, "guest")
            bots += [host, guest]
            joined = await guest.start(publish_video=False)
            assert joined["may_transcribe"] is may  # the web client shows the button on this
            request = {"type": "transcription", "action": "start"}
            if not may:
                with pytest.raises(SignalingError) as refusal:
                    await guest.signaling.request(request, timeout=30)
                assert refusal.value.code == "forbidden"
                continue
            await guest.signaling.request(request, timeout=30)
            state = await wait_state(host, False)
            assert state["transcription"] is True and state["by"] == "guest"
            await guest.signaling.request({"type": "transcription", "action": "stop"}, timeout=30)
            await host.wait_until(lambda: states(host)[-1]["transcription"] is False, 10, "transcription off")
    finally:
        await stop_all(*bots)
