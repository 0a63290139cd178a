"""The real coturn for tests: free ports on loopback, and turnutils_uclient as a client."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket


def coturn_available() -> bool:
    return all(shutil.which(tool) for tool in ("turnserver", "turnutils_uclient", "turnutils_peer"))


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (TURN listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def relay_range() -> dict[str, int]:
    """A small relay port range of its own (tests run in parallel with others)."""
    base = random.randrange(50000, 60000, 100)
    return {"min_port": base, "max_port": base + 99}


def turn_test_settings(**more) -> dict:
    """The `turn` section of a test server: managed coturn on loopback."""
    return {"mode": "managed", "port": free_port(), "tls_port": free_port(), "allow_loopback_peers": True,
            **relay_range(), **more}  # fmt: skip


async def uclient(
    port: int, username: str, password: str, peer: tuple[str, int], tcp: bool = False, timeout: float = 15.0
) -> tuple[int, str]:
    """turnutils_uclient: allocate with the credentials, send a few packets to `peer`
    through the relay; (exit code, output). 0 means coturn accepted and relayed."""
    args = ["-u", username, "-w", password, "-e", peer[0], "-r", str(peer[1]), "-p", str(port),
            "-n", "3", "-m", "1", *(["-t"] if tcp else []), "127.0.0.1"]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        "turnutils_uclient", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        return -1, output.decode(errors="replace")
    return process.returncode or 0, output.decode(errors="replace")


class Peer:
    """turnutils_peer: a UDP echo the relay sends to (stopped by PID)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Peer:
        self.process = await asyncio.create_subprocess_exec(
            "turnutils_peer", "-L", self.host, "-p", str(self.port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(0.3)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
