"""Fuzz every parser, one at a time: `python -m tests.fuzz --count 1000000`.

    python -m tests.fuzz [--parser rtp --parser sdp ...] [--count N] [--time-limit S]
                         [--engine auto|atheris|hypothesis] [--out DIR] [--json FILE]
    python -m tests.fuzz --parser rtp --reproduce FILE     # run one saved input, show the error
    python -m tests.fuzz --list

Each parser runs in a child process (tests/fuzz/child.py) bounded by --count inputs,
--time-limit seconds, --input-timeout seconds per input (a longer one is a failure: a
hang) and --memory-mb. The engine is atheris (libFuzzer, coverage-guided, seeded with
the target's corpus and dictionary) when it is installed, else Hypothesis in a loop
with the structure-aware strategies. Prints inputs/s per parser and every failure with
the file that reproduces it, under --out (default $CONCLAVE_FUZZ_DIR or
/tmp/conclave-fuzz; the corpus found there is kept and reused). Exit status 1 when any
parser failed. The machine is shared: one parser at a time, one core.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path(os.environ.get("CONCLAVE_FUZZ_DIR", "/tmp/conclave-fuzz"))
GRACE_S = 120  # beyond --time-limit before the child is killed (startup, a last slow input)


@dataclass
class Result:
    parser: str
    engine: str
    inputs: int = 0
    seconds: float = 0.0
    rate: int = 0  # inputs per second
    coverage: str = ""  # libFuzzer's "cov: N ft: M" at the end (atheris only)
    corpus: int = 0  # inputs kept in the corpus directory
    slowest_input_s: float | None = None
    failures: list[dict[str, str]] = field(default_factory=list)
    exit_status: int = 0
    log: str = ""


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def parse_libfuzzer_log(text: str, result: Result) -> None:
    executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", text)
    done = re.findall(r"^#(\d+)\s", text, re.MULTILINE)
    result.inputs = int(executed.group(1)) if executed else int(done[-1]) if done else 0
    coverage = re.findall(r"cov: (\d+) ft: (\d+)", text)
    if coverage:
        result.coverage = f"cov {coverage[-1][0]} ft {coverage[-1][1]}"
    slowest = re.search(r"stat::slowest_unit_time_sec:\s*(\d+)", text)
    if slowest:
        result.slowest_input_s = float(slowest.group(1))
    kinds = {"crash": "uncaught exception", "timeout": "input timeout (hang)", "oom": "out of memory",
             "leak": "leak", "slow-unit": "slow input"}  # fmt: skip
    for path in re.findall(r"Test unit written to (\S+)", text):
        kind = next((label for prefix, label in kinds.items() if Path(path).name.startswith(prefix)), "failure")
        error = ""
        exception = re.search(r"=== Uncaught Python exception: ===\n(.*?)(?:\n==\d+==|\nMS:|\Z)", text, re.DOTALL)
        if exception:
            error = exception.group(1).strip().splitlines()[-1][:500]
        result.failures.append({"file": path, "error": f"{kind}: {error}" if error else kind})


def run_one(name: str, args: argparse.Namespace, engine: str) -> Result:
    workdir = args.out / name
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{engine}.log"
    result_path = workdir / "result.json"
    result_path.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "tests.fuzz.child", "--engine", engine, "--parser", name,
        "--count", str(args.count), "--seconds", str(args.time_limit), "--workdir", str(workdir),
        "--input-timeout", str(args.input_timeout), "--memory-mb", str(args.memory_mb), "--seed", str(args.seed),
    ]  # fmt: skip
    result = Result(name, engine, log=str(log_path))
    started = time.monotonic()
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            result.exit_status = child.wait(timeout=args.time_limit + GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            result.exit_status = -9
            result.failures.append({"file": "", "error": f"the child ran past {args.time_limit + GRACE_S} s: killed"})
    result.seconds = round(time.monotonic() - started, 1)
    text = log_path.read_text(errors="replace")
    if engine == "atheris":
        parse_libfuzzer_log(text, result)
    elif result_path.exists():
        report = json.loads(result_path.read_text())
        result.inputs, result.slowest_input_s = report["inputs"], report["slowest_input_s"]
        result.seconds = report["seconds"]
        result.failures += report["failures"]
    if result.exit_status != 0 and not result.failures:
        tail = text.strip().splitlines()[-1:] or ["(no output)"]
        result.failures.append({"file": "", "error": f"the child exited with {result.exit_status}: {tail[0][:300]}"})
    result.rate = round(result.inputs / result.seconds) if result.seconds else 0
    corpus = workdir / "corpus"
    result.corpus = sum(1 for _ in corpus.iterdir()) if corpus.is_dir() else 0
    return result


def reproduce(name: str, path: Path) -> int:
    from tests.fuzz import targets

    data = path.read_bytes()
    print(f"{name}: {len(data)} bytes from {path}: {data[:120]!r}{'...' if len(data) > 120 else ''}")
    started = time.perf_counter()
    try:
        targets.TARGETS[name].run(data)
    except BaseException:
        traceback.print_exc()
        print(f"FAILS after {time.perf_counter() - started:.3f} s")
        return 1
    print(f"passes ({time.perf_counter() - started:.3f} s)")
    return 0


def print_row(result: Result) -> None:
    slowest = "" if result.slowest_input_s is None else f"{result.slowest_input_s:.2f}"
    print(f"{result.parser:<12} {result.engine:<10} {result.inputs:>9} {result.seconds:>8.1f} {result.rate:>9} "
          f"{result.coverage:<18} {result.corpus:>6} {slowest:>8} {len(result.failures):>8}", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from tests.fuzz import targets

    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parser", action="append", choices=sorted(targets.TARGETS), help="repeatable; default all")
    parser.add_argument("--count", type=int, default=100_000, help="inputs per parser (default 100000)")
    parser.add_argument("--time-limit", type=int, default=1800, help="seconds per parser (default 1800)")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--input-timeout", type=int, default=10, help="seconds one input may take (default 10)")
    parser.add_argument("--memory-mb", type=int, default=2048, help="memory of a child (default 2048)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0: libFuzzer's 1, Hypothesis's own)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"work directory (default {DEFAULT_OUT})")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--reproduce", type=Path, help="run one saved input through --parser and show what fails")
    parser.add_argument("--list", action="store_true", help="list the targets")
    args = parser.parse_args(argv)

    if args.list:
        for name in targets.public_targets():
            target = targets.TARGETS[name]
            print(f"{name:<12} {', '.join(target.modules):<55} {target.doc}")
        return 0
    if args.reproduce is not None:
        if not args.parser or len(args.parser) != 1:
            parser.error("--reproduce needs exactly one --parser")
        return reproduce(args.parser[0], args.reproduce)
    if args.count < 1 or args.time_limit < 1:
        parser.error("--count and --time-limit must be positive")
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if atheris_available() else "hypothesis"
    elif engine == "atheris" and not atheris_available():
        parser.error("atheris is not installed (pip install -e '.[test]'); --engine hypothesis works without it")
    names = args.parser or targets.public_targets()
    args.out = args.out.resolve()
    print(f"fuzzing {len(names)} parser(s) with {engine}: up to {args.count} inputs and {args.time_limit} s each; "
          f"work directory {args.out}", flush=True)  # fmt: skip
    print(f"{'parser':<12} {'engine':<10} {'inputs':>9} {'seconds':>8} {'inputs/s':>9} {'coverage':<18} "
          f"{'corpus':>6} {'slowest':>8} {'failures':>8}", flush=True)  # fmt: skip
    results = []
    for name in names:
        result = run_one(name, args, engine)
        results.append(result)
        print_row(result)
    failed = [r for r in results if r.failures]
    for result in failed:
        for failure in result.failures:
            print(f"\nFAILURE {result.parser}: {failure['error']}")
            if failure.get("file"):
                print(f"  reproducer: {failure['file']}")
                print(f"  run it:     python -m tests.fuzz --parser {result.parser} --reproduce {failure['file']}")
            print(f"  log:        {result.log}")
    total = sum(r.inputs for r in results)
    print(f"\n{total} inputs in {sum(r.seconds for r in results):.0f} s; "
          f"{len(failed)} parser(s) failed; work directory {args.out}")  # fmt: skip
    if args.json is not None:
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python -m tests.fuzz", *(argv if argv is not None else sys.argv[1:])]),
            "engine": engine,
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(report, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
