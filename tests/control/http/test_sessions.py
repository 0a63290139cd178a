"""Live meetings (issue 4): start and the host limit, host sign-in, who may use the host's
controls, joining (passcode, link, brute force, enumeration), the waiting room, removal,
locking, ending and suspension, over real HTTP and raw signaling sockets (real worker)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from control.meeting import closecodes

JOIN_CLOSE_TIMEOUT_S = 2.0  # the contract: sockets close within 2 s of the action


async def rest_join(server, meeting, name="guest", **body):
    """POST .../join; (status, body, headers)."""
    payload = {"name": name, **body}
    if "passcode" not in body and "link_token" not in body:
        payload["passcode"] = meeting["passcode"]
    return await server.api("POST", f"/meetings/{meeting['number']}/join", json_body=payload)


async def waiting_socket(server, signaling_socket, meeting, name):
    """A participant's socket in the waiting room: (socket, the `waiting` message)."""
    socket = await signaling_socket(server.ws_url(meeting))
    await socket.send_join(name)
    return socket, await socket.recv_type("waiting")


async def host_socket(server, signaling_socket, meeting):
    socket = await signaling_socket(server.ws_url(meeting))
    joined = await socket.join("host", token=meeting["host_token"])
    assert joined["role"] == "host"
    return socket


async def room_becomes(host, names: list[str], timeout: float = 10.0) -> dict:
    """The host's `waiting_room` updates until one lists exactly `names`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        room = await host.recv_type("waiting_room", max(0.01, deadline - loop.time()))
        if sorted(p["name"] for p in room["participants"]) == sorted(names):
            return room


async def assert_quiet(socket, seconds: float = 0.5) -> None:
    """Nothing arrives on `socket` for a while."""
    try:
        message = await socket.recv(timeout=seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"expected nothing, got {message}")


# ---------------------------------------------------------------------- start and the host limit


async def test_host_limit_race_exactly_one_start_wins(conclave_server):
    server = conclave_server
    host = await server.new_host()  # default limits: one live meeting per host
    meetings = [await server.create_meeting(f"m{i}", host=host, start=False) for i in range(6)]

    async def start(session, meeting):
        url = f"{server.base_url}/api/v1/meetings/{meeting['number']}/start"
        async with session.post(url, headers={"Authorization": f"Bearer {host['token']}"}) as response:
            return response.status, await response.json()

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(start(session, m) for m in meetings))
    winners = [(m, body) for m, (status, body) in zip(meetings, results) if status == 200]
    assert len(winners) == 1, results
    winner = winners[0][0]
    for meeting, (status, body) in zip(meetings, results):
        if meeting is winner:
            continue
        assert status == 409 and body["error"]["code"] == "host_has_live_meeting", body
        assert winner["meeting_number"] in body["error"]["message"]  # names the live one

    # Once it ends, another may start.
    await server.call("POST", f"/meetings/{winner['number']}/end", token=host["token"])
    other = next(m for m in meetings if m is not winner)
    await server.start_meeting(other)


async def test_per_customer_override_of_the_host_limit(conclave_server):
    host = await conclave_server.new_host(limits={"max_live_meetings_per_host": 2})
    for title in ("a", "b"):
        await conclave_server.create_meeting(title, host=host)
    third = await conclave_server.create_meeting("c", host=host, start=False)
    status, body, _ = await conclave_server.api("POST", f"/meetings/{third['number']}/start", token=host["token"])
    assert (status, body["error"]["code"]) == (409, "host_has_live_meeting")


async def test_start_again_hands_the_host_back_in(conclave_server):
    meeting = await conclave_server.create_meeting()
    again = await conclave_server.call("POST", f"/meetings/{meeting['number']}/start", token=meeting["host_session"])
    assert again["started"] is False and again["live_session_id"] == meeting["live_session_id"]
    assert again["host_token"] != meeting["host_token"]


async def test_meetings_disabled_refuses_start(conclave_server):
    host = await conclave_server.new_host(limits={"meetings_disabled": False})
    meeting = await conclave_server.create_meeting(host=host, start=False)
    await conclave_server.call(
        "PATCH", f"/customers/{host['customer_id']}", token=conclave_server.operator_key,
        json_body={"limits": {"meetings_disabled": True}},
    )  # fmt: skip
    status, body, _ = await conclave_server.api("POST", f"/meetings/{meeting['number']}/start", token=host["token"])
    assert (status, body["error"]["code"]) == (403, "meetings_disabled")


async def test_duration_limit_ends_the_meeting(conclave_server, signaling_socket, monkeypatch):
    monkeypatch.setattr(conclave_server.services.lifecycle, "minute_s", 0.5)  # max_meeting_minutes: 1 -> 0.5 s
    host = await conclave_server.new_host(limits={"max_meeting_minutes": 1})
    meeting = await conclave_server.create_meeting(host=host)
    socket = await signaling_socket(conclave_server.ws_url(meeting))
    await socket.join("ann")
    ended = await socket.recv_type("meeting_ended", timeout=10)
    assert ended["reason"] == "duration_limit"
    assert await socket.expect_close() == closecodes.MEETING_ENDED


# ---------------------------------------------------------------------- host sign-in


async def test_second_login_replaces_the_first(conclave_server, signaling_socket):
    server = conclave_server
    host = await server.new_host()
    meeting = await server.create_meeting(host=host)
    host_ws = await host_socket(server, signaling_socket, meeting)
    guest = await signaling_socket(server.ws_url(meeting))
    await guest.join("guest")

    second = await server.login(host["email"])
    ended = await host_ws.recv_type("session_ended", timeout=JOIN_CLOSE_TIMEOUT_S)
    assert ended["reason"] == "signed_in_elsewhere"
    assert await host_ws.expect_close(JOIN_CLOSE_TIMEOUT_S) == closecodes.SESSION_ENDED
    status, body, _ = await server.api("GET", "/auth/me", token=host["token"])
    assert (status, body["error"]["code"]) == (401, "session_ended")
    # The old sign-in's join token no longer moderates; the meeting goes on for the others.
    status, _, _ = await server.api("POST", f"/meetings/{meeting['number']}/lock", token=meeting["host_token"],
                                    json_body={"locked": True})  # fmt: skip
    assert status == 401
    await guest.send({"type": "ping", "id": 1})
    assert (await guest.recv_type("pong"))["id"] == 1
    # The new sign-in gets back in.
    again = await server.call("POST", f"/meetings/{meeting['number']}/start", token=second)
    socket = await signaling_socket(server.ws_url(meeting))
    assert (await socket.join("host", token=again["host_token"]))["role"] == "host"


async def test_second_login_refused_when_configured(conclave_server_factory):
    server = await conclave_server_factory(auth={"host_login_policy": "refuse"})
    host = await server.new_host()
    status, body, _ = await server.api(
        "POST", "/auth/login", json_body={"email": host["email"], "password": host["password"]}
    )
    assert (status, body["error"]["code"]) == (409, "host_session_active")
    await server.call("GET", "/auth/me", token=host["token"])  # the first one still works
    await server.call("POST", "/auth/logout", token=host["token"], expect=204)
    await server.login(host["email"])


# ---------------------------------------------------------------------- the host's controls


async def test_host_controls_refuse_anyone_but_the_host(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting(waiting_room=True)
    _, waiting = await waiting_socket(server, signaling_socket, meeting, "knocking")
    target = waiting["participant_id"]
    participant = await rest_join(server, meeting, "mallory")
    participant_token = participant[1]["token"]
    other_host = await server.new_host()
    other_meeting = await server.create_meeting(host=other_host)
    customer_admin = (await server.new_customer())["api_key"]
    own_admin_key = (await server.call(
        "POST", f"/customers/{meeting['customer_id']}/api-key", token=server.operator_key
    ))["api_key"]  # fmt: skip

    number = meeting["number"]
    controls = [
        ("GET", f"/meetings/{number}/participants", None),
        ("POST", f"/meetings/{number}/participants/{target}/admit", None),
        ("POST", f"/meetings/{number}/participants/{target}/deny", None),
        ("POST", f"/meetings/{number}/participants/{target}/remove", None),
        ("POST", f"/meetings/{number}/participants/{target}/mute", {"source": "microphone", "muted": True}),
        ("POST", f"/meetings/{number}/admit-all", None),
        ("POST", f"/meetings/{number}/lock", {"locked": True}),
        ("POST", f"/meetings/{number}/end", None),
        ("POST", f"/meetings/{number}/start", None),
    ]
    refusals = {
        None: 401,
        "garbage": 401,
        participant_token: 403,
        other_host["token"]: 403,
        other_meeting["host_token"]: 403,
        customer_admin: 403,
        own_admin_key: 403,
        server.operator_key: 403,
    }
    admins = (server.operator_key, own_admin_key)
    for method, path, body in controls:
        for token, expected in refusals.items():
            if path.endswith("/end") and token in admins:
                continue  # they may end it (test_admins_may_end_a_meeting)
            status, reply, _ = await server.api(method, path, token=token, json_body=body)
            assert status == expected, (method, path, token and token[:12], reply)
            assert set(reply) == {"error"}, reply
    # Nothing happened: the knocking participant still waits, the meeting is live and open.
    listed = await server.call("GET", f"/meetings/{number}/participants", token=meeting["host_session"])
    assert [p["participant_id"] for p in listed["waiting"]][0] == target
    # And the host's own join token (grant moderate) does work.
    await server.call("POST", f"/meetings/{number}/lock", token=meeting["host_token"], json_body={"locked": False})


# ---------------------------------------------------------------------- joining


async def test_unknown_number_and_wrong_passcode_answer_the_same(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting()

    async def attempt(number, passcode):
        async with aiohttp.ClientSession() as session:
            url = f"{server.base_url}/api/v1/meetings/{number}/join"
            async with session.post(url, json={"name": "x", "passcode": passcode}) as response:
                # Date and the request's own id differ for every answer: nothing about the meeting.
                headers = {k: v for k, v in response.headers.items() if k.lower() not in ("date", "x-request-id")}
                return response.status, await response.read(), headers

    unknown_number = "99999999999" if meeting["number"] != "99999999999" else "88888888888"
    wrong = await attempt(meeting["number"], "not-the-passcode")
    unknown = await attempt(unknown_number, "not-the-passcode")
    malformed = await attempt("123", "not-the-passcode")
    bad_link = await server.api(
        "POST", f"/meetings/{meeting['number']}/join", json_body={"name": "x", "link_token": "a.b.c"}
    )
    assert wrong == unknown == malformed
    assert wrong[0] == 403 and json.loads(wrong[1])["error"]["code"] == "invalid_credentials"
    assert "set-cookie" not in {k.lower() for k in wrong[2]}
    assert (bad_link[0], bad_link[1]) == (403, json.loads(wrong[1]))


async def test_a_meeting_number_has_one_grammar_everywhere(conclave_server):
    """Regression: `12-3456-78901` (the meeting's digits, dashes misplaced) was refused by
    GET /meetings/{n} but accepted by POST /meetings/{n}/join. Now neither takes it, and the
    join answers exactly as for an unknown number."""
    server = conclave_server
    meeting = await server.create_meeting()
    digits = meeting["number"].replace("-", "")
    misplaced = f"{digits[:2]}-{digits[2:6]}-{digits[6:]}"
    refused = await server.api("POST", f"/meetings/{misplaced}/join",
                               json_body={"name": "x", "passcode": meeting["passcode"]})  # fmt: skip
    assert (refused[0], refused[1]["error"]["code"]) == (403, "invalid_credentials")
    host_token = (await server.fixture_host())["token"]
    assert (await server.api("GET", f"/meetings/{misplaced}", token=host_token))[0] in (403, 404)
    for written in (digits, f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"):  # the two forms that are the number
        assert (await server.api("GET", f"/meetings/{written}", token=host_token))[0] == 200
        await server.join(meeting, "x", expect=200)


async def test_passcode_brute_force_gets_429(conclave_server_factory):
    server = await conclave_server_factory(
        auth={"passcode_attempts_per_minute": 3, "passcode_attempts_per_address_per_minute": 5}
    )
    meeting = await server.create_meeting()
    for _ in range(3):
        status, body, _ = await rest_join(server, meeting, passcode="000000")
        assert (status, body["error"]["code"]) == (403, "invalid_credentials")
    status, body, headers = await rest_join(server, meeting, passcode="000000")
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert 1 <= int(headers["Retry-After"]) <= 60
    # Even the right passcode waits now (the attacker cannot tell it was right).
    status, _, headers = await rest_join(server, meeting)
    assert status == 429 and "Retry-After" in headers

    # Per address: two more failures on other numbers reach this address's limit of 5.
    other = await server.create_meeting("other")
    for number in (other["number"], "11111111111"):
        status, _, _ = await server.api("POST", f"/meetings/{number}/join", json_body={"name": "x", "passcode": "0"})
        assert status == 403
    status, body, headers = await rest_join(server, other)
    assert (status, body["error"]["code"]) == (429, "rate_limited") and "Retry-After" in headers


async def test_join_with_a_link_and_what_it_tells(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting()
    assert meeting["passcode"] not in meeting["join_url"]
    reply = await server.join(meeting, "linked", link_token=meeting["link_token"])
    assert reply["status"] == "admitted" and reply["meeting"]["title"] == meeting["title"]
    socket = await signaling_socket(server.ws_url(meeting))
    assert (await socket.join("linked", token=reply["token"]))["participant_id"] == reply["participant_id"]

    # The public view needs the link: without it every number looks the same.
    public = await server.call("GET", f"/meetings/{meeting['number']}/public?t={meeting['link_token']}")
    assert public == {"meeting_number": meeting["meeting_number"], "title": meeting["title"], "status": "live",
                      "attendees_publish": True}
    for path in (f"/meetings/{meeting['number']}/public", "/meetings/99999999999/public"):
        status, body, _ = await server.api("GET", path)
        assert (status, body["error"]["code"]) == (404, "not_found")

    # A new passcode retires the old links.
    await server.call("PATCH", f"/meetings/{meeting['number']}", token=meeting["host_session"],
                      json_body={"passcode": "fresh123456"})  # fmt: skip
    status, body, _ = await rest_join(server, meeting, link_token=meeting["link_token"])
    assert (status, body["error"]["code"]) == (403, "invalid_credentials")


async def test_tokens_are_bound_to_their_meeting(conclave_server, signaling_socket):
    server = conclave_server
    first = await server.create_meeting("first")
    second = await server.create_meeting("second")
    token = (await server.join(first, "ann"))["token"]
    socket = await signaling_socket(server.ws_url(second))
    await socket.send({"type": "join", "token": token, "id": 1})
    reply = await socket.recv_type("error")
    assert reply["code"] == "wrong_meeting"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(server.ws_url(second, token=token))
    assert refused.value.status == 403
    # Without a valid token nothing is said about the meeting number.
    async with aiohttp.ClientSession() as session:
        for number in (second["meeting_number"], "999-9999-9999"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"{server.base_url}/api/v1/meetings/{number}/ws?token=x.y.z")
            assert refused.value.status == 401


async def test_expired_token_is_refused(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting()
    reply = await server.join(meeting, "late")
    old = server.services.tokens.make_join_token(
        participant_id=reply["participant_id"], meeting_id=meeting["meeting_id"],
        live_session_id=meeting["live_session_id"], name="late", role="participant", now=0,
    )  # fmt: skip
    socket = await signaling_socket(server.ws_url(meeting))
    await socket.send({"type": "join", "token": old})
    assert (await socket.recv_type("error"))["code"] == "token_expired"


async def test_waiting_for_the_host_then_the_waiting_room(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting(waiting_room=True, start=False)
    early = await server.join(meeting, "early")
    assert early["status"] == "waiting_for_host"
    socket = await signaling_socket(server.ws_url(meeting))
    await socket.send_join("early", token=early["token"])
    assert (await socket.recv_type("waiting"))["reason"] == "waiting_for_host"

    await server.start_meeting(meeting)
    assert (await socket.recv_type("waiting"))["reason"] == "waiting_room"
    host = await host_socket(server, signaling_socket, meeting)
    room = await room_becomes(host, ["early"])
    assert [p["participant_id"] for p in room["participants"]] == [early["participant_id"]]
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{early['participant_id']}/admit",
                      token=meeting["host_session"])  # fmt: skip
    joined = await socket.recv_type("joined")
    assert joined["participant_id"] == early["participant_id"]
    assert [p["participant_id"] for p in (await host.recv_change("joined"))["joined"]] == [early["participant_id"]]


async def test_without_waiting_room_the_start_lets_everyone_in(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting(waiting_room=False, start=False)
    socket = await signaling_socket(server.ws_url(meeting))
    await socket.send_join("early")
    assert (await socket.recv_type("waiting"))["reason"] == "waiting_for_host"
    await server.start_meeting(meeting)
    assert (await socket.recv_type("joined"))["participants"] == []


async def test_a_waiting_participant_gets_nothing_and_sends_nothing(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting(waiting_room=True)
    host = await host_socket(server, signaling_socket, meeting)
    await host.recv_type("waiting_room")
    inside = await signaling_socket(server.ws_url(meeting))
    reply = await server.join(meeting, "inside")
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{reply['participant_id']}/admit",
                      token=meeting["host_session"])  # fmt: skip
    await inside.join("inside", token=reply["token"])
    await host.send({"type": "chat", "text": "before"})
    await inside.recv_type("chat")

    knocking, waiting = await waiting_socket(server, signaling_socket, meeting, "knocking")
    assert set(waiting) <= {"type", "reason", "participant_id", "id"}
    room = await room_becomes(host, ["knocking"])
    assert [p["participant_id"] for p in room["participants"]] == [waiting["participant_id"]]
    for message in (
        {"type": "chat", "text": "let me in", "id": 1},
        {"type": "publish", "sdp": "v=0", "tracks": [], "id": 2},
        {"type": "mute", "source": "camera", "muted": True, "id": 3},
        {"type": "subscribe", "track_id": "x", "enabled": True, "id": 4},
    ):
        await knocking.send(message)
        reply = await knocking.recv_type("error")
        assert (reply["code"], reply["id"]) == ("not_admitted", message["id"])
    await host.send({"type": "chat", "text": "inside only"})
    await inside.recv_type("chat")
    await assert_quiet(knocking)  # no chat, no participants, no tracks
    await assert_quiet(inside, 0.2)  # nothing from the waiting room reached them
    await knocking.send({"type": "ping", "id": "p"})
    assert await knocking.recv() == {"type": "pong", "id": "p"}

    # Deny: told, closed; the host's list empties.
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{waiting['participant_id']}/deny",
                      token=meeting["host_session"])  # fmt: skip
    assert (await knocking.recv_type("denied"))["type"] == "denied"
    assert await knocking.expect_close() == closecodes.DENIED
    await room_becomes(host, [])


async def test_admit_all(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting(waiting_room=True)
    sockets = [(await waiting_socket(server, signaling_socket, meeting, f"p{i}"))[0] for i in range(3)]
    admitted = await server.call("POST", f"/meetings/{meeting['number']}/admit-all", token=meeting["host_token"])
    assert sorted(p["name"] for p in admitted["admitted"]) == ["p0", "p1", "p2"]
    for socket in sockets:
        await socket.recv_type("joined")


async def test_lock_refuses_new_joins(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting()
    inside = await signaling_socket(server.ws_url(meeting))
    await inside.join("inside")
    await server.call("POST", f"/meetings/{meeting['number']}/lock", token=meeting["host_session"],
                      json_body={"locked": True})  # fmt: skip
    assert (await inside.recv_type("meeting_updated"))["locked"] is True
    status, body, _ = await rest_join(server, meeting, "late")
    assert (status, body["error"]["code"]) == (403, "meeting_locked")
    await server.call("POST", f"/meetings/{meeting['number']}/lock", token=meeting["host_session"],
                      json_body={"locked": False})  # fmt: skip
    await server.join(meeting, "late")


# ---------------------------------------------------------------------- removal


async def test_removed_participant_cannot_come_back(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting()
    watcher = await signaling_socket(server.ws_url(meeting))
    await watcher.join("watcher")
    # One device: keeps the server's cookie (unsafe: the jar keeps cookies of IP addresses).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(f"{server.base_url}/api/v1/meetings/{meeting['number']}/join",
                                json={"name": "troll", "passcode": meeting["passcode"]}) as response:  # fmt: skip
            first = await response.json()
        troll = await signaling_socket(server.ws_url(meeting))
        troll_id = (await troll.join("troll", token=first["token"]))["participant_id"]
        await watcher.recv_change("joined")

        await server.call("POST", f"/meetings/{meeting['number']}/participants/{troll_id}/remove",
                          token=meeting["host_session"])  # fmt: skip
        await troll.recv_type("removed", timeout=JOIN_CLOSE_TIMEOUT_S)
        assert await troll.expect_close(JOIN_CLOSE_TIMEOUT_S) == closecodes.REMOVED
        assert (await watcher.recv_change("left"))["left"] == [troll_id]

        # The old token: refused on a new socket, in the message and in the URL.
        again = await signaling_socket(server.ws_url(meeting))
        await again.send({"type": "join", "token": first["token"]})
        assert (await again.recv_type("error"))["code"] == "removed"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await browser.ws_connect(server.ws_url(meeting, token=first["token"]))
        assert refused.value.status == 403
        # A new join from the same device, or presenting the old token: refused.
        async with browser.post(f"{server.base_url}/api/v1/meetings/{meeting['number']}/join",
                                json={"name": "troll2", "passcode": meeting["passcode"]}) as response:  # fmt: skip
            assert response.status == 403 and (await response.json())["error"]["code"] == "removed"
    status, body, _ = await rest_join(server, meeting, "troll3", token=first["token"])
    assert (status, body["error"]["code"]) == (403, "removed")
    # Host controls keep working on the others.
    listed = await server.call("GET", f"/meetings/{meeting['number']}/participants", token=meeting["host_session"])
    assert troll_id not in {p["participant_id"] for p in listed["admitted"] + listed["waiting"]}


async def test_the_host_cannot_be_removed(conclave_server):
    meeting = await conclave_server.create_meeting()
    status, body, _ = await conclave_server.api(
        "POST", f"/meetings/{meeting['number']}/participants/{meeting['host_participant_id']}/remove",
        token=meeting["host_session"],
    )  # fmt: skip
    assert (status, body["error"]["code"]) == (409, "cannot_remove_host")


# ---------------------------------------------------------------------- ending


async def test_end_closes_everyone(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting(waiting_room=True)
    host = await host_socket(server, signaling_socket, meeting)
    knocking, _ = await waiting_socket(server, signaling_socket, meeting, "knocking")
    await server.call("POST", f"/meetings/{meeting['number']}/end", token=meeting["host_token"])
    for socket in (host, knocking):
        assert (await socket.recv_type("meeting_ended", JOIN_CLOSE_TIMEOUT_S))["reason"] == "ended_by_host"
        assert await socket.expect_close(JOIN_CLOSE_TIMEOUT_S) == closecodes.MEETING_ENDED
    assert server.services.registry.get(meeting["meeting_id"]) is None
    status, body, _ = await server.api("POST", f"/meetings/{meeting['number']}/end", token=meeting["host_session"])
    assert (status, body["error"]["code"]) == (409, "not_live")
    # A token of the ended session opens nothing, and says why it ended (a page that was
    # reconnecting words it as those inside heard it).
    old = await signaling_socket(server.ws_url(meeting))
    await old.send({"type": "join", "token": meeting["host_token"]})
    refusal = await old.recv_type("error")
    assert (refusal["code"], refusal.get("reason")) == ("meeting_ended", "ended_by_host")


async def test_admins_may_end_a_meeting(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting()
    admin_key = (await server.call(
        "POST", f"/customers/{meeting['customer_id']}/api-key", token=server.operator_key
    ))["api_key"]  # fmt: skip
    socket = await signaling_socket(server.ws_url(meeting))
    await socket.join("ann")
    await server.call("POST", f"/meetings/{meeting['number']}/end", token=admin_key)
    assert (await socket.recv_type("meeting_ended", JOIN_CLOSE_TIMEOUT_S))["reason"] == "ended_by_admin"
    other = await server.create_meeting("other")
    await server.call("POST", f"/meetings/{other['number']}/end", token=server.operator_key)
    entries = (await server.call("GET", "/audit?action=meeting.end", token=server.operator_key))["entries"]
    assert {e["actor_kind"] for e in entries} >= {"customer", "operator"}


async def test_suspended_customer_meeting_ends_for_every_socket(conclave_server, signaling_socket):
    server = conclave_server
    host = await server.new_host()
    meeting = await server.create_meeting(host=host, waiting_room=True)
    host_ws = await host_socket(server, signaling_socket, meeting)
    knocking, waiting = await waiting_socket(server, signaling_socket, meeting, "knocking")
    inside = await signaling_socket(server.ws_url(meeting))
    reply = await server.join(meeting, "inside")
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{reply['participant_id']}/admit",
                      token=host["token"])  # fmt: skip
    await inside.join("inside", token=reply["token"])
    early_meeting = await server.create_meeting(host=await server.new_host(host["customer_id"]), start=False)
    early = await signaling_socket(server.ws_url(early_meeting))
    await early.send_join("early")
    await early.recv_type("waiting")

    await server.call("POST", f"/customers/{host['customer_id']}/suspend", token=server.operator_key)
    for socket in (host_ws, knocking, inside, early):
        ended = await socket.recv_type("meeting_ended", JOIN_CLOSE_TIMEOUT_S)
        assert ended["reason"] == "customer_suspended"
        assert await socket.expect_close(JOIN_CLOSE_TIMEOUT_S) == closecodes.MEETING_ENDED
    status, _, _ = await rest_join(server, meeting, "after")
    assert status == 403


# ---------------------------------------------------------------------- audit, webhooks, chat


async def test_moderation_is_audited_and_chat_is_stored(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting(waiting_room=True)
    knocking, waiting = await waiting_socket(server, signaling_socket, meeting, "knocking")
    pid = waiting["participant_id"]
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{pid}/admit", token=meeting["host_token"])
    await knocking.recv_type("joined")
    await knocking.send({"type": "chat", "text": "hello"})
    await knocking.recv_type("chat")
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{pid}/mute",
                      token=meeting["host_session"], json_body={"source": "microphone", "muted": True})  # fmt: skip
    assert await knocking.recv_type("muted_by_host") == {"type": "muted_by_host", "source": "microphone", "muted": True}
    await knocking.send({"type": "mute", "source": "microphone", "muted": False, "id": "u"})
    assert (await knocking.recv_type("error"))["code"] == "muted_by_host"
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{pid}/remove",
                      token=meeting["host_session"])  # fmt: skip

    entries = (await server.call("GET", f"/audit?target_id={pid}", token=server.operator_key))["entries"]
    actions = {e["action"] for e in entries}
    assert {"participant.admit", "participant.mute", "participant.remove"} <= actions
    assert all(e["actor_kind"] == "host" and e["actor_id"] == meeting["host_id"] for e in entries)
    assert all(e["source_ip"] == "127.0.0.1" for e in entries)
    chat = await server.services.store.list_chat(meeting["meeting_id"])
    assert [(m.seq, m.text, m.participant_id) for m in chat] == [(1, "hello", pid)]
    late = await signaling_socket(server.ws_url(meeting))
    late_reply = await server.join(meeting, "late")
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{late_reply['participant_id']}/admit",
                      token=meeting["host_session"])  # fmt: skip
    assert [m["text"] for m in (await late.join("late", token=late_reply["token"]))["chat"]] == ["hello"]
    # The operator removes the meeting's content: the history goes with it.
    await server.call("DELETE", f"/meetings/{meeting['number']}/content", token=server.operator_key)
    again = await signaling_socket(server.ws_url(meeting))
    assert (await again.join("late", token=late_reply["token"]))["chat"] == []


async def test_participant_events_reach_the_webhook(conclave_server, signaling_socket):
    from aiohttp import web

    received: list[dict] = []

    async def hook(request):
        received.append(json.loads(await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        server = conclave_server
        port = runner.addresses[0][1]
        host = await server.new_host()
        await server.call("PUT", f"/customers/{host['customer_id']}/webhook", token=server.operator_key,
                          json_body={"url": f"http://127.0.0.1:{port}/hook"})  # fmt: skip
        meeting = await server.create_meeting(host=host, waiting_room=True)
        socket, waiting = await waiting_socket(server, signaling_socket, meeting, "guest")
        pid = waiting["participant_id"]
        await server.call("POST", f"/meetings/{meeting['number']}/participants/{pid}/admit", token=host["token"])
        await socket.recv_type("joined")
        await server.call("POST", f"/meetings/{meeting['number']}/participants/{pid}/remove", token=host["token"])
        await server.call("POST", f"/meetings/{meeting['number']}/end", token=host["token"])
        await server.services.webhooks.wait_idle(10)
    finally:
        await runner.cleanup()
    events = [(e["event"], e["data"].get("participant_id")) for e in received]
    for expected in (
        ("meeting.started", None),
        ("participant.admitted", pid),
        ("participant.joined", pid),
        ("participant.left", pid),
        ("participant.removed", pid),
        ("meeting.ended", None),
    ):
        assert expected in events, events
    assert all(e["data"]["meeting_number"] == meeting["meeting_number"] for e in received)


# ---------------------------------------------------------------------- brute force at once (issue 10)


async def post_join_from(server, meeting, source: str, passcode: str, name: str = "guest"):
    """A join from a given loopback source address (the whole 127/8 is this machine)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"{server.base_url}/api/v1/meetings/{meeting['number']}/join"
        async with session.post(url, json={"name": name, "passcode": passcode}) as response:
            return response.status, await response.json()


async def test_sixty_wrong_passcodes_at_once_are_five_tries(conclave_server):
    """The limit is reserved before the passcode is checked: concurrent guesses cannot all
    be evaluated against a counter that has not moved yet."""
    server = conclave_server
    meeting = await server.create_meeting()
    limit = server.services.cfg.auth.passcode_attempts_per_minute
    async with aiohttp.ClientSession() as session:
        url = f"{server.base_url}/api/v1/meetings/{meeting['number']}/join"

        async def guess(n: int) -> int:
            async with session.post(url, json={"name": "x", "passcode": f"{n:06d}x"}) as response:
                return response.status

        statuses = await asyncio.gather(*(guess(n) for n in range(60)))
    assert statuses.count(403) == limit and statuses.count(429) == 60 - limit, statuses
    # This client waits now even with the right passcode; another client gets in.
    assert (await rest_join(server, meeting))[0] == 429
    status, body = await post_join_from(server, meeting, "127.0.0.2", meeting["passcode"], "colleague")
    assert status == 200 and body["status"] == "admitted"


async def test_successful_joins_per_client_are_capped(conclave_server_factory):
    server = await conclave_server_factory(auth={"joins_per_address_per_minute": 3})
    meeting = await server.create_meeting()
    for n in range(3):
        await server.join(meeting, f"guest {n}")
    status, body, headers = await rest_join(server, meeting, name="one too many")
    assert (status, body["error"]["code"]) == (429, "rate_limited") and int(headers["Retry-After"]) >= 1
    status, _ = await post_join_from(server, meeting, "127.0.0.3", meeting["passcode"])
    assert status == 200  # another client is not held back


async def test_the_waiting_room_has_a_size(conclave_server_factory):
    server = await conclave_server_factory(signaling={"max_waiting_per_meeting": 2})
    meeting = await server.create_meeting(waiting_room=True)
    for n in range(2):
        assert (await server.join(meeting, f"waiting {n}"))["status"] == "waiting_room"
    status, body, _ = await rest_join(server, meeting, name="third")
    assert (status, body["error"]["code"]) == (403, "waiting_room_full")
    waiting = (await server.call("GET", f"/meetings/{meeting['number']}/participants",
                                 token=meeting["host_session"]))["waiting"]  # fmt: skip
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{waiting[0]['participant_id']}/deny",
                      token=meeting["host_session"])  # fmt: skip
    assert (await server.join(meeting, "third"))["status"] == "waiting_room"


# ---------------------------------------------------------------------- the operator's authority, locks, removals (issue 10)


async def test_a_customer_admin_cannot_lift_the_operators_suspension(conclave_server):
    server = conclave_server
    host = await server.new_host()
    key = (await server.call("POST", f"/customers/{host['customer_id']}/api-key", token=server.operator_key))["api_key"]
    await server.call("POST", f"/hosts/{host['host_id']}/suspend", token=server.operator_key)
    status, body, _ = await server.api("POST", f"/hosts/{host['host_id']}/unsuspend", token=key)
    assert (status, body["error"]["code"]) == (403, "suspended_by_operator")
    await server.call("POST", f"/hosts/{host['host_id']}/unsuspend", token=server.operator_key)
    # The admin's own suspension is theirs to lift.
    await server.call("POST", f"/hosts/{host['host_id']}/suspend", token=key)
    await server.call("POST", f"/hosts/{host['host_id']}/unsuspend", token=key)


async def test_meetings_disabled_ends_live_meetings_and_refuses_tokens_given_out(conclave_server, signaling_socket):
    server = conclave_server
    host = await server.new_host()
    meeting = await server.create_meeting(host=host)
    inside = await signaling_socket(server.ws_url(meeting))
    await inside.join("inside")
    later = await server.join(meeting, "later")  # a token given out before the operator acts
    await server.call("PATCH", f"/customers/{host['customer_id']}", token=server.operator_key,
                      json_body={"limits": {"meetings_disabled": True}})  # fmt: skip
    ended = await inside.recv_type("meeting_ended", JOIN_CLOSE_TIMEOUT_S)
    assert ended["reason"] == "meetings_disabled"
    socket = await signaling_socket(server.ws_url(meeting))
    await socket.send({"type": "join", "token": later["token"]})
    reply = await socket.recv_type("error")
    assert reply["code"] in ("meeting_unavailable", "meeting_ended")
    assert (await server.api("POST", f"/meetings/{meeting['number']}/start", token=meeting["host_session"]))[0] == 403


async def test_a_lock_is_checked_again_when_the_socket_connects(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting()
    early = await server.join(meeting, "early")  # admitted by REST while it was open
    await server.call("POST", f"/meetings/{meeting['number']}/lock", token=meeting["host_session"],
                      json_body={"locked": True})  # fmt: skip
    socket = await signaling_socket(server.ws_url(meeting))
    await socket.send({"type": "join", "token": early["token"]})
    assert (await socket.recv_type("error"))["code"] == "meeting_locked"


async def test_after_a_removal_even_a_fresh_browser_waits_for_the_host(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting(waiting_room=False)
    spare = await server.join(meeting, "spare token")  # fetched before the removal
    troll = await signaling_socket(server.ws_url(meeting))
    joined = await troll.join("troll")
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{joined['participant_id']}/remove",
                      token=meeting["host_session"])  # fmt: skip
    assert await troll.expect_close() == closecodes.REMOVED
    # A fresh browser: no device cookie, no old token, a new name. It waits for the host.
    again = await server.join(meeting, "definitely someone else")
    assert again["status"] == "waiting_room"
    socket = await signaling_socket(server.ws_url(meeting))
    await socket.send_join("x", token=again["token"])
    assert (await socket.recv_type("waiting"))["reason"] == "waiting_room"
    # So does a token fetched before the removal.
    spare_socket = await signaling_socket(server.ws_url(meeting))
    await spare_socket.send_join("x", token=spare["token"])
    assert (await spare_socket.recv_type("waiting"))["reason"] == "waiting_room"
