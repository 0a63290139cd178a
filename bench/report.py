"""Turn one measurement window into a report: numbers, a printed table, JSON.

Inputs are differences over the window: the workers' /metrics counters, their /proc CPU
and RSS, and the client processes' counters and latency histograms.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from array import array
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.peer import ABS_SEND_TIME_UNITS, LATENCY_BUCKETS
from bench.plainrtp.procfs import cpu_model


def machine() -> dict[str, Any]:
    model = cpu_model() or ""
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        nproc = os.cpu_count() or 0
    return {"nproc": nproc, "cpu_model": model, "kernel": platform.release(), "python": platform.python_version()}


def percentile_from_histogram(hist: array, fraction: float) -> float | None:
    """Upper edge of the bucket holding the `fraction` quantile, in microseconds."""
    total = sum(hist)
    if not total:
        return None
    target = fraction * total
    running = 0
    for bucket, count in enumerate(hist):
        running += count
        if running >= target:
            return (bucket + 1) * 1e6 / ABS_SEND_TIME_UNITS
    return LATENCY_BUCKETS * 1e6 / ABS_SEND_TIME_UNITS


def latency_bins(hist: array) -> dict[str, int]:
    """The latency histogram in power-of-two microsecond bins ("<64", "64-128", ...)."""
    bins: dict[str, int] = {}
    for bucket, count in enumerate(hist):
        if not count:
            continue
        us = bucket * 1e6 / ABS_SEND_TIME_UNITS
        low = 64
        while us >= low * 2 and low < 1 << 20:
            low *= 2
        label = "<64" if us < 64 else f"{low}-{low * 2}"
        bins[label] = bins.get(label, 0) + count
    return dict(sorted(bins.items(), key=lambda item: -1 if item[0] == "<64" else int(item[0].split("-")[0])))


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


@dataclass
class WorkerReport:
    index: int
    pid: int | None
    pps_in: float
    pps_out: float
    cpu_util: float | None  # cores busy (1.0 = one core)
    cpu_us_per_packet_out: float | None
    rss_mb: float | None
    rss_growth_mb: float | None  # since before the clients joined
    rss_kb_per_consumer: float | None
    consumers: int
    dropped: dict[str, float] = field(default_factory=dict)
    rss_window_growth_mb: float | None = None  # during the measurement window (leaks show here)
    rss_samples_mb: list[float] = field(default_factory=list)  # every 5 s through the window
    runqueue_wait_ms: float | None = None  # runnable but not running: other processes in the way
    pipe_pps_out: float = 0.0  # of pps_out: RTP sent through pipes to other workers (a spread meeting)
    pipe_pps_in: float = 0.0  # of pps_in: RTP and RTCP received through pipes


@dataclass
class Report:
    scenario: str
    params: dict[str, Any]
    command: str
    date: str
    machine: dict[str, Any]
    window_s: float
    participants: int
    joined: int
    join_failures: dict[str, str]
    workers: list[WorkerReport]
    pps_in: float
    pps_out: float
    cpu_us_per_packet_out: float | None
    latency_us: dict[str, float | None]
    latency_bins_us: dict[str, int]
    loss: dict[str, Any]
    join_time_ms: dict[str, float | None]
    publishers: dict[str, Any]
    generator: dict[str, Any]
    checks: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)


def build_report(
    *,
    scenario: str,
    params: dict[str, Any],
    command: str,
    window_s: float,
    metrics_before: dict,
    metrics_after: dict,
    cpu_before: dict[int, float],
    cpu_after: dict[int, float],
    rss_baseline: dict[int, int],
    rss_after: dict[int, int],
    worker_pids: dict[int, int],
    client_reports: list[dict[str, Any]],
    join_failures: dict[str, str],
    participants: int,
) -> Report:
    workers = []
    total_in = total_out = 0.0
    total_cpu = 0.0
    cpu_known = bool(worker_pids)
    for index in sorted(metrics_after):
        after, before = metrics_after[index], metrics_before.get(index)
        if before is None:
            continue
        d_in = after.counters.get("packets_received", 0) - before.counters.get("packets_received", 0)
        d_out = after.counters.get("packets_sent", 0) - before.counters.get("packets_sent", 0)
        pid = worker_pids.get(index)
        cpu = None
        if pid is not None and pid in cpu_before and pid in cpu_after:
            cpu = cpu_after[pid] - cpu_before[pid]
            total_cpu += cpu
        else:
            cpu_known = False
        consumers = int(after.counters.get("consumers", 0))
        rss = rss_after.get(pid) if pid is not None else None
        growth = rss - rss_baseline[pid] if rss is not None and pid in rss_baseline else None
        dropped = {
            reason: value - before.dropped.get(reason, 0)
            for reason, value in after.dropped.items()
            if value - before.dropped.get(reason, 0)
        }
        pipe_out, pipe_in = (
            after.counters.get(key, 0) - before.counters.get(key, 0) for key in ("pipe_packets_sent", "pipe_packets_received")
        )
        workers.append(
            WorkerReport(
                index=index,
                pid=pid,
                pps_in=d_in / window_s,
                pps_out=d_out / window_s,
                cpu_util=None if cpu is None else cpu / window_s,
                cpu_us_per_packet_out=None if cpu is None or not d_out else cpu * 1e6 / d_out,
                rss_mb=None if rss is None else rss / 2**20,
                rss_growth_mb=None if growth is None else growth / 2**20,
                rss_kb_per_consumer=None if growth is None or not consumers else growth / 1024 / consumers,
                consumers=consumers,
                dropped=dropped,
                pipe_pps_out=pipe_out / window_s,
                pipe_pps_in=pipe_in / window_s,
            )
        )
        total_in += d_in
        total_out += d_out

    windows = [p["window"] for r in client_reports for p in r["participants"].values()]
    hist = array("Q", bytes(8 * LATENCY_BUCKETS))
    for r in client_reports:
        for bucket, count in r["latency_hist"].items():
            hist[bucket] += count
    expected = sum(w.get("packets_expected", 0) for w in windows)
    received = sum(w.get("packets_received", 0) for w in windows)
    join_times = [
        p["join_time_s"] * 1000 for r in client_reports for p in r["participants"].values() if p["join_time_s"] is not None
    ]
    keyframe_waits = [
        p["keyframe_wait_s"] * 1000
        for r in client_reports
        for p in r["participants"].values()
        if p.get("keyframe_wait_s") is not None
    ]
    subscribers = [p for r in client_reports for p in r["participants"].values() if p["total"].get("streams", 0)]
    publishers = [p for r in client_reports for p in r["participants"].values() if p["publishing"]]
    pub_sent = sum(p["window"].get("pub_packets_sent", 0) for p in publishers)
    generator_cpu = [r["cpu_s"] / r["window_s"] if r["window_s"] else None for r in client_reports]
    lost = expected - received

    report = Report(
        scenario=scenario,
        params=params,
        command=command,
        date=time.strftime("%Y-%m-%d %H:%M:%S %z"),
        machine=machine(),
        window_s=window_s,
        participants=participants,
        joined=participants - len(join_failures),
        join_failures=join_failures,
        workers=workers,
        pps_in=total_in / window_s,
        pps_out=total_out / window_s,
        cpu_us_per_packet_out=total_cpu * 1e6 / total_out if cpu_known and total_out else None,
        latency_us={
            "p50": percentile_from_histogram(hist, 0.50),
            "p90": percentile_from_histogram(hist, 0.90),
            "p99": percentile_from_histogram(hist, 0.99),
            "p999": percentile_from_histogram(hist, 0.999),
            "max": percentile_from_histogram(hist, 1.0),
            "samples": float(sum(hist)),
        },
        latency_bins_us=latency_bins(hist),
        loss={
            "expected": expected,
            "received": received,
            "lost": lost,
            "loss_pct": 100.0 * lost / expected if expected else None,
            "gaps": sum(w.get("gaps", 0) for w in windows),
            "recovered": sum(w.get("recovered", 0) for w in windows),
            "duplicates": sum(w.get("duplicates", 0) for w in windows),
            "nacks_sent": sum(w.get("nacks_sent", 0) for w in windows),
            "subscribers_receiving": len(subscribers),
            "pps_received_by_subscribers": received / window_s,
            "passive_subscribers": sum(1 for w in windows if "passive_delivered" in w),
            "pps_delivered_to_passive_subscribers": sum(w.get("passive_delivered", 0) for w in windows) / window_s,
        },
        join_time_ms={
            "p50": percentile(join_times, 0.50),
            "p99": percentile(join_times, 0.99),
            "max": max(join_times) if join_times else None,
            "count": float(len(join_times)),
            # after our DTLS was up: keyframe request, answer, forwarding
            "keyframe_wait_p50": percentile(keyframe_waits, 0.50),
            "keyframe_wait_p99": percentile(keyframe_waits, 0.99),
        },
        publishers={
            "count": len(publishers),
            "pps_sent": pub_sent / window_s,
            "keyframes_sent": sum(p["window"].get("pub_keyframes_sent", 0) for p in publishers),
            "pli_received": sum(p["window"].get("pub_pli_received", 0) for p in publishers),
            "nack_received": sum(p["window"].get("pub_nack_received", 0) for p in publishers),
            "retransmitted": sum(p["window"].get("pub_retransmitted", 0) for p in publishers),
            "send_errors": sum(p["window"].get("pub_send_errors", 0) for p in publishers),
        },
        generator={
            "processes": len(client_reports),
            "pids": [r["pid"] for r in client_reports],
            "cpu_util": generator_cpu,
        },
        checks={
            "streams_not_starting_at_keyframe": sum(p["total"].get("not_keyframe_starts", 0) for p in subscribers),
            "packets_before_own_dtls": sum(p["total"].get("before_dtls", 0) for p in subscribers),
            "plis_sent_by_subscribers": sum(p["total"].get("plis_sent", 0) for p in subscribers),
            "srtp_checked": sum(p["total"].get("srtp_checked", 0) for p in subscribers),
            "srtp_failed": sum(p["total"].get("srtp_failed", 0) for p in subscribers),
            "unknown_ssrc": sum(p["total"].get("unknown_ssrc", 0) for p in subscribers),
            "participant_errors": {
                name: p["errors"] for r in client_reports for name, p in r["participants"].items() if p["errors"]
            },
        },
    )
    if any(u is not None and u > 0.9 for u in generator_cpu):
        report.notes.append("a generator process used > 90% of a core: the generator may be the bottleneck")
    if report.cpu_us_per_packet_out is None:
        report.notes.append("worker CPU unknown (no worker PID: pass --worker-pid with --url)")
    return report


# ------------------------------------------------------------------------------ table


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def format_table(report: Report) -> str:
    params = " ".join(f"{k}={v}" for k, v in report.params.items())
    rows: list[tuple[str, str]] = [
        ("scenario", f"{report.scenario} ({params})"),
        ("participants joined", f"{report.joined}/{report.participants}"),
        ("window", f"{report.window_s:.1f} s"),
        ("packets/s into the SFU", _fmt(report.pps_in)),
        ("packets/s out of the SFU", _fmt(report.pps_out)),
        *(
            [("  of which to other workers (pipes)", _fmt(sum(w.pipe_pps_out for w in report.workers)))]
            if any(w.pipe_pps_out for w in report.workers)
            else []
        ),
        ("CPU us per forwarded packet", _fmt(report.cpu_us_per_packet_out, 2)),
        (
            "SFU-added latency p50 / p90 / p99 / max",
            " / ".join(_fmt(report.latency_us[k], 0) for k in ("p50", "p90", "p99", "max")) + " us",
        ),
        (
            "loss seen by subscribers",
            f"{_fmt(report.loss['loss_pct'], 3)} % ({report.loss['lost']:,} of {report.loss['expected']:,};"
            f" {report.loss['gaps']} gaps, {report.loss['recovered']} recovered by NACK)",
        ),
        (
            "join time p50 / p99 / max",
            " / ".join(_fmt(report.join_time_ms[k], 0) for k in ("p50", "p99", "max"))
            + f" ms ({int(report.join_time_ms['count'])} joins)",
        ),
        (
            "  of which DTLS up to keyframe p50 / p99",
            " / ".join(_fmt(report.join_time_ms.get(k), 0) for k in ("keyframe_wait_p50", "keyframe_wait_p99")) + " ms",
        ),
        *(
            [("passive subscribers: pkts/s delivered", f"{_fmt(report.loss['pps_delivered_to_passive_subscribers'])} to {report.loss['passive_subscribers']} (kernel count, not checked)")]
            if report.loss["passive_subscribers"]
            else []
        ),
        ("publishers: pkts/s sent, PLIs, NACKed", f"{_fmt(report.publishers['pps_sent'])}, {report.publishers['pli_received']}, {report.publishers['nack_received']}"),
        ("generator CPU per process", ", ".join(_fmt(u * 100 if u is not None else None, 0) + " %" for u in report.generator["cpu_util"])),
    ]
    for w in report.workers:
        drops = ", ".join(f"{k}={int(v)}" for k, v in sorted(w.dropped.items())) or "none"
        rows += [
            (f"worker {w.index}: pkts/s in / out", f"{_fmt(w.pps_in)} / {_fmt(w.pps_out)}"),
            *(
                [(f"worker {w.index}: of which through pipes in / out", f"{_fmt(w.pipe_pps_in)} / {_fmt(w.pipe_pps_out)}")]
                if w.pipe_pps_in or w.pipe_pps_out
                else []
            ),
            (
                f"worker {w.index}: CPU, us/packet out, waited for CPU",
                f"{_fmt(None if w.cpu_util is None else w.cpu_util * 100, 1)} %, {_fmt(w.cpu_us_per_packet_out, 2)},"
                f" {_fmt(w.runqueue_wait_ms, 0)} ms",
            ),
            (
                f"worker {w.index}: RSS, per consumer, window growth",
                f"{_fmt(w.rss_mb)} MB, {_fmt(w.rss_kb_per_consumer)} KB x {w.consumers}, {_fmt(w.rss_window_growth_mb, 2)} MB",
            ),
            (f"worker {w.index}: dropped in SFU", drops),
        ]
    checks = report.checks
    rows.append(
        (
            "checks",
            f"streams not starting at a keyframe={checks['streams_not_starting_at_keyframe']}"
            f" (packets before our DTLS={checks['packets_before_own_dtls']}, PLIs sent={checks['plis_sent_by_subscribers']}),"
            f" srtp {checks['srtp_checked'] - checks['srtp_failed']}/{checks['srtp_checked']} ok,"
            f" unknown ssrc={checks['unknown_ssrc']}",
        )
    )
    for key, value in report.extra.items():
        rows.append((key, _fmt(value, 2) if isinstance(value, float) else str(value)))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    if report.join_failures:
        lines.append(f"join failures: {dict(list(report.join_failures.items())[:5])}")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)
