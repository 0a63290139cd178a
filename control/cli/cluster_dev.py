"""`conclave cluster dev --nodes 3`: a whole cluster on this machine, for a trial.

It starts Redis and PostgreSQL from Debian's packages (control.cli.local_servers) in a
directory of its own, then N nodes (`conclave serve`, each with its own data directory,
HTTP port and node id, all on loopback) sharing them, one operator key and one token
secret (a join token made by one node is checked by the others). The first node starts
alone (it migrates the empty database and creates the first host), then the others.
It prints each node's URL and where the operator key is (never the key itself), then
waits; Ctrl-C (or SIGTERM) stops the nodes, PostgreSQL and Redis by PID, in that order.

Everything stays on 127.0.0.1 and nothing is tuned for safety (PostgreSQL without
fsync, Redis in memory): for production, run each node under systemd with the
operator's own Redis and PostgreSQL (deploy/systemd/conclave@.service, docs/cluster.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from control.cli.local_servers import LocalPostgres, LocalRedis, MissingServer, free_ports

MAX_NODES = 9
NODE_START_TIMEOUT_S = 90.0
NODE_STOP_GRACE_S = 30.0  # a node drains nothing here (no other node takes it): it ends quickly
DATABASE = "conclave"
SERVING = "conclave serving at "


def add_command(cluster_commands) -> None:
    dev = cluster_commands.add_parser("dev", help="run a trial cluster on this machine (Redis, PostgreSQL, N nodes)")
    dev.add_argument("--nodes", type=int, default=3, help=f"how many nodes (1-{MAX_NODES}; default 3)")
    dev.add_argument("--port", type=int, default=8100,
                     help="the first node's HTTP port; node i listens on PORT + i (default 8100)")  # fmt: skip
    dev.add_argument("--dir", metavar="DIR",
                     help="keep everything here (kept afterwards); default: a temporary directory, removed")  # fmt: skip
    dev.set_defaults(handler=dev_command)


def dev_command(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= MAX_NODES:
        print(f"conclave cluster dev: --nodes {args.nodes}: expected 1 to {MAX_NODES}", file=sys.stderr)
        return 2
    if not 1024 <= args.port <= 65535 - args.nodes:
        print(f"conclave cluster dev: --port {args.port}: expected 1024 to {65535 - args.nodes}", file=sys.stderr)
        return 2
    keep = args.dir is not None
    root = Path(args.dir) if keep else Path(tempfile.mkdtemp(prefix="conclave-cluster-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)  # PostgreSQL runs as `postgres` when we are root: it must reach its directory
    cluster = DevCluster(root, args.nodes, args.port)
    stop = _stop_on_signals()
    try:
        cluster.start()
        cluster.announce()
        while not stop.requested and cluster.all_running():
            time.sleep(0.5)
        if not cluster.all_running():
            print("conclave cluster dev: a node stopped by itself; stopping the rest", file=sys.stderr)
            return 1
        print("conclave cluster dev: stopping", flush=True)
        return 0
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or b"").decode(errors="replace").strip()[-1500:]
        print(f"conclave cluster dev: {Path(str(exc.cmd[0])).name} failed: {said}", file=sys.stderr)
        return 1
    except (MissingServer, RuntimeError, OSError) as exc:
        print(f"conclave cluster dev: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


class _StopRequest:
    requested = False


def _stop_on_signals() -> _StopRequest:
    stop = _StopRequest()

    def handle(signum, frame) -> None:
        stop.requested = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)
    return stop


class DevCluster:
    def __init__(self, root: Path, nodes: int, first_port: int) -> None:
        self.root = root
        self.count = nodes
        self.first_port = first_port
        self.redis: LocalRedis | None = None
        self.postgres: LocalPostgres | None = None
        self.nodes: list[tuple[str, int, subprocess.Popen[bytes]]] = []  # (node id, port, process)
        self.operator_key_file = root / "operator-key"

    def start(self) -> None:
        redis_port, postgres_port = free_ports(2)
        self.redis = LocalRedis(self.root / "redis", redis_port)
        self.redis.start()
        self.postgres = LocalPostgres(self.root / "postgres", postgres_port)
        self.postgres.start()
        self.postgres.admin(f"CREATE DATABASE {DATABASE}")
        shared = self._shared_secrets()
        for index in range(self.count):  # one by one: the first migrates and bootstraps
            self._start_node(index, shared)

    def _shared_secrets(self) -> dict[str, str]:
        """One operator key (written 0600 for the operator, never printed) and one token secret."""
        operator_key = secrets.token_urlsafe(32)
        fd = os.open(self.operator_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(operator_key + "\n")
        return {"CONCLAVE_AUTH__OPERATOR_KEY": operator_key, "CONCLAVE_AUTH__TOKEN_SECRET": secrets.token_urlsafe(48)}

    def _start_node(self, index: int, shared: dict[str, str]) -> None:
        assert self.redis is not None and self.postgres is not None
        node_id, port = f"node-{index + 1}", self.first_port + index
        data = self.root / node_id
        data.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
        env.update(shared)
        env.update({
            "CONCLAVE_DATA_DIR": str(data),
            "CONCLAVE_HTTP__HOST": "127.0.0.1",
            "CONCLAVE_HTTP__PORT": str(port),
            "CONCLAVE_HTTP__PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CONCLAVE_STORE__URL": self.postgres.url(DATABASE),
            "CONCLAVE_CLUSTER__REDIS_URL": self.redis.url,
            "CONCLAVE_CLUSTER__NODE_ID": node_id,
            "CONCLAVE_SFU__LISTEN_IP": "127.0.0.1",
            "CONCLAVE_SFU__PORT_BASE": "0",  # each worker an ephemeral UDP port: nodes never collide
            "CONCLAVE_TURN__MODE": "off",  # coturn's fixed ports are one machine's, not one node's
        })  # fmt: skip
        log_path = data / "serve.log"
        start = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "control.cli", "serve"], env=env, cwd=data,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        self.nodes.append((node_id, port, process))
        _wait_serving(process, node_id, log_path, start)

    def announce(self) -> None:
        print(f"conclave cluster dev: {self.count} node(s) on Redis {self.redis.url} and PostgreSQL "
              f"{self.postgres.url(DATABASE)}", flush=True)  # fmt: skip
        for node_id, port, process in self.nodes:
            print(f"  {node_id}: http://127.0.0.1:{port}  (pid {process.pid}, log {self.root / node_id / 'serve.log'})")
        print(f"  operator key: in {self.operator_key_file}")
        print(f"  first host's password: in {self.root / self.nodes[0][0] / 'initial-host-password'}")
        print("conclave cluster dev: ready; Ctrl-C stops everything", flush=True)

    def all_running(self) -> bool:
        return all(process.poll() is None for _, _, process in self.nodes)

    def stop(self) -> None:
        for _, _, process in self.nodes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, _, process in self.nodes:
            try:
                process.wait(NODE_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()  # its workers are its children: control stops them by PID
                process.wait()
        self.nodes.clear()
        if self.postgres is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.postgres.stop(remove=False)
        if self.redis is not None:
            self.redis.stop()


def _wait_serving(process: subprocess.Popen[bytes], node_id: str, log: Path, start: int) -> None:
    """Until the node writes that it serves (its log, from byte `start`); RuntimeError
    with the log's end if it does not."""
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        with open(log, "rb") as text:
            text.seek(start)
            if SERVING.encode() in text.read():
                return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise RuntimeError(f"{node_id} did not start (exit code {process.poll()}); its log ends:\n{tail}")
