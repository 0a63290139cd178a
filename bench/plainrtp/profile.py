"""Profile a forwarder of the fan-out bench at its saturation rate.

    python -m bench.plainrtp.profile [--forwarder ours+srtp] [--seconds 8] [--tool perf|py-spy]

The forwarder runs pinned as in the bench (receivers passive), an overload probe finds
its capacity, then it runs at that rate while a profiler samples it:

- perf (`perf record -e cpu-clock -g -p PID`, Debian's linux-perf): samples CPU time
  only, kernel included, so the split by library is where the CPU goes: the kernel's
  UDP send path, libsrtp/OpenSSL, the Python interpreter, libc, cffi, uvloop.
- py-spy (`pip install py-spy`; `py-spy record -p PID -f raw`): samples wall-clock
  Python stacks; the Python line a sample stopped in, with C calls charged to the line
  that made them. It also counts time the process waited for a CPU, so a machine that
  others are using inflates whatever line is usually preempted (the sendto).
Each share is also given in µs per forwarded packet (share × the measured CPU µs/packet).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile

from bench.plainrtp import procfs
from bench.plainrtp.loadgen import LoadGenerator, Receivers
from bench.plainrtp.packets import PacketSource
from bench.plainrtp.runner import ALL_CONTENDERS, _make_forwarder
from bench.plainrtp.simulcast import NAME as SIMULCAST
from bench.plainrtp.simulcast import WEBRTC_NAME as WEBRTC
from bench.plainrtp.simulcast import SimulcastForwarder, copies_per_packet

DSO_GROUPS = (
    ("[kernel", "kernel (UDP send/receive, syscalls, scheduler)"),
    ("libpython", "Python interpreter (engine, transport, pylibsrtp wrapper)"),
    ("_binding", "libsrtp + OpenSSL (AES-CTR, HMAC-SHA1)"),
    ("libsrtp", "libsrtp + OpenSSL (AES-CTR, HMAC-SHA1)"),
    ("libcrypto", "libsrtp + OpenSSL (AES-CTR, HMAC-SHA1)"),
    ("libfreebl", "libsrtp + NSS freebl (Debian's libsrtp2 for Janus)"),
    ("libsoftokn", "libsrtp + NSS freebl (Debian's libsrtp2 for Janus)"),
    ("libnss", "libsrtp + NSS freebl (Debian's libsrtp2 for Janus)"),
    ("libjanus", "Janus (VideoRoom plugin, core)"),
    ("janus", "Janus (VideoRoom plugin, core)"),
    ("libglib", "GLib"),
    ("libc", "libc (malloc/free, memcpy, syscall wrappers)"),
    ("_cffi_backend", "cffi (calls into libsrtp)"),
    ("_forward", "native forwarding module (header, queue, sendmmsg; issue 15)"),
    ("_conclave_crelay", "C relay (recvmmsg, sendmmsg)"),
    ("loop.cpython", "uvloop"),
    ("_struct", "struct"),
)


def _group(dso: str) -> str:
    for prefix, name in DSO_GROUPS:
        if dso.startswith(prefix):
            return name
    return "other"


def perf_split(data: str) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(share by group, top symbols) from `perf report`."""
    def report(sort: str) -> list[tuple[str, float]]:
        out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", sort, "--stdio", "-g", "none"],
                             capture_output=True, text=True, timeout=120).stdout
        rows = []
        for line in out.splitlines():
            line = line.strip()
            if line and not line.startswith("#") and line.split()[0].endswith("%"):
                share, _, name = line.partition("%")
                rows.append((name.strip(), float(share) / 100))
        return rows

    groups: dict[str, float] = collections.defaultdict(float)
    for dso, share in report("dso"):
        groups[_group(dso)] += share
    return sorted(groups.items(), key=lambda kv: -kv[1]), report("dso,sym")[:25]


def py_spy_lines(raw: str) -> list[tuple[str, float]]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            counts[stack.split(";")[-1]] += int(n)
            total += int(n)
    return [(frame, n / total) for frame, n in counts.most_common(25)] if total else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plainrtp.profile")
    parser.add_argument("--forwarder", default="ours+srtp", choices=ALL_CONTENDERS)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--tool", choices=("perf", "py-spy"), default="perf")
    parser.add_argument("--fanout", type=int, default=16)
    parser.add_argument("--realtime", action="store_true", help="forwarder and generator SCHED_FIFO (root), as the bench's --realtime")
    args = parser.parse_args(argv)
    tool = "perf" if args.tool == "perf" else "py-spy"
    if shutil.which(tool) is None:
        sys.exit(f"{tool} is not installed: " + ("apt-get install -y linux-perf" if tool == "perf" else "pip install py-spy"))
    seconds = max(2, min(args.seconds, 60))
    cpus = procfs.online_cpus()
    pinned = len(cpus) >= 2
    saved = os.sched_getaffinity(0)
    base = args.forwarder.removesuffix("-python")
    simulcast = base in (SIMULCAST, WEBRTC)  # WebRTC links: the forwarder makes the sockets
    layers = 1 if base == WEBRTC else 3
    receivers = None if simulcast else Receivers(args.fanout, passive=True)
    forwarder = (SimulcastForwarder(cpus[0] if pinned else None, args.forwarder, layers) if simulcast
                 else _make_forwarder(args.forwarder, cpus[0] if pinned else None))
    folder = tempfile.mkdtemp(prefix="bench-profile-")
    try:
        if pinned:
            os.sched_setaffinity(0, {cpus[1]})
        if simulcast:
            socks = forwarder.start(args.fanout)
            receivers = Receivers(args.fanout, passive=True, socks=socks, watcher=forwarder.feedback, latency=False)
            gen = LoadGenerator(receivers, [(forwarder.source, forwarder.input_addr)],
                                fanout=copies_per_packet(args.fanout, layers), sock=forwarder.input_socket)
        else:
            forwarder.start(receivers.ports)
            receivers.set_decrypt_keys(forwarder.receiver_keys)
            source = PacketSource(forwarder.ssrc, forwarder.payload_type, forwarder.input_key)
            gen = LoadGenerator(receivers, [(source, forwarder.input_addr)])
        if args.realtime:
            for pid in (*forwarder.pids, os.getpid()):
                procfs.make_realtime(pid)
        probe = gen.run_phase("probe", 30_000, 1.0, 0.3, forwarder.pids, forwarder.input_ports)
        rate = max(100.0, probe.pps_out / gen.fanout * 0.97)
        pid = forwarder.pids[0]
        out = os.path.join(folder, "profile.data" if tool == "perf" else "profile.txt")
        command = (["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g", "-p", str(pid), "-o", out, "--",
                    "sleep", str(seconds)] if tool == "perf"
                   else ["py-spy", "record", "-p", str(pid), "-r", "250", "-d", str(seconds), "-f", "raw", "-o", out])
        profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = gen.run_phase("profiled", rate, seconds, 0.3, forwarder.pids, forwarder.input_ports)
        profiler.wait(seconds + 60)
        us = result.cpu_us_per_packet or 0.0
        print(f"{args.forwarder} at {rate:.0f} packets/s in: {us:.2f} CPU µs per forwarded packet, "
              f"forwarder CPU {result.forwarder_cpu_util:.0%}, other processes {result.others_cpu_util:.2f} cores "
              f"({forwarder.describe()})\n")
        if tool == "perf":
            groups, symbols = perf_split(out)
            print("| where (perf, CPU time) | share | µs per forwarded packet |\n|---|---:|---:|")
            for name, share in groups:
                print(f"| {name} | {share:.1%} | {share * us:.2f} |")
            print("\n| top symbols | share |\n|---|---:|")
            for name, share in symbols:
                print(f"| `{' '.join(name.split())}` | {share:.1%} |")
        else:
            print("| Python line (py-spy, wall clock, C calls charged to their caller) | share | µs per forwarded packet |")
            print("|---|---:|---:|")
            for frame, share in py_spy_lines(out):
                print(f"| `{frame}` | {share:.1%} | {share * us:.2f} |")
    finally:
        forwarder.stop()
        if receivers is not None:
            receivers.close()
        shutil.rmtree(folder, ignore_errors=True)
        os.sched_setaffinity(0, saved)
        if args.realtime:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
