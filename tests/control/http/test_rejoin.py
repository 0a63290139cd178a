"""POST /api/v1/meetings/{number}/rejoin (control.http.rejoin) over real HTTP and raw
signaling sockets: an admitted participant's socket gets a reconnect credential right
after `joined`; traded, it gives a join token that lets them straight back in, in a locked
meeting with a waiting room too, and the host as host; bad input gets a clear 4xx."""

from __future__ import annotations

import aiohttp
import pytest

from control.accounts.tokens import Tokens

pytestmark = pytest.mark.timeout(60)


async def rejoin(server, meeting, credential):
    return await server.api("POST", f"/meetings/{meeting['number']}/rejoin", json_body={"credential": credential})


async def test_a_credential_brings_its_participant_and_the_host_straight_back(conclave_server, signaling_socket):
    server = conclave_server
    meeting = await server.create_meeting("Board", waiting_room=True)
    host = await signaling_socket(server.ws_url(meeting))
    await host.join("host", token=meeting["host_token"])
    host_credential = (await host.recv_type("reconnect_credential"))["credential"]
    guest = await signaling_socket(server.ws_url(meeting))
    await guest.send_join("Grace")
    waiting = await guest.recv_type("waiting")
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{waiting['participant_id']}/admit",
                      token=meeting["host_session"])  # fmt: skip
    await guest.recv_type("joined")
    credential = (await guest.recv_type("reconnect_credential"))["credential"]
    await server.call("POST", f"/meetings/{meeting['number']}/lock", token=meeting["host_session"],
                      json_body={"locked": True})  # fmt: skip

    other = await server.create_meeting("Other")
    status, body, _ = await rejoin(server, other, credential)
    assert (status, body["error"]["code"]) == (403, "wrong_meeting"), body
    status, body, _ = await rejoin(server, meeting, credential)
    assert status == 200 and body["participant_id"] == waiting["participant_id"], body
    assert body["status"] == "admitted" and body["role"] == "participant" and body["ws_url"].endswith("/ws")
    secret = server.services.secrets.token_secret
    claims = Tokens(secret, server.services.store, 600).verify_join_token(body["token"])
    assert claims.resumed and claims.live_session_id == meeting["live_session_id"]
    again = await signaling_socket(server.ws_url(meeting))
    joined = await again.join("Grace", token=body["token"])  # locked, waiting room: straight in
    assert joined["participant_id"] == waiting["participant_id"]

    status, body, _ = await rejoin(server, meeting, host_credential)
    assert status == 200 and body["role"] == "host", body
    host_again = await signaling_socket(server.ws_url(meeting))
    assert (await host_again.join("host", token=body["token"]))["role"] == "host"

    await again.send({"type": "leave"})
    await again.expect_close()
    status, body, _ = await rejoin(server, meeting, credential)
    assert (status, body["error"]["code"]) == (403, "not_admitted"), body
    await server.call("POST", f"/meetings/{meeting['number']}/end", token=meeting["host_session"])
    status, body, _ = await rejoin(server, meeting, host_credential)
    assert (status, body["error"]["code"]) == (409, "meeting_ended"), body
    metrics = await metric_lines(server)
    assert 'conclave_rejoins_total{outcome="admitted"} 2.0' in metrics, metrics
    assert 'conclave_rejoins_total{outcome="refused"} 3.0' in metrics, metrics  # wrong meeting, left, ended
    assert "conclave_meetings_resumed_total 0.0" in metrics, metrics


async def metric_lines(server) -> list[str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.base_url}/metrics") as response:
            assert response.status == 200
            return (await response.text()).splitlines()


async def test_bad_rejoins_get_clear_errors(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting("Board")
    join_token = meeting["host_token"]
    for body, expected in [
        (None, (400, "invalid_field")),
        ({"credential": 42}, (400, "invalid_field")),
        ({"credential": "x" * 5000}, (400, "invalid_field")),
        ({"credential": "not.a.credential"}, (401, "invalid_token")),
        ({"credential": join_token}, (401, "invalid_token")),  # a join token is not a credential
    ]:
        status, reply, _ = await server.api("POST", f"/meetings/{meeting['number']}/rejoin", json_body=body)
        assert (status, reply["error"]["code"]) == expected, (body, reply)
    status, reply, _ = await server.api("POST", "/meetings/000-0000-0000/rejoin", json_body={"credential": "a.b.c"})
    assert (status, reply["error"]["code"]) == (404, "not_found")
