"""The plain-RTP fan-out comparison: every forwarder in the same run, same load, same pinning.

Order of a run (each step bounded in count and time):
1. start every contender (bare relay, bare relay + SRTP, Janus, Janus + SRTP, ours, ours +
   SRTP), each pinned to the forwarder CPU, each with its own receivers;
2. saturation of each, one after the other: an overload probe estimates capacity, then
   up to `search_steps` phases look for the highest rate forwarded without loss (receivers
   passive, so the forwarder pays no local receiver wake-ups, as when sending to a NIC);
3. fixed offered rates, the same for everyone (receivers active: continuity + latency);
4. 50 % and 80 % of our SRTP saturation rate, for everyone (latency; drops must be 0);
5. a bounded long run of ours + SRTP at 50 % with RSS sampled every second;
6. two workers (two routers, each its own fan-out, each worker on its own CPU) vs one,
   with the batched generator (packets built before each phase, sent with sendmmsg);
7. RSS per consumer with 1000 plain consumers on one worker.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from bench.plainrtp import janus, procfs
from bench.plainrtp.bare import BareRelayForwarder
from bench.plainrtp.janus import JanusForwarder
from bench.plainrtp.loadgen import LoadGenerator, PhaseResult, Receivers
from bench.plainrtp.ours import FanOut, OursForwarder, WorkerProcess
from bench.plainrtp.packets import PACKET_SIZE, PacketSource
from bench.plainrtp.simulcast import NAME as SIMULCAST
from bench.plainrtp.simulcast import WEBRTC_NAME as WEBRTC
from bench.plainrtp.simulcast import SimulcastForwarder, copies_per_packet
from bench.plainrtp.targets import ALL_CONTENDERS, evaluate

PARTS = ("compare", "long", "scaling", "rss")  # compare: saturation, fixed and relative rates
LOSS_TOLERANCE = 0.001  # saturation = the highest rate forwarded with at most 0.1 % loss
MIN_SATURATED_UTIL = 0.93
# A phase during which other processes (or the hypervisor) took more than this many cores
# is run again, up to MAX_RETRIES times; the least disturbed attempt is kept.
MAX_INTERFERENCE = 0.10
MAX_RETRIES = 1
QUIET_CORES = 0.2


@dataclass
class Profile:
    name: str
    phase_s: float
    warmup_s: float
    probe_s: float
    search_steps: int
    overload_pps: float
    fixed_rates: list[float]
    long_run_s: int
    rss_consumers: int
    scaling: bool
    contenders: tuple[str, ...] = ALL_CONTENDERS
    latency_samples_per_s: float = 10_000.0


PROFILES = {
    "smoke": Profile("smoke", phase_s=0.4, warmup_s=0.2, probe_s=0, search_steps=0, overload_pps=0,
                     fixed_rates=[200], long_run_s=0, rss_consumers=0, scaling=False, contenders=("bare", "ours")),
    "quick": Profile("quick", phase_s=1.5, warmup_s=0.5, probe_s=0.8, search_steps=3, overload_pps=30_000,
                     fixed_rates=[1250, 5000], long_run_s=10, rss_consumers=1000, scaling=True),
    "full": Profile("full", phase_s=4.0, warmup_s=1.0, probe_s=1.5, search_steps=5, overload_pps=30_000,
                    fixed_rates=[1250, 5000], long_run_s=120, rss_consumers=1000, scaling=True),
}


@dataclass
class Contender:
    name: str
    forwarder: object
    receivers: Receivers
    generator: LoadGenerator | None = None
    results: dict = field(default_factory=dict)


class Progress:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {text}", file=sys.stderr, flush=True)


def _make_forwarder(name: str, cpu: int | None):
    srtp = "+srtp" in name
    if name == "c-relay":
        return BareRelayForwarder(False, cpu, name, module="bench.plainrtp.c_relay")
    if name == "bare+srtp-fast":
        return BareRelayForwarder(True, cpu, name, fast=True)
    if name.startswith("bare"):
        return BareRelayForwarder(srtp, cpu, name)
    if name.startswith("janus"):
        return JanusForwarder(srtp, cpu, name)
    return OursForwarder(srtp, cpu, name)


def _summary(r: PhaseResult) -> str:
    lat = f", p99 {r.latency_us['p99']:.0f} µs" if r.latency_us else ""
    per = f"{r.cpu_us_per_packet:.2f} µs/pkt" if r.cpu_us_per_packet else "no packets"
    return (f"{per}, {r.pps_out / 1000:.1f}k pps out, cpu {r.forwarder_cpu_util:.2f}, loss {r.lost_total}{lat}, "
            f"others {r.others_cpu_util:.2f}")


class Bench:
    def __init__(self, profile: Profile, fanout: int = 16, pin: bool = True, skip_janus: bool = False,
                 only: tuple[str, ...] | None = None, nice: int = 0, realtime: bool = False,
                 parts: tuple[str, ...] = PARTS, scaling_generator: str = "batched",
                 scaling_repeats: int = 1) -> None:
        self.profile = profile
        self.scaling_generator = scaling_generator
        self.scaling_repeats = scaling_repeats
        self.parts = parts
        self.nice = nice
        self.realtime = realtime
        self.fanout = fanout
        cpus = procfs.online_cpus()
        self.pinned = pin and len(cpus) >= 2
        self.forwarder_cpu = cpus[0] if self.pinned else None
        self.generator_cpu = cpus[1] if self.pinned else None
        self.all_cpus = set(cpus)
        self.skip_janus = skip_janus
        names = only or profile.contenders
        self.names = [n for n in ALL_CONTENDERS if n in names]
        self.progress = Progress()
        self.skipped: dict[str, str] = {}
        self.contenders: list[Contender] = []

    # ------------------------------------------------------------------ plumbing

    def _prioritize(self, pid: int) -> None:
        """The same scheduling for every process under test (and the generator): see --nice, --realtime."""
        if self.nice:
            procfs.renice(pid, self.nice)
        if self.realtime and not procfs.make_realtime(pid):
            self.progress(f"pid {pid}: SCHED_FIFO refused (not root?)")

    def _phase(self, c: Contender, label: str, rate: float, passive: bool, latency: bool = False,
               duration: float | None = None, warmup: float | None = None) -> PhaseResult:
        """One phase; repeated (bounded) while other processes took a noticeable share of
        the machine, keeping the attempt they disturbed least."""
        best: PhaseResult | None = None
        for attempt in range(1 + MAX_RETRIES):
            result = self._phase_once(c, label, rate, passive, latency, duration, warmup)
            if best is None or result.others_cpu_util + result.steal_util < best.others_cpu_util + best.steal_util:
                best = result
            if result.others_cpu_util + result.steal_util <= MAX_INTERFERENCE or attempt == MAX_RETRIES:
                break
            self.progress(f"{c.name:<11} {label}: other processes used {result.others_cpu_util:.2f} cores, "
                          f"steal {result.steal_util:.2f}: again ({attempt + 1}/{MAX_RETRIES})")
        assert best is not None
        self.progress(f"{c.name:<11} {label}: {_summary(best)}")
        return best

    def _phase_once(self, c: Contender, label: str, rate: float, passive: bool, latency: bool,
                    duration: float | None, warmup: float | None) -> PhaseResult:
        c.receivers.set_passive(passive)
        fw = c.forwarder
        before = fw.stats()
        assert c.generator is not None
        result = c.generator.run_phase(
            label, rate, self.profile.phase_s if duration is None else duration,
            self.profile.warmup_s if warmup is None else warmup, fw.pids, fw.input_ports,
            latency_samples_per_s=self.profile.latency_samples_per_s if latency else 0.0)
        after = fw.stats()
        if after:
            was = before.get("dropped", {})
            result.sfu_dropped = {k: v - was.get(k, 0) for k, v in after.get("dropped", {}).items() if v - was.get(k, 0)}
        return result

    def wait_for_quiet(self, limit_s: float = 60.0) -> float:
        """Wait (bounded) until other processes use little CPU; returns their last share."""
        deadline = time.monotonic() + limit_s
        while True:
            busy0, steal0 = procfs.machine_busy()
            time.sleep(1.0)
            busy1, steal1 = procfs.machine_busy()
            others = busy1 - busy0 + steal1 - steal0
            if others <= QUIET_CORES or time.monotonic() >= deadline:
                return others
            self.progress(f"machine busy ({others:.2f} cores used by other processes): waiting")

    def _start_simulcast(self, name: str) -> Contender:
        """The simulcast meeting (or, WEBRTC, its one-stream twin): WebRTC links whose
        sockets are the receivers and the source."""
        layers = 1 if name.removesuffix("-python") == WEBRTC else 3
        forwarder = SimulcastForwarder(self.forwarder_cpu, name, layers)
        try:
            socks = forwarder.start(self.fanout)
        except Exception:
            forwarder.stop()
            raise
        receivers = Receivers(self.fanout, socks=socks, watcher=forwarder.feedback, latency=False)
        for pid in forwarder.pids:
            self._prioritize(pid)
        assert forwarder.source is not None
        generator = LoadGenerator(receivers, [(forwarder.source, forwarder.input_addr)],
                                  fanout=copies_per_packet(self.fanout, layers), sock=forwarder.input_socket)
        return Contender(name, forwarder, receivers, generator)

    def _start_contenders(self) -> None:
        for name in self.names:
            if name.removesuffix("-python") in (SIMULCAST, WEBRTC):
                c = self._start_simulcast(name)
                self.contenders.append(c)
                self.progress(f"{name}: started pid {c.forwarder.pids}, {c.forwarder.describe()}")
                continue
            if name.startswith("janus") and (self.skip_janus or not janus.available()):
                self.skipped[name] = "--skip-janus" if self.skip_janus else janus.INSTALL_HINT
                self.progress(f"{name}: skipped ({self.skipped[name]})")
                continue
            receivers = Receivers(self.fanout)
            forwarder = _make_forwarder(name, self.forwarder_cpu)
            try:
                forwarder.start(receivers.ports)
            except Exception:
                receivers.close()
                forwarder.stop()
                raise
            receivers.set_decrypt_keys(forwarder.receiver_keys)
            for pid in forwarder.pids:
                self._prioritize(pid)
            source = PacketSource(forwarder.ssrc, forwarder.payload_type, forwarder.input_key)
            c = Contender(name, forwarder, receivers, LoadGenerator(receivers, [(source, forwarder.input_addr)]))
            self.contenders.append(c)
            self.progress(f"{name}: started pid {forwarder.pids}, {forwarder.describe()}")

    def _stop_contenders(self) -> None:
        for c in self.contenders:
            c.forwarder.stop()
            c.receivers.close()
            if c.generator is not None:
                c.generator.close()
        self.contenders = []

    # ------------------------------------------------------------------ steps

    def _saturation(self, c: Contender) -> dict:
        p = self.profile
        probe = self._phase(c, "overload probe", p.overload_pps, passive=True, duration=p.probe_s, warmup=0.3)
        rate = max(100.0, probe.pps_out / c.generator.fanout)  # type: ignore[union-attr]
        best: PhaseResult | None = None
        attempts = []
        for step in range(p.search_steps):
            r = self._phase(c, f"saturation {step + 1}/{p.search_steps} at {rate:.0f} pps in", rate, passive=True)
            attempts.append(r)
            lossless = r.forwarder_input_drops == 0 and r.lost_total <= LOSS_TOLERANCE * r.expected_total + 4 * self.fanout
            if lossless:
                if best is None or r.pps_out > best.pps_out:
                    best = r
                if r.forwarder_cpu_util >= MIN_SATURATED_UTIL:
                    break
                rate *= 1.05
            else:
                rate *= 0.95
        chosen = best or attempts[-1]
        return {"result": chosen.to_dict(), "lossless": best is not None, "probe": probe.to_dict(),
                "attempts": [a.to_dict() for a in attempts], "rate_in": chosen.offered_pps_in}

    def _long_run(self, c: Contender, rate: float) -> dict:
        pid = c.forwarder.pids[0]
        samples = []
        lost = sent = 0
        deadline = time.monotonic() + self.profile.long_run_s + 30
        for second in range(self.profile.long_run_s):
            if time.monotonic() > deadline:
                break
            c.receivers.set_passive(False)
            r = c.generator.run_phase("long run", rate, 1.0, 0.0, c.forwarder.pids, c.forwarder.input_ports)  # type: ignore[union-attr]
            lost += r.lost_total
            sent += r.expected_total
            samples.append(procfs.rss_bytes(pid))
            if second % 10 == 9:
                self.progress(f"{c.name:<11} long run {second + 1}/{self.profile.long_run_s} s: RSS {samples[-1] / 1e6:.1f} MB")
        settled = samples[2:] if len(samples) > 4 else samples
        slope = _slope_per_minute(settled)
        return {"rate_in": rate, "seconds": len(samples), "rss_bytes": samples, "lost": lost, "expected": sent,
                "rss_growth_bytes": (settled[-1] - settled[0]) if settled else 0,
                "rss_slope_bytes_per_min": slope}

    def _scaling(self, srtp: bool) -> dict:
        """Two workers (each pinned to its own CPU, one router each) against one of them alone."""
        cpus = sorted(self.all_cpus)
        workers = [WorkerProcess(cpus[i % len(cpus)] if self.pinned else None, index=i) for i in range(2)]
        receivers = Receivers(2 * self.fanout, passive=True)
        fanouts = []
        generators = {}
        try:
            for i, worker in enumerate(workers):
                worker.start()
                self._prioritize(worker.pid)
                fan = FanOut(worker, f"room-{i}", srtp)
                fan.create_input()
                fan.add_outputs(receivers.ports[i * self.fanout:(i + 1) * self.fanout])
                fanouts.append(fan)
            sources = [(PacketSource(f.ssrc, f.payload_type, f.input_key), f.input_addr) for f in fanouts]
            if self.pinned:
                os.sched_setaffinity(0, self.all_cpus)  # the generator floats: there is no third core
            if self.realtime:
                procfs.make_realtime(os.getpid(), 2)  # above the workers: the load is offered whatever they do
            pids = [w.pid for w in workers]
            # One generator (one source socket) for both steps: each input transport learned
            # its sender's address from the first packet and hears no other. Batched: packets
            # built before each phase, sent with sendmmsg (bench/plainrtp/mmsg.py), so the
            # generator takes little of the two CPUs the workers need; no latency is measured.
            gen = LoadGenerator(receivers, sources, fanout=self.fanout,
                                batched=self.scaling_generator == "batched")
            generators["both"] = gen
            ports = [f.input_addr[1] for f in fanouts]
            runs = []
            for repeat in range(self.scaling_repeats):
                run = {}
                for label, streams in (("one worker", 1), ("two workers", 2)):
                    gen.active_streams = streams
                    run[label] = self._scaling_saturation(label, gen, workers, ports)
                one = run["one worker"]["result"]
                two = run["two workers"]["result"]
                run["ratio"] = round(two["pps_out"] / one["pps_out"], 3) if one["pps_out"] else None
                # What two whole CPUs would give at the per-CPU rates measured.
                one_cpu = one["per_pid_cpu_util"][str(pids[0])]
                two_cpu = sum(two["per_pid_cpu_util"][str(pid)] for pid in pids)
                if one_cpu and two_cpu:
                    run["ratio_per_worker_cpu"] = round(2 * (two["pps_out"] / two_cpu) / (one["pps_out"] / one_cpu), 3)
                self.progress(f"two workers / one (run {repeat + 1}/{self.scaling_repeats}): {run['ratio']}")
                runs.append(run)
            out = dict(runs[0])
            out["generator"] = self.scaling_generator
            if len(runs) > 1:
                out["runs"] = runs
                out["ratios"] = [r["ratio"] for r in runs]
            return out
        finally:
            if self.pinned and self.generator_cpu is not None:
                os.sched_setaffinity(0, {self.generator_cpu})
            if self.realtime:
                procfs.make_realtime(os.getpid(), 1)
            for gen in generators.values():
                gen.close()
            for worker in workers:
                worker.stop()
            receivers.close()

    def _scaling_saturation(self, label: str, gen: LoadGenerator, workers: list[WorkerProcess],
                            ports: list[int]) -> dict:
        p = self.profile
        pids = [w.pid for w in workers]
        streams = gen.active_streams

        def phase(name: str, rate: float, duration: float, warmup: float) -> PhaseResult:
            """One phase, cross-checked against the workers' own count of packets sent: the
            receivers count by kernel drops, and that count must be exact."""
            before = [w.stats().counters for w in workers]
            r = gen.run_phase(name, rate, duration, warmup, pids, ports)
            after = [w.stats().counters for w in workers]

            def delta(key: str) -> int:
                return sum(a.get(key, 0) - b.get(key, 0) for a, b in zip(after, before))

            # packets_sent counts every datagram, RTCP too (the input's receiver reports go
            # to the generator's socket, not to the receivers).
            rtp_sent = delta("packets_sent") - delta("rtcp_sent")
            r.cross_check = {"workers_rtp_sent": rtp_sent, "workers_rtcp_sent": delta("rtcp_sent"),
                             "counted_at_receivers": r.arrived_total, "difference": rtp_sent - r.arrived_total}
            return r

        probe = phase(f"{label} overload probe", p.overload_pps * streams, p.probe_s, 0.3)
        self.progress(f"scaling     {label} overload probe: {_summary(probe)}")
        rate = max(100.0, probe.pps_out / gen.fanout)
        best = None
        attempts = []
        for step in range(p.search_steps):
            r = phase(f"{label} {step + 1}", rate, p.phase_s, p.warmup_s)
            attempts.append(r)
            self.progress(f"scaling     {label} {step + 1}/{p.search_steps} at {rate:.0f} pps in: {_summary(r)}, "
                          f"generator {r.generator_cpu_util:.2f}, softirq {r.machine_util.get('softirq', 0):.2f}, "
                          f"workers sent - counted {r.cross_check['difference']}")
            lossless = r.forwarder_input_drops == 0 and r.lost_total <= LOSS_TOLERANCE * r.expected_total + 8 * self.fanout
            if lossless:
                if best is None or r.pps_out > best.pps_out:
                    best = r
                if min(r.per_pid_cpu_util[str(pid)] for pid in pids[:streams]) >= MIN_SATURATED_UTIL:
                    break
                rate *= 1.08  # with two workers the generator shares their CPUs: util stays lower
            else:
                rate *= 0.95
        chosen = best or r
        return {"result": chosen.to_dict(), "lossless": best is not None, "probe": probe.to_dict(),
                "attempts": [a.to_dict() for a in attempts]}

    def _rss_per_consumer(self, srtp: bool) -> dict:
        count = self.profile.rss_consumers
        worker = WorkerProcess(self.forwarder_cpu, index=0)
        sink = Receivers(1, passive=True)
        gen = None
        try:
            worker.start()
            self._prioritize(worker.pid)
            fan = FanOut(worker, "rss-room", srtp)
            fan.create_input()
            gen = LoadGenerator(sink, [(PacketSource(fan.ssrc, fan.payload_type, fan.input_key), fan.input_addr)])
            # Fill the producer's packet cache first: it belongs to the producer, not to consumers.
            gen.run_phase("fill cache", 2000, 0.6, 0.0, [worker.pid], [fan.input_addr[1]])
            baseline = procfs.rss_bytes(worker.pid)
            started = time.monotonic()
            fan.add_outputs([sink.ports[0]] * count)
            setup_s = time.monotonic() - started
            gen.fanout = count  # every consumer sends to the one passive sink
            r = gen.run_phase("1000 consumers", 20, 2.0, 0.2, [worker.pid], [fan.input_addr[1]])
            after = procfs.rss_bytes(worker.pid)
            stats = worker.stats()
            result = {"consumers": count, "rss_baseline_bytes": baseline, "rss_after_bytes": after,
                      "rss_per_consumer_bytes": round((after - baseline) / count), "setup_s": round(setup_s, 2),
                      "packets_out_during_measure": r.packets_out, "cpu_us_per_packet": r.cpu_us_per_packet,
                      "worker_counters": stats.counters, "gauges": stats.gauges}
            self.progress(f"RSS: {baseline / 1e6:.1f} MB -> {after / 1e6:.1f} MB with {count} consumers: "
                          f"{result['rss_per_consumer_bytes'] / 1024:.1f} KiB each")
            return result
        finally:
            if gen is not None:
                gen.close()
            worker.stop()
            sink.close()

    # ------------------------------------------------------------------ run

    def run(self) -> dict:
        p = self.profile
        saved_affinity = os.sched_getaffinity(0)
        saved_nice = os.getpriority(os.PRIO_PROCESS, 0)
        report: dict = {"machine": machine_info(), "profile": p.__dict__ | {"contenders": list(self.names)},
                        "packet_size": PACKET_SIZE, "fanout": self.fanout, "pinned": self.pinned,
                        "forwarder_cpu": self.forwarder_cpu, "generator_cpu": self.generator_cpu, "nice": self.nice,
                        "realtime": self.realtime,
                        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "command": " ".join(["python", "-m", "bench.plainrtp", *sys.argv[1:]]),
                        "contenders": {}, "skipped": self.skipped}
        try:
            if self.pinned:
                os.sched_setaffinity(0, {self.generator_cpu})
            self._prioritize(os.getpid())
            if p.search_steps:
                report["others_cores_at_start"] = round(self.wait_for_quiet(), 3)
            if "compare" in self.parts:
                self._compare(report)
            ours_names = [n for n in self.names if n in ("ours", "ours+srtp")]
            if p.scaling and ours_names and "scaling" in self.parts:
                self.progress("two workers vs one")
                report["scaling"] = self._scaling(srtp="ours+srtp" in ours_names)
            if p.rss_consumers and ours_names and "rss" in self.parts:
                report["rss"] = self._rss_per_consumer(srtp="ours+srtp" in ours_names)
        finally:
            self._stop_contenders()
            os.sched_setaffinity(0, saved_affinity)
            if self.nice:
                os.setpriority(os.PRIO_PROCESS, 0, saved_nice)
            if self.realtime:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report["ratios"], report["targets"] = evaluate(report)
        return report

    def _compare(self, report: dict) -> None:
        """Every contender side by side: saturation, fixed rates, 50/80 % of ours, long run."""
        p = self.profile
        self._start_contenders()
        for c in self.contenders:
            c.results["describe"] = c.forwarder.describe()
            c.results["pids"] = c.forwarder.pids
        if p.search_steps:
            for c in self.contenders:
                c.results["saturation"] = self._saturation(c)
        for rate in p.fixed_rates:
            for c in self.contenders:
                c.results.setdefault("fixed", {})[str(int(rate))] = self._phase(
                    c, f"fixed {rate:.0f} pps in", rate, passive=False, latency=True).to_dict()
        reference = self._reference_rate()
        if reference:
            for fraction in (0.5, 0.8):
                for c in self.contenders:
                    c.results.setdefault("relative", {})[str(fraction)] = self._phase(
                        c, f"{fraction:.0%} of ours+srtp saturation ({reference * fraction:.0f} pps in)",
                        reference * fraction, passive=False, latency=True).to_dict()
            ours = self._contender("ours+srtp") or self._contender("ours")
            if ours is not None and p.long_run_s and "long" in self.parts:
                report["long_run"] = self._long_run(ours, reference * 0.5)
        for c in self.contenders:
            if isinstance(c.forwarder, SimulcastForwarder):
                c.results["allocations"] = c.forwarder.allocations()
                self.progress(f"{c.name}: {c.results['allocations']}")
            report["contenders"][c.name] = c.results
        self._stop_contenders()

    def _contender(self, name: str) -> Contender | None:
        return next((c for c in self.contenders if c.name == name), None)

    def _reference_rate(self) -> float | None:
        for name in ("ours+srtp", "ours"):
            c = self._contender(name)
            if c is not None and "saturation" in c.results:
                return c.results["saturation"]["rate_in"]
        return None


def _slope_per_minute(samples: list[int]) -> float:
    n = len(samples)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(samples) / n
    num = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(samples))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return round(num / den * 60, 1)


def _versions() -> dict:
    import pylibsrtp
    import uvloop

    versions = {"python": platform.python_version(), "uvloop": uvloop.__version__,
                "pylibsrtp": getattr(pylibsrtp, "__version__", "?")}
    try:
        out = subprocess.run(["janus", "--version"], capture_output=True, text=True, timeout=5).stdout
        versions["janus"] = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                                  if line.startswith("Janus version")), "?")
    except (OSError, subprocess.TimeoutExpired):
        versions["janus"] = None
    return versions


def machine_info() -> dict:
    model = procfs.cpu_model()
    return {"cpu_model": "?" if model is None else model, "cpus": len(procfs.online_cpus()), "kernel": platform.release(),
            "hostname": platform.node(), **_versions()}
