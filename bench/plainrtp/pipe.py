"""What a pipe between two workers costs per packet, measured in-process.

    python -m bench.plainrtp.pipe [--packets N] [--fanout 16]

Two real `sfu.worker.Worker`s in this process (uvloop), each with router "r", joined by
a pipe (PIPE_TRANSPORT_CREATE/CONNECT, PIPE_CONSUME, PIPE_PRODUCER_CREATE, as control
makes them for a spread meeting). Worker A's plain input transport is fed pre-built VP8
packets by calling its `datagram_received` in a loop, timed in CPU time
(time.process_time_ns), best of several rounds:

- home: A's input with the pipe consumer (a copy sent to 127.0.0.1, the kernel's send
  included) minus A's input alone: what piping costs the home worker per packet;
- far: B's pipe transport's `datagram_received` with the packets A's pipe sent (captured),
  no subscriber on B: what the far worker pays per packet before its fan-out (the
  kernel's receive is not in it: the loop's recvfrom is the same for any UDP packet);
- a subscriber copy for scale: A's input with `--fanout` plain consumers to a passive
  socket, per copy (no SRTP: a WebRTC copy adds a protect, bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import socket
import time

import uvloop

from bench.plainrtp.hotpath import ROUNDS, _best_ns_per
from bench.plainrtp.packets import PacketSource
from config.schema import MediaConfig, SfuConfig
from sfu import api
from sfu.worker import Worker

ADDR = ("127.0.0.1", 40000)


class _Capture:
    """Stands in for the home pipe's asyncio transport while the far side's input is made."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def sendto(self, data, addr) -> None:
        self.packets.append(bytes(data))

    def close(self) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return default


async def _worker(index: int) -> Worker:
    worker = Worker(index, SfuConfig(port_base=0, ice_tcp=False), MediaConfig(), ["127.0.0.1"])
    await worker.bind(0)
    await worker.handle(api.RouterCreate(router_id="r"))
    return worker


async def measure(packets: int, fanout: int) -> dict[str, float]:
    a, b = await _worker(0), await _worker(1)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # passive: the kernel drops, cheaply
    sink.bind(("127.0.0.1", 0))
    try:
        await a.handle(api.PlainTransportCreate(router_id="r", transport_id="in"))
        made = await a.handle(api.PlainProducerCreate(transport_id="in", kind="video", codec_name="VP8",
                                                      clock_rate=90000, payload_type=96, ssrc=1234))  # fmt: skip
        producer_id = made.producer.producer_id
        source = PacketSource(1234, 96, None)
        # Every phase's packets, each sequence number once: 4 timed phases of ROUNDS, warm-ups.
        data = [source.next_packet(time.monotonic_ns()) for _ in range(packets * (4 * ROUNDS + 6))]
        position = 0
        transport_in = a.transports["in"]

        def feed(count: int) -> None:
            nonlocal position
            receive = transport_in.datagram_received
            for packet in data[position : position + count]:
                receive(packet, ADDR)
            position += count

        feed(packets)  # warm-up
        alone = _best_ns_per(feed, packets)

        ends = [
            await w.handle(api.PipeTransportCreate(router_id="r", transport_id=t)) for w, t in ((a, "pa"), (b, "pb"))
        ]
        await a.handle(api.PipeTransportConnect(transport_id="pa", ip=ends[1].ip, port=ends[1].port))
        await b.handle(api.PipeTransportConnect(transport_id="pb", ip=ends[0].ip, port=ends[0].port))
        consumed = await a.handle(api.PipeConsume(transport_id="pa", consumer_id="pipe", producer_id=producer_id))
        await b.handle(api.PipeProducerCreate(transport_id="pb", producer=consumed.producer))
        feed(packets)  # the pipe consumer starts at the next keyframe
        piped = _best_ns_per(feed, packets)

        home_pipe = a.transports["pa"]
        capture, real_udp, real_send = _Capture(), home_pipe.udp, home_pipe._send_socket
        home_pipe.udp, home_pipe._send_socket = capture, None  # type: ignore[assignment]
        feed(packets * (ROUNDS + 1))
        home_pipe.udp, home_pipe._send_socket = real_udp, real_send
        far_pipe = b.transports["pb"]
        far_input = capture.packets
        far_position = 0

        home_address = (ends[0].ip, ends[0].port)  # the only address the far pipe hears

        def far(count: int) -> None:
            nonlocal far_position
            receive = far_pipe.datagram_received
            for packet in far_input[far_position : far_position + count]:
                receive(packet, home_address)
            far_position += count

        far(packets)  # warm-up
        far_ns = _best_ns_per(far, packets)
        received = b.counters.pipe_packets_received

        await a.handle(api.ConsumerClose(consumer_id="pipe"))
        for i in range(fanout):
            await a.handle(api.PlainTransportCreate(router_id="r", transport_id=f"o{i}"))
            await a.handle(api.PlainTransportConnect(transport_id=f"o{i}", remote_ip="127.0.0.1",
                                                     remote_port=sink.getsockname()[1]))  # fmt: skip
            await a.handle(api.ConsumerCreate(transport_id=f"o{i}", consumer_id=f"c{i}", producer_id=producer_id))
        feed(packets)
        copies = (_best_ns_per(feed, packets) - alone) / fanout
        assert position <= len(data), "ran out of packets"
        return {
            "input_alone_us": alone / 1000,
            "home_pipe_us": (piped - alone) / 1000,
            "far_receive_us": far_ns / 1000,
            "pipe_total_us": (piped - alone + far_ns) / 1000,
            "subscriber_copy_us": copies / 1000,
            "far_packets_received": float(received),
        }
    finally:
        await a.shutdown()
        await b.shutdown()
        sink.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plainrtp.pipe", description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=5000, help="packets per round (bounded: 1000..50000)")
    parser.add_argument("--fanout", type=int, default=16, help="plain subscribers for the per-copy reference")
    parser.add_argument("--json", help="also write the numbers as JSON to this file")
    args = parser.parse_args(argv)
    packets = max(1000, min(args.packets, 50_000))
    result = uvloop.run(measure(packets, max(1, min(args.fanout, 256))))
    for key, value in result.items():
        print(f"{key:24s} {value:10.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
