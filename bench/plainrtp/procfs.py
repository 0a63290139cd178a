"""What the kernel knows about the processes and sockets under test, read from /proc.

Whole-process CPU is user + system time of every thread: the process CPU-time clock
(ns), cross-checked against utime + stime of /proc/PID/stat (10 ms ticks); RSS is VmRSS of /proc/PID/status; per-socket UDP drops (receive buffer
full) are the last column of /proc/net/udp. Linux only, which is what the bench needs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import time

_libc_name = ctypes.util.find_library("c")
_libc = ctypes.CDLL(_libc_name, use_errno=True) if _libc_name else None

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOOPBACK_HEX = "0100007F"  # 127.0.0.1 as /proc/net/udp prints it (little-endian)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process (all its threads) has used so far, read from
    its CPU-time clock (clock_getcpuclockid): nanosecond resolution, where /proc/PID/stat
    counts the same time in 10 ms ticks. Falls back to /proc/PID/stat."""
    clock = _cpu_clock(pid)
    if clock is not None:
        try:
            return time.clock_gettime(clock)
        except OSError:
            pass
    return cpu_seconds_stat(pid)


def _cpu_clock(pid: int) -> int | None:
    if _libc is None:
        return None
    clock = ctypes.c_int()
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
        return None
    return clock.value


def cpu_seconds_stat(pid: int) -> float:
    """utime + stime of /proc/PID/stat (fields 14 and 15 of proc(5)), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat(5)


def machine_busy() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, all CPUs, from /proc/stat.

    Busy is everything but idle, iowait and steal; steal is time the hypervisor gave to
    someone else. Subtracting the processes under test leaves what others used."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


def machine_times() -> dict[str, float]:
    """CPU seconds of the whole machine so far by kind (all CPUs), from /proc/stat:
    user (with nice), system, irq, softirq (the kernel's deferred network work, charged to
    whichever process was running), idle (with iowait), steal."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {"user": (user + nice) / CLOCK_TICKS, "system": system / CLOCK_TICKS, "irq": irq / CLOCK_TICKS,
            "softirq": softirq / CLOCK_TICKS, "idle": (idle + iowait) / CLOCK_TICKS, "steal": steal / CLOCK_TICKS}


def user_system_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of /proc/PID/stat in seconds (10 ms ticks)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def udp_drops(ports: list[int]) -> dict[int, int]:
    """Packets the kernel dropped at each 127.0.0.1:port socket because its buffer was full."""
    if not ports:
        return {}
    wanted = {f"{LOOPBACK_HEX}:{port:04X}": port for port in ports}
    drops = dict.fromkeys(ports, 0)
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            port = wanted.get(fields[1])
            if port is not None:
                drops[port] += int(fields[-1])
    return drops


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def renice(pid: int, nice: int) -> None:
    """Set the nice value of every thread of `pid` (Linux keeps one per thread)."""
    for tid in _threads(pid):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:
            pass


def make_realtime(pid: int, priority: int = 1) -> bool:
    """SCHED_FIFO for every thread of `pid` (root): other processes no longer preempt it.
    The kernel still keeps 5 % of each CPU for them (sched_rt_runtime_us)."""
    ok = True
    for tid in _threads(pid):
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
        except OSError:
            ok = False
    return ok


def cpu_model() -> str | None:
    """The first "model name" of /proc/cpuinfo (None if there is none to read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def online_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pin_prefix(cpu: int | None) -> list[str]:
    """A command prefix that pins a child (and every thread it starts) to one CPU."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM by PID, then SIGKILL if it is still there after `timeout` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout)


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds have passed (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
