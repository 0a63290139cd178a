"""One fuzz campaign against one target, in a process of its own (started by
`python -m tests.fuzz`; not meant to be run by hand).

    python -m tests.fuzz.child --engine atheris|hypothesis --parser NAME --count N
        --seconds S --workdir DIR [--input-timeout S] [--memory-mb M] [--seed N]

DIR gets: seeds/ (written afresh), corpus/ (kept between runs: libFuzzer adds what found
new coverage), failures/ (one file per failing input, its reproducer), tokens.dict, and
for the Hypothesis engine result.json. The atheris engine leaves libFuzzer's report on
stderr for the parent to read (libFuzzer ends the process itself).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fuzz.targets import Target

# What atheris instruments for coverage: every parser package and the targets themselves.
INSTRUMENTED = ("sfu.wire", "recorder.media", "common.channel", "common.messages", "control.meeting.protocol",
                "tests.fuzz.targets")  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.child")
    parser.add_argument("--engine", choices=("atheris", "hypothesis"), required=True)
    parser.add_argument("--parser", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--input-timeout", type=int, default=10)
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def prepare(workdir: Path, target: Target) -> dict[str, Path]:
    paths = {name: workdir / name for name in ("seeds", "corpus", "failures")}
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    for old in paths["seeds"].iterdir():
        old.unlink()
    for seed in target.seeds():
        (paths["seeds"] / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    paths["dict"] = workdir / "tokens.dict"
    paths["dict"].write_text("".join(f'"{_escape(token)}"\n' for token in target.tokens))
    return paths


def _escape(token: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in token)


def run_atheris(args: argparse.Namespace) -> None:
    import atheris

    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        from tests.fuzz import targets
    target = targets.TARGETS[args.parser]
    paths = prepare(args.workdir, target)
    libfuzzer_args = [
        sys.argv[0], str(paths["corpus"]), str(paths["seeds"]),
        f"-runs={args.count}", f"-max_total_time={args.seconds}", f"-timeout={args.input_timeout}",
        f"-rss_limit_mb={args.memory_mb}", f"-max_len={target.max_len}", f"-seed={args.seed or 1}",
        f"-artifact_prefix={paths['failures']}/", "-print_final_stats=1", "-print_pcs=0",
    ]  # fmt: skip
    if target.tokens:
        libfuzzer_args.append(f"-dict={paths['dict']}")
    atheris.Setup(libfuzzer_args, target.run)
    atheris.Fuzz()  # never returns: libFuzzer exits with its report on stderr


class InputTimeout(Exception):
    """One input ran longer than --input-timeout (a hang)."""


def run_hypothesis(args: argparse.Namespace) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    from tests.fuzz import strategies, targets

    target = targets.TARGETS[args.parser]
    paths = prepare(args.workdir, target)
    # Memory: allocations past the limit raise MemoryError, which the target reports.
    limit = args.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    def on_alarm(signum: int, frame: object) -> None:
        raise InputTimeout(f"one input ran longer than {args.input_timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    state = {"inputs": 0, "current": b"", "slowest": 0.0}

    def one(data: bytes) -> None:
        state["inputs"] += 1
        state["current"] = data
        signal.setitimer(signal.ITIMER_REAL, args.input_timeout)
        started = time.perf_counter()
        try:
            target.run(data)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            state["slowest"] = max(state["slowest"], time.perf_counter() - started)

    strategy = strategies.for_target(args.parser)
    started = time.monotonic()
    deadline = started + args.seconds
    failures: list[dict[str, str]] = []
    chunk = 2000
    while state["inputs"] < args.count and time.monotonic() < deadline and not failures:
        batch = min(chunk, args.count - state["inputs"])

        @settings(max_examples=batch, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])  # fmt: skip
        @given(strategy)
        def campaign(data: bytes) -> None:
            one(data)

        try:
            campaign()
        except Exception as exc:  # the shrunk failing input was the last one run
            data = state["current"]
            path = paths["failures"] / f"crash-{hashlib.sha1(data).hexdigest()}"
            path.write_bytes(data)
            failures.append({"file": str(path), "error": f"{type(exc).__name__}: {exc}"[:500],
                             "traceback": traceback.format_exc()[-4000:]})  # fmt: skip
    elapsed = time.monotonic() - started
    result = {"engine": "hypothesis", "parser": args.parser, "inputs": state["inputs"], "seconds": round(elapsed, 2),
              "rate": round(state["inputs"] / elapsed) if elapsed else 0, "slowest_input_s": round(state["slowest"], 3),
              "failures": failures}  # fmt: skip
    (args.workdir / "result.json").write_text(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.engine == "atheris":
        run_atheris(args)
    else:
        run_hypothesis(args)


if __name__ == "__main__":
    main()
