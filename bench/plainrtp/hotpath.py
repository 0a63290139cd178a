"""Where a forwarded packet's CPU goes, measured in-process (no generator, no scheduler noise).

    python -m bench.plainrtp.hotpath [--packets N] [--fanout 16]

A real `sfu.worker.Worker` (in this process, uvloop) gets one plain transport in and N
plain consumers out, as in the fan-out bench; its input transport's `datagram_received`
is then called in a loop with pre-built packets. Each step is timed in CPU time
(time.process_time_ns), best of several rounds, so other processes on the machine
disturb it little. Steps: the floors (pylibsrtp protect, unprotect, the kernel's sendto
on loopback, a header rewrite) and the whole engine with and without the kernel's send;
and audio: a microphone registered in a router (so its levels feed the router's
dominant-speaker detector, 20 ms apart on the producer's clock), Opus packets with
Chromium's four header extensions, at fan-out N and at fan-out 1; and the WebRTC send
path (N subscribe WebRtcTransports connected by hand, the shared socket's send stubbed).
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import struct
import sys
import time

import uvloop

from bench.plainrtp.packets import PacketSource, new_srtp_key, srtp_session
from config.schema import MediaConfig, SfuConfig
from sfu import api
from sfu.engine.consumer import Consumer, extension_table
from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.router import Registry, Router
from sfu.engine.stats import Counters
from sfu.transport.srtp import FastSrtp
from sfu.wire import rtp
from sfu.worker import Worker

ROUNDS = 5


def _best_ns_per(op, count: int, rounds: int = ROUNDS) -> float:
    best = None
    for _ in range(rounds):
        start = time.process_time_ns()
        op(count)
        elapsed = time.process_time_ns() - start
        best = elapsed if best is None else min(best, elapsed)
    assert best is not None
    return best / count


class _NullUdp:
    """Stands in for a consumer transport's asyncio transport (with its duplicated send
    socket removed, every send goes here): the kernel's part left out."""

    def sendto(self, data, addr) -> None:
        pass

    def close(self) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return default


async def _engine(srtp: bool, fanout: int, packets: int, native: str = "off") -> dict[str, float]:
    """native "on": the native path sends through the descriptor it was given, so there
    is no stubbed measurement (engine_no_kernel_us is 0)."""
    worker = Worker(0, SfuConfig(port_base=0, native=native), MediaConfig(), ["127.0.0.1"])
    await worker.bind(0)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # passive: the kernel drops, cheaply
    sink.bind(("127.0.0.1", 0))
    try:
        await worker.handle(api.RouterCreate(router_id="r"))
        await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="in", srtp=srtp))
        key = new_srtp_key() if srtp else None
        if key:
            await worker.handle(api.PlainTransportConnect(transport_id="in",
                                                          remote_srtp_key_base64=base64.b64encode(key).decode()))
        made = await worker.handle(api.PlainProducerCreate(transport_id="in", kind="video", codec_name="VP8",
                                                           clock_rate=90000, payload_type=96, ssrc=1234))
        for i in range(fanout):
            await worker.handle(api.PlainTransportCreate(router_id="r", transport_id=f"o{i}", srtp=srtp))
            await worker.handle(api.PlainTransportConnect(transport_id=f"o{i}", remote_ip="127.0.0.1",
                                                          remote_port=sink.getsockname()[1]))
            await worker.handle(api.ConsumerCreate(transport_id=f"o{i}", consumer_id=f"c{i}",
                                                   producer_id=made.producer.producer_id))
        source = PacketSource(1234, 96, key)
        rounds = ROUNDS + 1  # the first round is warm-up
        data = [source.next_packet(time.monotonic_ns()) for _ in range(packets * rounds)]
        transport_in = worker.transports["in"]
        addr = ("127.0.0.1", 40000)
        outputs = [worker.transports[f"o{i}"] for i in range(fanout)]
        real_udp = [t.udp for t in outputs]
        real_send = [t._send_socket for t in outputs]
        position = 0

        def feed(count: int) -> None:
            nonlocal position
            receive = transport_in.datagram_received
            for packet in data[position:position + count]:
                receive(packet, addr)
            position += count

        for t in outputs:
            t.udp = _NullUdp()  # type: ignore[assignment]
            t._send_socket = None
        feed(packets)  # warm-up: keyframe start, caches
        no_kernel = _best_ns_per(feed, packets, ROUNDS // 2) / fanout if native == "off" else 0.0
        for t, udp, send_socket in zip(outputs, real_udp, real_send):
            t.udp = udp
            t._send_socket = send_socket
        with_kernel = _best_ns_per(feed, packets, ROUNDS - ROUNDS // 2) / fanout
        sent = worker.counters.packets_sent
        udp = real_udp[0]
        plain_packet = PacketSource(1, 96).next_packet(0)
        target = sink.getsockname()
        direct = socket.socket(fileno=os.dup(udp.get_extra_info("socket").fileno()))

        def loop_sendto(count: int) -> None:
            send = udp.sendto
            for _ in range(count):
                send(plain_packet, target)

        def socket_sendto(count: int) -> None:
            send = direct.sendto
            for _ in range(count):
                send(plain_packet, target)

        try:
            sendto_loop = _best_ns_per(loop_sendto, packets * 2) / 1000
            sendto_socket = _best_ns_per(socket_sendto, packets * 2) / 1000
        finally:
            direct.close()
        return {"engine_no_kernel_us": no_kernel / 1000, "engine_us": with_kernel / 1000, "sent": sent,
                "loop_sendto_us": sendto_loop, "socket_sendto_us": sendto_socket}
    finally:
        await worker.shutdown()
        sink.close()


def _floors(packets: int) -> dict[str, float]:
    plain = PacketSource(99, 96, None).next_packet(0)
    key = new_srtp_key()
    # A session refuses to protect one sequence number twice: number each packet anew.
    numbered = [plain[:2] + struct.pack("!H", i & 0xFFFF) + plain[4:] for i in range(packets)]
    protected = [srtp_session(key, outbound=True).protect(p) for p in numbered]

    def timed_session(method: str, inputs: list[bytes], outbound: bool, fast: bool):
        def run(count: int) -> None:
            session = srtp_session(key, outbound=outbound)
            call = getattr(FastSrtp(session) if fast else session, method)
            for packet in inputs[:count]:
                call(packet)
        return run

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink.bind(("127.0.0.1", 0))
    target = sink.getsockname()

    def sendto(count: int) -> None:
        s = sock.sendto
        for _ in range(count):
            s(plain, target)

    header = struct.Struct("!BHII")

    def rewrite(count: int) -> None:
        pack_into = header.pack_into
        for i in range(count):
            buf = bytearray(plain)
            pack_into(buf, 1, 96, i & 0xFFFF, i, 0x1234)
            bytes(buf)

    head = struct.Struct("!HHII")
    rest = plain[12:]

    def prepend(count: int) -> None:
        pack = head.pack
        for i in range(count):
            pack(0x8060, i & 0xFFFF, i, 0x1234) + rest

    try:
        return {
            "protect_us": _best_ns_per(timed_session("protect", numbered, True, False), packets) / 1000,
            "protect_fast_us": _best_ns_per(timed_session("protect", numbered, True, True), packets) / 1000,
            "unprotect_us": _best_ns_per(timed_session("unprotect", protected, False, False), packets) / 1000,
            "unprotect_fast_us": _best_ns_per(timed_session("unprotect", protected, False, True), packets) / 1000,
            "sendto_us": _best_ns_per(sendto, packets) / 1000,
            "rewrite_copy_us": _best_ns_per(rewrite, packets) / 1000,
            "rewrite_prepend_us": _best_ns_per(prepend, packets) / 1000,
        }
    finally:
        sock.close()
        sink.close()


class _EngineSink:
    """A subscriber transport reduced to what the engine calls: FastSrtp protect, no socket."""

    native_to = None  # the Python path (sfu.transport.native)

    rtcp_ssrc = 1
    connected = True

    def __init__(self) -> None:
        self.tx = FastSrtp(srtp_session(new_srtp_key(), outbound=True))
        self.tcc = 0
        self.sent = 0

    def send_rtp(self, packet: bytes) -> None:
        self.tx.protect(packet)
        self.sent += 1

    def send_rtcp(self, packet: bytes) -> None:
        pass

    def next_transport_sequence(self) -> int:
        self.tcc = (self.tcc + 1) & 0xFFFF
        return self.tcc


class _NullSink(_EngineSink):
    """A sink that only counts: the engine's logic alone, without the protect."""

    def send_rtp(self, packet: bytes) -> None:
        self.sent += 1


def _engine_only(fanout: int, packets: int, webrtc: bool, sink=_EngineSink) -> float:
    """Producer.on_rtp → fan-out, sinks doing FastSrtp protect only: the engine's own cost
    plus one protect. webrtc: packets carry header extensions (abs-send-time, transport-
    wide seq, video orientation) and each subscriber renumbers them and its own tcc seq.
    sink: _NullSink for the engine's logic alone."""
    extmap = {rtp.URI_ABS_SEND_TIME: 2, rtp.URI_TRANSPORT_CC: 3, rtp.URI_VIDEO_ORIENTATION: 13} if webrtc else {}
    params = ProducerParams("p", "video", "camera", "0", "VP8", 90000, 96, 1234, extmap)
    producer = Producer(params, _EngineSink(), Counters(), time.monotonic, "t")
    subscriber_map = {rtp.URI_ABS_SEND_TIME: 3, rtp.URI_TRANSPORT_CC: 5, rtp.URI_VIDEO_ORIENTATION: 13}
    for i in range(fanout):
        consumer = Consumer(f"c{i}", producer, sink(), str(i), 1000 + i, 96, producer.counters)
        producer.add_consumer(consumer)
        consumer.activate(extension_table(extmap, subscriber_map) if webrtc else None, 5 if webrtc else 0, False)
    payload = PacketSource(1, 96).next_packet(0)[12:]
    extensions = {2: b"\x01\x02\x03", 3: b"\x00\x01", 13: b"\x00"} if webrtc else None
    count = packets * (ROUNDS + 1)
    data = [rtp.build_packet(96, i & 0xFFFF, i * 90, 1234, payload=payload[: 1200 - 12 - (16 if webrtc else 0)],
                             extensions=extensions) for i in range(count)]
    position = 0

    def feed(n: int) -> None:
        nonlocal position
        on_rtp = producer.on_rtp
        for packet in data[position:position + n]:
            on_rtp(packet, 1234)
        position += n

    feed(packets)
    return _best_ns_per(feed, packets) / fanout / 1000


def _engine_only_simulcast(fanout: int, packets: int, webrtc: bool, sink_type=_EngineSink) -> float:
    """SimulcastProducer.on_rtp → `fanout` SimulcastConsumers spread over its three layers
    (bench/layer_switch.py's VP8 L1T3 stream, 1 / 2 / 5 packets a frame), sinks doing
    FastSrtp protect only; per packet *out* (a consumer drops the other layers' packets).
    webrtc: as _engine_only's (extensions renumbered, own transport-wide seq)."""
    from bench.layer_switch import simulcast
    from sfu.engine.simulcast import SimulcastConsumer, SimulcastProducer

    extmap = {rtp.URI_ABS_SEND_TIME: 2, rtp.URI_TRANSPORT_CC: 3, rtp.URI_VIDEO_ORIENTATION: 13} if webrtc else {}
    params = ProducerParams("p", "video", "camera", "0", "VP8", 90000, 96, None, extmap, rids=("q", "h", "f"))
    producer = SimulcastProducer(params, _EngineSink(), Counters(), time.monotonic, "t")
    for layer in range(3):
        producer.learn(1000 + layer, "qhf"[layer], False)
    subscriber_map = {rtp.URI_ABS_SEND_TIME: 3, rtp.URI_TRANSPORT_CC: 5, rtp.URI_VIDEO_ORIENTATION: 13}
    sinks = []
    for i in range(fanout):
        sink = sink_type()
        consumer = SimulcastConsumer(f"c{i}", producer, sink, str(i), 5000 + i, 96, producer.counters)
        producer.add_consumer(consumer)
        consumer.activate(extension_table(extmap, subscriber_map) if webrtc else None, 5 if webrtc else 0, False)
        consumer.selector.set_target(2 - i % 3)
        sinks.append(sink)
    extensions = {2: b"\x01\x02\x03", 3: b"\x00\x01", 13: b"\x00"} if webrtc else None
    stream = []
    for layer, packet, _ in simulcast(packets * (ROUNDS + 1) // 8 + 2):
        if extensions:
            header = rtp.parse_header(packet)
            packet = rtp.build_packet(96, header.sequence_number, header.timestamp, header.ssrc,
                                      payload=packet[header.header_length:-16], marker=header.marker,
                                      extensions=extensions)
        stream.append((packet, 1000 + layer))
    position = 0

    def feed(n: int) -> None:
        nonlocal position
        on_rtp = producer.on_rtp
        for packet, ssrc in stream[position:position + n]:
            on_rtp(packet, ssrc)
        position += n

    feed(packets)
    best = None
    for _ in range(ROUNDS):
        before = sum(sink.sent for sink in sinks)
        start = time.process_time_ns()
        feed(packets)
        elapsed = time.process_time_ns() - start
        per_out = elapsed / max(1, sum(sink.sent for sink in sinks) - before)
        best = per_out if best is None else min(best, per_out)
    assert best is not None
    return best / 1000


def _engine_audio(fanout: int, packets: int) -> float:
    """A microphone as Chromium publishes it (audio level, abs-send-time, transport-wide
    seq, mid; ~100-byte Opus, a speech-like level every packet) through a router's
    producer → fan-out, sinks doing FastSrtp protect, each subscriber renumbering the
    extensions and its own transport-wide seq. The producer's clock advances 20 ms a
    packet, as a real microphone's does (a C callable, like time.monotonic)."""
    extmap = {rtp.URI_AUDIO_LEVEL: 1, rtp.URI_ABS_SEND_TIME: 2, rtp.URI_TRANSPORT_CC: 3, rtp.URI_MID: 4}
    params = ProducerParams("mic", "audio", "microphone", "0", "opus", 48000, 111, 4321, extmap, channels=2)
    count = packets * (ROUNDS + 1)
    clock = iter([i * 0.02 for i in range(count + 1000)]).__next__
    producer = Producer(params, _EngineSink(), Counters(), clock, "t")
    Router("r", Registry()).add_producer(producer)  # the router hears what it registers
    subscriber_map = {rtp.URI_AUDIO_LEVEL: 1, rtp.URI_ABS_SEND_TIME: 2, rtp.URI_TRANSPORT_CC: 3}
    for i in range(fanout):
        consumer = Consumer(f"c{i}", producer, _EngineSink(), str(i), 1000 + i, 111, producer.counters)
        producer.add_consumer(consumer)
        consumer.activate(extension_table(extmap, subscriber_map), 3, False)
    payload = b"\xfc" + bytes(range(99))
    # Syllables: 10 packets around -20 dBov, then 4 near the room's -62 dBov.
    levels = [0x80 | (20 + i % 5) if i % 14 < 10 else 62 + i % 3 for i in range(count)]
    data = [rtp.build_packet(111, i & 0xFFFF, i * 960, 4321, payload=payload,
                             extensions={2: b"\x01\x02\x03", 3: (i & 0xFFFF).to_bytes(2, "big"),
                                         1: bytes([levels[i]]), 4: b"0"}) for i in range(count)]  # fmt: skip
    position = 0

    def feed(n: int) -> None:
        nonlocal position
        on_rtp = producer.on_rtp
        for packet in data[position:position + n]:
            on_rtp(packet, 4321)
        position += n

    feed(packets)
    return _best_ns_per(feed, packets) / fanout / 1000


async def _engine_webrtc(fanout: int, packets: int, native: str = "off", kernel: bool = False) -> float:
    """The worker's WebRTC send path: a plain transport in (no SRTP), N subscribe
    `WebRtcTransport`s out, each connected by hand (a FastSrtp outbound session, an
    address), sending through the worker's shared socket with its sendto stubbed:
    Producer.on_rtp → consumers → WebRtcTransport.send_rtp (protect, send). µs per packet out.
    kernel: sent for real to a socket that does not read (the kernel drops, cheaply), the
    only way to time the native path (sfu.native on), which sends through its descriptor."""
    worker = Worker(0, SfuConfig(port_base=0, native=native), MediaConfig(), ["127.0.0.1"])
    await worker.bind(0)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink.bind(("127.0.0.1", 0))
    try:
        await worker.handle(api.RouterCreate(router_id="r"))
        await worker.handle(api.PlainTransportCreate(router_id="r", transport_id="in", srtp=False))
        made = await worker.handle(api.PlainProducerCreate(transport_id="in", kind="video", codec_name="VP8",
                                                           clock_rate=90000, payload_type=96, ssrc=1234))
        for i in range(fanout):
            await worker.handle(api.TransportCreate(router_id="r", transport_id=f"w{i}", direction="subscribe"))
            await worker.handle(api.ConsumerCreate(transport_id=f"w{i}", consumer_id=f"c{i}",
                                                   producer_id=made.producer.producer_id))
            transport = worker.transports[f"w{i}"]
            transport.tx = srtp_session(new_srtp_key(), outbound=True, fast=True)  # type: ignore[attr-defined]
            transport.addr = sink.getsockname()  # type: ignore[attr-defined]
            transport.connected = True
            transport._route_natively()  # type: ignore[attr-defined]
            worker.registry.consumers[f"c{i}"].activate(None, 0, False)
        real_udp, real_send = worker.socket.udp, worker.socket._send_socket
        if not kernel:
            worker.socket.udp, worker.socket._send_socket = _NullUdp(), None  # type: ignore[assignment]
        source = PacketSource(1234, 96)
        data = [source.next_packet(time.monotonic_ns()) for _ in range(packets * (ROUNDS + 1))]
        transport_in = worker.transports["in"]
        addr = ("127.0.0.1", 40000)
        position = 0

        def feed(count: int) -> None:
            nonlocal position
            receive = transport_in.datagram_received  # type: ignore[attr-defined]
            for packet in data[position:position + count]:
                receive(packet, addr)
            position += count

        feed(packets)  # warm-up: keyframe start, caches
        per_packet_in = _best_ns_per(feed, packets)
        worker.socket.udp, worker.socket._send_socket = real_udp, real_send
        return per_packet_in / fanout / 1000
    finally:
        await worker.shutdown()
        sink.close()


def measure(packets: int = 4000, fanout: int = 16) -> dict:
    floors = _floors(packets * 4)
    engine = {name: uvloop.run(_engine(srtp, fanout, packets)) for name, srtp in (("plain", False), ("srtp", True))}
    engine["webrtc_send_us"] = uvloop.run(_engine_webrtc(fanout, packets))
    # The same with the kernel's send, each path (issue 15: sfu.native off and on).
    engine["webrtc_kernel_us"] = uvloop.run(_engine_webrtc(fanout, packets, "off", kernel=True))
    engine["webrtc_native_us"] = uvloop.run(_engine_webrtc(fanout, packets, "on", kernel=True))
    engine["native"] = {name: uvloop.run(_engine(srtp, fanout, packets, "on"))
                        for name, srtp in (("plain", False), ("srtp", True))}
    engine_only = {"plain": _engine_only(fanout, packets, False), "webrtc": _engine_only(fanout, packets, True),
                   "simulcast": _engine_only_simulcast(fanout, packets, False),
                   "simulcast_webrtc": _engine_only_simulcast(fanout, packets, True),
                   "plain_logic": _engine_only(fanout, packets, False, _NullSink),
                   "webrtc_logic": _engine_only(fanout, packets, True, _NullSink),
                   "simulcast_logic": _engine_only_simulcast(fanout, packets, False, _NullSink),
                   "simulcast_webrtc_logic": _engine_only_simulcast(fanout, packets, True, _NullSink),
                   "audio": _engine_audio(fanout, packets), "audio_1": _engine_audio(1, packets)}
    return {"floors": floors, "engine": engine, "engine_only": engine_only, "fanout": fanout, "packets": packets}


def render(result: dict) -> str:
    f, e, o = result["floors"], result["engine"], result["engine_only"]
    n = result["fanout"]
    # The worker's plain transports protect and unprotect through FastSrtp.
    srtp_logic = e["srtp"]["engine_no_kernel_us"] - f["protect_fast_us"] - f["unprotect_fast_us"] / n
    rows = [
        ("pylibsrtp Session.protect, 1200 B", f["protect_us"]),
        ("the same libsrtp call through FastSrtp (sfu/transport/srtp.py)", f["protect_fast_us"]),
        (f"pylibsrtp Session.unprotect, per packet in (÷{n} per packet out: {f['unprotect_us'] / n:.2f})",
         f["unprotect_us"]),
        ("the same through FastSrtp", f["unprotect_fast_us"]),
        ("socket.sendto 1200 B to 127.0.0.1 (kernel, receiver not reading)", f["sendto_us"]),
        ("uvloop transport.sendto, same datagram", e["plain"]["loop_sendto_us"]),
        ("socket.sendto on a dup of that transport's socket (what udp.py and plain.py do)", e["plain"]["socket_sendto_us"]),
        ("header rewrite: bytearray copy + struct.pack_into + bytes()", f["rewrite_copy_us"]),
        ("header rewrite: struct.pack of 12 bytes + shared rest (what the engine does)", f["rewrite_prepend_us"]),
        ("engine only: Producer.on_rtp → consumers, sink = FastSrtp protect (plain RTP in)", o["plain"]),
        ("engine only, WebRTC-like: 3 header extensions renumbered + own transport-wide seq", o["webrtc"]),
        ("engine only, simulcast: SimulcastProducer.on_rtp → consumers over 3 layers, per packet out",
         o["simulcast"]),
        ("engine only, simulcast, WebRTC-like (as above), per packet out", o["simulcast_webrtc"]),
        ("engine logic alone (sink does nothing): one layer", o["plain_logic"]),
        ("engine logic alone: one layer, WebRTC-like", o["webrtc_logic"]),
        ("engine logic alone: simulcast, per packet out", o["simulcast_logic"]),
        ("engine logic alone: simulcast, WebRTC-like, per packet out", o["simulcast_webrtc_logic"]),
        ("engine only, audio: a microphone in a router (levels → its dominant speaker), Chromium's 4 extensions",
         o["audio"]),
        ("the same audio at fan-out 1 (µs per packet in)", o["audio_1"]),
        ("worker plain transport, no SRTP: datagram_received → N × send, sendto stubbed", e["plain"]["engine_no_kernel_us"]),
        ("worker plain transport, no SRTP, with the kernel's sendto", e["plain"]["engine_us"]),
        ("worker plain transport, SRTP (FastSrtp): sendto stubbed", e["srtp"]["engine_no_kernel_us"]),
        ("worker plain transport, SRTP, with the kernel's sendto", e["srtp"]["engine_us"]),
        (f"SFU logic with SRTP: stubbed − FastSrtp protect − unprotect÷{n}", srtp_logic),
        ("worker WebRTC subscribers: plain in → N × WebRtcTransport.send_rtp (FastSrtp protect), sendto stubbed",
         e["webrtc_send_us"]),
        ("the same WebRTC subscribers, with the kernel's sendto (Python path)", e["webrtc_kernel_us"]),
        ("the same WebRTC subscribers, native path: header, protect, one sendmmsg in C", e["webrtc_native_us"]),
        ("worker plain transport, no SRTP, native path (a socket each: one send per copy)",
         e["native"]["plain"]["engine_us"]),
        ("worker plain transport, SRTP, native path", e["native"]["srtp"]["engine_us"]),
    ]
    lines = [f"CPU µs per forwarded packet, fan-out {n}, in-process (process CPU time, best of {ROUNDS} rounds):",
             "", "| step | µs |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plainrtp.hotpath")
    parser.add_argument("--packets", type=int, default=4000, help="packets in per round (bounded to 50000)")
    parser.add_argument("--fanout", type=int, default=16)
    args = parser.parse_args(argv)
    print(render(measure(min(max(args.packets, 100), 50_000), max(1, min(args.fanout, 64)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
