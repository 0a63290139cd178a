"""The run's tables, printed as Markdown (ready for bench/RESULTS.md), from the JSON report."""

from __future__ import annotations


def _f(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _k(value) -> str:
    return "–" if value is None else f"{value / 1000:.1f}k"


def _latency(r: dict) -> str:
    lat = r.get("latency_us") or {}
    return f"{lat['p50']:.0f} / {lat['p99']:.0f}" if lat else "–"


def _loss(r: dict) -> str:
    sfu = r["lost_total"] - r["receiver_socket_drops"]
    extra = f" (+{r['receiver_socket_drops']} at receivers)" if r["receiver_socket_drops"] else ""
    return f"{sfu}{extra}"


def render(report: dict) -> str:
    lines: list[str] = []
    out = lines.append
    m = report["machine"]
    out(f"Command: `{report['command']}`  ")
    out(f"Date: {report['started']} – {report['finished']} (UTC)  ")
    out(f"Machine: {m['hostname']}, {m['cpus']} × {m['cpu_model']}, Linux {m['kernel']}, Python {m['python']}, "
        f"uvloop {m['uvloop']}, pylibsrtp {m['pylibsrtp']}, Janus {m.get('janus') or 'not installed'}  ")
    pin = (f"forwarder on CPU {report['forwarder_cpu']}, generator + receivers on CPU {report['generator_cpu']}"
           if report["pinned"] else "not pinned (fewer than 2 CPUs or --no-pin)")
    nice = f"; forwarders and generator at nice {report['nice']}" if report.get("nice") else ""
    if report.get("realtime"):
        nice += "; forwarders and generator SCHED_FIFO"
    out(f"Load: {report['packet_size']}-byte RTP (VP8), fan-out {report['fanout']}, 127.0.0.1; {pin}{nice}; "
        f"profile {report['profile']['name']}")
    for name, why in report.get("skipped", {}).items():
        out(f"Skipped {name}: {why}")
    out("")
    contenders = report["contenders"]
    if any("saturation" in c for c in contenders.values()):
        out("Saturation (highest rate forwarded with ≤ 0.1 % loss; receivers passive):")
        out("")
        out("| forwarder | CPU µs / forwarded packet | packets/s out | per core (10⁶ / µs) | packets/s in "
            "| forwarder CPU | lossless | overload probe µs/pkt | others, cores |")
        out("|---|---:|---:|---:|---:|---:|:-:|---:|---:|")
        for name, c in contenders.items():
            s = c.get("saturation")
            if s:
                r = s["result"]
                per_core = _k(1e6 / r["cpu_us_per_packet"]) if r["cpu_us_per_packet"] else "–"
                out(f"| {name} | {_f(r['cpu_us_per_packet'])} | {_k(r['pps_out'])} | {per_core} | "
                    f"{r['offered_pps_in']:.0f} | {r['forwarder_cpu_util']:.0%} | {'yes' if s['lossless'] else 'no'} | "
                    f"{_f(s['probe']['cpu_us_per_packet'])} | {r['others_cpu_util']:.2f} |")
        out("")
    rates = sorted({rate for c in contenders.values() for rate in c.get("fixed", {})}, key=float)
    sections = [(f"Fixed offered load {rate} packets/s in ({float(rate) * report['fanout'] / 1000:.0f}k out)",
                 "fixed", rate) for rate in rates]
    sections += [(f"{float(f):.0%} of ours+srtp saturation", "relative", f) for f in ("0.5", "0.8")]
    for title, key, sub in sections:
        rows = [(name, c[key][sub]) for name, c in contenders.items() if sub in c.get(key, {})]
        if not rows:
            continue
        out(f"{title} (receivers read every packet):")
        out("")
        out("| forwarder | CPU µs / forwarded packet | forwarder CPU | packets/s out | latency p50 / p99 µs "
            "| lost in forwarder | others, cores |")
        out("|---|---:|---:|---:|---:|---:|---:|")
        for name, r in rows:
            out(f"| {name} | {_f(r['cpu_us_per_packet'])} | {r['forwarder_cpu_util']:.0%} | {_k(r['pps_out'])} | "
                f"{_latency(r)} | {_loss(r)} | {r['others_cpu_util']:.2f} |")
        out("")
    if report.get("ratios"):
        out("Ratios (CPU per forwarded packet):")
        out("")
        for name, value in report["ratios"].items():
            out(f"- {name}: {_f(value)}")
        out("")
    scaling = report.get("scaling")
    if scaling:
        out(f"Two workers vs one (ours, one router each, each worker on its own CPU, generator unpinned, "
            f"{scaling.get('generator', 'one-by-one')} generator):")
        out("")
        out("| run | one worker: packets/s out | CPU µs/pkt | worker CPU | generator CPU | two workers: packets/s out "
            "| CPU µs/pkt | worker CPU | generator CPU | softirq, cores | ratio | at 2 × per-CPU rate |")
        out("|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|")
        for i, run in enumerate(scaling.get("runs") or [scaling]):
            one, two = run["one worker"]["result"], run["two workers"]["result"]
            out(f"| {i + 1} | {_k(one['pps_out'])} | {_f(one['cpu_us_per_packet'])} | "
                f"{' + '.join(f'{v:.2f}' for v in one['per_pid_cpu_util'].values())} | {one['generator_cpu_util']:.2f} | "
                f"{_k(two['pps_out'])} | {_f(two['cpu_us_per_packet'])} | "
                f"{' + '.join(f'{v:.2f}' for v in two['per_pid_cpu_util'].values())} | {two['generator_cpu_util']:.2f} | "
                f"{two.get('machine_util', {}).get('softirq', 0):.2f} | ×{_f(run['ratio'])} | "
                f"×{_f(run.get('ratio_per_worker_cpu'))} |")
        out("")
    rss = report.get("rss")
    if rss:
        out(f"RSS with {rss['consumers']} plain consumers (one transport each) on one worker: "
            f"{rss['rss_baseline_bytes'] / 1e6:.1f} MB → {rss['rss_after_bytes'] / 1e6:.1f} MB = "
            f"{rss['rss_per_consumer_bytes'] / 1024:.1f} KiB per consumer (setup {rss['setup_s']} s)")
        out("")
    long_run = report.get("long_run")
    if long_run and long_run["seconds"]:
        samples = long_run["rss_bytes"]
        out(f"Long run: ours at {long_run['rate_in']:.0f} packets/s in for {long_run['seconds']} s: RSS "
            f"{samples[0] / 1e6:.2f} → {samples[-1] / 1e6:.2f} MB (growth after warm-up "
            f"{long_run['rss_growth_bytes'] / 1024:.0f} KiB, slope {long_run['rss_slope_bytes_per_min'] / 1024:.1f} "
            f"KiB/min), lost {long_run['lost']} of {long_run['expected']}")
        out("")
    if report.get("targets"):
        out("| target | value | limit | holds |")
        out("|---|---:|---|:-:|")
        for t in report["targets"]:
            holds = "–" if t["holds"] is None else ("yes" if t["holds"] else "**no**")
            out(f"| {t['target']} | {_f(t['value'])} | {t['limit']} | {holds} |")
    return "\n".join(lines)
