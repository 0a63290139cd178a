"""Accounts REST (control/http/accounts.py, with the meetings' records of meetings.py and
the first start of control/accounts/bootstrap.py) against a real in-process server:
bootstrap, customers, hosts, sign-in and its policy, meetings as records, limits,
suspension, content removal, audit."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from pathlib import Path

import aiohttp
import pytest

from control.accounts import bootstrap
from tests.support.accounts_client import PASSWORD, Api, assert_error, make_customer, make_host, make_meeting


def operator_key(server) -> str:
    return server.services.secrets.operator_key


@pytest.fixture
def api(conclave_server) -> Api:
    return Api(conclave_server.base_url)


# ---------------------------------------------------------------------- first start


async def test_first_start_creates_default_host_with_a_private_password(conclave_server_factory, capfd):
    conclave_server = await conclave_server_factory(auth={"operator_key": ""})  # generated
    api = Api(conclave_server.base_url)
    data_dir = Path(conclave_server.services.cfg.data_dir)
    password_file = data_dir / bootstrap.INITIAL_PASSWORD_FILE
    key_file = data_dir / bootstrap.OPERATOR_KEY_FILE
    for path in (password_file, key_file, data_dir / bootstrap.TOKEN_SECRET_FILE):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    password = password_file.read_text().strip()
    assert key_file.read_text().strip() == operator_key(conclave_server)

    login = await api.ok("POST", "/auth/login", json={"email": "admin@localhost", "password": password})
    me = await api.ok("GET", "/auth/me", token=login["token"])
    assert me["customer"]["name"] == "Default"
    assert me["limits"]["max_live_meetings_per_host"] == 1

    printed = capfd.readouterr()
    assert str(password_file) in printed.out  # the path is printed...
    assert password not in printed.out + printed.err  # ...never the password
    assert operator_key(conclave_server) not in printed.out + printed.err


async def test_configured_operator_key_is_used(conclave_server_factory):
    key = "k" * 24
    server = await conclave_server_factory(auth={"operator_key": key})
    api = Api(server.base_url)
    assert (await api.call("GET", "/customers", token=key))[0] == 200
    assert not (Path(server.services.cfg.data_dir) / bootstrap.OPERATOR_KEY_FILE).exists()


# ---------------------------------------------------------------------- customers and hosts


async def test_customer_and_host_lifecycle(conclave_server, api):
    op = operator_key(conclave_server)
    created = await api.ok(
        "POST", "/customers", token=op, json={"name": "Acme", "limits": {"max_meeting_minutes": 60}}, status=201
    )
    customer, api_key = created["customer"], created["api_key"]
    assert api_key.startswith("ck_")
    assert customer["limits"]["max_meeting_minutes"] == 60
    assert customer["limits"]["max_concurrent_meetings"] == 10  # the config default
    assert customer["limit_overrides"] == {"max_meeting_minutes": 60}
    assert "api_key_hash" not in customer and api_key not in str(await api.ok("GET", "/customers", token=op))

    # The admin manages its own hosts.
    host = await api.ok(
        "POST", f"/customers/{customer['id']}/hosts", token=api_key,
        json={"email": "Ann@Acme.example", "name": "Ann", "password": PASSWORD}, status=201,
    )
    assert host["email"] == "ann@acme.example"
    status, body = await api.call(
        "POST", f"/customers/{customer['id']}/hosts", token=api_key,
        json={"email": "ann@acme.example", "name": "Ann 2", "password": PASSWORD},
    )
    assert_error(status, body, 409, "email_taken")
    status, body = await api.call(
        "POST", f"/customers/{customer['id']}/hosts", token=api_key, json={"email": "b@x.io", "name": "B", "password": "short"}
    )
    assert_error(status, body, 400, "invalid_field")
    listed = await api.ok("GET", f"/customers/{customer['id']}/hosts", token=api_key)
    assert [h["id"] for h in listed["hosts"]] == [host["id"]]
    renamed = await api.ok("PATCH", f"/hosts/{host['id']}", token=api_key, json={"name": "Ann B."})
    assert renamed["name"] == "Ann B."

    # Operator-only changes.
    status, body = await api.call("PATCH", f"/customers/{customer['id']}", token=api_key, json={"name": "Mine"})
    assert_error(status, body, 403, "forbidden")
    patched = await api.ok(
        "PATCH", f"/customers/{customer['id']}", token=op, json={"limits": {"max_meeting_minutes": None, "meetings_disabled": True}}
    )
    assert patched["limit_overrides"] == {"meetings_disabled": True}
    status, body = await api.call("PATCH", f"/customers/{customer['id']}", token=op, json={"limits": {"bogus": 1}})
    assert_error(status, body, 400, "invalid_field")
    assert "bogus" in body["error"]["message"]

    # Rotating the API key retires the old one.
    new_key = (await api.ok("POST", f"/customers/{customer['id']}/api-key", token=op))["api_key"]
    assert (await api.call("GET", f"/customers/{customer['id']}", token=api_key))[0] == 401
    assert (await api.ok("GET", f"/customers/{customer['id']}", token=new_key))["name"] == "Acme"

    # Deleting the host, then the customer.
    await api.ok("DELETE", f"/hosts/{host['id']}", token=new_key, status=204)
    status, body = await api.call("POST", "/auth/login", json={"email": "ann@acme.example", "password": PASSWORD})
    assert_error(status, body, 401, "invalid_credentials")
    await api.ok("DELETE", f"/customers/{customer['id']}", token=op, status=204)
    assert (await api.call("GET", f"/customers/{customer['id']}", token=op))[0] == 404

    actions = [e["action"] for e in (await api.ok("GET", "/audit", token=op, json=None))["entries"]]
    for action in ("customer.create", "host.create", "host.update", "customer.update", "customer.rotate_api_key",
                   "host.delete", "customer.delete"):
        assert action in actions


async def test_audit_records_who_what_when_where_and_filters(conclave_server, api):
    op = operator_key(conclave_server)
    acme = await make_customer(api, op, "Acme")
    await api.ok("POST", f"/customers/{acme.id}/suspend", token=op)
    entries = (await api.ok("GET", f"/audit?target_id={acme.id}", token=op))["entries"]
    assert [e["action"] for e in entries] == ["customer.suspend", "customer.create"]
    latest = entries[0]
    assert (latest["actor_kind"], latest["actor_id"], latest["source_ip"]) == ("operator", "operator", "127.0.0.1")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", latest["ts"])
    only = (await api.ok("GET", "/audit?action=customer.suspend&limit=1", token=op))["entries"]
    assert len(only) == 1 and only[0]["target_id"] == acme.id
    assert (await api.ok("GET", "/audit?since=2999-01-01T00:00:00Z", token=op))["entries"] == []
    status, body = await api.call("GET", "/audit?limit=0", token=op)
    assert_error(status, body, 400, "invalid_field")
    status, body = await api.call("GET", "/audit", token=acme.api_key)
    assert_error(status, body, 403, "customer_suspended")


# ---------------------------------------------------------------------- sign-in


async def test_login_replace_policy_ends_the_first_session(conclave_server, api):
    acme = await make_customer(api, operator_key(conclave_server))
    ann = await make_host(api, acme, "ann@acme.example")
    second = await api.ok("POST", "/auth/login", json={"email": ann.email, "password": PASSWORD})
    status, body = await api.call("GET", "/auth/me", token=ann.token)
    assert_error(status, body, 401, "session_ended")
    assert "signed_in_elsewhere" in body["error"]["message"]
    assert (await api.ok("GET", "/auth/me", token=second["token"]))["host"]["id"] == ann.id
    await api.ok("POST", "/auth/logout", token=second["token"], status=204)
    assert (await api.call("GET", "/auth/me", token=second["token"]))[0] == 401


async def test_login_refuse_policy(conclave_server_factory):
    server = await conclave_server_factory(auth={"host_login_policy": "refuse"})
    api = Api(server.base_url)
    acme = await make_customer(api, operator_key(server))
    ann = await make_host(api, acme, "ann@acme.example")
    status, body = await api.call("POST", "/auth/login", json={"email": ann.email, "password": PASSWORD})
    assert_error(status, body, 409, "host_session_active")
    assert (await api.ok("GET", "/auth/me", token=ann.token))["host"]["id"] == ann.id  # the first one stays
    await api.ok("POST", "/auth/logout", token=ann.token, status=204)
    await api.ok("POST", "/auth/login", json={"email": ann.email, "password": PASSWORD})


async def test_wrong_email_and_wrong_password_look_the_same(conclave_server, api):
    acme = await make_customer(api, operator_key(conclave_server))
    ann = await make_host(api, acme, "ann@acme.example")
    answers = [
        await api.call("POST", "/auth/login", json={"email": ann.email, "password": "wrong password"}),
        await api.call("POST", "/auth/login", json={"email": "nobody@acme.example", "password": "wrong password"}),
    ]
    assert answers[0] == answers[1]
    assert_error(*answers[0], 401, "invalid_credentials")


async def test_bearer_tokens_that_are_not_credentials(conclave_server, api):
    for header in ("Bearer", "Bearer ", "Basic abc", "Bearer ck_nope", "Bearer hs_nope", "Bearer x.y.z", "bearer"):
        status, body = await api.call("GET", "/customers", headers={"Authorization": header})
        assert_error(status, body, 401, "unauthorized")
    status, body = await api.call("GET", "/customers")
    assert_error(status, body, 401, "unauthorized")


# ---------------------------------------------------------------------- meetings


async def test_meeting_crud_numbers_and_join_link(conclave_server, api):
    acme = await make_customer(api, operator_key(conclave_server))
    ann = await make_host(api, acme, "ann@acme.example")
    meeting = await make_meeting(api, ann, start_time="2030-01-31T09:00:00+01:00", duration_minutes=45)
    assert re.match(r"^\d{3}-\d{4}-\d{4}$", meeting["meeting_number"])
    assert meeting["start_time"] == "2030-01-31T08:00:00.000Z"
    assert meeting["waiting_room"] is True and meeting["status"] == "scheduled"
    assert re.match(r"^\d{8}$", meeting["passcode"])
    link = meeting["join_url"]
    assert link.startswith(f"{conclave_server.base_url}/m/{meeting['meeting_number']}?t=")
    assert meeting["passcode"] not in link.split("?t=")[1]

    digits = meeting["meeting_number"].replace("-", "")
    for written in (digits, meeting["meeting_number"]):
        assert (await api.ok("GET", f"/meetings/{written}", token=ann.token))["id"] == meeting["id"]
    patched = await api.ok(
        "PATCH", f"/meetings/{digits}", token=ann.token, json={"title": "Retro", "passcode": "abc12345", "waiting_room": False}
    )
    assert (patched["title"], patched["passcode"], patched["waiting_room"]) == ("Retro", "abc12345", False)
    assert patched["join_url"] != link  # a new passcode retires old links
    for bad in ({"passcode": "12"}, {"duration_minutes": 0}, {"start_time": "tomorrow"},
                {"start_time": "2030-01-01T09:00:00"}, {"waiting_room": "yes"}, {"title": 5}):
        status, body = await api.call("PATCH", f"/meetings/{digits}", token=ann.token, json=bad)
        assert_error(status, body, 400, "invalid_field")

    listed = await api.ok("GET", "/meetings", token=ann.token)
    assert [m["id"] for m in listed["meetings"]] == [meeting["id"]]
    await api.ok("DELETE", f"/meetings/{digits}", token=ann.token, status=204)
    assert (await api.call("GET", f"/meetings/{digits}", token=ann.token))[0] == 403
    assert (await api.call("GET", f"/meetings/{digits}", token=operator_key(conclave_server)))[0] == 404


async def test_meeting_numbers_are_random_eleven_digits(conclave_server, api):
    acme = await make_customer(api, operator_key(conclave_server))
    ann = await make_host(api, acme)
    numbers = [int((await make_meeting(api, ann))["meeting_number"].replace("-", "")) for _ in range(12)]
    assert len(set(numbers)) == 12
    assert all(10**10 <= n < 10**11 for n in numbers)
    steps = {b - a for a, b in zip(numbers, numbers[1:])}
    assert len(steps) > 1 and numbers != sorted(numbers)  # neither a counter nor a clock


async def test_customer_limits_apply_to_meetings(conclave_server, api):
    op = operator_key(conclave_server)
    acme = await make_customer(api, op, limits={"max_meeting_minutes": 30})
    ann = await make_host(api, acme)
    status, body = await api.call("POST", "/meetings", token=ann.token, json={"duration_minutes": 31})
    assert_error(status, body, 400, "invalid_field")
    await make_meeting(api, ann, duration_minutes=30)
    await api.ok("PATCH", f"/customers/{acme.id}", token=op, json={"limits": {"meetings_disabled": True}})
    status, body = await api.call("POST", "/meetings", token=ann.token, json={})
    assert_error(status, body, 403, "meetings_disabled")


async def test_customer_admin_and_operator_see_meetings(conclave_server, api):
    op = operator_key(conclave_server)
    acme, other = await make_customer(api, op, "Acme"), await make_customer(api, op, "Other")
    ann, bob = await make_host(api, acme), await make_host(api, other)
    mine, theirs = await make_meeting(api, ann), await make_meeting(api, bob)
    as_admin = await api.ok("GET", f"/customers/{acme.id}/meetings", token=acme.api_key)
    assert [m["id"] for m in as_admin["meetings"]] == [mine["id"]]
    assert [m["id"] for m in (await api.ok("GET", "/meetings", token=acme.api_key))["meetings"]] == [mine["id"]]
    everything = {m["id"] for m in (await api.ok("GET", "/meetings", token=op))["meetings"]}
    assert {mine["id"], theirs["id"]} <= everything
    filtered = await api.ok("GET", f"/meetings?customer_id={other.id}", token=op)
    assert [m["id"] for m in filtered["meetings"]] == [theirs["id"]]
    status, body = await api.call("PATCH", f"/meetings/{mine['meeting_number']}", token=acme.api_key, json={"title": "x"})
    assert_error(status, body, 403, "forbidden")  # changing a meeting is its host's


async def test_operator_removes_content(conclave_server, api):
    op = operator_key(conclave_server)
    acme = await make_customer(api, op)
    ann = await make_host(api, acme)
    meeting = await make_meeting(api, ann)
    store = conclave_server.services.store
    for text in ("one", "two"):
        await store.append_chat(meeting["id"], "p1", "Bob", text, 1)
    status, body = await api.call("DELETE", f"/meetings/{meeting['meeting_number']}/content", token=ann.token)
    assert_error(status, body, 403, "forbidden")
    result = await api.ok("DELETE", f"/meetings/{meeting['meeting_number']}/content", token=op)
    removed = {"chat_messages": 2, "recordings": 0, "files": 0, "participants": 0, "consent_entries": 0,
               "webhook_deliveries": 0}  # fmt: skip
    assert result == {"meeting_number": meeting["meeting_number"], "removed": removed, "storage_pending": []}
    assert await store.list_chat(meeting["id"]) == []
    [entry] = (await api.ok("GET", "/audit?action=meeting.remove_content", token=op))["entries"]
    assert entry["target_id"] == meeting["id"] and entry["detail"] == {**removed, "storage_pending": 0}


# ---------------------------------------------------------------------- suspension


async def test_suspending_a_host_ends_their_live_meeting_and_sign_in(conclave_server, api):
    acme = await make_customer(api, operator_key(conclave_server))
    ann = await make_host(api, acme)
    meeting = await make_meeting(api, ann)
    store = conclave_server.services.store
    await store.start_live_session(meeting["id"], ann.id, 1)
    suspended = await api.ok("POST", f"/hosts/{ann.id}/suspend", token=acme.api_key)
    assert suspended["status"] == "suspended"
    assert (await store.get_meeting(meeting["id"])).status == "ended"
    assert (await store.list_live_sessions(host_id=ann.id)) == []
    status, body = await api.call("GET", "/auth/me", token=ann.token)
    assert_error(status, body, 401, "session_ended")
    status, body = await api.call("POST", "/auth/login", json={"email": ann.email, "password": PASSWORD})
    assert_error(status, body, 403, "account_suspended")
    await api.ok("POST", f"/hosts/{ann.id}/unsuspend", token=acme.api_key)
    await api.ok("POST", "/auth/login", json={"email": ann.email, "password": PASSWORD})


async def test_suspending_a_customer_ends_everything_of_it(conclave_server, api):
    op = operator_key(conclave_server)
    acme = await make_customer(api, op)
    ann = await make_host(api, acme)
    meeting = await make_meeting(api, ann)
    store = conclave_server.services.store
    await store.start_live_session(meeting["id"], ann.id, 1)
    await api.ok("POST", f"/customers/{acme.id}/suspend", token=op)
    assert (await store.get_meeting(meeting["id"])).status == "ended"
    assert_error(*await api.call("GET", "/auth/me", token=ann.token), 401, "session_ended")
    assert_error(*await api.call("GET", f"/customers/{acme.id}", token=acme.api_key), 403, "customer_suspended")
    assert_error(
        *await api.call("POST", "/auth/login", json={"email": ann.email, "password": PASSWORD}), 403, "account_suspended"
    )
    await api.ok("POST", f"/customers/{acme.id}/unsuspend", token=op)
    await api.ok("GET", f"/customers/{acme.id}", token=acme.api_key)


async def test_repeated_failed_sign_ins_are_rate_limited(conclave_server, api):
    from config import AuthConfig

    LOGIN_FAILURES_PER_EMAIL = AuthConfig().login_attempts_per_email_per_minute

    acme = await make_customer(api, operator_key(conclave_server))
    ann = await make_host(api, acme, "ann@acme.example")
    for _ in range(LOGIN_FAILURES_PER_EMAIL):
        status, body = await api.call("POST", "/auth/login", json={"email": ann.email, "password": "guess-guess"})
        assert_error(status, body, 401, "invalid_credentials")
    async with aiohttp.ClientSession() as session:
        async with session.post(api.base + "/auth/login", json={"email": ann.email, "password": PASSWORD}) as response:
            assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
            assert (await response.json())["error"]["code"] == "rate_limited"
    # Another account is not affected by this email's failures.
    other = await make_host(api, acme, "bob@acme.example")
    assert other.token.startswith("hs_")


async def test_forty_wrong_sign_ins_at_once_are_ten_tries(conclave_server, api):
    """Reserved before argon2 runs: concurrent guesses are counted as they arrive."""
    from config import AuthConfig

    limit = AuthConfig().login_attempts_per_email_per_minute
    acme = await make_customer(api, operator_key(conclave_server))
    ann = await make_host(api, acme, "ann@acme.example")
    async with aiohttp.ClientSession() as session:

        async def guess(n: int) -> int:
            body = {"email": ann.email, "password": f"guess-{n:04d}"}
            async with session.post(api.base + "/auth/login", json=body) as response:
                return response.status

        statuses = await asyncio.gather(*(guess(n) for n in range(40)))
    assert statuses.count(401) == limit and statuses.count(429) == 40 - limit, statuses
    # The host signing in from another client is not locked out by the guesser.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(api.base + "/auth/login", json={"email": ann.email, "password": PASSWORD}) as response:
            assert response.status == 200


async def test_host_sign_ins_expire_idle_and_absolute(conclave_server, api):
    """auth.host_session_idle_s (12 h) and host_session_max_s (7 days), on the server's
    clock; sign-out, a new password and a new sign-in end the old one too."""
    import time

    from config import AuthConfig

    accounts = conclave_server.services.accounts
    acme = await make_customer(api, operator_key(conclave_server))
    ann = await make_host(api, acme, "ann@acme.example")
    settings = AuthConfig()
    now = time.time()
    accounts._clock = lambda: now + settings.host_session_idle_s - 60  # noqa: SLF001 - the server's clock moves
    await api.ok("GET", "/auth/me", token=ann.token)  # used: still in use, and counted as a use
    accounts._clock = lambda: now + 2 * settings.host_session_idle_s - 120  # noqa: SLF001
    await api.ok("GET", "/auth/me", token=ann.token)
    accounts._clock = lambda: now + 3 * settings.host_session_idle_s  # noqa: SLF001 - idle too long
    assert_error(*await api.call("GET", "/auth/me", token=ann.token), 401, "session_ended")

    accounts._clock = time.time  # noqa: SLF001
    now = time.time()
    fresh = (await api.ok("POST", "/auth/login", json={"email": ann.email, "password": PASSWORD}))["token"]
    for hours in range(6, settings.host_session_max_s // 3600, 6):  # used every 6 hours...
        accounts._clock = lambda hours=hours: now + hours * 3600  # noqa: SLF001
        await api.ok("GET", "/auth/me", token=fresh)
    accounts._clock = lambda: now + settings.host_session_max_s + 1  # noqa: SLF001
    assert_error(*await api.call("GET", "/auth/me", token=fresh), 401, "session_ended")  # ...not past the max
    accounts._clock = time.time  # noqa: SLF001

    first = (await api.ok("POST", "/auth/login", json={"email": ann.email, "password": PASSWORD}))["token"]
    second = (await api.ok("POST", "/auth/login", json={"email": ann.email, "password": PASSWORD}))["token"]
    assert_error(*await api.call("GET", "/auth/me", token=first), 401, "session_ended")  # a new sign-in ends it
    await api.ok("PATCH", f"/hosts/{ann.id}", token=acme.api_key, json={"password": "another long password"})
    assert_error(*await api.call("GET", "/auth/me", token=second), 401, "session_ended")
