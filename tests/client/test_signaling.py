"""SignalingClient against a small in-test WebSocket peer that speaks docs/signaling.md.

The peer here is a test double of the control server for the client's unit tests;
the end-to-end tests (test_bot.py) use the real server.
"""

import asyncio
import json

import pytest
from aiohttp import web

from client.bot import meeting_ws_url, parse_meeting_link
from client.signaling import SignalingClient, SignalingClosed, SignalingError


class FakeServer:
    """Answers join/ping/publish/chat/leave; `publish` with sdp "slow" answers late."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/meetings/{meeting_id}/ws", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for ws in self.sockets:
            await ws.close()
        assert self.runner is not None
        await self.runner.cleanup()

    async def push(self, msg: dict) -> None:
        for ws in self.sockets:
            await ws.send_json(msg)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        tasks = set()
        async for frame in ws:
            msg = json.loads(frame.data)
            self.received.append(msg)
            task = asyncio.create_task(self.answer(ws, request.match_info["meeting_id"], msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if msg["type"] == "leave":
                await task
                break
        await ws.close()
        return ws

    async def answer(self, ws: web.WebSocketResponse, meeting_id: str, msg: dict) -> None:
        reply: dict
        kind = msg["type"]
        if kind == "join":
            reply = {
                "type": "joined",
                "participant_id": "p1",
                "meeting_id": meeting_id,
                "participants": [],
                "tracks": [],
                "chat": [],
                "ice_servers": [],
            }
        elif kind == "ping":
            reply = {"type": "pong"}
        elif kind == "publish":
            if msg["sdp"] == "slow":
                await asyncio.sleep(0.2)
            reply = {"type": "publish_answer", "sdp": "answer-to-" + msg["sdp"], "tracks": []}
        elif kind == "chat":
            message = {"seq": 1, "participant_id": "p1", "name": "n", "text": msg["text"], "ts": 0}
            await ws.send_json({"type": "chat", "message": message})
            return
        elif kind == "leave":
            return
        else:
            reply = {"type": "error", "code": "unknown_type", "message": f"unknown type {kind}"}
        if "id" in msg:
            reply["id"] = msg["id"]
        await ws.send_json(reply)


@pytest.fixture
async def server():
    fake = FakeServer()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def client(server):
    signaling = SignalingClient()
    await signaling.connect(meeting_ws_url(server.url, "m1"))
    yield signaling
    await signaling.close()


async def test_join_returns_joined_and_records_participant_id(client, server):
    joined = await client.join("alice")
    assert joined["type"] == "joined"
    assert joined["meeting_id"] == "m1"
    assert client.participant_id == "p1"
    assert server.received[0]["type"] == "join" and server.received[0]["name"] == "alice"
    assert "token" not in server.received[0]


async def test_join_sends_the_token(client, server):
    await client.join(token="a.b.c")
    assert server.received[0] == {"type": "join", "token": "a.b.c", "id": server.received[0]["id"]}


async def test_concurrent_requests_get_their_own_replies(client):
    slow = asyncio.create_task(client.request({"type": "publish", "sdp": "slow", "tracks": []}))
    fast = asyncio.create_task(client.request({"type": "publish", "sdp": "fast", "tracks": []}))
    assert (await fast)["sdp"] == "answer-to-fast"
    assert not slow.done()
    assert (await slow)["sdp"] == "answer-to-slow"


async def test_error_reply_raises_signaling_error(client):
    with pytest.raises(SignalingError) as caught:
        await client.request({"type": "bogus"})
    assert caught.value.code == "unknown_type"
    # The socket stays usable after an error.
    assert (await client.ping())["type"] == "pong"


async def test_pushes_reach_handlers_and_streams(client, server):
    await client.join("alice")
    seen = []
    client.on("participant_joined", seen.append)
    async_seen = []

    async def async_handler(msg):
        async_seen.append(msg)

    client.on("*", async_handler)
    with client.events("participant_joined", "offer") as stream:
        await server.push({"type": "participant_left", "participant_id": "x"})
        await server.push({"type": "participant_joined", "participant": {"participant_id": "p2"}})
        await server.push({"type": "offer", "sdp": "v=0", "tracks": []})
        first = await stream.get(timeout=5)
        second = await stream.get(timeout=5)
    assert first["type"] == "participant_joined"
    assert second["type"] == "offer"
    assert [m["participant"]["participant_id"] for m in seen] == ["p2"]
    await asyncio.sleep(0)  # let the async handler tasks run
    assert [m["type"] for m in async_seen] == ["participant_left", "participant_joined", "offer"]


async def test_chat_and_wait_for(client):
    await client.join("alice")
    waiting = asyncio.create_task(client.wait_for("chat", lambda m: m["message"]["text"] == "hi"))
    await asyncio.sleep(0)
    await client.send_chat("hi")
    msg = await waiting
    assert msg["message"]["text"] == "hi"


async def test_server_close_fails_pending_requests_and_ends_streams(client, server):
    await client.join("alice")
    stream = client.events()
    pending = asyncio.create_task(client.request({"type": "publish", "sdp": "slow", "tracks": []}))
    await asyncio.sleep(0.05)
    for ws in server.sockets:
        await ws.close()
    with pytest.raises(SignalingClosed):
        await pending
    with pytest.raises(SignalingClosed):
        await stream.get(timeout=5)
    await asyncio.wait_for(client.wait_closed(), 5)
    assert not client.connected
    with pytest.raises(SignalingClosed):
        await client.send({"type": "ping"})


async def test_leave_waits_for_server_close(client, server):
    await client.join("alice")
    await client.leave(timeout=5)
    assert not client.connected
    assert server.received[-1]["type"] == "leave"


async def test_id_less_joined_reply_still_answers_join(server):
    """A server that echoes ids only in some replies still completes join()."""
    original = server.answer

    async def answer_without_id(ws, meeting_id, msg):
        msg = {k: v for k, v in msg.items() if k != "id"}
        await original(ws, meeting_id, msg)

    server.answer = answer_without_id
    signaling = SignalingClient()
    await signaling.connect(meeting_ws_url(server.url, "m1"))
    try:
        assert (await signaling.join("bob"))["participant_id"] == "p1"
    finally:
        await signaling.close()


def test_urls():
    assert meeting_ws_url("http://127.0.0.1:8080", "abc") == "ws://127.0.0.1:8080/api/v1/meetings/abc/ws"
    assert meeting_ws_url("https://h/prefix/", "abc", "t=1") == "wss://h/prefix/api/v1/meetings/abc/ws?t=1"
    assert parse_meeting_link("http://127.0.0.1:8080/m/abc") == ("http://127.0.0.1:8080", "abc", "")
    assert parse_meeting_link("http://h:1/x/m/abc?t=2") == ("http://h:1/x", "abc", "t=2")
    assert parse_meeting_link("http://h:1/api/v1/meetings/abc") == ("http://h:1", "abc", "")
    assert parse_meeting_link("http://h:1/") == ("http://h:1", None, "")
    with pytest.raises(ValueError):
        parse_meeting_link("abc")
