"""RTP ingest a user can reach (issue 12, item 6): the host makes one over REST, runs the
ffmpeg command it returned verbatim, and a participant (a bot: aiortc decoding) sees the
ingest's name and decodes its video and hears its audio; revoking it takes it out.
Also the host REST's refusals and the ingest's place under the meeting's rules."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from control.errors import ApiError
from tests.support.ingest import create_ingest, list_ingests

pytestmark = pytest.mark.timeout(120)

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (scripts/test installs it)")


def make_input(folder: Path, seconds: int = 30) -> None:
    """input.mp4: a test pattern and a 440 Hz tone (what the returned command reads)."""
    subprocess.run(
        [FFMPEG, "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         "-c:v", "mpeg4", "-c:a", "aac", str(folder / "input.mp4")],
        check=True, timeout=60,
    )  # fmt: skip


async def run_verbatim(command: str, folder: Path) -> subprocess.Popen[bytes]:
    """The command as the host pastes it, in a shell of its own process group."""
    await asyncio.to_thread(make_input, folder)
    return subprocess.Popen(["bash", "-c", command], cwd=folder, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip


def stop_group(process: subprocess.Popen[bytes]) -> str:
    """Stop the command we started (its group, by the PID we got) and return its stderr's tail."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return (process.stderr.read() if process.stderr else b"").decode(errors="replace")[-2000:]


async def watched_by_bot(server: Any, meeting: dict[str, Any]) -> Any:
    bot = server.bot(meeting, "viewer")
    await bot.start(publish_audio=False, publish_video=False)
    return bot


async def assert_ingest_received(bot: Any, participant_id: str, name: str) -> None:
    await bot.wait_until(lambda: participant_id in bot.participants, 10, "the ingest listed")
    assert bot.participants[participant_id]["name"] == name
    video = await bot.wait_for_frames(participant_id, "camera", count=20, timeout=30)
    audio = await bot.wait_for_frames(participant_id, "microphone", count=50, timeout=30)
    assert (video.width, video.height) == (320, 240)
    assert audio.peak > 0  # the tone, not silence


@needs_ffmpeg
@pytest.mark.parametrize("srtp", [False, True], ids=["rtp", "srtp"])
async def test_an_rtp_ingest_made_over_rest_runs_its_ffmpeg_command(conclave_server, tmp_path, srtp):
    meeting = await conclave_server.create_meeting()
    bot = await watched_by_bot(conclave_server, meeting)
    ffmpeg = None
    try:
        made = await create_ingest(conclave_server, meeting, "rtp", "Stage camera", srtp=srtp)
        assert made["connected"] and made["state"] == "active"
        assert (made["srtp_key"] is not None) == srtp and made["rtp"]["srtp"] == srtp
        assert f"{made['rtp']['ip']}:{made['rtp']['port']}" in made["commands"]["ffmpeg"]
        ffmpeg = await run_verbatim(made["commands"]["ffmpeg"], tmp_path)
        await assert_ingest_received(bot, made["participant_id"], "Stage camera")

        revoked = await conclave_server.call(
            "DELETE", f"/meetings/{meeting['number']}/ingests/{made['id']}", token=meeting["host_session"]
        )
        assert (revoked["state"], revoked["end_reason"]) == ("revoked", "revoked_by_host")
        await bot.wait_until(lambda: made["participant_id"] not in bot.participants, 10, "the ingest gone")
        assert not any(t["participant_id"] == made["participant_id"] for t in bot.remote_tracks.values())
        [listed] = await list_ingests(conclave_server, meeting)
        assert (listed["state"], listed["connected"]) == ("revoked", False)
        assert "srtp_key" not in listed  # shown once
    finally:
        tail = stop_group(ffmpeg) if ffmpeg is not None else ""
        await bot.stop()
    assert "Error" not in tail or "Connection refused" in tail, tail


async def test_ingests_need_the_meetings_host_a_live_meeting_and_good_fields(conclave_server):
    meeting = await conclave_server.create_meeting(start=False)
    path = f"/meetings/{meeting['number']}/ingests"
    host = meeting["host_session"]
    status, body, _ = await conclave_server.api("POST", path, token=host, json_body={"kind": "rtp", "name": "x"})
    assert (status, body["error"]["code"]) == (409, "not_live")
    await conclave_server.start_meeting(meeting)
    for fields, problem in (({"kind": "rtmp", "name": "x"}, "kind"), ({"kind": "rtp"}, "name"),
                            ({"kind": "rtp", "name": " "}, "name"), ({"kind": "whip", "name": "x", "srtp": True}, "srtp"),
                            ({"kind": "rtp", "name": "x", "srtp": "yes"}, "srtp")):  # fmt: skip
        status, body, _ = await conclave_server.api("POST", path, token=host, json_body=fields)
        assert status == 400 and body["error"]["message"].startswith(problem), (fields, body)
    other = await conclave_server.new_host()
    status, body, _ = await conclave_server.api("POST", path, token=other["token"], json_body={"kind": "rtp", "name": "x"})
    assert status == 403
    status, _, _ = await conclave_server.api("GET", path)
    assert status == 401
    status, body, _ = await conclave_server.api("DELETE", f"{path}/nope", token=host)
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert await list_ingests(conclave_server, meeting) == []


async def test_an_ingest_counts_toward_the_meetings_capacity(conclave_server):
    host = await conclave_server.new_host(limits={"max_participants_per_meeting": 2})
    meeting = await conclave_server.create_meeting(host=host)
    bot = await watched_by_bot(conclave_server, meeting)  # the host's place is kept for them: full now
    try:
        status, body, _ = await conclave_server.api("POST", f"/meetings/{meeting['number']}/ingests",
                                                    token=meeting["host_session"],
                                                    json_body={"kind": "rtp", "name": "one too many"})  # fmt: skip
        assert (status, body["error"]["code"]) == (403, "meeting_full")
        [failed] = await list_ingests(conclave_server, meeting)
        assert (failed["state"], failed["end_reason"], failed["connected"]) == ("ended", "failed", False)
    finally:
        await bot.stop()


async def test_ending_the_meeting_ends_its_rtp_ingest(conclave_server):
    meeting = await conclave_server.create_meeting()
    bot = await watched_by_bot(conclave_server, meeting)
    try:
        made = await create_ingest(conclave_server, meeting, "rtp", "cam")
        await bot.wait_until(lambda: made["participant_id"] in bot.participants, 10, "the ingest listed")
        await conclave_server.call("POST", f"/meetings/{meeting['number']}/end", token=meeting["host_session"],
                                   json_body={})  # fmt: skip
        await asyncio.sleep(0.2)  # the listener's store write
        [ended] = await list_ingests(conclave_server, meeting)
        assert (ended["state"], ended["end_reason"], ended["connected"]) == ("ended", "meeting_ended", False)
        registry = conclave_server.services.registry
        assert all(made["participant_id"] not in m.participants for m in registry)
    finally:
        await bot.stop()


@needs_ffmpeg
async def test_under_consent_require_an_ingest_is_held_until_its_host_continues(conclave_server, tmp_path):
    """A stream cannot press Continue: while a recording asks for consent its media stays
    paused on the media server; the host continues for it, and the ledger says so."""
    server = conclave_server
    host = await server.new_host(limits={"consent_policy": "require"})
    await server.call("PUT", f"/customers/{host['customer_id']}/storage", token=server.operator_key,
                      json_body={"kind": "local", "root": str(tmp_path / "storage")})  # fmt: skip
    meeting = await server.create_meeting(host=host)
    assert await server.services.recorder.wait_up(30), "the recorder did not come up"
    await server.call("POST", f"/meetings/{meeting['number']}/recording", token=meeting["host_session"],
                      json_body={"action": "start"})  # fmt: skip
    bot = await watched_by_bot(server, meeting)
    ffmpeg = None
    try:
        made = await create_ingest(server, meeting, "rtp", "Held camera")
        assert made["media_held"] is True
        pid = made["participant_id"]
        ffmpeg = await run_verbatim(made["commands"]["ffmpeg"], tmp_path / "")
        await bot.wait_until(lambda: pid in bot.participants, 10, "the ingest listed")
        await asyncio.sleep(3.0)  # ffmpeg sends all along: none of it may come through
        held = bot.find_stats(pid, "camera")
        assert held is None or held.frames == 0, bot.describe()

        path = f"/meetings/{meeting['number']}/ingests/{made['id']}/continue"
        released = await server.call("POST", path, token=meeting["host_session"])
        assert released["media_held"] is False
        await assert_ingest_received(bot, pid, "Held camera")
        ledger = await server.call("GET", f"/meetings/{meeting['number']}/consent", token=meeting["host_session"])
        [entry] = [e for e in ledger["entries"] if e["participant_id"] == pid]
        assert entry["decision"] == "continued" and entry["name"] == "Held camera"
    finally:
        if ffmpeg is not None:
            stop_group(ffmpeg)
        await bot.stop()


async def test_an_ingest_of_a_live_session_that_ended_unheard_is_listed_ended(conclave_server):
    """Control restarted: the meeting's live session was ended at startup, its lifecycle
    listeners never ran; the ingest reads as ended, and a WHIP token for it is refused."""
    meeting = await conclave_server.create_meeting()
    made = await create_ingest(conclave_server, meeting, "whip", "cam")
    await conclave_server.services.store.end_live_session(meeting["meeting_id"], "server_restart")
    [listed] = await list_ingests(conclave_server, meeting)
    assert (listed["state"], listed["end_reason"]) == ("ended", "meeting_ended")
    whip = conclave_server.services.ingests
    record = await conclave_server.services.store.get_meeting(meeting["meeting_id"])
    with pytest.raises(ApiError) as refused:
        await whip.whip_publish(record, made["token"], "v=0\r\n")
    assert (refused.value.status, refused.value.code) == (403, "ingest_revoked")
