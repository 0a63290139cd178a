"""A bench client process: many codec-less participants on one uvloop.

Started by the coordinator (bench/runner.py) with multiprocessing; it pins itself to the
CPUs it is given, then obeys commands on its pipe, one reply each:

    {"cmd": "join", "participants": [spec, ...], "spread_s": S, "concurrency": C}
        -> {"event": "joined", "ok": [...], "failed": {name: error}}
    {"cmd": "mark"}    -> {"event": "marked"}      (start of a measurement window)
    {"cmd": "report"}  -> {"event": "report", ...} (counters since the mark)
    {"cmd": "media", "streams": N} -> {"event": "media", "participants": {name: {...}}}
                       (when each had N streams started, what its socket received)
    {"cmd": "stop"}    -> {"event": "stopped"}     (everyone leaves; the process exits)

A participant spec: {"name", "meeting": MeetingRef dict, "publish": ["audio", "video"]}.
Every participant answers the server's subscribe offers (it receives everything others
publish, as the web client does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import traceback
from array import array
from typing import Any

import aiohttp
import uvloop
from aiortc.rtcdtlstransport import RTCCertificate

from bench.media import MediaClip, MediaParams, load_clip
from bench.meetings import MeetingRef, open_signaling
from bench.peer import LATENCY_BUCKETS, Link, Publisher, ServerTransport, Subscriber, publish_offer, subscribe_answer
from bench.plainrtp.procfs import udp_drops
from client.signaling import Message, SignalingClient
from sfu.transport.dtls import certificate_fingerprint
from sfu.wire import sdp

log = logging.getLogger("bench.client")

JOIN_TIMEOUT_S = 30.0
LEAVE_TIMEOUT_S = 5.0


class Participant:
    def __init__(self, spec: dict[str, Any], shared: ClientShared) -> None:
        self.name: str = spec["name"]
        self.meeting = MeetingRef(**spec["meeting"])
        self.publish_kinds: list[str] = list(spec.get("publish", []))
        self.shared = shared
        self.signaling: SignalingClient | None = None
        self.publisher: Publisher | None = None
        self.publish_link: Link | None = None
        self.subscribe_link = Link(shared.certificate, shared.fingerprint, timestamps=True)
        self.kinds: dict[int, str] = {}
        self.join_started = 0.0
        self.subscriber = Subscriber(
            self.subscribe_link, self.kinds, 0.0, passive=bool(spec.get("passive")), passive_after=int(spec.get("passive_after", 0))
        )
        self.subscriber.latency = shared.latency
        self.offers: asyncio.Queue[Message] = asyncio.Queue()
        self.signaling_ready = asyncio.Event()
        self.offer_task: asyncio.Task[None] | None = None
        self.errors: list[str] = []
        self.answered = 0

    async def join(self) -> None:
        self.join_started = self.subscriber.join_started = time.time()
        self.offer_task = asyncio.ensure_future(self._apply_offers())
        self.signaling, _ = await open_signaling(
            self.shared.session, self.meeting, self.name, {"offer": self.offers.put_nowait}, timeout=JOIN_TIMEOUT_S
        )
        self.signaling_ready.set()  # offers that came with `joined` wait for this
        if self.publish_kinds:
            await self._publish()

    async def _publish(self) -> None:
        assert self.signaling is not None
        link = self.publish_link = Link(self.shared.certificate, self.shared.fingerprint)
        ssrcs = {kind: random.getrandbits(32) or 1 for kind in self.publish_kinds}
        offer, tracks = publish_offer(link.ice_ufrag, link.ice_pwd, link.fingerprint, ssrcs, self.name, self.name)
        reply = await self.signaling.request(
            {"type": "publish", "sdp": offer, "tracks": tracks}, timeout=JOIN_TIMEOUT_S, expect=("publish_answer",)
        )
        await link.connect(ServerTransport(sdp.parse(reply["sdp"])), timeout=JOIN_TIMEOUT_S)
        self.publisher = Publisher(link, self.shared.clip, ssrcs)
        self.publisher.start()

    async def _apply_offers(self) -> None:
        await self.signaling_ready.wait()
        while True:
            message = await self.offers.get()
            try:
                await self._apply_offer(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep answering later offers; the report shows it
                self.errors.append(f"offer: {type(exc).__name__}: {exc}")

    async def _apply_offer(self, message: Message) -> None:
        assert self.signaling is not None
        offer = sdp.parse(message["sdp"])
        for media in offer.media:
            for ssrc in media.ssrcs:
                self.kinds[ssrc] = media.kind
        link = self.subscribe_link
        answer = subscribe_answer(offer, link.ice_ufrag, link.ice_pwd, link.fingerprint)
        await self.signaling.request({"type": "answer", "sdp": answer}, timeout=JOIN_TIMEOUT_S, expect=("ok",))
        self.answered += 1
        if link.server is None:
            await link.connect(ServerTransport(offer), timeout=JOIN_TIMEOUT_S)

    def counters(self) -> dict[str, Any]:
        result: dict[str, Any] = dict(self.subscriber.counters())
        if self.publisher is not None:
            for key, value in self.publisher.counters().items():
                result["pub_" + key] = value
        return result

    def media(self, streams: int) -> dict[str, Any]:
        """When it had `streams` streams (wall time), and what its signaling socket received."""
        signaling = self.signaling
        return {
            "join_started": self.join_started,
            "joined": signaling is not None,
            "media_at": self.subscriber.media_started_at(streams),
            "signaling_bytes": signaling.received_bytes if signaling else 0,
            "signaling_messages": dict(signaling.received) if signaling else {},
        }

    async def leave(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
        if self.offer_task is not None:
            self.offer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.offer_task
        if self.signaling is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.signaling.leave(LEAVE_TIMEOUT_S), LEAVE_TIMEOUT_S + 1)
        for link in (self.publish_link, self.subscribe_link):
            if link is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(link.close(), LEAVE_TIMEOUT_S)


class ClientShared:
    """What every participant of the process shares: DTLS certificate, media, HTTP session."""

    def __init__(self, clip: MediaClip) -> None:
        self.certificate = RTCCertificate.generateCertificate()
        self.fingerprint = certificate_fingerprint(self.certificate)
        self.clip = clip
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.latency = array("Q", bytes(8 * LATENCY_BUCKETS))


class ClientProcess:
    def __init__(self, conn: Any, clip: MediaClip) -> None:
        self.conn = conn
        self.shared = ClientShared(clip)
        self.participants: dict[str, Participant] = {}
        self.failed: dict[str, str] = {}
        self.mark: dict[str, Any] = {}

    async def run(self) -> None:
        # The pipe stays blocking (a reply can be large); a worker thread waits on it.
        loop = asyncio.get_running_loop()
        try:
            while True:
                command = await loop.run_in_executor(None, self._receive)
                reply = await self.handle(command)
                await loop.run_in_executor(None, self.conn.send, reply)
                if command.get("cmd") not in ("join", "mark", "report", "media"):
                    return
        finally:
            await self.shared.session.close()

    def _receive(self) -> dict[str, Any]:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            return {"cmd": "stop"}  # the coordinator is gone: leave and exit

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command.get("cmd")
        if name == "join":
            return await self.join(command["participants"], command.get("spread_s", 0.0), command.get("concurrency", 4))
        if name == "mark":
            self.mark = self.snapshot()
            return {"event": "marked"}
        if name == "report":
            return self.report()
        if name == "media":
            return {"event": "media", "participants": {n: p.media(command.get("streams", 0)) for n, p in self.participants.items()}}
        await self.stop()
        return {"event": "stopped"}

    async def join(self, specs: list[dict[str, Any]], spread_s: float, concurrency: int) -> dict[str, Any]:
        gate = asyncio.Semaphore(max(1, concurrency))
        start = time.monotonic()

        async def one(spec: dict[str, Any], delay: float) -> None:
            participant = Participant(spec, self.shared)
            self.participants[participant.name] = participant
            if delay:
                await asyncio.sleep(max(0.0, start + delay - time.monotonic()))
            try:
                if spread_s:
                    await participant.join()  # a storm: everyone at their own instant
                else:
                    async with gate:
                        await participant.join()
            except Exception as exc:
                self.failed[participant.name] = f"{type(exc).__name__}: {exc}"

        delays = sorted(random.uniform(0, spread_s) for _ in specs) if spread_s else [0.0] * len(specs)
        await asyncio.gather(*(one(spec, delay) for spec, delay in zip(specs, delays)))
        ok = [name for name in self.participants if name not in self.failed]
        return {"event": "joined", "ok": ok, "failed": dict(self.failed)}

    def snapshot(self) -> dict[str, Any]:
        counters = {name: p.counters() for name, p in self.participants.items()}
        passive = {p.subscribe_link.sock.getsockname()[1]: name for name, p in self.participants.items() if p.subscriber.passive}
        for port, drops in udp_drops(list(passive)).items():
            counters[passive[port]]["passive_delivered"] = drops
        return {
            "participants": counters,
            "latency": array("Q", self.shared.latency),
            "cpu": _process_cpu_seconds(),
            "time": time.monotonic(),
        }

    def report(self) -> dict[str, Any]:
        now = self.snapshot()
        before = self.mark or {"participants": {}, "latency": array("Q", bytes(8 * LATENCY_BUCKETS)), "cpu": 0.0, "time": now["time"]}
        participants = {}
        for name, counters in now["participants"].items():
            base = before["participants"].get(name, {})
            participant = self.participants[name]
            participants[name] = {
                "window": {k: v - base.get(k, 0) for k, v in counters.items()},
                "total": counters,
                "join_time_s": participant.subscriber.join_time,
                "keyframe_wait_s": participant.subscriber.keyframe_wait,
                "errors": participant.errors[-5:],
                "publishing": participant.publisher is not None,
            }
        latency = {i: a - b for i, (a, b) in enumerate(zip(now["latency"], before["latency"])) if a != b}
        return {
            "event": "report",
            "pid": os.getpid(),
            "participants": participants,
            "failed": dict(self.failed),
            "latency_hist": latency,  # bucket -> packets (sparse)
            "cpu_s": now["cpu"] - before["cpu"],
            "window_s": now["time"] - before["time"],
        }

    async def stop(self) -> None:
        await asyncio.gather(*(p.leave() for p in self.participants.values()), return_exceptions=True)


def _process_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def client_main(conn: Any, params: dict[str, Any], cpus: list[int] | None, log_level: str = "WARNING") -> None:
    """Entry point of a client process (multiprocessing target)."""
    logging.basicConfig(level=log_level, format=f"%(asctime)s bench-client-{os.getpid()} %(levelname)s %(name)s: %(message)s")
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
    try:
        clip = load_clip(MediaParams(**params))

        async def main() -> None:
            await ClientProcess(conn, clip).run()

        uvloop.run(main())
    except Exception:
        with contextlib.suppress(Exception):
            conn.send({"event": "crashed", "error": traceback.format_exc()})
        raise
