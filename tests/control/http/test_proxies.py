"""Who the client is behind a reverse proxy (control.http.proxies, http.trusted_proxies):
the pure rule, then a server behind a "proxy" on 127.0.0.1 where one client's wrong
passcodes do not lock out another, and a client reaching the port directly cannot claim
another address."""

from __future__ import annotations

import asyncio
import ipaddress

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from control.http.proxies import forwarded_client
from control.metrics.exporter import RATE_LIMITS

PROXIES = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("::1/128")]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),  # not a proxy: its header is ignored
        ("10.0.0.5", ["203.0.113.9"], "203.0.113.9"),  # one proxy
        ("10.0.0.5", ["1.2.3.4, 203.0.113.9"], "203.0.113.9"),  # the client wrote 1.2.3.4 itself
        ("10.0.0.5", ["203.0.113.9, 10.0.0.6"], "203.0.113.9"),  # two proxies of ours
        ("10.0.0.5", ["203.0.113.9", "10.0.0.6"], "203.0.113.9"),  # one header per proxy
        ("10.0.0.5", ["10.0.0.7, 10.0.0.6"], "10.0.0.7"),  # all proxies: the leftmost
        ("10.0.0.5", [], "10.0.0.5"),  # no header: the proxy itself
        ("10.0.0.5", ["203.0.113.9, garbage"], "10.0.0.5"),  # unreadable: the last trusted hop
        ("10.0.0.5", ["garbage, 203.0.113.9"], "203.0.113.9"),
        ("10.0.0.5", ["203.0.113.9:4711"], "203.0.113.9"),
        ("10.0.0.5", ["[2001:db8::1]:4711"], "2001:db8::1"),
        ("::1", ["2001:db8::2"], "2001:db8::2"),
        ("::ffff:10.0.0.5", ["203.0.113.9"], "203.0.113.9"),  # IPv4-mapped peer
        ("10.0.0.5", ["::ffff:203.0.113.9"], "203.0.113.9"),
    ],
)
def test_the_client_is_the_first_address_right_of_our_proxies(peer, headers, client):
    assert forwarded_client(peer, headers, PROXIES) == client


@pytest.mark.unit
def test_a_long_chain_is_read_only_so_far():
    chain = ", ".join(["10.0.0.9"] * 1000)
    assert forwarded_client("10.0.0.5", [f"203.0.113.9, {chain}"], PROXIES) == "10.0.0.9"


async def guess(session: aiohttp.ClientSession, server, meeting, passcode: str, forwarded_for: str) -> int:
    url = f"{server.base_url}/api/v1/meetings/{meeting['number']}/join"
    headers = {"X-Forwarded-For": forwarded_for}
    async with session.post(url, json={"name": "x", "passcode": passcode}, headers=headers) as response:
        return response.status


@pytest.mark.process
async def test_behind_a_proxy_one_clients_guesses_do_not_lock_out_another(conclave_server_factory):
    server = await conclave_server_factory(http={"trusted_proxies": ["127.0.0.1/32"]})
    meeting = await server.create_meeting()
    limit = server.services.cfg.auth.passcode_attempts_per_minute
    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(*(guess(session, server, meeting, f"{n}x", "203.0.113.66") for n in range(20)))
        assert statuses.count(403) == limit and statuses.count(429) == 20 - limit
        # The attacker's own right passcode waits too; a colleague behind the same proxy does not.
        assert await guess(session, server, meeting, meeting["passcode"], "203.0.113.66") == 429
        assert await guess(session, server, meeting, meeting["passcode"], "198.51.100.20") == 200
        # Writing another address in front of what the proxy appends changes nothing.
        assert await guess(session, server, meeting, meeting["passcode"], "198.51.100.21, 203.0.113.66") == 429
        async with session.get(f"{server.base_url}/metrics") as response:
            families = {family.name: family for family in text_string_to_metric_families(await response.text())}
    refused = {s.labels["limit"]: s.value for s in families["conclave_http_rate_limited"].samples
               if s.name == "conclave_http_rate_limited_total"}  # fmt: skip
    # Every known limit is exported (at 0 until it refuses): only this one refused.
    assert {name: count for name, count in refused.items() if count} == {"passcode_per_meeting": 20 - limit + 2}
    assert set(refused) == set(RATE_LIMITS)


@pytest.mark.process
async def test_without_trusted_proxies_the_header_is_ignored(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting()
    limit = server.services.cfg.auth.passcode_attempts_per_minute
    async with aiohttp.ClientSession() as session:
        statuses = [await guess(session, server, meeting, f"{n}x", f"203.0.113.{n}") for n in range(limit + 3)]
        assert statuses.count(403) == limit and statuses.count(429) == 3, "a made-up address must not buy tries"
