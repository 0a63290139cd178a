"""python -m bench.plainrtp [--quick | --smoke] [--json out.json] [--skip-janus] [--only a,b]"""

from __future__ import annotations

import argparse
import json
import sys

from bench.plainrtp.report import render
from bench.plainrtp.runner import ALL_CONTENDERS, PARTS, PROFILES, Bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.plainrtp",
        description="Plain-RTP fan-out, side by side: bare uvloop relay, Janus, Conclave's worker.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="short phases (about 2 minutes)")
    size.add_argument("--smoke", action="store_true", help="a few seconds, tiny load: bare relay and ours only (CI)")
    parser.add_argument("--json", metavar="PATH", help="write the whole report as JSON")
    parser.add_argument("--skip-janus", action="store_true", help="leave Janus out even if installed")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated subset of " + ",".join(ALL_CONTENDERS))
    parser.add_argument("--parts", metavar="NAMES", default=",".join(PARTS),
                        help="comma-separated subset of " + ",".join(PARTS) + " (default: all)")
    parser.add_argument("--fanout", type=int, default=16)
    parser.add_argument("--no-pin", action="store_true", help="do not pin forwarder and generator to CPUs")
    parser.add_argument("--long-run", type=int, metavar="SECONDS", help="override the long run's length")
    parser.add_argument("--nice", type=int, default=0, metavar="N",
                        help="run forwarders and generator at this nice value (e.g. -10 on a shared machine; root)")
    parser.add_argument("--realtime", action="store_true",
                        help="run forwarders and generator SCHED_FIFO (root): other processes cannot preempt them")
    parser.add_argument("--scaling-generator", choices=("batched", "one-by-one"), default="batched",
                        help="scaling part's generator: packets built before each phase and sent with sendmmsg "
                             "(default: nearly free, no latency), or built and sent one by one as elsewhere")
    parser.add_argument("--scaling-repeats", type=int, default=1, metavar="N",
                        help="run the scaling part's pair (one worker, two workers) N times (1..5)")
    args = parser.parse_args(argv)
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.long_run is not None:
        profile.long_run_s = max(0, min(args.long_run, 3600))
    only = None
    if args.only:
        only = tuple(name.strip() for name in args.only.split(","))
        unknown = set(only) - set(ALL_CONTENDERS)
        if unknown:
            parser.error(f"unknown forwarder(s) {sorted(unknown)}; choose from {', '.join(ALL_CONTENDERS)}")
    if not 1 <= args.fanout <= 64:
        parser.error("--fanout must be 1..64")
    parts = tuple(part.strip() for part in args.parts.split(","))
    if set(parts) - set(PARTS):
        parser.error(f"unknown part(s) {sorted(set(parts) - set(PARTS))}; choose from {', '.join(PARTS)}")
    if not 1 <= args.scaling_repeats <= 5:
        parser.error("--scaling-repeats must be 1..5")
    if not -20 <= args.nice <= 19:
        parser.error("--nice must be -20..19")
    bench = Bench(profile, fanout=args.fanout, pin=not args.no_pin, skip_janus=args.skip_janus, only=only,
                  nice=args.nice, realtime=args.realtime, parts=parts,
                  scaling_generator=args.scaling_generator, scaling_repeats=args.scaling_repeats)
    report = bench.run()
    print(render(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
