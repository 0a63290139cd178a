"""Starts bench/plainrtp/bare_relay.py as a pinned child process and stops it by PID."""

from __future__ import annotations

import os
import select
import subprocess
import sys

from bench.plainrtp import procfs
from bench.plainrtp.packets import VIDEO_PAYLOAD_TYPE, key_base64, new_srtp_key

READY_TIMEOUT_S = 10.0
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BareRelayForwarder:
    def __init__(self, srtp: bool, cpu: int | None, name: str | None = None, fast: bool = False,
                 module: str = "bench.plainrtp.bare_relay") -> None:
        self.name = name or ("bare+srtp" if srtp else "bare")
        self.module = module  # or bench.plainrtp.c_relay: the C relay (no SRTP)
        self.srtp = srtp
        self.fast = fast
        self.cpu = cpu
        self.proc: subprocess.Popen | None = None
        self.input_key: bytes | None = new_srtp_key() if srtp else None
        self.receiver_keys: list[bytes | None] = []
        self.input_addr: tuple[str, int] | None = None
        self.ssrc = 0x5EED
        self.payload_type = VIDEO_PAYLOAD_TYPE

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    @property
    def input_ports(self) -> list[int]:
        return [self.input_addr[1]] if self.input_addr else []

    def start(self, receiver_ports: list[int]) -> None:
        command = procfs.pin_prefix(self.cpu) + [sys.executable, "-m", self.module]
        for port in receiver_ports:
            command += ["--dest", f"127.0.0.1:{port}"]
        self.receiver_keys = [new_srtp_key() if self.srtp else None for _ in receiver_ports]
        if self.input_key:
            command += ["--srtp-in", key_base64(self.input_key)]
            for key in self.receiver_keys:
                command += ["--srtp-out", key_base64(key)]
            if self.fast:
                command.append("--fast")
        self.proc = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT_S * 3)  # the C relay compiles first
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"bare relay did not start (got {line!r})")
        self.input_addr = ("127.0.0.1", int(line.split()[1]))

    def stats(self) -> dict:
        return {}

    def stop(self) -> None:
        if self.proc is not None:
            procfs.stop_process(self.proc)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def describe(self) -> str:
        if self.module.endswith("c_relay"):
            return "C relay: recvmmsg, one sendmmsg of the N copies (the kernel's floor)"
        srtp = "SRTP unprotect, protect + sendto x N" + (" (libsrtp through FastSrtp)" if self.fast else " (pylibsrtp Session)")
        return "uvloop relay: recv, " + (srtp if self.srtp else "sendto x N")
