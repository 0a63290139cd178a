"""Placement latency and joins per second across the nodes of a cluster (issue 13's bench).

    python -m bench.cluster [--nodes 3] [--meetings 30] [--joins 300] [--concurrency 20] [--json out.json]

Starts a trial cluster on this machine (`conclave cluster dev`'s control.cli.cluster_dev:
real Redis, real PostgreSQL, N `conclave serve` processes on loopback), then, with the
operator key, one customer and one host per meeting (a host holds one live meeting):

- **placement**: each meeting is created and started through the nodes in turn; the
  start places it (Redis SET NX, or compare-and-set) on the least-loaded node. Reported:
  the start's latency (p50, p95, max) and how many meetings each node got.
- **REST joins**: `--joins` joins (`POST .../join` with the passcode), spread over the
  meetings and sent through the nodes in turn, `--concurrency` at a time: most reach a
  node that does not hold the meeting and are answered with the holder's socket URL.
  Reported: joins per second, latency p50 / p95.
- **signaling joins**: the same joins followed by the WebSocket `join` on the holder (the
  participant is in the meeting: its transports exist on the holder's worker, no media).
  Reported: joins per second, latency p50 / p95.

Then the same with `--compare` nodes (default 1) in the same command: absolute numbers
vary by a factor of two between days on these shared machines, the ratio does not.
Bounded: at most MAX_MEETINGS meetings and MAX_JOINS joins, each request with a timeout;
every process started is stopped by PID and the directory removed, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.meetings import MeetingRef, open_signaling
from control.cli.cluster_dev import DevCluster
from control.cli.local_servers import free_ports

MAX_MEETINGS = 200
MAX_JOINS = 2000
REQUEST_TIMEOUT_S = 30.0
PASSWORD = "bench-" + secrets.token_hex(8)
# The bench joins from one address: the per-client limits would (rightly) stop it.
BENCH_SETTINGS = {
    "CONCLAVE_AUTH__JOINS_PER_ADDRESS_PER_MINUTE": "1000000",
    "CONCLAVE_AUTH__LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE": "1000000",
    "CONCLAVE_SIGNALING__MAX_PARTICIPANTS_PER_MEETING": "1000",
    "CONCLAVE_SIGNALING__MAX_UNJOINED_SOCKETS_PER_ADDRESS": "1000",
    "CONCLAVE_LOGGING__LEVEL": "warning",
}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


class Operator:
    def __init__(self, session: aiohttp.ClientSession, urls: list[str], key: str) -> None:
        self.session, self.urls, self.key = session, urls, key

    async def call(self, url: str, method: str, path: str, body: Any = None, token: str | None = None,
                   expect: int = 200) -> Any:  # fmt: skip
        headers = {"Authorization": f"Bearer {token or self.key}"}
        async with self.session.request(method, f"{url}/api/v1{path}", json=body, headers=headers) as answer:
            data = await answer.json(content_type=None)
            if answer.status != expect:
                raise RuntimeError(f"{method} {path} on {url}: HTTP {answer.status} {data}")
            return data

    async def meeting(self, n: int) -> tuple[MeetingRef, float, str]:
        """A host of its own makes meeting n through node n % N and starts it: (the
        meeting, the start's seconds, the node holding it)."""
        url = self.urls[n % len(self.urls)]
        customer = await self.call(url, "POST", "/customers", {"name": f"Bench {n}"}, expect=201)
        email = f"bench{n}-{secrets.token_hex(3)}@example.com"
        await self.call(url, "POST", f"/customers/{customer['customer']['id']}/hosts",
                        {"email": email, "name": f"Bench host {n}", "password": PASSWORD}, expect=201)  # fmt: skip
        token = (await self.call(url, "POST", "/auth/login", {"email": email, "password": PASSWORD}))["token"]
        made = await self.call(url, "POST", "/meetings", {"title": f"bench {n}", "waiting_room": False},
                               token=token, expect=201)  # fmt: skip
        started = time.perf_counter()
        await self.call(url, "POST", f"/meetings/{made['meeting_number']}/start", token=token)
        took = time.perf_counter() - started
        holder = await self.holder(url, made["meeting_number"], made["passcode"])
        return MeetingRef(url, made["meeting_number"], made["passcode"]), took, holder

    async def holder(self, url: str, number: str, passcode: str) -> str:
        """The node a join is sent to (the host part of its socket URL)."""
        async with self.session.post(f"{url}/api/v1/meetings/{number}/join",
                                     json={"name": "Probe", "passcode": passcode}) as answer:  # fmt: skip
            body = await answer.json(content_type=None)
        return body["ws_url"].split("/api/")[0]


async def timed_joins(meetings: list[MeetingRef], urls: list[str], joins: int, concurrency: int,
                      signaling: bool, session: aiohttp.ClientSession) -> dict[str, Any]:  # fmt: skip
    """`joins` joins spread over the meetings, sent through the nodes in turn."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures: list[str] = []
    opened = []

    async def one(n: int) -> None:
        meeting = meetings[n % len(meetings)]
        through = MeetingRef(urls[n % len(urls)], meeting.meeting_id, meeting.passcode)
        async with gate:
            started = time.perf_counter()
            try:
                if signaling:
                    client, _ = await asyncio.wait_for(open_signaling(session, through, f"j{n}", {}), REQUEST_TIMEOUT_S)
                    opened.append(client)
                else:
                    async with session.post(f"{through.base_url}/api/v1/meetings/{through.meeting_id}/join",
                                            json={"name": f"j{n}", "passcode": through.passcode}) as answer:  # fmt: skip
                        if answer.status != 200:
                            raise RuntimeError(f"HTTP {answer.status}")
                        await answer.read()
                latencies.append(time.perf_counter() - started)
            except Exception as exc:  # counted and reported: one failure does not stop the bench
                failures.append(f"{type(exc).__name__}: {exc}"[:200])

    began = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(joins)))
    elapsed = time.perf_counter() - began
    for client in opened:
        await client.close()
    return {"joins": len(latencies), "failed": len(failures), "first_failures": failures[:3],
            "joins_per_s": round(len(latencies) / elapsed, 1), **percentiles(latencies)}  # fmt: skip


async def measure(cluster: DevCluster, args: argparse.Namespace) -> dict[str, Any]:
    urls = [f"http://127.0.0.1:{cluster.first_port + i}" for i in range(cluster.count)]
    key = cluster.operator_key_file.read_text().strip()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    # No cap on connections: the signaling joins keep every socket open until the end
    # (aiohttp's default of 100 would make the 101st wait for one to close).
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        operator = Operator(session, urls, key)
        made = [await operator.meeting(n) for n in range(args.meetings)]
        meetings = [m for m, _, _ in made]
        spread: dict[str, int] = {}
        for _, _, holder in made:
            spread[holder] = spread.get(holder, 0) + 1
        rest = await timed_joins(meetings, urls, args.joins, args.concurrency, False, session)
        live = await timed_joins(meetings, urls, args.joins, args.concurrency, True, session)
    return {
        "nodes": cluster.count,
        "placement": {"meetings": len(made), **percentiles([t for _, t, _ in made]),
                      "meetings_per_node": dict(sorted(spread.items()))},  # fmt: skip
        "rest_joins": rest,
        "signaling_joins": live,
    }


def run_cluster(nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="conclave-bench-cluster-") as root:
        Path(root).chmod(0o711)  # PostgreSQL runs as `postgres` when we are root
        cluster = DevCluster(Path(root), nodes, free_consecutive(nodes), BENCH_SETTINGS)
        try:
            cluster.start()
            return asyncio.run(measure(cluster, args))
        finally:
            cluster.stop()


def free_consecutive(count: int) -> int:
    """The first of `count` consecutive ports free on 127.0.0.1 (node i listens on first + i)."""
    for _ in range(50):
        first = free_ports(1)[0]
        if first + count < 65535 and _bindable(first, count):
            return first
    raise RuntimeError("no consecutive free ports")


def _bindable(first: int, count: int) -> bool:
    for port in range(first, first + count):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--compare", type=int, default=1, help="then the same with this many nodes (0: skip)")
    parser.add_argument("--meetings", type=int, default=30)
    parser.add_argument("--joins", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if not (1 <= args.meetings <= MAX_MEETINGS and 1 <= args.joins <= MAX_JOINS and 1 <= args.concurrency <= 200):
        parser.error(f"--meetings 1..{MAX_MEETINGS}, --joins 1..{MAX_JOINS}, --concurrency 1..200")
    results = [run_cluster(args.nodes, args)]
    if args.compare:
        results.append(run_cluster(args.compare, args))
    print(json.dumps(results, indent=1))
    if len(results) == 2:
        for kind in ("rest_joins", "signaling_joins"):
            ratio = results[0][kind]["joins_per_s"] / max(results[1][kind]["joins_per_s"], 1e-9)
            print(f"{kind}: {args.nodes} nodes / {args.compare}: {ratio:.2f}x joins per second")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
