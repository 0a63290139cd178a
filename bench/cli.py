"""`python -m bench run SCENARIO [params] [--json out.json]`: run a scenario, print a table.

    python -m bench run fanout -k 16 --duration 20
    python -m bench run meeting -n 6
    python -m bench run rooms -r 4 -n 4 --workers 2
    python -m bench run join-storm -m 30
    python -m bench run join-storm --sizes 100,300,1000 --publishers 2 --media video
    python -m bench run fanout-vs-mediarelay -k 4

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from bench import scenarios
from bench.media import MediaParams
from bench.meetings import HostLogin
from bench.report import Report, format_table
from bench.runner import RunOptions, run_plan
from bench.storm import format_sizes, run_sizes

MEDIA = {"av": ["audio", "video"], "video": ["video"], "audio": ["audio"]}
SCENARIOS = ("fanout", "meeting", "rooms", "join-storm", "fanout-vs-mediarelay")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Conclave load generator and benchmarks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run a scenario and print a table")
    scenario = run.add_subparsers(dest="scenario", metavar="SCENARIO", required=True)

    fanout = scenario.add_parser("fanout", help="1 publisher, K subscribers")
    fanout.add_argument("-k", "--subscribers", type=int, default=8)
    fanout.add_argument("--media", choices=("av", "video", "audio"), default="av", help="what the publisher sends")
    fanout.add_argument("--passive", type=int, default=0, help="subscribers that stop reading after their first keyframe")
    meeting = scenario.add_parser("meeting", help="N participants all publishing audio+video, all subscribed")
    meeting.add_argument("-n", "--participants", type=int, default=6)
    rooms = scenario.add_parser("rooms", help="R meetings of N participants")
    rooms.add_argument("-r", "--rooms", type=int, default=4)
    rooms.add_argument("-n", "--participants", type=int, default=4)
    storm = scenario.add_parser("join-storm", help="M participants join within a second")
    storm.add_argument("-m", "--joiners", type=int, default=20)
    storm.add_argument("--publishers", type=int, default=1)
    storm.add_argument("--spread", type=float, default=1.0, help="seconds over which they join")
    storm.add_argument("--rate", type=float, help="with --sizes: joins per second (the spread is the joiners / rate)")
    storm.add_argument("--media", choices=("av", "video", "audio"), default="av", help="what the publishers send")
    storm.add_argument(
        "--sizes", help="comma-separated joiner counts: one storm per size, each on a server of its own, "
        "measuring control's CPU and the signaling bytes per join until everyone receives (bench/storm.py)",
    )  # fmt: skip
    versus = scenario.add_parser("fanout-vs-mediarelay", help="our fanout and aiortc MediaRelay, CPU per subscriber")
    versus.add_argument("-k", "--subscribers", type=int, default=4)
    versus.add_argument(
        "--from-k",
        type=int,
        default=0,
        help="also run both at this smaller K and report CPU per *added* subscriber (the slope), "
        "which leaves out what both pay once per stream (receiving, decoding / waking up)",
    )
    for sub in (fanout, meeting, rooms, storm, versus):
        _common(sub)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=10.0, help="measurement window, seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds between the last join and the window")
    parser.add_argument("--workers", type=int, default=1, help="SFU workers of the server the bench starts")
    parser.add_argument("--url", help="measure a running server instead of starting one")
    parser.add_argument("--worker-pid", action="append", default=[], metavar="INDEX=PID", help="with --url: worker PIDs for CPU/RSS")
    parser.add_argument("--host-email", help="with --url, for a server with accounts: a host login")
    parser.add_argument("--host-password")
    parser.add_argument("--procs", type=int, default=0, help="client processes (default: one per client CPU)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and the clients to CPUs")
    parser.add_argument(
        "--realtime", action="store_true", help="pinned workers run SCHED_FIFO (root; starves other work on their CPU)"
    )
    parser.add_argument("--server-root", type=Path, help="source tree `conclave serve` runs from (default: this one)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="a setting of the server the bench starts, e.g. sfu.pli_min_interval_s=0.1 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--video-kbps", type=int, default=1000)
    parser.add_argument("--size", default="640x360", help="video WIDTHxHEIGHT")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def options_from(args: argparse.Namespace) -> RunOptions:
    width, height = (int(v) for v in args.size.lower().split("x"))
    pids = {}
    for item in args.worker_pid:
        index, _, pid = item.partition("=")
        pids[int(index)] = int(pid)
    return RunOptions(
        duration_s=max(1.0, min(args.duration, 3600.0)),
        warmup_s=max(0.0, min(args.warmup, 600.0)),
        workers=max(1, args.workers),
        url=args.url,
        worker_pids=pids,
        processes=args.procs,
        pin=not args.no_pin,
        media=MediaParams(width=width, height=height, fps=args.fps, video_kbps=args.video_kbps, video_frames=10 * args.fps),
        server_root=args.server_root,
        quiet=args.quiet,
        host_login=HostLogin(args.host_email, args.host_password or "") if args.host_email else None,
        realtime=args.realtime,
        server_config=server_settings(args.set),
    )


def server_settings(items: list[str]) -> dict[str, dict[str, Any]]:
    """["sfu.pli_min_interval_s=0.1", ...] -> {"sfu": {"pli_min_interval_s": 0.1}} (values as YAML)."""
    settings: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise SystemExit(f"--set {item!r}: expected SECTION.KEY=VALUE")
        settings.setdefault(section, {})[key] = yaml.safe_load(text)
    return settings


def run_scenario(args: argparse.Namespace) -> Report:
    options = options_from(args)
    name = args.scenario
    if name == "fanout":
        publish = MEDIA[args.media]
        plan = scenarios.fanout(args.subscribers, publish, args.passive)
        params: dict[str, Any] = {"subscribers": args.subscribers, "media": args.media}
        if args.passive:
            params["passive"] = args.passive
    elif name == "meeting":
        plan = scenarios.meeting(args.participants)
        params = {"participants": args.participants}
    elif name == "rooms":
        plan = scenarios.rooms(args.rooms, args.participants)
        params = {"rooms": args.rooms, "participants": args.participants}
    elif name == "join-storm":
        plan = scenarios.join_storm(args.joiners, args.publishers, args.spread, MEDIA[args.media])
        params = {"joiners": args.joiners, "publishers": args.publishers, "spread_s": args.spread, "media": args.media}
    elif name == "fanout-vs-mediarelay":
        from bench.baselines.mediarelay import compare

        return compare(args.subscribers, options, from_k=args.from_k)
    else:
        raise SystemExit(f"unknown scenario {name}")
    params.update(workers=options.workers, duration_s=options.duration_s, video=f"{args.size}@{args.fps} {args.video_kbps} kbps")
    if args.set:
        params["server_settings"] = ",".join(args.set)
    return run_plan(name, plan, params, options)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        parser.print_help()
        return 2
    if args.scenario == "join-storm" and args.sizes:
        return _storm_sizes(args)
    report = run_scenario(args)
    print(format_table(report))
    if args.json:
        args.json.write_text(report.to_json() + "\n")
        print(f"[bench] wrote {args.json}", file=sys.stderr)
    return 0 if report.joined == report.participants else 1


def _storm_sizes(args: argparse.Namespace) -> int:
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        raise SystemExit(f"--sizes {args.sizes!r}: expected numbers separated by commas") from None
    if args.rate is not None and not 0 < args.rate <= 10000:
        raise SystemExit("--rate: expected 0 < joins per second <= 10000")
    report = run_sizes(sizes, args.publishers, args.spread, MEDIA[args.media], options_from(args), args.rate)
    print(format_sizes(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"[bench] wrote {args.json}", file=sys.stderr)
    return 0 if all(r["within_target"] for r in report["results"]) else 1
