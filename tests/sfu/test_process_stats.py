"""Worker stats the fan-out bench showed a need for: CPU seconds, RSS, kernel socket drops
(sfu/process_stats.py; the last test reads them through a real in-process worker's stats).

`socket_buffer_full` (a drop reason) is the kernel's count of datagrams a worker socket
could not queue: loss the worker never sees itself. It is read from /proc/net/udp when
stats are asked for and must never go back, even when the socket that dropped closes.
"""

from __future__ import annotations

import socket
import time

import pytest

from config.schema import MediaConfig, SfuConfig
from sfu import api, process_stats
from sfu.worker import Worker


def blast(port: int, count: int) -> None:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(count):
            sender.sendto(b"\x80\x60" + b"\x00" * 1198, ("127.0.0.1", port))
    finally:
        sender.close()


def test_udp_drop_meter_counts_a_full_buffer_and_never_goes_back():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind(("127.0.0.1", 0))
    inode = process_stats.socket_inode(sock)
    assert inode is not None
    meter = process_stats.UdpDropMeter()
    assert meter.update({inode}) == 0
    blast(sock.getsockname()[1], 200)
    dropped = meter.update({inode})
    assert 0 < dropped <= 200
    queued = 0
    sock.setblocking(False)
    while True:
        try:
            sock.recv(2048)
            queued += 1
        except BlockingIOError:
            break
    assert queued + dropped == 200  # every datagram either queued or counted as dropped
    sock.close()
    assert meter.update(set()) == dropped  # the socket is gone; its drops stay counted


def test_cpu_and_rss_are_plausible():
    assert process_stats.cpu_seconds() > 0
    assert process_stats.rss_bytes() > 1_000_000
    assert process_stats.socket_inode(None) is None


@pytest.fixture
async def worker():
    worker = Worker(0, SfuConfig(port_base=0), MediaConfig(), ["127.0.0.1"])
    await worker.bind(0)
    try:
        yield worker
    finally:
        await worker.shutdown()


async def test_worker_stats_report_cpu_rss_and_socket_drops(worker):
    await worker.handle(api.RouterCreate(router_id="r"))
    info = await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="in"))
    transport = worker.transports["in"]
    transport.udp.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    blast(info.port, 200)  # the event loop does not run meanwhile: the small buffer overflows
    stats = await worker.handle(api.WorkerGetStats())
    assert stats.gauges["cpu_seconds"] > 0
    assert stats.gauges["rss_bytes"] > 1_000_000
    dropped = stats.dropped["socket_buffer_full"]
    assert dropped > 0
    assert "forward_time_us_le_inf" in stats.counters
    # The DTLS certificate new transports get, for an expiry alert: renewed days ahead.
    assert stats.gauges["dtls_certificate_expires"] == worker.certificates.expires.timestamp()
    assert stats.gauges["dtls_certificate_expires"] - time.time() > 7 * 86400
    await worker.handle(api.TransportClose(transport_id="in"))
    again = await worker.handle(api.WorkerGetStats())
    assert again.dropped["socket_buffer_full"] == dropped
