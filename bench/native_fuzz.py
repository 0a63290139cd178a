"""The native forwarding module under AddressSanitizer and UBSan (issue 15, item 4).

    python -m bench.native_fuzz [--count N] [--seed S]

Builds sfu/transport/native/forward.c with -fsanitize=address,undefined (a separate
module, build/cffi-asan/_forward_asan*.so; the installed one is untouched), then runs
itself again with the sanitizer runtime preloaded (CPython is not built with it) and
feeds tests/fuzz/native.py's target the RTP parser's corpus, then N packets mutated
from it (bytes flipped, cut, grown, spliced; lengths up to and past the MTU). Any
out-of-bounds access aborts with ASan's report; a property failure is printed with the
input. Exit status 0 only when every input passed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD_FLAG = "CONCLAVE_NATIVE_FUZZ_CHILD"


def _runtime(name: str) -> str:
    path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=True).stdout
    return path.strip()


def _mutate(rnd: random.Random, corpus: list[bytes]) -> bytes:
    data = bytearray(rnd.choice(corpus))
    for _ in range(rnd.randrange(1, 5)):
        choice = rnd.randrange(6)
        if choice == 0 and data:
            data[rnd.randrange(len(data))] = rnd.getrandbits(8)
        elif choice == 1 and data:
            del data[rnd.randrange(len(data)):]
        elif choice == 2:
            data += rnd.randbytes(rnd.randrange(1, 400))
        elif choice == 3:
            data += rnd.choice(corpus)
        elif choice == 4 and len(data) > 3:
            data[0] = 0x80 | rnd.getrandbits(5)  # version 2, any X/CC: the header walks
            data[2:4] = rnd.randbytes(2)
        else:
            data = bytearray(rnd.randbytes(rnd.choice((12, 13, 1356, 1357, 1499, 1500, 1501))))
            data[0] = 0x80
    return bytes(data)


def child(count: int, seed: int) -> int:
    sys.path.insert(0, ROOT)
    path = os.environ[CHILD_FLAG]
    spec = importlib.util.spec_from_file_location("_forward_asan", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from tests.fuzz.native import NativeFuzz, seeds

    fuzz = NativeFuzz(module)
    corpus = seeds()
    rnd = random.Random(seed)
    started = time.monotonic()
    failures = 0
    inputs = corpus + [_mutate(rnd, corpus) for _ in range(count)]
    for data in inputs:
        try:
            fuzz.run(data)
        except AssertionError as exc:
            failures += 1
            print(f"FAILED {exc}: {data.hex()}", flush=True)
    fuzz.close()
    seconds = time.monotonic() - started
    print(f"native module under ASan+UBSan: {len(inputs)} inputs ({len(corpus)} from the RTP corpus) in "
          f"{seconds:.1f} s, {failures} failures", flush=True)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.native_fuzz")
    parser.add_argument("--count", type=int, default=100000, help="mutated inputs after the corpus")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if os.environ.get(CHILD_FLAG):
        return child(args.count, args.seed)
    from sfu.transport.native.build import build_in_place

    library = build_in_place(asan=True)
    env = dict(os.environ)
    env[CHILD_FLAG] = library
    env["LD_PRELOAD"] = " ".join(_runtime(name) for name in ("libasan.so", "libubsan.so"))
    # CPython's own allocations are not instrumented and its interned objects live to the
    # end: leaks are not what this looks for. UBSan findings abort like ASan's.
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    command = [sys.executable, "-m", "bench.native_fuzz", "--count", str(args.count), "--seed", str(args.seed)]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
