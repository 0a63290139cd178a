"""The bot SDK's side of recording (client/recording.py, bot.py, botcli.py) against
`RecordingServer`, a small aiohttp WebSocket peer in this file that speaks the recording
messages of docs/signaling.md: `recording_state` pushes, `recording`/`transcription`
commands (host only), `consent`. Its subscribe offers come from a real aiortc peer
connection, with the announcement track described as the server describes it (source
"announcement", participant_id null). The real server is exercised by the end-to-end
tests (tests/control/static/test_recording.py and tests/control/recording/).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from client.bot import Bot
from client.media import ToneAudioTrack
from client.peer import loopback_gathering, sdp_mid_by_track_id
from client.recording import RecordingState, RecordingWatcher
from client.signaling import SignalingError
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
TOKENS = {"t-host": ("host", "Hana Host"), "t-guest": ("participant", "Gus"), "t-other": ("participant", "Olga")}


class Member:
    """One joined socket of RecordingServer."""

    def __init__(self, ws: web.WebSocketResponse, pid: str, role: str, name: str) -> None:
        self.ws, self.pid, self.role, self.name = ws, pid, role, name
        self.consented = False
        self.answers: asyncio.Queue[str] = asyncio.Queue()


class RecordingServer:
    """The server's half of the signaling socket, as far as recording goes."""

    def __init__(self, consent_policy: str = "notify") -> None:
        self.consent_policy = consent_policy
        self.recording = False
        self.transcription = False
        self.by: str | None = None
        self.members: list[Member] = []
        self.received: list[tuple[str, dict]] = []  # (participant id, message)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/meetings/{meeting}/ws", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        for member in self.members:
            await member.ws.close()
        assert self.runner is not None
        await self.runner.cleanup()

    def state_for(self, member: Member) -> dict:
        on = self.recording or self.transcription
        return {"type": "recording_state", "recording": self.recording, "transcription": self.transcription,
                "consent_policy": self.consent_policy,
                "consent_required": on and self.consent_policy == "require" and not member.consented,
                "by": self.by}

    async def broadcast_state(self) -> None:
        for member in list(self.members):
            if not member.ws.closed:
                await member.ws.send_json(self.state_for(member))

    def sent(self, msg_type: str) -> list[dict]:
        return [msg for _, msg in self.received if msg.get("type") == msg_type]

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        role, name = TOKENS.get(request.query.get("token", ""), ("participant", "?"))
        member = Member(ws, f"p{len(self.members) + 1}", role, name)
        async for frame in ws:
            msg = json.loads(frame.data)
            self.received.append((member.pid, msg))
            echo = {"id": msg["id"]} if "id" in msg else {}
            kind = msg["type"]
            if kind == "join":
                self.members.append(member)
                await ws.send_json({"type": "joined", "participant_id": member.pid, "meeting_id": "m1",
                                    "role": role, "participants": [], "tracks": [], "chat": [],
                                    "ice_servers": [], **echo})
                if self.recording or self.transcription:  # a joiner hears at once what is on
                    await ws.send_json(self.state_for(member))
            elif kind in ("recording", "transcription"):
                if role != "host":
                    await ws.send_json({"type": "error", "code": "forbidden",
                                        "message": f"only the host may change {kind}", **echo})
                    continue
                setattr(self, kind, msg["action"] == "start")
                self.by = name
                await ws.send_json({"type": "ok", **echo})
                await self.broadcast_state()
            elif kind == "consent":
                member.consented = msg["decision"] == "continue"
                await ws.send_json({"type": "ok", **echo})
                if msg["decision"] == "leave":
                    break
            elif kind == "answer":
                member.answers.put_nowait(msg["sdp"])
            elif kind == "leave":
                break
        if member in self.members:
            self.members.remove(member)
        await ws.close()
        return ws


@pytest.fixture
async def server():
    instance = RecordingServer()
    await instance.start()
    yield instance
    await instance.stop()


@contextlib.asynccontextmanager
async def joined_bot(server: RecordingServer, token: str):
    bot = Bot(server.url, "m1", TOKENS[token][1], token=token)
    try:
        await bot.start(publish_audio=False, publish_video=False)
        yield bot
    finally:
        await bot.stop()


# ---------------------------------------------------------------- RecordingState (no I/O)


def test_recording_state_reads_messages_strictly_and_describes_them():
    on = RecordingState.from_message({"type": "recording_state", "recording": True, "transcription": False,
                                      "consent_policy": "require", "consent_required": True, "by": "Ada"})
    assert on == RecordingState(True, False, "require", True, "Ada") and on.active
    junk = RecordingState.from_message({"recording": "true", "transcription": 1, "consent_policy": "always",
                                        "consent_required": "yes", "by": ""})
    assert junk == RecordingState() and not junk.active
    both = RecordingState(recording=True, transcription=True)
    assert on.describe() == "This meeting is being recorded (started by Ada); consent required: continue or leave"
    assert both.describe() == "This meeting is being recorded and transcribed"
    assert RecordingState(transcription=True).describe() == "This meeting is being transcribed"
    assert RecordingState().describe(both) == "Recording and transcription stopped"
    assert RecordingState().describe(RecordingState(recording=True)) == "Recording stopped"
    assert RecordingState().describe() == "Recording and transcription are off"


async def test_watcher_calls_back_and_wakes_waiters_in_order():
    watcher = RecordingWatcher()
    seen: list[RecordingState] = []
    async_seen: list[RecordingState] = []

    async def later(state: RecordingState) -> None:
        async_seen.append(state)

    remove = watcher.on_change(seen.append)
    watcher.on_change(later)
    watcher.on_change(lambda state: 1 / 0)  # a broken callback does not stop the others
    nxt = asyncio.create_task(watcher.next())
    transcribing = asyncio.create_task(watcher.wait(lambda s: s.transcription, timeout=5))
    await asyncio.sleep(0)
    watcher.handle({"recording": True})
    assert (await nxt).recording and not transcribing.done()
    watcher.handle({"recording": True, "transcription": True})
    assert (await transcribing).transcription
    # Already true now: wait() returns at once, next() waits for a new message.
    assert (await watcher.wait(lambda s: s.recording, timeout=0.1)).recording
    with pytest.raises(TimeoutError):
        await watcher.next(timeout=0.05)
    remove()
    watcher.handle({})
    await asyncio.sleep(0)
    assert [s.transcription for s in seen] == [False, True]
    assert [s.active for s in async_seen] == [True, True, False]
    assert [s.active for s in watcher.history] == [True, True, False]


# ---------------------------------------------------------------- the bot against the peer


async def test_host_starts_and_stops_and_everyone_is_told(server):
    async with joined_bot(server, "t-host") as host, joined_bot(server, "t-guest") as guest:
        notices: list[RecordingState] = []
        guest.on("recording_state", notices.append)
        assert guest.recording_state == RecordingState()

        next_state = asyncio.create_task(guest.next_recording_state(timeout=5))
        reply = await host.start_recording()
        assert reply["type"] == "ok"
        state = await next_state
        assert state == RecordingState(recording=True, by="Hana Host")
        assert guest.recording_state == state and host.recording_state.recording

        await host.start_transcription()
        await guest.wait_recording_state(lambda s: s.transcription, timeout=5)
        await host.stop_recording()
        await host.stop_transcription()
        await guest.wait_recording_state(lambda s: not s.active, timeout=5)
        assert [(s.recording, s.transcription) for s in notices] == [
            (True, False), (True, True), (False, True), (False, False)]
        assert [(m["type"], m["action"]) for _, m in server.received if m["type"] in ("recording", "transcription")] == [
            ("recording", "start"), ("transcription", "start"), ("recording", "stop"), ("transcription", "stop")]
        # The notices are pushes like any other: in the bot's log too, never errors.
        assert sum(1 for m in guest.pushes if m["type"] == "recording_state") == 4
        assert not guest.errors and not host.errors


async def test_a_participant_is_refused_and_a_late_joiner_is_told_at_once(server):
    async with joined_bot(server, "t-host") as host, joined_bot(server, "t-guest") as guest:
        with pytest.raises(SignalingError) as refused:
            await guest.start_recording()
        assert refused.value.code == "forbidden"
        assert not guest.recording_state.recording
        await host.start_recording()
        async with joined_bot(server, "t-other") as late:
            state = await late.wait_recording_state(lambda s: s.recording, timeout=5)
            assert state.by == "Hana Host"


async def test_consent_continue_then_leave(server):
    server.consent_policy = "require"
    async with joined_bot(server, "t-host") as host:
        await host.start_recording()
        async with joined_bot(server, "t-guest") as guest, joined_bot(server, "t-other") as other:
            for bot in (guest, other):
                state = await bot.wait_recording_state(lambda s: s.consent_required, timeout=5)
                assert state.consent_policy == "require"
            reply = await guest.consent("continue")
            assert reply is not None and reply["type"] == "ok"
            assert not guest.recording_state.consent_required
            with pytest.raises(ValueError):
                await guest.consent("maybe")

            assert await other.consent("leave") is None
            assert other.left_by_consent.is_set()
            assert other.signaling is not None and not other.signaling.connected
            decisions = [(pid, m["decision"]) for pid, m in server.received if m["type"] == "consent"]
            assert decisions == [(guest.participant_id, "continue"), (other.participant_id, "leave")]
            # The next notice to the one who continued no longer asks.
            await host.start_transcription()
            state = await guest.wait_recording_state(lambda s: s.transcription, timeout=5)
            assert not state.consent_required


async def offer_with_announcement(member: Member, tracks: list[tuple]) -> tuple[RTCPeerConnection, dict]:
    """A subscribe offer from a real aiortc peer; tracks: [(track, participant_id, source)]."""
    pc = RTCPeerConnection()
    for track, _, _ in tracks:
        pc.addTransceiver(track, direction="sendonly")
    with loopback_gathering(True):
        await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    mids = sdp_mid_by_track_id(sdp)
    entries = [{"mid": mids[track.id], "track_id": "announcer" if pid is None else track.id, "participant_id": pid,
                "source": source, "kind": "audio", "active": True} for track, pid, source in tracks]
    return pc, {"type": "offer", "sdp": sdp, "tracks": entries}


async def test_the_announcement_track_is_received_but_belongs_to_nobody(server):
    announcement, voice = ToneAudioTrack(660.0), ToneAudioTrack(330.0)
    async with joined_bot(server, "t-guest") as guest:
        member = next(m for m in server.members if m.pid == guest.participant_id)
        pc, offer = await offer_with_announcement(member, [(voice, "p9", "microphone"),
                                                           (announcement, None, "announcement")])
        try:
            await member.ws.send_json(offer)
            answer = await asyncio.wait_for(member.answers.get(), 10)
            assert answer.count("m=audio") == 2  # both m-lines accepted
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

            stats = await guest.wait_for_frames(None, "announcement", count=10, timeout=20)
            assert stats is guest.announcement
            assert stats.participant_id is None and stats.source == "announcement" and stats.track_id == "announcer"
            assert stats.sample_rate == 48000 and stats.peak > 0
            await guest.wait_for_frames("p9", "microphone", count=5, timeout=20)
            # Nobody's track: not a participant, not among the participants' tracks.
            assert guest.participants == {}
            assert set(guest.received) == {"p9"} and set(guest.received["p9"]) == {"microphone"}
            assert "announcement:" in guest.describe()
        finally:
            await pc.close()
            announcement.stop()
            voice.stop()


@pytest.mark.process
async def test_cli_prints_notices_and_consents_when_told(server):
    server.consent_policy = "require"
    async with joined_bot(server, "t-host") as host:
        await host.start_recording()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "client.bot", f"{server.url}/m/m1", "--token", "t-guest",
            "--name", "cli", "--duration", "3", "--no-audio", "--no-video", "--consent", "continue",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        try:
            async with asyncio.timeout(30):
                while not server.sent("consent"):
                    await asyncio.sleep(0.1)
            await host.stop_recording()
            stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    output = stdout.decode()
    assert process.returncode == 0, stderr.decode()
    lines = [line for line in output.splitlines() if line.startswith(("notice:", "consent"))]
    assert lines == [
        "notice: This meeting is being recorded (started by Hana Host); consent required: continue or leave",
        "consent: continue",
        "notice: Recording stopped",
    ], output
    assert server.sent("consent") == [{"type": "consent", "decision": "continue", "id": server.sent("consent")[0]["id"]}]
    assert "left the meeting" in output
