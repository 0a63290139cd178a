"""The coordinator's side of the client processes (bench/client.py): start, command, stop.

Each process gets its own pipe; a command goes to every process and the coordinator waits
(bounded) for one reply from each. Processes are stopped by PID: a polite "stop" first,
then SIGTERM, then SIGKILL, each bounded in time.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from dataclasses import asdict
from typing import Any

from bench.client import client_main
from bench.media import MediaParams

START_TIMEOUT_S = 30.0


class ClientError(RuntimeError):
    pass


class ClientPool:
    def __init__(self, processes: int, cpus: list[int] | None, media: MediaParams, log_level: str = "WARNING") -> None:
        self.count = max(1, processes)
        self.cpus = cpus
        self.media = media
        self.log_level = log_level
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.conns: list[Any] = []

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for _ in range(self.count):
            parent, child = context.Pipe()
            process = context.Process(
                target=client_main, args=(child, asdict(self.media), self.cpus, self.log_level), daemon=True
            )
            process.start()
            child.close()
            self.processes.append(process)
            self.conns.append(parent)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def command(self, commands: list[dict[str, Any]] | dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        """Send one command per process (or the same to all); one reply each, in order."""
        if isinstance(commands, dict):
            commands = [commands] * len(self.conns)
        for conn, command in zip(self.conns, commands):
            conn.send(command)
        replies = []
        deadline = time.monotonic() + timeout
        for index, conn in enumerate(self.conns):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise ClientError(f"client process {index} did not answer {commands[index].get('cmd')} in {timeout} s")
            try:
                reply = conn.recv()
            except EOFError:
                raise ClientError(f"client process {index} exited") from None
            if reply.get("event") == "crashed":
                raise ClientError(f"client process {index} crashed:\n{reply.get('error')}")
            replies.append(reply)
        return replies

    def join(
        self, specs: list[dict[str, Any]], spread_s: float, timeout: float, concurrency: int = 4, serial: bool = False
    ) -> list[dict[str, Any]]:
        """Spread participants round-robin over the processes and join them all
        (serial: one at a time across all processes, in order)."""
        if serial:
            replies: list[dict[str, Any]] = []
            for index, spec in enumerate(specs):
                conn_index = index % len(self.conns)
                commands = [{"cmd": "join", "participants": [spec] if i == conn_index else [], "spread_s": 0.0} for i in range(len(self.conns))]
                replies = self.command(commands, timeout)
            return replies
        shares: list[list[dict[str, Any]]] = [[] for _ in self.conns]
        for index, spec in enumerate(specs):
            shares[index % len(shares)].append(spec)
        commands = [
            {"cmd": "join", "participants": share, "spread_s": spread_s, "concurrency": concurrency} for share in shares
        ]
        return self.command(commands, timeout)

    def stop(self, timeout: float = 15.0) -> None:
        with contextlib.suppress(Exception):
            for conn in self.conns:
                with contextlib.suppress(Exception):
                    conn.send({"cmd": "stop"})
            deadline = time.monotonic() + timeout
            for conn in self.conns:
                with contextlib.suppress(Exception):
                    conn.poll(max(0.0, deadline - time.monotonic()))
        for process in self.processes:
            process.join(max(0.1, 2.0))
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
                process.join(3.0)
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.join(3.0)
        for conn in self.conns:
            conn.close()
        self.processes.clear()
        self.conns.clear()
