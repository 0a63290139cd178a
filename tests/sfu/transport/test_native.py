"""sfu.transport.native: which path a worker uses (sfu.native auto, on, off), and the
module itself fuzzed with the RTP parser's corpus and random packets (tests/fuzz/native.py;
the AddressSanitizer run is `python -m bench.native_fuzz`)."""

from __future__ import annotations

import logging
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu.transport import native
from tests.fuzz.native import NativeFuzz, seeds
from tests.support.native import native_sender

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def fuzz():
    made = NativeFuzz(native_sender().module)
    yield made
    made.close()


def test_off_is_python_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="sfu.transport.native"):
        assert native.load("off") is None
    assert "forwarding path: Python (sfu.native: off)" in caplog.text


def test_on_and_auto_use_the_module_and_say_so(caplog):
    native_sender()
    with caplog.at_level(logging.INFO, logger="sfu.transport.native"):
        assert native.load("auto") is not None
    assert "forwarding path: native" in caplog.text


def test_without_the_module_auto_falls_back_and_on_refuses(monkeypatch, caplog):
    def missing():
        raise ImportError("no _forward here")

    monkeypatch.setattr(native, "_module", missing)
    with caplog.at_level(logging.INFO, logger="sfu.transport.native"):
        assert native.load("auto") is None
    assert "forwarding path: Python (the native module is not built: no _forward here" in caplog.text
    with pytest.raises(native.NativeUnavailable, match="sfu.native is on"):
        native.load("on")
    with pytest.raises(ValueError, match="sfu.native"):
        native.load("fast")


def test_sockaddr_of_udp_addresses_only():
    assert native.address_of(native.sockaddr(("127.0.0.1", 5004))) == ("127.0.0.1", 5004)
    assert native.address_of(native.sockaddr(("::1", 5004))) == ("::1", 5004)
    assert native.sockaddr(("127.0.0.1", 5004, "tcp")) is None  # an ICE-TCP connection's key
    assert native.sockaddr(("not an address", 1)) is None


def test_a_bad_route_is_refused():
    sender = native_sender()
    with pytest.raises(ValueError, match="native route"):
        sender.route(-1, native.sockaddr(("127.0.0.1", 9)), 0)
    with pytest.raises(ValueError, match="native route"):
        sender.route(0, b"x" * 200, 0)


def test_the_parsers_corpus(fuzz):
    corpus = seeds()
    assert len(corpus) > 10
    for data in corpus:
        fuzz.run(data)


def test_lengths_at_the_limits(fuzz):
    header = bytes([0x80, 96]) + bytes(10)
    for size in (12, 13, 14, 1356, 1357, 1358, 1368, 1369, 1499, 1500):
        fuzz.run(header + bytes(size - 12))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(min_size=0, max_size=1600) | st.builds(lambda b: bytes([0x90, 0x60]) + b, st.binary(max_size=1500)))
def test_random_packets(fuzz, data):
    fuzz.run(data)


class _EventLoopTransport:
    """Stands in for the event loop's datagram transport: what it was handed to queue."""

    def __init__(self) -> None:
        self.queued: list[tuple[bytes, object]] = []

    def sendto(self, data: bytes, addr) -> None:
        self.queued.append((data, addr))

    def is_closing(self) -> bool:
        return False


def test_copies_the_kernel_refuses_go_to_the_event_loop_in_order(tmp_path):
    """A full receive queue (a Unix datagram socket's holds a few datagrams; loopback UDP
    never refuses) makes sendmmsg stop with EAGAIN: the rest of the batch is handed to
    the event loop's transport, as the Python path's sendto hands it a full buffer's."""
    sender = native_sender()
    path = str(tmp_path / "receiver")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    out.setblocking(False)
    loop_transport = _EventLoopTransport()
    sender.endpoints[out.fileno()] = loop_transport  # type: ignore[assignment]
    try:
        address = socket.AF_UNIX.to_bytes(2, "little") + path.encode() + b"\0"
        route = sender.route(out.fileno(), address, 0)
        copies = [bytes([0x80, 96]) + n.to_bytes(2, "big") + bytes(60) for n in range(64)]
        sender.held += 1
        for copy in copies:
            assert sender.send(route, copy) == len(copy)
        sender.held -= 1
        sender.flush()
        arrived = []
        receiver.setblocking(False)
        while True:
            try:
                arrived.append(receiver.recv(2048))
            except BlockingIOError:
                break
        assert 0 < len(arrived) < len(copies)  # the queue filled: the kernel refused the rest
        assert arrived + [data for data, _ in loop_transport.queued] == copies
        assert {addr for _, addr in loop_transport.queued} == {path}
        sender.flush()  # nothing is left queued in C
        assert len(loop_transport.queued) == len(copies) - len(arrived)
    finally:
        del sender.endpoints[out.fileno()]
        out.close()
        receiver.close()
