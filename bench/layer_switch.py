"""What per-subscriber simulcast layer switching costs per packet, next to today's
`Consumer.forward`, measured in the same run (in-process, no network, no SRTP).

    python -m bench.layer_switch [--frames 600] [--fanout 16]

A 3-layer VP8 simulcast stream (L1T3, 1 / 2 / 5 packets of 1200 bytes per frame for
layers 0 / 1 / 2, as Chromium sends 180p / 360p / 720p) is built ahead. Rows, each the
best of several timeit rounds, in µs per call:

- baseline: `Consumer.forward` of a ready consumer (one 12-byte header packed in front
  of the shared rest, handed to a sink that only counts);
- `PacketInfo.read`, once per incoming packet for all subscribers (its VP8 descriptor);
- `LayerSelector.process` alone, for a packet of the forwarded layer and for one of
  another layer (dropped);
- the forwarded packet whole, as a consumer would do it: process, a bytearray copy,
  `StreamMunger.rewrite`, payload type, bytes(), the sink;
- a fan-out: every packet of the stream read once and given to `--fanout` subscribers
  spread over the three layers (forwarding what each takes, whole), per packet sent out,
  against the same number of subscribers of a single-layer stream through
  `Consumer.forward`.

Absolute µs vary between days on a shared machine; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import sys
import timeit

from sfu.engine.consumer import Consumer
from sfu.engine.layers import FORWARD, LayerSelector, PacketInfo
from sfu.engine.munger import StreamMunger
from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.stats import Counters
from sfu.wire import rtp

ROUNDS = 5
PACKETS_PER_FRAME = (1, 2, 5)
TIDS = (0, 2, 1, 2)
SIZE = 1200
PT = 96


class _Sink:
    rtcp_ssrc = 1
    connected = True

    def __init__(self) -> None:
        self.sent = 0

    def send_rtp(self, packet: bytes) -> None:
        self.sent += 1

    def send_rtcp(self, packet: bytes) -> None:
        pass

    def next_transport_sequence(self) -> int:
        return 0


def simulcast(frames: int) -> list[tuple[int, bytes, float]]:
    """(layer, packet, arrival) of `frames` frames of three layers, keyframes first."""
    out = []
    seqs, pids, tl0s, tss = [100, 30000, 65000], [5, 3000, 32000], [10, 100, 250], [0, 1 << 20, 1 << 31]
    for n in range(frames):
        tid = TIDS[n % 4]
        for layer, count in enumerate(PACKETS_PER_FRAME):
            pids[layer] = (pids[layer] + 1) & 0x7FFF
            tss[layer] = (tss[layer] + 3000) & 0xFFFFFFFF
            if tid == 0:
                tl0s[layer] = (tl0s[layer] + 1) & 0xFF
            for k in range(count):
                seqs[layer] = (seqs[layer] + 1) & 0xFFFF
                descriptor = bytes((0x90 if k == 0 else 0x80, 0xE0, 0x80 | pids[layer] >> 8, pids[layer] & 0xFF,
                                    tl0s[layer], tid << 6 | (0x20 if n < 4 and tid else 0)))
                head = (b"\x00\x00\x00\x9d\x01\x2a" if n == 0 else b"\x01\x00\x00") if k == 0 else b""
                payload = descriptor + head
                payload += b"v" * (SIZE - 12 - len(payload))
                packet = rtp.build_packet(PT, seqs[layer], tss[layer], 1000 + layer, payload, marker=k == count - 1)
                out.append((layer, packet, n / 30 + 0.0001 * len(out)))
    return out


def _best_us(run, count: int) -> float:
    """Best of ROUNDS timeit rounds of run(count), per item."""
    return min(timeit.Timer(lambda: run(count)).repeat(repeat=ROUNDS, number=1)) / count * 1e6


class _Stream:
    """Hands out consecutive slices of a list, so state that must move forward does."""

    def __init__(self, items: list) -> None:
        self.items = items
        self.position = 0

    def take(self, count: int) -> list:
        chunk = self.items[self.position:self.position + count]
        if len(chunk) < count:
            raise RuntimeError("bench stream exhausted: raise --frames")
        self.position += count
        return chunk


def _consumers(count: int) -> list[Consumer]:
    params = ProducerParams("p", "video", "camera", "0", "VP8", 90000, PT, 1000, {})
    producer = Producer(params, _Sink(), Counters(), lambda: 0.0, "t")
    made = []
    for i in range(count):
        consumer = Consumer(f"c{i}", producer, _Sink(), str(i), 5000 + i, PT, producer.counters)
        producer.add_consumer(consumer)
        consumer.activate(None, 0, False)
        consumer.need_keyframe = False
        consumer.ready = True
        made.append(consumer)
    return made


def _forward_args(packets: list[bytes]) -> list[tuple]:
    return [(p, p[2] << 8 | p[3], int.from_bytes(p[4:8], "big"), False, p[0] << 8 | p[1] & 0x80, p[12:])
            for p in packets]


def _selector(target: int, stream: list[tuple[int, bytes, float]], info: PacketInfo,
              stall_after: float = 1.0) -> LayerSelector:
    selector = LayerSelector(StreamMunger(7000 + target), target=target, stall_after=stall_after)
    for layer, packet, now in stream:
        info.read(packet, layer, now)
        selector.process(info)
    return selector


def measure(frames: int = 600, fanout: int = 16) -> dict[str, float]:
    built = simulcast(frames)
    packets_in = len(built)
    stream = built[: packets_in // 10]  # a warm-up: every selector settled on its layer
    timed = built[len(stream):]
    results: dict[str, float] = {}

    # Baseline: Consumer.forward, layer 2's packets as a single-layer stream.
    (consumer,) = _consumers(1)
    args = _Stream(_forward_args([p for layer, p, _ in timed if layer == 2]))
    n = len(args.items) // (ROUNDS + 1)

    def baseline(count: int) -> None:
        forward = consumer.forward
        for a in args.take(count):
            forward(*a)

    baseline(n)
    results["consumer_forward_us"] = _best_us(baseline, n)

    # PacketInfo.read, every packet.
    info = PacketInfo("VP8")
    reads = _Stream(timed)

    def read(count: int) -> None:
        for layer, packet, now in reads.take(count):
            info.read(packet, layer, now)

    n_all = len(timed) // (ROUNDS + 1)
    read(n_all)
    results["read_us"] = _best_us(read, n_all)

    # LayerSelector.process alone: pre-read infos of layer 2 (forwarded) and 0/1 (dropped;
    # with layer 2 left out of the loop its packets stop, so stall_after is made endless: the
    # same comparison is made, it only never finds layer 2 stopped).
    def infos(wanted) -> list[PacketInfo]:
        made = []
        for layer, packet, now in timed:
            if layer in wanted:
                one = PacketInfo("VP8")
                one.read(packet, layer, now)
                made.append(one)
        return made

    for name, wanted in (("process_forward_us", (2,)), ("process_drop_us", (0, 1))):
        selector = _selector(2, stream, info, 1e9)
        items = _Stream(infos(wanted))
        count = len(items.items) // (ROUNDS + 1)

        def run(count: int, selector=selector, items=items) -> None:
            process = selector.process
            for one in items.take(count):
                process(one)

        run(count)
        results[name] = _best_us(run, count)

    # The forwarded packet whole: process + copy + rewrite + payload type + bytes + sink.
    selector = _selector(2, stream, info)
    sink = _Sink()
    whole = _Stream([(one, packet) for one, (layer, packet, _) in
                     zip(infos((2,)), [t for t in timed if t[0] == 2])])
    count = len(whole.items) // (ROUNDS + 1)

    def forward_whole(count: int) -> None:
        process, rewrite, send = selector.process, selector.munger.rewrite, sink.send_rtp
        for one, packet in whole.take(count):
            if process(one) & FORWARD:
                buf = bytearray(packet)
                rewrite(buf, one)
                buf[1] = (buf[1] & 0x80) | PT
                send(bytes(buf))

    forward_whole(count)
    results["switch_forward_whole_us"] = _best_us(forward_whole, count)

    # Fan-out: the whole stream to `fanout` subscribers spread over the layers, per packet out.
    targets = [2 - i % 3 for i in range(fanout)]
    selectors = [_selector(t, stream, info) for t in targets]
    sinks = [_Sink() for _ in selectors]
    fan = _Stream(timed)

    def fan_switch(count: int) -> None:
        pairs = [(s.process, s.munger.rewrite, k.send_rtp) for s, k in zip(selectors, sinks)]
        for layer, packet, now in fan.take(count):
            info.read(packet, layer, now)
            for process, rewrite, send in pairs:
                if process(info) & FORWARD:
                    buf = bytearray(packet)
                    rewrite(buf, info)
                    buf[1] = (buf[1] & 0x80) | PT
                    send(bytes(buf))

    fan_switch(n_all)
    before = sum(k.sent for k in sinks)
    best = min(timeit.Timer(lambda: fan_switch(n_all)).repeat(repeat=ROUNDS, number=1))
    sent_per_round = (sum(k.sent for k in sinks) - before) / ROUNDS
    results["fanout_switch_us_per_packet_out"] = best / sent_per_round * 1e6

    consumers = _consumers(fanout)
    single = _Stream(_forward_args([p for layer, p, _ in timed if layer == 2]))
    n_single = len(single.items) // (ROUNDS + 1)

    def fan_consumers(count: int) -> None:
        forwards = [c.forward for c in consumers]
        for a in single.take(count):
            for forward in forwards:
                forward(*a)

    fan_consumers(n_single)
    results["fanout_consumer_us_per_packet_out"] = _best_us(fan_consumers, n_single) / fanout
    results["fanout"] = fanout
    results["packets_in"] = packets_in
    return results


def render(r: dict[str, float]) -> str:
    base = r["consumer_forward_us"]
    rows = [
        ("Consumer.forward (today, one layer), per packet out", base, 1.0),
        ("PacketInfo.read, per packet in (shared by all subscribers)", r["read_us"], r["read_us"] / base),
        ("LayerSelector.process, a packet of the forwarded layer", r["process_forward_us"],
         r["process_forward_us"] / base),
        ("LayerSelector.process, a packet of another layer (dropped)", r["process_drop_us"],
         r["process_drop_us"] / base),
        ("process + bytearray + rewrite + bytes + sink, per packet out", r["switch_forward_whole_us"],
         r["switch_forward_whole_us"] / base),
        (f"fan-out {r['fanout']:.0f} over 3 layers (read once, drops included), per packet out",
         r["fanout_switch_us_per_packet_out"], r["fanout_switch_us_per_packet_out"] / base),
        (f"fan-out {r['fanout']:.0f}, one layer, Consumer.forward, per packet out",
         r["fanout_consumer_us_per_packet_out"], r["fanout_consumer_us_per_packet_out"] / base),
    ]
    fan_ratio = r["fanout_switch_us_per_packet_out"] / r["fanout_consumer_us_per_packet_out"]
    lines = [f"µs per call, best of {ROUNDS} timeit rounds, {r['packets_in']:.0f} packets of 3 layers built ahead:",
             "", "| step | µs | × Consumer.forward |", "|---|---:|---:|"]
    lines += [f"| {name} | {us:.3f} | {ratio:.2f} |" for name, us, ratio in rows]
    lines += ["", f"fan-out ratio, layer switching / Consumer.forward, per packet out: {fan_ratio:.2f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.layer_switch")
    parser.add_argument("--frames", type=int, default=600, help="frames of the stream built ahead (bounded to 20000)")
    parser.add_argument("--fanout", type=int, default=16)
    args = parser.parse_args(argv)
    print(render(measure(min(max(args.frames, 200), 20_000), max(1, min(args.fanout, 64)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
