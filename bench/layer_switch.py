"""What per-subscriber simulcast layer switching costs per packet, next to today's
`Consumer.forward`, measured in the same run (in-process, no network, no SRTP).

    python -m bench.layer_switch [--frames 2000] [--fanout 16]

A 3-layer VP8 simulcast stream (L1T3, 1 / 2 / 5 packets of 1200 bytes per frame for
layers 0 / 1 / 2, as Chromium sends 180p / 360p / 720p) is built ahead. Rows, each the
best of several timeit rounds, in µs per call:

- baseline: `Consumer.forward` of a ready consumer (one 12-byte header packed in front
  of the shared rest, handed to a sink that only counts);
- `PacketInfo.read`, once per incoming packet for all subscribers (its VP8 descriptor);
- `LayerSelector.process` alone, for a packet of the forwarded layer and for one of
  another layer (dropped);
- the forwarded packet whole, as a consumer would do it: process, `StreamMunger.packet`
  (the header packed, joined with the parts of the packet PacketInfo shares), the sink;
- a fan-out: every packet of the stream read once and given to `--fanout` subscribers
  spread over the three layers (forwarding what each takes, whole), per packet sent out,
  against the same number of subscribers of a single-layer stream through
  `Consumer.forward`; and the same with the subscribers grouped by their settled layer,
  so that a packet reaches only the selectors that forward it.

Times are process CPU time (time.process_time as timeit's timer). Absolute µs vary
between days on a shared machine; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
import timeit

from sfu.engine.consumer import Consumer
from sfu.engine.layers import FORWARD, LayerSelector
from sfu.engine.munger import StreamMunger
from sfu.engine.packet_info import PacketInfo
from sfu.engine.producer import Producer, ProducerParams
from sfu.engine.stats import Counters
from sfu.wire import rtp

ROUNDS = 7
PACKETS_PER_FRAME = (1, 2, 5)
TIDS = (0, 2, 1, 2)
SIZE = 1200
PT = 96
_SEQ_TS = struct.Struct("!HI")


class _Sink:
    native_to = None  # the Python path (sfu.transport.native)

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


def _interleaved(runners: dict[str, tuple]) -> dict[str, float]:
    """µs per item of each runner, best of ROUNDS rounds. A runner is (run, count): run(count)
    does one round and returns how many items it did (calls, or packets sent). Rounds of
    all runners alternate, so that a change of load on the machine hits them alike; each
    round is timed by timeit in process CPU time (time.process_time)."""
    best: dict[str, float] = {}
    for run, count in runners.values():
        run(count)  # warm-up round
    for _ in range(ROUNDS):
        for name, (run, count) in runners.items():
            done = [0]

            def once(run=run, count=count, done=done) -> None:
                done[0] = run(count)

            seconds = timeit.Timer(once, timer=time.process_time).timeit(number=1)
            best[name] = min(best.get(name, float("inf")), seconds / done[0] * 1e6)
    return best


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
    """What Producer.on_rtp hands every consumer: packet, seq, ts, head, rest."""
    return [(p, *_SEQ_TS.unpack_from(p, 2), p[0] << 8 | p[1] & 0x80, p[12:]) for p in packets]


def _selector(target: int, stream: list[tuple[int, bytes, float]], info: PacketInfo,
              stall_after: float = 1.0) -> LayerSelector:
    selector = LayerSelector(StreamMunger(7000 + target, PT), target=target, stall_after=stall_after)
    for layer, packet, now in stream:
        info.read(packet, layer, now)
        selector.process(info)
    return selector


def measure(frames: int = 2000, fanout: int = 16) -> dict[str, float]:
    built = simulcast(frames)
    stream = built[: len(built) // 10]  # a warm-up: every selector settled on its layer
    timed = built[len(stream):]
    info = PacketInfo("VP8")
    per_round = len(timed) // (ROUNDS + 1)  # packets in per round: every runner has enough
    runners: dict[str, tuple] = {}

    # Today: Consumer.forward with what Producer.on_rtp hands it, layer 2 as a one-layer stream.
    (consumer,) = _consumers(1)
    top = [p for layer, p, _ in timed if layer == 2]
    args = _Stream(_forward_args(top))

    def baseline(count: int) -> int:
        forward = consumer.forward
        for packet, seq, ts, head, rest in args.take(count):
            forward(packet, seq, ts, False, head, rest)
        return count

    runners["consumer_forward_us"] = (baseline, len(top) // (ROUNDS + 1))

    # PacketInfo.read, every packet.
    reads = _Stream(timed)

    def read(count: int) -> int:
        for layer, packet, now in reads.take(count):
            info.read(packet, layer, now)
        return count

    runners["read_us"] = (read, per_round)

    # LayerSelector.process alone on pre-read infos of layer 2 (forwarded) and of 0/1
    # (dropped; with layer 2 left out its packets stop, so stall_after is made endless:
    # the same comparison is made, it only never finds layer 2 stopped).
    def infos(wanted) -> list[PacketInfo]:
        made = []
        for layer, packet, now in timed:
            if layer in wanted:
                one = PacketInfo("VP8")
                one.read(packet, layer, now)
                made.append(one)
        return made

    selectors = {name: _selector(2, stream, info, 1e9) for name in ("process_forward_us", "process_drop_us")}
    for name, wanted in (("process_forward_us", (2,)), ("process_drop_us", (0, 1))):
        items = _Stream(infos(wanted))

        def run(count: int, selector=selectors[name], items=items) -> int:
            for one in items.take(count):
                selector.process(one)
            return count

        runners[name] = (run, len(items.items) // (ROUNDS + 1))

    # The forwarded packet whole, as a consumer without header extension rewriting would
    # send it: process + packet + sink.
    whole_selector = _selector(2, stream, info)
    sink = _Sink()
    whole = _Stream(infos((2,)))

    def forward_whole(count: int) -> int:
        make, send = whole_selector.munger.packet, sink.send_rtp
        for one in whole.take(count):
            if whole_selector.process(one) & FORWARD:
                send(make(one))
        return count

    runners["switch_forward_whole_us"] = (forward_whole, len(whole.items) // (ROUNDS + 1))

    # Fan-out: every packet read once, given to `fanout` subscribers spread over the layers.
    targets = [2 - i % 3 for i in range(fanout)]

    def fan(grouped: bool):
        selectors = [_selector(t, stream, info) for t in targets]
        assert all(s.settled == t for s, t in zip(selectors, targets))
        sinks = [_Sink() for _ in selectors]
        pairs = [(s, k.send_rtp) for s, k in zip(selectors, sinks)]
        # Grouped: a packet goes only to the selectors settled on its layer (what a
        # producer could do with `settled`).
        groups = [[pair for pair in pairs if pair[0].settled == layer] if grouped else pairs for layer in range(3)]
        packets = _Stream(timed)

        def run(count: int) -> int:
            before = sum(k.sent for k in sinks)
            for layer, packet, now in packets.take(count):
                info.read(packet, layer, now)
                for selector, send in groups[layer]:
                    if selector.process(info) & FORWARD:
                        send(selector.munger.packet(info))
            return sum(k.sent for k in sinks) - before

        return run

    runners["fanout_switch_us_per_packet_out"] = (fan(False), per_round)
    runners["fanout_grouped_us_per_packet_out"] = (fan(True), per_round)

    # Today's fan-out: Producer.on_rtp's share (seq, ts, head, rest), then Consumer.forward each.
    consumers = _consumers(fanout)
    single = _Stream(top)

    def fan_consumers(count: int) -> int:
        forwards = [c.forward for c in consumers]
        for packet in single.take(count):
            seq, ts = _SEQ_TS.unpack_from(packet, 2)
            head = packet[0] << 8 | packet[1] & 0x80
            rest = packet[12:]
            for forward in forwards:
                forward(packet, seq, ts, False, head, rest)
        return count * len(forwards)

    runners["fanout_consumer_us_per_packet_out"] = (fan_consumers, len(top) // (ROUNDS + 1))
    results = _interleaved(runners)
    results["fanout"] = fanout
    results["packets_in"] = len(built)
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
        ("process + StreamMunger.packet + sink, per packet out", r["switch_forward_whole_us"],
         r["switch_forward_whole_us"] / base),
        (f"fan-out {r['fanout']:.0f} over 3 layers (read once, drops included), per packet out",
         r["fanout_switch_us_per_packet_out"], r["fanout_switch_us_per_packet_out"] / base),
        ("the same, subscribers grouped by settled layer (no drop calls), per packet out",
         r["fanout_grouped_us_per_packet_out"], r["fanout_grouped_us_per_packet_out"] / base),
        (f"fan-out {r['fanout']:.0f}, one layer: the producer's head/rest + Consumer.forward, per packet out",
         r["fanout_consumer_us_per_packet_out"], r["fanout_consumer_us_per_packet_out"] / base),
    ]
    fan_ratio = r["fanout_switch_us_per_packet_out"] / r["fanout_consumer_us_per_packet_out"]
    grouped_ratio = r["fanout_grouped_us_per_packet_out"] / r["fanout_consumer_us_per_packet_out"]
    lines = [f"CPU µs per call, best of {ROUNDS} timeit rounds, {r['packets_in']:.0f} packets of 3 layers built ahead:",
             "", "| step | µs | × Consumer.forward |", "|---|---:|---:|"]
    lines += [f"| {name} | {us:.3f} | {ratio:.2f} |" for name, us, ratio in rows]
    lines += ["", (f"fan-out ratio, layer switching / Consumer.forward, per packet out: {fan_ratio:.2f}"
                   f" (grouped by layer: {grouped_ratio:.2f})")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.layer_switch")
    parser.add_argument("--frames", type=int, default=2000, help="frames of the stream built ahead (bounded to 20000)")
    parser.add_argument("--fanout", type=int, default=16)
    args = parser.parse_args(argv)
    print(render(measure(min(max(args.frames, 200), 20_000), max(1, min(args.fanout, 64)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
