"""The server under test: a `conclave serve` the bench starts itself, or one at --url.

Started as a subprocess on free ports (HTTP port 0, worker UDP ports ephemeral, all on
127.0.0.1) with a temporary data directory, optionally pinned to some CPUs (its workers
inherit the affinity); stopped by PID: SIGTERM, then SIGKILL, workers included.

What the bench reads from it: `/metrics` (per-worker packets, drops by reason, consumers)
and, for processes on this machine, /proc (whole-process CPU user+sys, RSS).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.plainrtp.procfs import CLOCK_TICKS

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


# ------------------------------------------------------------------------------ /proc


def system_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle since boot (/proc/stat; idle and iowait excluded)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user/nice
    return (sum(fields) - idle - guest) / CLOCK_TICKS


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's main thread spent runnable but waiting for a CPU
    (/proc/PID/schedstat, second field): how much other processes got in its way."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def find_workers(parent: int | None = None) -> dict[int, int]:
    """worker index -> PID of `python -m sfu.worker` processes (children of `parent` if given)."""
    workers: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        argv = _cmdline(pid)
        if "sfu.worker" not in argv or (parent is not None and _parent(pid) != parent):
            continue
        index = argv[argv.index("--index") + 1] if "--index" in argv else "0"
        workers[int(index)] = pid
    return workers


def pin(pid: int, cpus: list[int], realtime: bool = False) -> None:
    """Set the CPU affinity of every thread of `pid` (sched_setaffinity is per thread);
    realtime: also SCHED_FIFO priority 1, so nothing of normal priority delays it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)
            if realtime:
                os.sched_setscheduler(int(task.name), os.SCHED_FIFO, os.sched_param(1))


def kill_pid(pid: int, expect: str) -> None:
    """SIGKILL `pid` if it still runs a command line containing `expect`."""
    if any(expect in arg for arg in _cmdline(pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------ metrics

_SAMPLE = re.compile(r'^(conclave_worker_[a-z_]+?|conclave_sfu_pipe_[a-z_]+?)(?:_total)?\{([^}]*)\} ([0-9.eE+-]+|NaN)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class WorkerSample:
    counters: dict[str, float] = field(default_factory=dict)  # metric name without prefix
    dropped: dict[str, float] = field(default_factory=dict)


def parse_metrics(text: str) -> dict[int, WorkerSample]:
    """Per-worker values of the conclave_worker_* series of a /metrics page, and of the
    pipes between workers (conclave_sfu_pipe_*, as `pipe_...`)."""
    workers: dict[int, WorkerSample] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels_text, value = match.groups()
        labels = dict(_LABEL.findall(labels_text))
        if "worker" not in labels:
            continue
        sample = workers.setdefault(int(labels["worker"]), WorkerSample())
        short = name[len("conclave_sfu_") :] if name.startswith("conclave_sfu_pipe_") else name[len("conclave_worker_") :]
        if short == "packets_dropped":
            sample.dropped[labels.get("reason", "?")] = float(value)
        else:
            sample.counters[short] = float(value)
    return workers


def scrape(base_url: str, timeout: float = 5.0) -> dict[int, WorkerSample]:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=timeout) as response:
        return parse_metrics(response.read().decode())


# ------------------------------------------------------------------------------ server

# Limits lifted for load: many live meetings per host, big meetings (bounded by the bench).
BENCH_CONFIG = {
    "signaling": {
        "max_participants_per_meeting": 1024,
        # Every bench client comes from 127.0.0.1: a join storm opens hundreds of sockets at once.
        "max_unjoined_sockets_per_address": 1024,
        "max_unjoined_sockets": 2048,
    },
    # Joins in flight count as passcode attempts until they succeed: a storm has hundreds.
    "auth": {
        "joins_per_address_per_minute": 100000,
        "passcode_attempts_per_minute": 100000,
        "passcode_attempts_per_address_per_minute": 100000,
    },
    "limits": {"max_live_meetings_per_host": 1024, "max_concurrent_meetings": 1024, "max_participants_per_meeting": 1024},
    "turn": {"mode": "off"},  # no coturn beside the server under test (its own process, its own CPU)
}
INITIAL_HOST_EMAIL = "admin@localhost"
INITIAL_HOST_PASSWORD_FILE = "initial-host-password"


def _known_settings(root: Path) -> dict[str, dict]:
    try:
        data = yaml.safe_load((root / "config" / "default.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


class ServerUnderTest:
    """`conclave serve` as a subprocess (or nothing to manage, with `url`)."""

    def __init__(
        self,
        url: str | None = None,
        workers: int = 1,
        cpus: list[int] | None = None,
        control_cpus: list[int] | None = None,
        realtime: bool = False,
        root: Path | None = None,
        stats_interval_s: float = 0.25,
        extra_config: dict | None = None,
    ) -> None:
        self.url = url.rstrip("/") if url else None
        self.managed = url is None
        self.workers = workers
        self.cpus = cpus  # the workers' CPUs
        self.control_cpus = control_cpus  # control's (default: any)
        self.realtime = realtime  # workers SCHED_FIFO (root only; starves neighbours on their CPU)
        self.root = Path(root or os.environ.get("CONCLAVE_BENCH_SERVER_ROOT") or REPO_ROOT)
        self.stats_interval_s = stats_interval_s
        self.extra_config = extra_config or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        self.worker_pids: dict[int, int] = {}
        self.log_path: Path | None = None

    def start(self) -> None:
        if not self.managed:
            self.worker_pids = find_workers()
            return
        self.tmp = tempfile.TemporaryDirectory(prefix="conclave-bench-")
        tmp = Path(self.tmp.name)
        config = {
            "data_dir": str(tmp / "data"),
            "http": {"host": "127.0.0.1", "port": 0},
            "sfu": {"workers": self.workers, "port_base": 0, "listen_ip": "127.0.0.1", "stats_interval_s": self.stats_interval_s},
            "logging": {"level": "warning"},
        }
        known = _known_settings(self.root)
        for section, values in {**BENCH_CONFIG, **self.extra_config}.items():
            values = {k: v for k, v in values.items() if k in known.get(section, {})}
            if values:  # only what this server version knows: unknown keys stop it
                config.setdefault(section, {}).update(values)
        (tmp / "conclave.yaml").write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        self.log_path = tmp / "serve.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "control.cli", "serve", "--config", str(tmp / "conclave.yaml")],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        try:
            self.url = self._read_url()
            deadline = time.monotonic() + START_TIMEOUT_S
            while len(self.worker_pids) < self.workers and time.monotonic() < deadline:
                self.worker_pids = find_workers(self.process.pid)
                time.sleep(0.05)
            if len(self.worker_pids) < self.workers:
                raise RuntimeError(f"found {len(self.worker_pids)} of {self.workers} workers")
            self.pin()
        except BaseException:
            self.stop()
            raise

    def pin(self) -> None:
        """Workers alone on their CPUs (one each, in index order); control elsewhere."""
        if self.cpus:
            for position, index in enumerate(sorted(self.worker_pids)):
                pin(self.worker_pids[index], [self.cpus[position % len(self.cpus)]], self.realtime)
        if self.control_cpus and self.process is not None:
            pin(self.process.pid, self.control_cpus)

    def _read_url(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        buffer = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buffer += chunk
                for line in buffer.decode(errors="replace").splitlines():
                    if line.startswith("conclave serving at "):
                        return line.split()[3].rstrip("/")
            elif self.process.poll() is not None:
                break
        raise RuntimeError(f"conclave serve did not start (exit {self.process.poll()}): {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    @property
    def data_dir(self) -> Path | None:
        return Path(self.tmp.name) / "data" if self.tmp is not None else None

    def initial_host_password(self) -> str | None:
        """The first-start host password a server with accounts writes to its data dir."""
        data_dir = self.data_dir
        if data_dir is None:
            return None
        try:
            return (data_dir / INITIAL_HOST_PASSWORD_FILE).read_text().strip()
        except OSError:
            return None

    @property
    def control_pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        process = self.process
        if process is not None:
            workers = set(self.worker_pids.values()) | set(find_workers(process.pid).values())
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
            for pid in workers:
                kill_pid(pid, "sfu.worker")
            self.process = None
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None

    def __enter__(self) -> ServerUnderTest:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
