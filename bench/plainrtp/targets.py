"""The issue's ratios and targets, read from a `python -m bench.plainrtp` report.

Pure: the report (a dict, as the JSON holds it) in, ratios and targets out.
"""

from __future__ import annotations

from bench.plainrtp.simulcast import NAME as SIMULCAST
from bench.plainrtp.simulcast import WEBRTC_NAME as WEBRTC

ALL_CONTENDERS = ("c-relay", "bare", "bare+srtp", "bare+srtp-fast", "janus", "janus+srtp", "ours-python",
                  "ours+srtp-python", "ours", "ours+srtp", f"{WEBRTC}-python", WEBRTC, f"{SIMULCAST}-python",
                  SIMULCAST)


def _sat(report: dict, name: str) -> dict | None:
    entry = report["contenders"].get(name, {}).get("saturation")
    return entry["result"] if entry else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def evaluate(report: dict) -> tuple[dict, list[dict]]:
    """The ratios the issue asks for, and each target with its value and whether it holds."""
    us = {name: (_sat(report, name) or {}).get("cpu_us_per_packet") for name in ALL_CONTENDERS}
    ratios = {
        # Issue 15: against the kernel's floor (the C relay: recvmmsg + one sendmmsg of the copies).
        "ours+srtp / c-relay": _ratio(us["ours+srtp"], us["c-relay"]),
        "ours / c-relay": _ratio(us["ours"], us["c-relay"]),
        "ours+srtp / ours+srtp-python": _ratio(us["ours+srtp"], us["ours+srtp-python"]),
        "ours / ours-python": _ratio(us["ours"], us["ours-python"]),
        "ours+srtp-python / c-relay": _ratio(us["ours+srtp-python"], us["c-relay"]),
        f"{WEBRTC} / {WEBRTC}-python": _ratio(us[WEBRTC], us[f"{WEBRTC}-python"]),
        f"{SIMULCAST} / {SIMULCAST}-python": _ratio(us[SIMULCAST], us[f"{SIMULCAST}-python"]),
        f"{WEBRTC} / c-relay": _ratio(us[WEBRTC], us["c-relay"]),
        "ours+srtp / janus+srtp": _ratio(us["ours+srtp"], us["janus+srtp"]),
        "ours / janus": _ratio(us["ours"], us["janus"]),
        "ours+srtp / bare+srtp": _ratio(us["ours+srtp"], us["bare+srtp"]),
        "ours / bare": _ratio(us["ours"], us["bare"]),
        # bare+srtp-fast makes the same libsrtp calls as our transports (FastSrtp): the fair ceiling.
        "ours+srtp / bare+srtp-fast": _ratio(us["ours+srtp"], us["bare+srtp-fast"]),
        # Issue 11: simulcast (3 layers, transport-cc) against single-layer ours+srtp and the bare relay.
        f"{SIMULCAST} / ours+srtp": _ratio(us[SIMULCAST], us["ours+srtp"]),
        f"{SIMULCAST} / bare+srtp": _ratio(us[SIMULCAST], us["bare+srtp"]),
        f"{SIMULCAST} / bare+srtp-fast": _ratio(us[SIMULCAST], us["bare+srtp-fast"]),
        # The same WebRTC meeting with one stream: simulcast's own cost, and the transports' and transport-cc's.
        f"{SIMULCAST} / {WEBRTC}": _ratio(us[SIMULCAST], us[WEBRTC]),
        f"{WEBRTC} / ours+srtp": _ratio(us[WEBRTC], us["ours+srtp"]),
    }
    fixed_ratios = {}
    for name, data in report["contenders"].items():
        for rate, r in data.get("fixed", {}).items():
            fixed_ratios.setdefault(rate, {})[name] = r["cpu_us_per_packet"]
    for rate, per in fixed_ratios.items():
        for ours, other in (("ours+srtp", "janus+srtp"), ("ours+srtp", "bare+srtp"), ("ours", "janus"), ("ours", "bare"),
                            (SIMULCAST, "ours+srtp"), (SIMULCAST, "bare+srtp")):
            ratios[f"at {rate} pps in: {ours} / {other}"] = _ratio(per.get(ours), per.get(other))
    targets = []

    def target(name: str, value, limit: str, holds: bool | None) -> None:
        targets.append({"target": name, "value": value, "limit": limit, "holds": holds})

    for label, limit in (("ours+srtp / c-relay", 1.6), ("ours / c-relay", 1.2), ("ours+srtp / janus+srtp", 0.6)):
        r = ratios.get(label)
        if r is not None:
            target(f"{label} CPU per forwarded packet, saturated (issue 15)", r, f"<= {limit}", r <= limit)
    r = ratios["ours+srtp / janus+srtp"]
    if r is not None:
        target("ours+srtp / janus+srtp CPU per packet, saturated", r, "<= 1.3", r <= 1.3)
    for label, limit in ((f"{SIMULCAST} / ours+srtp", 1.15), (f"{SIMULCAST} / bare+srtp", 1.5)):
        r = ratios[label]
        if r is not None:
            target(f"{label} CPU per forwarded packet, saturated (same run)", r, f"<= {limit}", r <= limit)
    for name in ("ours+srtp",):
        sat = _sat(report, name)
        if sat and sat["cpu_us_per_packet"]:
            per_core = round(1e6 / sat["cpu_us_per_packet"])
            target(f"{name} CPU µs per forwarded packet, saturated", sat["cpu_us_per_packet"], "<= 6.5",
                   sat["cpu_us_per_packet"] <= 6.5)
            target(f"{name} packets/s out of one worker, measured", sat["pps_out"], ">= 150000",
                   sat["pps_out"] >= 150_000)
            target(f"{name} packets/s out per core (1e6 / µs per packet)", per_core, ">= 150000",
                   per_core >= 150_000)
    scaling = report.get("scaling")
    if scaling:
        measured = [r for r in scaling.get("ratios") or [scaling.get("ratio")] if r is not None]
        label = "two workers / one, measured" + (f" (lowest of {len(measured)} runs)" if len(measured) > 1 else "")
        worst = min(measured) if measured else None
        target(label, worst, ">= 1.8", None if worst is None else worst >= 1.8)
        per_cpu = scaling.get("ratio_per_worker_cpu")
        if per_cpu is not None:
            target("two workers / one, at the measured packets/s per worker CPU × 2 CPUs", per_cpu, ">= 1.8",
                   per_cpu >= 1.8)
    ours = report["contenders"].get("ours+srtp") or report["contenders"].get("ours") or {}
    half = ours.get("relative", {}).get("0.5")
    if half and half["latency_us"]:
        target("SFU-added latency p99 at 50 % of saturation (µs)", half["latency_us"]["p99"], "<= 1000",
               half["latency_us"]["p99"] <= 1000)
    eighty = ours.get("relative", {}).get("0.8")
    for label, r in [("50 %", half), ("80 %", eighty)]:
        if r:
            dropped = r["lost_total"] - r["receiver_socket_drops"]
            target(f"packets dropped by the SFU at {label} of saturation", dropped, "== 0", dropped == 0)
    rss = report.get("rss")
    if rss:
        target(f"RSS per consumer at {rss['consumers']} consumers (bytes)", rss["rss_per_consumer_bytes"],
               "<= 1 MB", rss["rss_per_consumer_bytes"] <= 1_000_000)
    long_run = report.get("long_run")
    if long_run and long_run["seconds"]:
        growth = long_run["rss_growth_bytes"]
        target(f"RSS growth over a {long_run['seconds']} s run at 50 % (bytes)", growth, "no growth (< 1 MB)",
               growth < 1_000_000)
    return {k: v for k, v in ratios.items() if v is not None}, targets
