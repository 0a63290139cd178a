"""The load generator: one paced packet source and N counting receivers in one thread.

A phase sends at a fixed rate for a bounded time, reading every receiver socket as it
becomes readable (select). Measurement covers the window after a warm-up: the forwarder's
whole-process CPU (user + system, every thread of every PID given) and packets out,
counted as what the receivers read plus what the kernel dropped at their sockets (so a
generator that falls behind under-counts nothing). After the source stops, a short drain lets in-flight
packets arrive, then loss is what the receivers never saw out of 16 x sent.

Latency: the receiver reads the send time out of sampled packets (decrypting the sample
when the stream is SRTP) and subtracts it from the time it read the packet.

Batched mode (`batched=True`, the scaling part): packets are built before the phase and
sent with sendmmsg every millisecond (bench/plainrtp/mmsg.py), so the generator costs
little; their send time is the build time, so such phases measure no latency.
"""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

import pylibsrtp

from bench.plainrtp import procfs
from bench.plainrtp.mmsg import MAX_PREBUILT_BYTES, PrebuiltStream
from bench.plainrtp.packets import PacketSource, send_time_ns, srtp_session
from sfu.transport.srtp import FastSrtp

RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
PASSIVE_BUFFER_BYTES = 4096  # the kernel's minimum: a passive receiver counts by its drops
MAX_DRAIN_PER_EVENT = 256
MAX_SEND_BURST = 64
MAX_BACKLOG_S = 0.005
TOUCH_INTERVAL_S = 0.02
MAX_LATENCY_SAMPLES = 50_000
DRAIN_QUIET_S = 0.2
DRAIN_MAX_S = 2.0
BATCH_TICK_S = 0.001  # batched generator: one sendmmsg per stream this often


@dataclass
class PhaseResult:
    label: str
    offered_pps_in: float
    window_s: float
    sent_in_window: int
    packets_out: int  # arrived at the receivers' sockets during the window
    pps_out: float
    forwarder_cpu_s: float
    forwarder_cpu_util: float  # fraction of one core
    cpu_us_per_packet: float | None
    cpu_us_per_packet_stat: float | None  # the same from /proc/PID/stat ticks (10 ms resolution)
    generator_cpu_util: float
    others_cpu_util: float  # cores used by every other process of the machine meanwhile
    steal_util: float  # cores the hypervisor took away meanwhile
    generator_skipped: int  # packets not sent because the generator fell > 5 ms behind
    sent_total: int
    expected_total: int  # sent_total x fan-out
    arrived_total: int  # read by receivers + dropped by the kernel at their sockets
    lost_total: int  # expected - arrived after the drain: lost between source and receivers
    receiver_socket_drops: int  # of arrived_total: the generator's own fault, not the forwarder's
    forwarder_input_drops: int  # the forwarder's receive buffer overflowed (kernel)
    sequence_gaps: int
    late_or_duplicate: int
    latency_us: dict[str, float] = field(default_factory=dict)  # p50/p90/p99/max, count
    per_pid_cpu_util: dict[str, float] = field(default_factory=dict)
    sfu_dropped: dict[str, int] = field(default_factory=dict)  # ours only: worker drops by reason
    per_pid_system_util: dict[str, float] = field(default_factory=dict)  # of per_pid: kernel time (10 ms ticks)
    machine_util: dict[str, float] = field(default_factory=dict)  # cores by kind (/proc/stat): user, system, softirq...
    generator: str = "one by one"  # or "batched" (pre-built, sendmmsg: no latency)
    generator_build_s: float = 0.0  # batched: time spent building the phase's packets, before it
    cross_check: dict[str, int] = field(default_factory=dict)  # the forwarder's own count of packets sent, if known

    def to_dict(self) -> dict:
        return asdict(self)


class Watcher(Protocol):
    """Told what receivers read (the simulcast contender's feedback and ICE consent)."""

    def saw(self, index: int, packet: bytearray, size: int) -> None:
        """The newest datagram read from socket `index` (in `packet[:size]`)."""

    def tick(self, now: float) -> None:
        """Called at every poll (time.monotonic())."""


class Receivers:
    """`count` UDP sockets on 127.0.0.1 that count what they get and check continuity.

    socks: bound sockets to use instead (the simulcast contender's WebRTC links); watcher:
    told the newest packet of each read and every poll; latency: whether sampled packets
    carry the send time readably (not under DTLS-SRTP, which they are not decrypted from)."""

    def __init__(self, count: int, decrypt_keys: list[bytes | None] | None = None, passive: bool = False,
                 socks: list[socket.socket] | None = None, watcher: Watcher | None = None,
                 latency: bool = True) -> None:
        self.passive = False
        self.socks: list[socket.socket] = []
        self.watcher = watcher
        self.latency = latency
        for n in range(count):
            sock = socks[n] if socks else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            if not socks:
                sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            self.socks.append(sock)
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.received = [0] * count
        self.gaps = [0] * count
        self.late = [0] * count
        self._expect = [-1] * count
        self._decryptors: list[FastSrtp | None] = [None] * count
        self.set_decrypt_keys(decrypt_keys)
        self._by_fd = {s.fileno(): i for i, s in enumerate(self.socks)}
        self._buf = bytearray(2048)
        self._view = memoryview(self._buf)
        self.latencies: list[int] = []
        self.sample_mask = -1  # -1: no sampling; else sample when received & mask == 0
        self._next_touch = 0.0
        self.set_passive(passive)

    def set_passive(self, passive: bool) -> None:
        """Passive: not polled; a socket buffer of a few packets, arrivals counted by the
        kernel's drops (SRTP receivers read one packet per socket every 20 ms, see
        `_touch`). The forwarder then pays no receiver wake-ups, as when it sends to
        other hosts. Active: read everything, check continuity, sample latency."""
        if passive == self.passive:
            return
        for sock in self.socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PASSIVE_BUFFER_BYTES if passive else RECEIVE_BUFFER_BYTES)
        self.passive = passive
        if not passive:
            self.drain_all()  # whatever waited in the small buffers
            self.reset_continuity()

    def set_decrypt_keys(self, keys: list[bytes | None] | None) -> None:
        for i in range(len(self.socks)):
            key = keys[i] if keys else None
            self._decryptors[i] = srtp_session(key, outbound=False, fast=True) if key else None

    def reset_continuity(self) -> None:
        self._expect = [-1] * len(self.socks)

    def total_received(self) -> int:
        return sum(self.received)

    def kernel_drops(self) -> int:
        return sum(procfs.udp_drops(self.ports).values())

    def poll(self, timeout: float) -> None:
        """Read whatever is ready, waiting up to `timeout` s. select() rather than epoll:
        its timeout has microsecond resolution, so the source can pace below 1 ms."""
        if self.watcher is not None:
            self.watcher.tick(time.monotonic())
        if self.passive:
            now = time.monotonic()
            if now >= self._next_touch:
                self._next_touch = now + TOUCH_INTERVAL_S
                self._touch()
            if timeout > 0:
                time.sleep(timeout)
            return
        ready, _, _ = select.select(self.socks, (), (), timeout)
        for sock in ready:
            self._drain(self._by_fd[sock.fileno()])

    def drain_all(self) -> None:
        if not self.passive:
            for i in range(len(self.socks)):
                while self._drain(i) == MAX_DRAIN_PER_EVENT:
                    pass

    def _drain(self, i: int) -> int:
        recv_into = self.socks[i].recv_into
        buf = self._buf
        expect = self._expect[i]
        received = self.received[i]
        gaps = late = 0
        mask = self.sample_mask
        start = received
        for _ in range(MAX_DRAIN_PER_EVENT):
            try:
                size = recv_into(buf)
            except BlockingIOError:
                break
            received += 1
            seq = buf[2] << 8 | buf[3]
            if seq != expect and expect >= 0:
                gap = (seq - expect) & 0xFFFF
                if gap < 0x8000:
                    gaps += gap
                else:
                    late += 1
            expect = (seq + 1) & 0xFFFF
            if mask >= 0 and not received & mask:
                self._sample(i, size)
        self._expect[i] = expect
        self.received[i] = received
        if self.watcher is not None and received != start:
            self.watcher.saw(i, buf, size)
        if gaps or late:
            self.gaps[i] += gaps
            self.late[i] += late
        return received - start

    def _touch(self) -> None:
        """Passive receivers of an SRTP stream still decrypt one packet now and then: an
        SRTP receiver that misses more than 2^15 sequence numbers guesses the rollover
        counter wrong (RFC 3711 §3.3.1) and could never decrypt a sample again."""
        buf = self._buf
        watcher = self.watcher
        for i, sock in enumerate(self.socks):
            decryptor = self._decryptors[i]
            if decryptor is None and watcher is None:
                continue
            size = 0
            for _ in range(MAX_DRAIN_PER_EVENT):
                try:
                    size = sock.recv_into(buf)
                except BlockingIOError:
                    break
                self.received[i] += 1
            if size and watcher is not None:
                watcher.saw(i, buf, size)
            if size and decryptor is not None:
                try:
                    decryptor.unprotect(bytes(self._view[:size]))
                except pylibsrtp.Error:
                    pass

    def _sample(self, i: int, size: int) -> None:
        if not self.latency:
            return
        now = time.monotonic_ns()
        decryptor = self._decryptors[i]
        if decryptor is None:
            plain = self._buf
        else:
            try:
                plain = decryptor.unprotect(bytes(self._view[:size]))
            except pylibsrtp.Error:
                return
        if len(self.latencies) < MAX_LATENCY_SAMPLES:
            self.latencies.append(now - send_time_ns(plain))

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def percentiles_us(samples_ns: list[int]) -> dict[str, float]:
    if not samples_ns:
        return {}
    ordered = sorted(samples_ns)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": ordered[-1] / 1000.0,
            "count": float(len(ordered))}


class LoadGenerator:
    """One source socket sending to the forwarder's input, plus the receivers."""

    def __init__(self, receivers: Receivers, streams: list[tuple[PacketSource, tuple[str, int]]],
                 fanout: float | None = None, batched: bool = False, tick_s: float = BATCH_TICK_S,
                 sock: socket.socket | None = None) -> None:
        """streams: (source, forwarder input address), sent round robin at an equal share
        of the rate. fanout: copies each packet should produce (default: the receivers split
        evenly between the streams); every receiver of the set is counted either way.
        batched: packets built before each phase and sent with sendmmsg every `tick_s` (see
        bench/plainrtp/mmsg.py): a nearly free generator, but no latency (the embedded send
        time is the build time). fanout may be fractional (simulcast: copies per packet on
        average). sock: a bound socket to send from (the simulcast contender's publisher
        link: the worker hears media only from its ICE-checked address)."""
        if not streams:
            raise ValueError("no stream to send")
        if fanout is None:
            if len(receivers.socks) % len(streams):
                raise ValueError("receivers must split evenly between the streams")
            fanout = len(receivers.socks) // len(streams)
        self.receivers = receivers
        self.streams = streams
        self.fanout = fanout
        self.sock = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RECEIVE_BUFFER_BYTES)
        if sock is None:
            self.sock.bind(("127.0.0.1", 0))
        self._next_stream = 0
        self.active_streams = len(streams)  # send to the first N streams only (one worker of two)
        self.send_errors = 0
        self.batched = batched
        self.tick_s = tick_s
        budget = MAX_PREBUILT_BYTES // len(streams)
        self.prebuilt = [PrebuiltStream(source, target, budget) for source, target in streams] if batched else []
        self.last_build_s = 0.0

    def close(self) -> None:
        for stream in self.prebuilt:
            stream.release()
        self.sock.close()

    def send_one(self) -> None:
        source, target = self.streams[self._next_stream]
        self._next_stream = (self._next_stream + 1) % self.active_streams
        try:
            self.sock.sendto(source.next_packet(time.monotonic_ns()), target)
        except OSError:
            self.send_errors += 1  # ENOBUFS/ECONNREFUSED on loopback: counted, the run goes on

    def run_phase(
        self,
        label: str,
        rate_pps: float,
        duration_s: float,
        warmup_s: float,
        forwarder_pids: list[int],
        input_ports: list[int],
        latency_samples_per_s: float = 0.0,
    ) -> PhaseResult:
        """Send at `rate_pps` for warmup + duration seconds; measure after the warm-up."""
        receivers = self.receivers
        fanout = self.fanout
        receivers.sample_mask = -1
        receivers.latencies = []
        start_received = receivers.total_received()
        start_kdrops = receivers.kernel_drops()
        start_input_drops = sum(procfs.udp_drops(input_ports).values())
        start_gaps, start_late = sum(receivers.gaps), sum(receivers.late)
        if self.batched:
            sent, skipped, snapshot_a = self._send_batched(rate_pps, duration_s, warmup_s, forwarder_pids)
        else:
            sent, skipped, snapshot_a = self._send_one_by_one(rate_pps, duration_s, warmup_s, forwarder_pids,
                                                              latency_samples_per_s)
        snapshot_b = self._snapshot(forwarder_pids, sent)
        receivers.sample_mask = -1
        self._drain_after_stop(sent * fanout, start_received)
        assert snapshot_a is not None
        window = snapshot_b["time"] - snapshot_a["time"]
        out = (snapshot_b["received"] - snapshot_a["received"]) + (snapshot_b["kdrops"] - snapshot_a["kdrops"])
        cpu = snapshot_b["cpu"] - snapshot_a["cpu"]
        cpu_stat = snapshot_b["cpu_stat"] - snapshot_a["cpu_stat"]
        gen_cpu = snapshot_b["gen_cpu"] - snapshot_a["gen_cpu"]
        busy = snapshot_b["busy"] - snapshot_a["busy"]
        kdrops = receivers.kernel_drops() - start_kdrops
        arrived = receivers.total_received() - start_received + kdrops
        per_pid = {
            str(pid): round((snapshot_b["per_pid"][pid] - snapshot_a["per_pid"][pid]) / window, 4)
            for pid in forwarder_pids
        }
        return PhaseResult(
            label=label,
            offered_pps_in=rate_pps,
            window_s=round(window, 4),
            sent_in_window=snapshot_b["sent"] - snapshot_a["sent"],
            packets_out=out,
            pps_out=round(out / window, 1),
            forwarder_cpu_s=round(cpu, 4),
            forwarder_cpu_util=round(cpu / window, 4),
            cpu_us_per_packet=round(cpu * 1e6 / out, 3) if out else None,
            cpu_us_per_packet_stat=round(cpu_stat * 1e6 / out, 3) if out else None,
            generator_cpu_util=round(gen_cpu / window, 4),
            others_cpu_util=round(max(0.0, busy - cpu - gen_cpu) / window, 4),
            steal_util=round((snapshot_b["steal"] - snapshot_a["steal"]) / window, 4),
            generator_skipped=skipped,
            sent_total=sent,
            expected_total=round(sent * fanout),
            arrived_total=arrived,
            lost_total=round(sent * fanout) - arrived,
            receiver_socket_drops=kdrops,
            forwarder_input_drops=sum(procfs.udp_drops(input_ports).values()) - start_input_drops,
            sequence_gaps=sum(receivers.gaps) - start_gaps,
            late_or_duplicate=sum(receivers.late) - start_late,
            latency_us=percentiles_us(receivers.latencies),
            per_pid_cpu_util=per_pid,
            per_pid_system_util={
                str(pid): round((snapshot_b["per_pid_sys"][pid] - snapshot_a["per_pid_sys"][pid]) / window, 4)
                for pid in forwarder_pids
            },
            machine_util={k: round((snapshot_b["machine"][k] - snapshot_a["machine"][k]) / window, 4)
                          for k in snapshot_a["machine"]},
            generator="batched" if self.batched else "one by one",
            generator_build_s=round(self.last_build_s, 3) if self.batched else 0.0,
        )

    def _send_one_by_one(self, rate_pps: float, duration_s: float, warmup_s: float, forwarder_pids: list[int],
                         latency_samples_per_s: float) -> tuple[int, int, dict]:
        """Build, protect and send each packet when due (its send time is real): latency phases."""
        receivers = self.receivers
        fanout = self.fanout
        sent = 0
        send = self.send_one
        start = time.monotonic()
        window_start = start + warmup_s
        end = window_start + duration_s
        snapshot_a = None
        interval = 1.0 / rate_pps
        skipped = 0
        max_backlog = max(MAX_SEND_BURST, int(rate_pps * MAX_BACKLOG_S))
        while True:
            now = time.monotonic()
            if snapshot_a is None and now >= window_start:
                snapshot_a = self._snapshot(forwarder_pids, sent)
                if latency_samples_per_s > 0:
                    per_receiver = rate_pps * max(1, fanout) / latency_samples_per_s
                    receivers.sample_mask = (1 << max(0, int(per_receiver).bit_length() - 1)) - 1
            if now >= end:
                break
            due = int((now - start) * rate_pps) - sent - skipped
            if due > max_backlog:
                # The generator was descheduled: skip rather than burst what is overdue.
                skipped += due - MAX_SEND_BURST
                due = MAX_SEND_BURST
            if due > 0:
                burst = min(due, MAX_SEND_BURST)
                for _ in range(burst):
                    send()
                sent += burst
                receivers.poll(0)
            else:
                receivers.poll(min(interval, end - now))
        assert snapshot_a is not None
        return sent, skipped, snapshot_a

    def _send_batched(self, rate_pps: float, duration_s: float, warmup_s: float,
                      forwarder_pids: list[int]) -> tuple[int, int, dict]:
        """Packets built before the phase, sent every `tick_s` in one sendmmsg per stream:
        the generator costs little more than the kernel's work of sending (no latency)."""
        receivers = self.receivers
        streams = self.prebuilt[: self.active_streams]
        share = rate_pps / len(streams)
        need = int(share * (warmup_s + duration_s) * 1.02) + 64
        build_start = time.monotonic()
        for stream in streams:
            stream.prepare(need, time.monotonic_ns())
        self.last_build_s = time.monotonic() - build_start
        sock = self.sock
        tick = self.tick_s
        max_backlog = max(64, int(share * MAX_BACKLOG_S))
        burst_after_skip = max(16, int(share * tick * 2))
        done = [0] * len(streams)  # sent or skipped, per stream
        sent = skipped = 0
        start = time.monotonic()
        window_start = start + warmup_s
        end = window_start + duration_s
        snapshot_a = None
        while True:
            now = time.monotonic()
            if snapshot_a is None and now >= window_start:
                snapshot_a = self._snapshot(forwarder_pids, sent)
            if now >= end:
                break
            target = int((now - start) * share)
            for i, stream in enumerate(streams):
                due = target - done[i]
                if due > max_backlog:
                    skipped += due - burst_after_skip  # descheduled: skip rather than burst
                    done[i] += due - burst_after_skip
                    due = burst_after_skip
                if due > 0:
                    n = stream.send(sock, due)
                    if n < due and not stream.remaining:
                        skipped += due - n  # ran out of pre-built packets (byte budget)
                        done[i] += due - n
                    done[i] += n
                    sent += n
            receivers.poll(min(tick, max(0.0, end - now)))
        self.send_errors = sum(s.errors for s in self.prebuilt)
        assert snapshot_a is not None
        return sent, skipped, snapshot_a

    def _snapshot(self, pids: list[int], sent: int) -> dict:
        per_pid = {pid: procfs.cpu_seconds(pid) for pid in pids}
        times = os.times()
        busy, steal = procfs.machine_busy()
        return {
            "time": time.monotonic(),
            "busy": busy,
            "steal": steal,
            "cpu": sum(per_pid.values()),
            "cpu_stat": sum(procfs.cpu_seconds_stat(pid) for pid in pids),
            "per_pid": per_pid,
            "received": self.receivers.total_received(),
            "kdrops": self.receivers.kernel_drops(),
            "sent": sent,
            "gen_cpu": times.user + times.system,
            "per_pid_sys": {pid: procfs.user_system_seconds(pid)[1] for pid in pids},
            "machine": procfs.machine_times(),
        }

    def _drain_after_stop(self, expected: int, start_arrived: int) -> None:
        """Read what is still in flight: until every expected copy arrived, or nothing
        arrived for a while (bounded)."""
        receivers = self.receivers
        deadline = time.monotonic() + DRAIN_MAX_S
        last = receivers.total_received()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            receivers.poll(0.01)
            now_received = receivers.total_received()
            if self.batched and receivers.passive:
                # Arrivals at passive receivers are mostly kernel drops: wait until those stop
                # too (a saturated forwarder still empties its input queue after the source stops).
                now_received += receivers.kernel_drops()
            if now_received != last:
                last = now_received
                quiet_since = time.monotonic()
                if not receivers.passive and now_received - start_arrived >= expected:
                    break
            elif time.monotonic() - quiet_since >= DRAIN_QUIET_S:
                break
        receivers.drain_all()
