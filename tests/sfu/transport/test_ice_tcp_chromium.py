"""ICE-TCP proven with real Chromium (issue 12, item 2): a participant who cannot send UDP
still joins, and media flows both ways over TCP to the worker's passive candidate.

The server listens on the host side of a veth (tests/support/shaped_meeting.py); one
Chromium runs inside the link's network namespace, the other on the host, each publishing
its fake camera and microphone and watching the other. Two ways to leave TCP as the only
path:

- `udp_blocked`: the server offers UDP and TCP (the default); inside the namespace every
  UDP send is prohibited (`ip rule ... ipproto udp prohibit`), so that page's only path
  is TCP while the host page keeps UDP;
- `tcp_only_offer`: the server offers only TCP candidates (`sfu.ice_udp: false`, the test
  setting) and nothing is blocked: both pages go over TCP.

Judged from the pages' own getStats: the selected candidate pair of every peer
connection of a TCP page is tcp, to the worker's ICE-TCP port; frames decoded both ways;
and the worker's ICE-TCP connection gauge on /metrics.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.support import browser
from tests.support.shaped_link import unavailable_reason
from tests.support.shaped_meeting import Stage

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or ""),
]

# The selected candidate pair of every RTCPeerConnection of the page (captured by the
# stage's init script): its local and remote candidates' protocol, type and port.
SELECTED_PAIRS = """
async () => {
  const out = [];
  for (const pc of window.__conclavePcs || []) {
    if (pc.connectionState === 'closed') continue;
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
    const pair = pairId && stats.get(pairId);
    if (!pair) { out.push({state: pc.connectionState, pair: null}); continue; }
    const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
    out.push({state: pc.connectionState, bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived,
              local: {protocol: local.protocol, type: local.candidateType, tcpType: local.tcpType ?? null},
              remote: {protocol: remote.protocol, type: remote.candidateType, port: remote.port, address: remote.address}});
  }
  return out;
}
"""


async def selected_pairs(page) -> list[dict]:
    return await page.evaluate(SELECTED_PAIRS)


async def wait_pairs(page, protocol: str, timeout: float = 30.0) -> list[dict]:
    """Polls until the page has its two peer connections (publish, subscribe) connected,
    each with a selected pair of `protocol`; raises with what it saw otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pairs = await selected_pairs(page)
        if len(pairs) >= 2 and all(
            p["state"] == "connected" and (p.get("remote") or {}).get("protocol") == protocol for p in pairs
        ):
            return pairs
        if loop.time() >= deadline:
            name = getattr(page, "conclave_name", "page")
            raise AssertionError(
                f"{name}: no {protocol} pair selected within {timeout:.0f}s: {pairs}{browser.page_errors(page)}"
            )
        await asyncio.sleep(0.5)


def gauge(metrics: str, name: str) -> float:
    match = re.search(rf'^{name}{{worker="0"}} ([0-9.e+]+)$', metrics, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


@pytest.mark.parametrize("case", ["udp_blocked", "tcp_only_offer"])
async def test_chromium_without_udp_joins_over_ice_tcp_and_media_flows_both_ways(tmp_path, case):
    sfu = {"ice_udp": False} if case == "tcp_only_offer" else {}
    async with Stage(tmp_path, sfu=sfu) as stage:
        link = stage.add_link()
        if case == "udp_blocked":
            link.block_udp()
        server = await stage.start()
        worker = server.services.workers.workers[0]
        assert worker.tcp_port, "the worker has no ICE-TCP port"

        inside = await stage.member("NoUdp", link)
        host = await stage.member("Host")
        inside_id, host_id = await browser.participant_id(inside), await browser.participant_id(host)

        # Media both ways: frames decoded (camera) and packets received (microphone), rising.
        await browser.wait_media_from(inside, host_id, timeout=40)
        await browser.wait_media_from(host, inside_id, timeout=40)

        pairs = await wait_pairs(inside, "tcp")
        print(f"\n{case}: NoUdp's selected pairs: {pairs}")
        for pair in pairs:
            assert pair["remote"]["type"] == "host" and pair["remote"]["port"] == worker.tcp_port, pair
            assert pair["local"]["protocol"] == "tcp" and pair["local"]["tcpType"] == "active", pair
            assert pair["bytesSent"] > 0 and pair["bytesReceived"] > 0, pair
        host_pairs = await wait_pairs(host, "udp" if case == "udp_blocked" else "tcp")
        print(f"{case}: Host's selected pairs: {host_pairs}")

        tcp_pages = 1 if case == "udp_blocked" else 2
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:  # the stats snapshot control polls (sfu.stats_interval_s) catches up
            metrics = await server.metrics()
            open_connections = gauge(metrics, "conclave_sfu_ice_tcp_connections")
            if open_connections >= 2 * tcp_pages or loop.time() >= deadline:
                break
            await asyncio.sleep(0.5)
        assert open_connections >= 2 * tcp_pages, metrics
