"""A NACK flood at a live worker process: the attacked worker stays cheap, another meeting
on it is not slowed.

A real `python -m sfu.worker` (spawned as control does, bench.plainrtp.ours.WorkerProcess)
with two meetings, each on plain SRTP transports (docs/plain-rtp.md; the RTCP a
subscriber sends reaches the same `feedback.handle_rtcp` and `Consumer.on_nack` as on a
WebRTC transport):

- meeting A: a 1200-byte video stream at 200 packets/s to one subscriber, the attacker.
  For 10 s it sends 50 SRTCP compounds a second, each naming the last 1,024 packets it
  received five times (1.3 KB; before the budget each bought ~5,000 retransmissions);
- meeting B: a 1000 packets/s stream fanned out to 4 subscribers that read everything.

Judged by the worker's own numbers, with generous margins (the machine is shared): its
CPU over the attack from /proc (< 50 % of a core), the p99 of its forwarding-time
histogram over the attack (< 5 ms), meeting B losing nothing, and the retransmissions
within meeting A's budget, the rest counted as refused by reason.
"""

from __future__ import annotations

import base64
import socket
import time

import pytest

from bench.plainrtp import procfs
from bench.plainrtp.ours import WorkerProcess
from bench.plainrtp.packets import VP8_KEYFRAME_START, key_base64, new_srtp_key, srtp_session
from sfu import api
from sfu.wire import rtcp, rtp
from tests.support.forward_time import histogram, p99_bound_us

pytestmark = pytest.mark.process

ATTACK_S = 10.0
COMPOUNDS_PER_S = 50
A_RATE, B_RATE, B_FANOUT = 200, 1000, 4
PAYLOAD = VP8_KEYFRAME_START + bytes(1200 - 12 - len(VP8_KEYFRAME_START))


class Stream:
    """One SRTP publisher into a plain transport: VP8-looking packets, RTP time = real time."""

    def __init__(self, worker: WorkerProcess, router: str, ssrc: int) -> None:
        self.key = new_srtp_key()
        self.tx = srtp_session(self.key, outbound=True)
        self.ssrc = ssrc
        self.seq = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        worker.request(api.RouterCreate(router_id=router))
        info = worker.request(api.PlainTransportCreate(router_id=router, transport_id=f"{router}-in", listen_ip="127.0.0.1", srtp=True))
        self.target = (info.ip, info.port)
        worker.request(api.PlainTransportConnect(transport_id=f"{router}-in", remote_srtp_key_base64=key_base64(self.key)))
        made = worker.request(api.PlainProducerCreate(transport_id=f"{router}-in", kind="video", codec_name="VP8", clock_rate=90000, payload_type=96, ssrc=ssrc))
        self.producer_id = made.producer.producer_id

    def send(self, now: float) -> None:
        packet = rtp.build_packet(96, self.seq, int(now * 90000) & 0xFFFFFFFF, self.ssrc, payload=PAYLOAD)
        self.sock.sendto(self.tx.protect(packet), self.target)
        self.seq = (self.seq + 1) & 0xFFFF


class Subscriber:
    """A plain SRTP consumer's receiving end; reads every packet, keeps the last sequence number."""

    def __init__(self, worker: WorkerProcess, router: str, name: str, producer_id: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.key = new_srtp_key()  # what we protect our RTCP with
        self.tx = srtp_session(self.key, outbound=True)
        transport_id = f"{router}-{name}"
        info = worker.request(api.PlainTransportCreate(router_id=router, transport_id=transport_id, listen_ip="127.0.0.1", srtp=True))
        self.transport = (info.ip, info.port)
        worker.request(
            api.PlainTransportConnect(
                transport_id=transport_id, remote_ip="127.0.0.1", remote_port=self.sock.getsockname()[1],
                remote_srtp_key_base64=key_base64(self.key),
            )
        )  # fmt: skip
        consumer = worker.request(api.ConsumerCreate(transport_id=transport_id, consumer_id=f"{transport_id}-c", producer_id=producer_id))
        self.ssrc = consumer.ssrc
        self.worker_key = base64.b64decode(info.srtp_key_base64)
        self.received = 0
        self.last_seq: int | None = None

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return
            if len(data) >= 12 and not 191 < data[1] < 224:
                self.received += 1
                self.last_seq = int.from_bytes(data[2:4], "big")


def test_a_nack_flood_neither_loads_the_worker_nor_slows_another_meeting():
    worker = WorkerProcess(cpu=None)
    sockets: list[socket.socket] = []
    try:
        worker.start()
        a = Stream(worker, "meeting-a", 0xA0A0A0A0)
        attacker = Subscriber(worker, "meeting-a", "attacker", a.producer_id)
        b = Stream(worker, "meeting-b", 0xB0B0B0B0)
        others = [Subscriber(worker, "meeting-b", f"s{i}", b.producer_id) for i in range(B_FANOUT)]
        sockets += [a.sock, b.sock, attacker.sock, *(s.sock for s in others)]

        def run(seconds: float, attack: bool) -> int:
            """Both streams at their rates (and the flood): paced on a 2 ms tick, bounded."""
            start = time.monotonic()
            sent_a = sent_b = compounds = 0
            while (now := time.monotonic()) - start < seconds:
                elapsed = now - start
                while sent_a < elapsed * A_RATE:
                    a.send(now)
                    sent_a += 1
                while sent_b < elapsed * B_RATE:
                    b.send(now)
                    sent_b += 1
                attacker.drain()
                for subscriber in others:
                    subscriber.drain()
                if attack and attacker.last_seq is not None and compounds < elapsed * COMPOUNDS_PER_S:
                    named = [(attacker.last_seq - i) & 0xFFFF for i in range(1024)]
                    compound = rtcp.build_nack(0x5EED, attacker.ssrc, named) * 5
                    attacker.sock.sendto(attacker.tx.protect_rtcp(compound), attacker.transport)
                    compounds += 1
                time.sleep(0.002)
            return sent_b if not attack else compounds

        run(6.0, attack=False)  # fill meeting A's cache (1,024 packets) and warm up
        for subscriber in [attacker, *others]:
            subscriber.drain()
        stats_before = worker.stats()
        received_before = [s.received for s in others]
        b_sent_before = b.seq
        cpu_before = procfs.cpu_seconds_stat(worker.pid)
        started = time.monotonic()

        compounds = run(ATTACK_S, attack=True)

        cpu_used = procfs.cpu_seconds_stat(worker.pid) - cpu_before
        wall = time.monotonic() - started
        time.sleep(0.3)
        for subscriber in others:
            subscriber.drain()
        stats_after = worker.stats()
    finally:
        worker.stop()
        for s in sockets:
            s.close()

    counters = {k: stats_after.counters[k] - stats_before.counters.get(k, 0) for k in stats_after.counters}
    refused = {r: counters[f"nack_refused_{r}"] for r in ("budget", "duplicate", "too_old")}
    print(
        f"attack: {compounds} compounds in {wall:.1f} s; worker CPU {cpu_used / wall:.1%} of a core; "
        f"NACKed {counters['nack_requested']}, answered {counters['nack_answered']}, refused {refused}, "
        f"missed {counters['nack_missed']}"
    )
    assert compounds >= 0.8 * ATTACK_S * COMPOUNDS_PER_S  # the attack really ran
    assert counters["nack_requested"] >= compounds * 5 * 1024 * 0.99

    # The worker: well under half a core, whatever the flood.
    assert cpu_used / wall < 0.5, f"worker used {cpu_used / wall:.0%} of a core"

    # Retransmissions: at most twice what meeting A forwarded (200 packets/s), plus a
    # second's worth of slack for the window edges; the rest refused and counted.
    assert counters["nack_answered"] <= 2 * A_RATE * (wall + 1)
    assert sum(refused.values()) >= counters["nack_requested"] - counters["nack_answered"] - counters["nack_missed"]
    assert refused["budget"] > 0

    # Meeting B: its fan-out time stayed small (p99 of the worker's own histogram), and
    # every packet reached each of its subscribers.
    p99 = p99_bound_us(histogram(stats_before.counters), histogram(stats_after.counters))
    sent_b = (b.seq - b_sent_before) & 0xFFFF
    received_b = [s.received - before for s, before in zip(others, received_before)]
    print(f"meeting B: p99 forwarding time <= {p99} µs; sent {sent_b}, received {received_b}")
    assert p99 <= 5000, f"p99 forwarding time in the bucket up to {p99} µs"
    for index, received in enumerate(received_b):
        assert received >= sent_b * 0.999, (index, sent_b, received)
