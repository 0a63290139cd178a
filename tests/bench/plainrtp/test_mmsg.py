"""bench.plainrtp.mmsg: packets built ahead go out with sendmmsg, in batches, each exactly
once, in order (127.0.0.1)."""

from __future__ import annotations

import socket

from bench.plainrtp.mmsg import PrebuiltStream
from bench.plainrtp.packets import PacketSource, sequence_number


def test_the_sendmmsg_sender_delivers_prebuilt_packets_in_order():
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2.0)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        source = PacketSource(0x1234, size=200)
        first_seq = source.seq
        stream = PrebuiltStream(source, sink.getsockname(), budget_bytes=200 * 1000)
        assert stream.prepare(50) == 50
        assert stream.send(out, 30) == 30
        assert stream.prepare(20) == 20  # 20 left over: enough, nothing built
        assert stream.prepare(100) == 100  # the 20 left over come first, then 80 new ones
        assert stream.send(out, 1500) == 100  # more than ready: sends what there is
        assert stream.remaining == 0 and stream.errors == 0
        seqs = []
        for _ in range(130):
            data = sink.recv(2048)
            assert len(data) == 200
            seqs.append(sequence_number(data))
        assert seqs == [(first_seq + i) & 0xFFFF for i in range(130)]
        assert stream.prepare(10**9) == 1000  # bounded by the byte budget
        stream.release()
    finally:
        out.close()
        sink.close()
