"""sfu.transport.udp: MediaSocket sends through a duplicated descriptor of its own socket
(cheaper than the event loop transport's sendto), falls back to the transport when the
kernel's send buffer is full, and gives the port back when the transport closes.
127.0.0.1 only."""

from __future__ import annotations

import asyncio
import socket

from sfu.engine.stats import Counters
from sfu.transport.udp import MediaSocket


class Refusing:
    def __init__(self, error: OSError) -> None:
        self.error = error
        self.closed = False

    def sendto(self, data, addr):
        raise self.error

    def close(self) -> None:
        self.closed = True


async def open_media_socket() -> tuple[MediaSocket, asyncio.DatagramTransport]:
    loop = asyncio.get_running_loop()
    media = MediaSocket(Counters())
    transport, _ = await loop.create_datagram_endpoint(lambda: media, local_addr=("127.0.0.1", 0))
    return media, transport


def peer_socket() -> socket.socket:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(2.0)
    return peer


async def test_sends_through_its_own_descriptor_and_counts():
    media, transport = await open_media_socket()
    peer = peer_socket()
    try:
        assert media._send_socket is not None
        media.sendto(b"one", peer.getsockname())
        data, source = peer.recvfrom(100)
        assert data == b"one" and source[1] == media.port  # from the media socket's own port
        assert (media.counters.packets_sent, media.counters.bytes_sent) == (1, 3)
    finally:
        transport.close()
        peer.close()


async def test_a_full_send_buffer_falls_back_to_the_transport_and_other_errors_are_swallowed():
    media, transport = await open_media_socket()
    peer = peer_socket()
    real = media._send_socket
    try:
        media._send_socket = Refusing(BlockingIOError())  # type: ignore[assignment]
        media.sendto(b"queued", peer.getsockname())
        assert peer.recvfrom(100)[0] == b"queued"
        media._send_socket = Refusing(OSError(1, "not permitted"))  # type: ignore[assignment]
        media.sendto(b"lost", peer.getsockname())  # no exception escapes the hot path
        assert media.counters.packets_sent == 2
    finally:
        media._send_socket = real
        transport.close()
        peer.close()


async def test_closing_the_transport_closes_the_duplicate_and_frees_the_port():
    media, transport = await open_media_socket()
    port = media.port
    duplicate = media._send_socket
    transport.close()
    for _ in range(50):
        await asyncio.sleep(0.01)
        if media._send_socket is None:
            break
    assert media._send_socket is None and duplicate is not None and duplicate.fileno() == -1
    again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        again.bind(("127.0.0.1", port))
    finally:
        again.close()
    media.sendto(b"late", ("127.0.0.1", 9))  # after close: silently nothing
