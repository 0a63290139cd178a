"""Signaling WebSocket: malformed input, joining, leaving, chat, rate limit (real worker).

These tests use bare sockets (no media); publishing real media is in test_control_media.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket as socket_module
import time
import urllib.parse

import aiohttp
import pytest


async def assert_usable(socket) -> None:
    """The socket still answers: ping gets its pong (or not_joined before join)."""
    await socket.send({"type": "ping", "id": "alive"})
    reply = await socket.recv()
    assert reply.get("id") == "alive" and reply["type"] in ("pong", "error"), reply


async def expect_error(socket, message, code: str, message_id=None) -> dict:
    await socket.send(message)
    reply = await socket.recv()
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply
    assert isinstance(reply["message"], str) and reply["message"]
    if message_id is not None:
        assert reply["id"] == message_id
    else:
        assert "id" not in reply
    return reply


async def test_malformed_messages_get_errors_and_socket_stays_open(conclave_server_factory, signaling_socket, caplog):
    caplog.set_level(logging.DEBUG)
    server = await conclave_server_factory(signaling={"messages_per_second": 1000})
    meeting = await server.create_meeting()
    socket = await signaling_socket(server.ws_url(meeting["meeting_id"]))

    # Before join, only join is accepted.
    await expect_error(socket, {"type": "chat", "text": "hi", "id": 1}, "not_joined", 1)
    await expect_error(socket, {"type": "publish", "sdp": "v=0", "tracks": []}, "not_joined")
    await socket.join("alice")

    bad_inputs = [
        ("not json at all", "bad_json", None),
        ("", "bad_json", None),
        ("[1, 2, 3]", "bad_message", None),
        ('"just a string"', "bad_message", None),
        ({"no_type": True}, "bad_message", None),
        ({"type": 7, "id": "x"}, "bad_message", "x"),
        ({"type": "teleport", "id": 9}, "unknown_type", 9),
        ({"type": "chat", "id": "c"}, "invalid_field", "c"),
        ({"type": "chat", "text": 5}, "invalid_field", None),
        ({"type": "chat", "text": ""}, "invalid_field", None),
        ({"type": "chat", "text": "   "}, "invalid_field", None),
        ({"type": "mute", "source": "microphone"}, "invalid_field", None),
        ({"type": "mute", "source": "nose", "muted": True}, "invalid_field", None),
        ({"type": "mute", "source": "camera", "muted": "yes"}, "invalid_field", None),
        ({"type": "publish", "tracks": []}, "invalid_field", None),
        ({"type": "publish", "sdp": "v=0", "tracks": {"mid": "0"}}, "invalid_field", None),
        ({"type": "publish", "sdp": "v=0", "tracks": [{"mid": "0", "source": "nose"}]}, "invalid_field", None),
        ({"type": "publish", "sdp": "v=0", "tracks": [{"mid": "0", "source": "camera"}] * 2}, "invalid_field", None),
        ({"type": "subscribe", "track_id": "t"}, "invalid_field", None),
        ({"type": "answer"}, "invalid_field", None),
        ({"type": "join", "name": "again"}, "already_joined", None),
        ({"type": "answer", "sdp": "v=0", "id": 3}, "unexpected_answer", 3),
        ({"type": "subscribe", "track_id": "nope", "enabled": False}, "not_found", None),
        ({"type": "publish", "sdp": "garbage", "tracks": [], "id": "p"}, "media_error", "p"),
        ({"type": "ping", "id": {"an": "object"}}, "bad_message", None),
        ("{" * 5000 + "}" * 5000, "bad_json", None),
    ]
    for message, code, message_id in bad_inputs:
        await expect_error(socket, message, code, message_id)
        await assert_usable(socket)

    await socket.ws.send_bytes(b"\x00\x01")
    assert (await socket.recv())["code"] == "bad_message"
    await assert_usable(socket)
    assert not any(record.exc_info for record in caplog.records), "bad input must not log tracebacks"


async def test_join_validation(conclave_server, signaling_socket):
    meeting = await conclave_server.create_meeting()
    socket = await signaling_socket(conclave_server.ws_url(meeting["meeting_id"]))
    token = (await conclave_server.join(meeting, "Ada"))["token"]
    for name in ("", "   ", "x" * 65, 12, "bad\x00name"):
        await expect_error(socket, {"type": "join", "name": name, "token": token, "id": "j"}, "invalid_field", "j")
        status, body, _ = await conclave_server.api(
            "POST", f"/meetings/{meeting['number']}/join", json_body={"name": name, "passcode": meeting["passcode"]}
        )
        assert (status, body["error"]["code"]) == (400, "invalid_field"), body
    for bad_token in ("", "x" * 5000, 7):
        await expect_error(socket, {"type": "join", "token": bad_token, "id": "t"}, "invalid_field", "t")
    await expect_error(socket, {"type": "join", "name": "Ada", "id": "n"}, "unauthorized", "n")
    await expect_error(socket, {"type": "join", "token": token[:-4] + "AAAA", "id": "s"}, "unauthorized", "s")
    joined = await socket.join("  Ada  ", token=token, id="ok")
    assert joined["id"] == "ok"
    assert joined["meeting_id"] == meeting["meeting_id"]
    assert joined["role"] == "participant"
    assert joined["participants"] == [] and joined["tracks"] == [] and joined["chat"] == []
    assert joined["ice_servers"] == []


async def test_an_oversized_message_closes_the_socket_1009(conclave_server_factory, signaling_socket):
    """A message over max_message_bytes is refused by its frame header (never read): the
    socket closes with 1009 Message Too Big (docs/signaling.md). Up to the limit is fine."""
    server = await conclave_server_factory(signaling={"max_message_bytes": 1000})
    meeting = await server.create_meeting()
    socket = await signaling_socket(server.ws_url(meeting["meeting_id"]))
    await socket.join("alice")
    await socket.send({"type": "chat", "text": "x" * 900})
    assert (await socket.recv_type("chat"))["message"]["text"] == "x" * 900
    await socket.send({"type": "chat", "text": "é" * 600})  # 1200 bytes in UTF-8
    assert await socket.expect_close() == 1009


async def test_a_two_megabyte_message_closes_1009_and_nothing_is_kept(conclave_server, signaling_socket):
    meeting = await conclave_server.create_meeting()
    socket = await signaling_socket(conclave_server.ws_url(meeting["meeting_id"]))
    await socket.join("alice")
    await socket.send({"type": "chat", "text": "x" * (2 * 1024 * 1024)})
    assert await socket.expect_close() == 1009
    assert not conclave_server.services.registry.get(meeting["meeting_id"]).participants  # alice left


async def test_participants_see_each_other_join_update_and_leave(conclave_server, signaling_socket):
    meeting_id = (await conclave_server.create_meeting())["meeting_id"]
    alice = await signaling_socket(conclave_server.ws_url(meeting_id))
    bob = await signaling_socket(conclave_server.ws_url(meeting_id))
    alice_joined = await alice.join("alice")
    bob_joined = await bob.join("bob")
    alice_id, bob_id = alice_joined["participant_id"], bob_joined["participant_id"]
    assert alice_id != bob_id
    assert bob_joined["participants"] == [
        {"participant_id": alice_id, "name": "alice", "role": "participant", "muted": {"microphone": False, "camera": False}}
    ]
    seen = (await alice.recv_change("joined"))["joined"]
    assert [(p["participant_id"], p["name"]) for p in seen] == [(bob_id, "bob")]

    await bob.send({"type": "mute", "source": "microphone", "muted": True, "id": 5})
    for socket in (alice, bob):
        updated = (await socket.recv_change("updated"))["updated"]
        assert [p["participant_id"] for p in updated] == [bob_id]
        assert updated[0]["muted"]["microphone"] is True
    assert {"type": "ok", "id": 5} in bob.seen  # at once; the update came with the next batch

    await bob.send({"type": "leave", "id": "bye"})
    assert (await bob.recv_type("ok"))["id"] == "bye"
    closing = await bob.ws.receive(5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert (await alice.recv_change("left"))["left"] == [bob_id]

    charlie = await signaling_socket(conclave_server.ws_url(meeting_id))
    joined = await charlie.join("charlie")
    assert [p["participant_id"] for p in joined["participants"]] == [alice_id]


async def test_socket_close_removes_participant(conclave_server, signaling_socket):
    meeting_id = (await conclave_server.create_meeting())["meeting_id"]
    alice = await signaling_socket(conclave_server.ws_url(meeting_id))
    bob = await signaling_socket(conclave_server.ws_url(meeting_id))
    await alice.join("alice")
    bob_id = (await bob.join("bob"))["participant_id"]
    await alice.recv_change("joined")  # (one who comes and goes within a window is never mentioned)
    await bob.close()
    assert (await alice.recv_change("left"))["left"] == [bob_id]
    meeting = conclave_server.services.registry.get(meeting_id)
    assert list(meeting.participants) != [] and bob_id not in meeting.participants


async def test_chat_order_and_fan_out(conclave_server, signaling_socket):
    meeting_id = (await conclave_server.create_meeting())["meeting_id"]
    sockets = [await signaling_socket(conclave_server.ws_url(meeting_id)) for _ in range(3)]
    names = ["ann", "ben", "cat"]
    ids = [(await s.join(n))["participant_id"] for s, n in zip(sockets, names)]
    before = int(time.time() * 1000)

    # Everyone sends at once; everybody must see all 15 in one and the same order.
    async def talk(index: int) -> None:
        for n in range(5):
            await sockets[index].send({"type": "chat", "text": f"{names[index]} says {n}"})

    await asyncio.gather(*(talk(i) for i in range(3)))
    received = []
    for socket in sockets:
        chats = [(await socket.recv_type("chat"))["message"] for _ in range(15)]
        received.append(chats)
    assert received[0] == received[1] == received[2]
    chats = received[0]
    assert [m["seq"] for m in chats] == list(range(1, 16))
    for message in chats:
        sender = names.index(message["text"].split()[0])
        assert message["name"] == names[sender] and message["participant_id"] == ids[sender]
        assert isinstance(message["ts"], int) and abs(message["ts"] - before) < 3_600_000  # ms since epoch
    for name in names:  # each sender's own messages keep their order
        assert [m["text"] for m in chats if m["name"] == name] == [f"{name} says {n}" for n in range(5)]

    late = await signaling_socket(conclave_server.ws_url(meeting_id))
    joined = await late.join("dan")
    assert joined["chat"] == chats


async def test_chat_history_is_bounded_and_text_limited(conclave_server_factory, signaling_socket):
    server = await conclave_server_factory(signaling={"chat_history": 3, "chat_max_chars": 10})
    meeting_id = (await server.create_meeting())["meeting_id"]
    socket = await signaling_socket(server.ws_url(meeting_id))
    await socket.join("ann")
    await expect_error(socket, {"type": "chat", "text": "x" * 11}, "invalid_field")
    for n in range(5):
        await socket.send({"type": "chat", "text": f"m{n}"})
        await socket.recv_type("chat")
    late = await signaling_socket(server.ws_url(meeting_id))
    joined = await late.join("ben")
    assert [(m["seq"], m["text"]) for m in joined["chat"]] == [(3, "m2"), (4, "m3"), (5, "m4")]


async def test_rate_limit(conclave_server_factory, signaling_socket):
    """Over the bucket a frame is dropped unread: one rate_limited error (no id: the frame
    was not parsed) a second at most, then the tokens come back."""
    server = await conclave_server_factory(signaling={"messages_per_second": 5})
    meeting_id = (await server.create_meeting())["meeting_id"]
    socket = await signaling_socket(server.ws_url(meeting_id))
    await socket.join("spammer")
    await asyncio.sleep(1.0)  # the join's token back
    for n in range(12):
        await socket.send({"type": "ping", "id": n})
    replies = []
    with contextlib.suppress(asyncio.TimeoutError):
        while True:
            replies.append(await socket.recv(timeout=0.5))
    pongs = [r for r in replies if r["type"] == "pong"]
    limited = [r for r in replies if r["type"] == "error"]
    assert len(pongs) == 5 and [p["id"] for p in pongs] == [0, 1, 2, 3, 4]
    assert limited == [{"type": "error", "code": "rate_limited", "message": limited[0]["message"]}]
    # The socket is still open; tokens come back over time.
    await asyncio.sleep(1.0)
    await socket.send({"type": "ping", "id": "later"})
    assert await socket.recv() == {"type": "pong", "id": "later"}


async def test_a_flood_is_dropped_unread_then_the_socket_is_closed(conclave_server_factory, signaling_socket):
    """Frames past the bucket are not parsed (not even as JSON: the metric of invalid
    messages does not move) and a socket that keeps far over its rate is closed (1008)."""
    server = await conclave_server_factory(signaling={"messages_per_second": 5})
    meeting_id = (await server.create_meeting())["meeting_id"]
    socket = await signaling_socket(server.ws_url(meeting_id))
    await socket.join("flooder")
    metrics = server.services.metrics
    invalid_before = metrics.signaling_messages.get("invalid")
    for _ in range(200):  # 5 s of patience at 5/s is 25 excess frames
        await socket.send("{not json")
    assert await socket.expect_close() == 1008
    assert metrics.signaling_messages.get("invalid") - invalid_before <= 5  # only what the bucket let in
    assert metrics.signaling_refused.get("flood") == 1


async def test_bytes_per_second_are_capped_per_socket(conclave_server_factory, signaling_socket):
    server = await conclave_server_factory(
        signaling={"messages_per_second": 1000, "bytes_per_second": 20000, "max_message_bytes": 10000}
    )
    meeting_id = (await server.create_meeting())["meeting_id"]
    socket = await signaling_socket(server.ws_url(meeting_id))
    await socket.join("talker")
    for n in range(4):  # 4 x 9 kB in one go: the byte bucket holds 20 kB
        await socket.send({"type": "ping", "id": n, "pad": "x" * 9000})
    replies = []
    with contextlib.suppress(asyncio.TimeoutError):
        while True:
            replies.append(await socket.recv(timeout=0.5))
    assert [r["type"] for r in replies] == ["pong", "pong", "error"] and replies[2]["code"] == "rate_limited"


async def test_sockets_that_do_not_join_are_capped(conclave_server_factory, signaling_socket):
    server = await conclave_server_factory(signaling={"max_unjoined_sockets_per_address": 3,
                                                      "max_unjoined_sockets": 5})  # fmt: skip
    meeting = await server.create_meeting()
    url = server.ws_url(meeting)
    idle = [await signaling_socket(url) for _ in range(3)]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.status == 429
        # Another client still gets in, until everyone's cap.
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as other:
            more = [await other.ws_connect(url) for _ in range(2)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await other.ws_connect(url)
            assert refused.value.status == 503
            for ws in more:
                await ws.close()
    # Joining frees the place.
    await idle[0].join("ann")
    fresh = await signaling_socket(url)
    await fresh.join("ben")


async def test_a_foreign_origin_cannot_open_the_socket(conclave_server_factory):
    server = await conclave_server_factory(signaling={"allowed_origins": ("https://app.example.com",)})
    meeting = await server.create_meeting()
    url = server.ws_url(meeting)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        for origin in (server.base_url, "https://app.example.com", None):
            headers = {"Origin": origin} if origin else {}
            ws = await session.ws_connect(url, headers=headers)
            await ws.close()


async def test_public_url_is_the_origin_when_set(conclave_server_factory):
    server = await conclave_server_factory(http={"public_url": "https://meet.example.com"})
    meeting = await server.create_meeting()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(server.ws_url(meeting), headers={"Origin": server.base_url})
        ws = await session.ws_connect(server.ws_url(meeting), headers={"Origin": "https://meet.example.com"})
        await ws.close()


def client_frame(text: str) -> bytes:
    """One masked text frame, as a client sends it (RFC 6455 section 5.2)."""
    payload, mask = text.encode(), os.urandom(4)
    size = len(payload)
    header = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_client_that_does_not_read_is_cut_off(conclave_server_factory):
    """The outbox is capped in bytes: a client that joins and never reads (a raw socket
    with a tiny receive buffer) cannot make the server hold others' chat for it."""
    server = await conclave_server_factory(signaling={"max_outbox_bytes": 65536, "messages_per_second": 1000})
    meeting = await server.create_meeting()
    token = (await server.join(meeting, "sleeper"))["token"]
    sock = socket_module.socket()
    sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 4096)
    host, port = server.base_url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    path = urllib.parse.urlsplit(server.ws_url(meeting, token)).path + f"?token={token}"
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    writer.write(client_frame(json.dumps({"type": "join"})))
    await writer.drain()
    sessions = server.services.signaling.sessions
    for _ in range(100):  # joined: its server side is found by name
        sleeper = next((s for s in sessions if s.participant is not None and s.participant.name == "sleeper"), None)
        if sleeper is not None:
            break
        await asyncio.sleep(0.05)
    assert sleeper is not None
    # A small send buffer on the server's side too, so the test needs little traffic.
    sleeper._ws._writer.transport.get_extra_info("socket").setsockopt(  # noqa: SLF001
        socket_module.SOL_SOCKET, socket_module.SO_SNDBUF, 4096
    )
    async with aiohttp.ClientSession() as session:
        talker = await session.ws_connect(server.ws_url(meeting))
        await talker.send_json({"type": "join", "token": (await server.join(meeting, "talker"))["token"]})
        metrics = server.services.metrics
        for n in range(300):
            await talker.send_json({"type": "chat", "text": f"{n:04d} " + "y" * 1900})
            if metrics.signaling_refused.get("outbox_full"):
                break
            await asyncio.sleep(0.002)
        assert metrics.signaling_refused.get("outbox_full") == 1
        for _ in range(100):
            if sleeper not in sessions:
                break
            await asyncio.sleep(0.05)
        assert sleeper not in sessions  # cut off and gone
        await talker.close()
    writer.close()


async def test_meeting_full(conclave_server_factory, signaling_socket):
    # The host counts: with room for three, the host and two more.
    server = await conclave_server_factory(signaling={"max_participants_per_meeting": 3})
    meeting = await server.create_meeting()
    for name in ("a", "b"):
        await (await signaling_socket(server.ws_url(meeting["meeting_id"]))).join(name)
    status, body, _ = await server.api(
        "POST", f"/meetings/{meeting['number']}/join", json_body={"name": "c", "passcode": meeting["passcode"]}
    )
    assert (status, body["error"]["code"]) == (403, "meeting_full"), body


async def test_host_lists_participants(conclave_server, signaling_socket):
    meeting = await conclave_server.create_meeting()
    socket = await signaling_socket(conclave_server.ws_url(meeting["meeting_id"]))
    ann_id = (await socket.join("ann"))["participant_id"]
    listed = await conclave_server.call(
        "GET", f"/meetings/{meeting['number']}/participants", token=meeting["host_session"]
    )
    assert listed["waiting"] == []
    people = {p["participant_id"]: p for p in listed["admitted"]}
    assert people[ann_id]["name"] == "ann" and people[ann_id]["connected"] is True
    assert people[meeting["host_participant_id"]]["role"] == "host"


async def test_identity_comes_from_the_token(conclave_server, signaling_socket):
    """A participant_id in `join` claims nothing: the token says who joins."""
    meeting_id = (await conclave_server.create_meeting())["meeting_id"]
    alice = await signaling_socket(conclave_server.ws_url(meeting_id))
    alice_id = (await alice.join("alice"))["participant_id"]
    mallory = await signaling_socket(conclave_server.ws_url(meeting_id))
    joined = await mallory.join("mallory", participant_id=alice_id)
    assert joined["participant_id"] != alice_id
    seen = (await alice.recv_change("joined"))["joined"]
    assert [p["participant_id"] for p in seen] == [joined["participant_id"]]
    await assert_usable(alice)  # alice was not replaced


async def test_rejoin_replaces_the_old_connection(conclave_server, signaling_socket):
    meeting_id = (await conclave_server.create_meeting())["meeting_id"]
    watcher = await signaling_socket(conclave_server.ws_url(meeting_id))
    await watcher.join("watcher")
    first = await signaling_socket(conclave_server.ws_url(meeting_id))
    participant_id = (await first.join("ann"))["participant_id"]
    second = await signaling_socket(conclave_server.ws_url(meeting_id))
    joined = await second.join("ann", token=first.token)  # the same participant, again
    assert joined["participant_id"] == participant_id
    assert await first.expect_close() is not None  # (after what was still on its way to it)
    # The old connection left and the new one joined: to the others, one join (coalesced
    # within the window) or a leave then a join (across two windows).
    change = await watcher.recv_type("participants_changed")
    if change.get("left"):
        assert change["left"] == [participant_id] and not change.get("joined")
        change = await watcher.recv_change("joined")
    assert [p["participant_id"] for p in change["joined"]] == [participant_id]
    assert len(conclave_server.services.registry.get(meeting_id).participants) == 2


async def test_json_error_text_is_never_echoed_raw(conclave_server, signaling_socket):
    meeting_id = (await conclave_server.create_meeting())["meeting_id"]
    socket = await signaling_socket(conclave_server.ws_url(meeting_id))
    await socket.join("ann")
    reply = await expect_error(socket, {"type": "x" * 10_000}, "unknown_type")
    assert len(json.dumps(reply)) < 500


async def test_a_client_that_never_answers_an_offer_is_disconnected(conclave_server_factory, signaling_socket):
    server = await conclave_server_factory(signaling={"answer_timeout_s": 1.0})
    meeting = await server.create_meeting()
    publisher = server.bot(meeting, "publisher")
    try:
        await publisher.start(publish_video=False)
        silent = await signaling_socket(server.ws_url(meeting["meeting_id"]))
        joined = await silent.join("silent")
        offer = await silent.recv_type("offer", timeout=10)  # the publisher's microphone
        assert any(t["source"] == "microphone" for t in offer["tracks"])
        # No answer: renegotiation would wait forever, so the socket is closed (1008).
        assert await silent.expect_close(timeout=5) == 1008
        await publisher.wait_until(
            lambda: joined["participant_id"] not in publisher.participants, 5, "the silent one gone"
        )
    finally:
        await publisher.stop()


async def test_an_answered_offer_keeps_the_client(conclave_server_factory):
    server = await conclave_server_factory(signaling={"answer_timeout_s": 1.0})
    meeting = await server.create_meeting()
    alice, bob = server.bot(meeting, "alice"), server.bot(meeting, "bob")
    try:
        await alice.start(publish_video=False)
        await bob.start(publish_video=False)
        await bob.wait_for_frames(alice.participant_id, "microphone", 5, timeout=15)
        await asyncio.sleep(1.5)  # past the timeout: answered offers set no deadline
        assert bob.participant_id in alice.participants and alice.participant_id in bob.participants
    finally:
        await asyncio.gather(alice.stop(), bob.stop(), return_exceptions=True)
