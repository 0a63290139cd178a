"""Conclave's own SFU worker as the forwarder: a real `python -m sfu.worker` process.

Spawned exactly as control/workers.py does (a socketpair channel passed with pass_fds,
the config as JSON), pinned to one CPU, driven with `common.channel.ChannelClient` from a
private event loop between load phases. One router per fan-out: a plain transport in
with one VP8 producer, and one plain transport + consumer per receiver (SRTP SDES on or
off). Stopped by PID: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import resource
import socket
import subprocess
import sys

from bench.plainrtp import procfs
from bench.plainrtp.packets import VIDEO_CLOCK_RATE, VIDEO_PAYLOAD_TYPE, key_base64, new_srtp_key
from common.channel import ChannelClient
from common.messages import Message
from config.schema import MediaConfig, SfuConfig
from sfu import api

READY_TIMEOUT_S = 20.0
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _raise_fd_limit() -> None:
    """Runs in the child before exec: 1000 plain transports are 1000 sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class WorkerProcess:
    """One worker process and its channel; requests run on a private event loop."""

    def __init__(self, cpu: int | None, index: int = 0, module: str = "sfu.worker", native: str = "auto") -> None:
        self.cpu = cpu
        self.native = native  # sfu.native: the forwarding path (issue 15)
        self.index = index
        self.module = module
        self.loop = asyncio.new_event_loop()
        self.proc: subprocess.Popen | None = None
        self.client: ChannelClient | None = None
        self.port: int | None = None
        # The newest notification of each kind about each entity (e.g. a subscriber's
        # SUBSCRIBER_ALLOCATION), read between phases.
        self.latest: dict[tuple[str, str], Message] = {}

    def start(self) -> None:
        config = json.dumps({
            "sfu": dataclasses.asdict(SfuConfig(workers=1, port_base=0, listen_ip="127.0.0.1", native=self.native)),
            "media": dataclasses.asdict(MediaConfig()),
        })
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = procfs.pin_prefix(self.cpu) + [
            sys.executable, "-m", self.module, "--index", str(self.index),
            "--channel-fd", str(child.fileno()), "--config-json", config, "--log-level", "warning",
        ]
        try:
            self.proc = subprocess.Popen(command, cwd=REPO_ROOT, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                                         preexec_fn=_raise_fd_limit)
        finally:
            child.close()
        self.loop.run_until_complete(self._connect(parent))

    async def _connect(self, sock: socket.socket) -> None:
        ready: asyncio.Future = self.loop.create_future()

        def on_notification(entity_id: str, message: Message) -> None:
            if isinstance(message, api.WorkerReady) and not ready.done():
                ready.set_result(message.port)
            elif len(self.latest) < 10_000:
                self.latest[(entity_id, message.NAME)] = message

        reader, writer = await asyncio.open_unix_connection(sock=sock)
        self.client = ChannelClient(reader, writer, on_notification)
        try:
            self.port = await asyncio.wait_for(ready, READY_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise RuntimeError("sfu.worker did not send WORKER_READY") from None

    def request(self, message: Message) -> Message:
        assert self.client is not None
        return self.loop.run_until_complete(self.client.request(message, timeout=30.0))

    def stats(self) -> api.WorkerStats:
        stats = self.request(api.WorkerGetStats())
        assert isinstance(stats, api.WorkerStats)
        return stats

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            procfs.stop_process(self.proc)
        if self.client is not None:
            self.client.close()
            self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


class FanOut:
    """One router on a worker: a plain transport in with a VP8 producer, N plain consumers out."""

    def __init__(self, worker: WorkerProcess, router_id: str, srtp: bool) -> None:
        self.worker = worker
        self.router_id = router_id
        self.srtp = srtp
        self.input_key: bytes | None = new_srtp_key() if srtp else None
        self.input_addr: tuple[str, int] | None = None
        self.ssrc = 0x0C0FFEE0 + worker.index
        self.payload_type = VIDEO_PAYLOAD_TYPE
        self.producer_id: str | None = None
        self.receiver_keys: list[bytes | None] = []
        self.outputs = 0

    def create_input(self) -> None:
        worker = self.worker
        worker.request(api.RouterCreate(router_id=self.router_id))
        info = worker.request(api.PlainTransportCreate(router_id=self.router_id, transport_id=f"{self.router_id}-in",
                                                       listen_ip="127.0.0.1", srtp=self.srtp))
        assert isinstance(info, api.PlainTransportInfo)
        self.input_addr = (info.ip, info.port)
        if self.input_key:
            worker.request(api.PlainTransportConnect(transport_id=f"{self.router_id}-in",
                                                     remote_srtp_key_base64=key_base64(self.input_key)))
        created = worker.request(api.PlainProducerCreate(
            transport_id=f"{self.router_id}-in", kind="video", codec_name="VP8", clock_rate=VIDEO_CLOCK_RATE,
            payload_type=VIDEO_PAYLOAD_TYPE, ssrc=self.ssrc))
        assert isinstance(created, api.PlainProducerCreated)
        self.producer_id = created.producer.producer_id

    def add_outputs(self, receiver_ports: list[int]) -> None:
        """One plain transport + consumer per port (ports may repeat: all to one sink)."""
        worker = self.worker
        for port in receiver_ports:
            n = self.outputs
            self.outputs += 1
            transport_id = f"{self.router_id}-out{n}"
            info = worker.request(api.PlainTransportCreate(router_id=self.router_id, transport_id=transport_id,
                                                           listen_ip="127.0.0.1", srtp=self.srtp))
            assert isinstance(info, api.PlainTransportInfo)
            worker.request(api.PlainTransportConnect(transport_id=transport_id, remote_ip="127.0.0.1",
                                                     remote_port=port))
            worker.request(api.ConsumerCreate(transport_id=transport_id, consumer_id=f"{transport_id}-c",
                                              producer_id=self.producer_id or ""))
            key = base64.b64decode(info.srtp_key_base64) if self.srtp and info.srtp_key_base64 else None
            self.receiver_keys.append(key)


class OursForwarder:
    """The bench's view of one worker running one fan-out (the same interface as the others)."""

    def __init__(self, srtp: bool, cpu: int | None, name: str | None = None, index: int = 0) -> None:
        self.name = name or ("ours+srtp" if srtp else "ours")
        self.srtp = srtp
        # "-python": the same worker forwarding in Python (sfu.native off), the reference.
        self.worker = WorkerProcess(cpu, index, native="off" if self.name.endswith("-python") else "on")
        self.fanout: FanOut | None = None

    @property
    def pids(self) -> list[int]:
        return [self.worker.pid] if self.worker.proc is not None else []

    @property
    def input_ports(self) -> list[int]:
        return [self.fanout.input_addr[1]] if self.fanout and self.fanout.input_addr else []

    @property
    def input_addr(self) -> tuple[str, int] | None:
        return self.fanout.input_addr if self.fanout else None

    @property
    def input_key(self) -> bytes | None:
        return self.fanout.input_key if self.fanout else None

    @property
    def receiver_keys(self) -> list[bytes | None]:
        return self.fanout.receiver_keys if self.fanout else []

    @property
    def ssrc(self) -> int:
        assert self.fanout is not None
        return self.fanout.ssrc

    @property
    def payload_type(self) -> int:
        return VIDEO_PAYLOAD_TYPE

    def start(self, receiver_ports: list[int]) -> None:
        self.worker.start()
        self.fanout = FanOut(self.worker, "bench-room", self.srtp)
        self.fanout.create_input()
        self.fanout.add_outputs(receiver_ports)

    def stats(self) -> dict:
        stats = self.worker.stats()
        return {"counters": stats.counters, "dropped": {k: v for k, v in stats.dropped.items() if v},
                "gauges": stats.gauges}

    def stop(self) -> None:
        self.worker.stop()

    def describe(self) -> str:
        return "sfu.worker: plain transport in, " + ("SRTP (SDES) " if self.srtp else "") + "plain consumers x N"
