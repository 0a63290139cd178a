"""/metrics of a served worker after real forwarding: the sampled fan-out time as a
Prometheus histogram in seconds, and drops by reason; refused NACKs by reason.

A live server (control + a real worker process, 127.0.0.1); the test drives that worker
over control's own channel with plain RTP transports (docs/plain-rtp.md): one producer,
a fan-out of 4 to a UDP sink, then bad packets of two kinds. /metrics is parsed with
prometheus_client's text parser and checked against the worker's own counters.
"""

from __future__ import annotations

import asyncio
import math
import socket

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from common.messages import Message
from control.metrics import exporter
from sfu import api
from sfu.engine.stats import (
    ESTIMATE_BUCKETS_BPS,
    FORWARD_TIME_BUCKETS_US,
    FORWARD_TIME_SAMPLE_EVERY,
    NACK_REFUSED_REASONS,
    TCP_DROP_REASONS,
    TCP_FRAMING_ERRORS,
    Counters,
    estimate_gauges,
)
from sfu.engine.subscription import PAUSE_REASONS
from sfu.wire import rtp

HISTOGRAM = "conclave_sfu_forward_latency_seconds"
DROPPED = "conclave_worker_packets_dropped"
FANOUT = 4
PACKETS = 4 * FORWARD_TIME_SAMPLE_EVERY  # enough for several samples
SSRC = 4321


async def scrape(base_url: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/metrics") as response:
            assert response.status == 200
            text = await response.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


def dropped_by_reason(families: dict[str, object]) -> dict[str, float]:
    family = families[DROPPED]
    assert family.type == "counter"
    return {s.labels["reason"]: s.value for s in family.samples if s.name == DROPPED + "_total" and s.labels["worker"] == "0"}


async def test_forward_latency_histogram_and_drops_by_reason_in_metrics(conclave_server):
    supervisor = conclave_server.services.workers
    worker = supervisor.workers[0]

    async def request(message: Message) -> Message:
        return await supervisor.request(0, worker.generation, message)

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    try:
        await supervisor.refresh_stats()
        before = dropped_by_reason(await scrape(conclave_server.base_url))

        await request(api.RouterCreate(router_id="histogram"))
        # A subscriber's WebRTC transport: its estimator starts at 300 kbit/s.
        await request(api.TransportCreate(router_id="histogram", transport_id="h-sub", direction="subscribe"))
        info = await request(api.PlainTransportCreate(router_id="histogram", transport_id="h-in", listen_ip="127.0.0.1"))
        produced = await request(
            api.PlainProducerCreate(
                transport_id="h-in", kind="audio", codec_name="opus", clock_rate=48000, payload_type=111, ssrc=SSRC,
                channels=2,
            )
        )  # fmt: skip
        for i in range(FANOUT):
            await request(api.PlainTransportCreate(router_id="histogram", transport_id=f"h-out{i}", listen_ip="127.0.0.1"))
            await request(
                api.PlainTransportConnect(transport_id=f"h-out{i}", remote_ip="127.0.0.1", remote_port=sink.getsockname()[1])
            )
            await request(
                api.ConsumerCreate(transport_id=f"h-out{i}", consumer_id=f"h-c{i}", producer_id=produced.producer.producer_id)
            )

        loop = asyncio.get_running_loop()
        received = 0
        target = ("127.0.0.1", info.port)
        for seq in range(PACKETS):
            sender.sendto(rtp.build_packet(111, seq, 960 * seq, SSRC, payload=bytes(80)), target)
            if seq % 32 == 31:  # paced: never more in flight than the sockets hold
                await asyncio.sleep(0.002)
                while True:
                    try:
                        sink.recv(2048)
                        received += 1
                    except BlockingIOError:
                        break
        # Two kinds of bad input, counted by reason: an SSRC nobody produces (from the
        # learned sender) and a second sender once the first one is known.
        for seq in range(5):
            sender.sendto(rtp.build_packet(111, seq, 0, SSRC + 1, payload=bytes(20)), target)
        for seq in range(3):
            stranger.sendto(rtp.build_packet(111, seq, 0, SSRC, payload=bytes(20)), target)
        deadline = loop.time() + 5
        while received < PACKETS * FANOUT and loop.time() < deadline:
            try:
                await asyncio.wait_for(loop.sock_recv(sink, 2048), 0.5)
                received += 1
            except asyncio.TimeoutError:
                break
        assert received >= PACKETS * FANOUT * 0.99  # forwarding happened (loopback may drop a few)
        await asyncio.sleep(0.1)

        await supervisor.refresh_stats()
        families = await scrape(conclave_server.base_url)
        worker_stats = await request(api.WorkerGetStats())
    finally:
        for s in (sink, sender, stranger):
            s.close()

    # Drops by reason: exactly what was sent, under its reason.
    after = dropped_by_reason(families)
    assert after.get("unknown_ssrc", 0) - before.get("unknown_ssrc", 0) == 5
    assert after.get("unknown_peer", 0) - before.get("unknown_peer", 0) == 3

    # The subscriber transport's estimate, in the gauge histogram of worker 0 (text format
    # 0.0.4 shows it as a histogram with _gcount and _gsum gauges).
    estimates = {
        float(s.labels["le"]): s.value
        for s in families["conclave_sfu_subscriber_estimate_bps"].samples
        if s.labels.get("worker") == "0"
    }
    assert estimates[250_000] == 0 and estimates[500_000] == estimates[math.inf] == 1
    assert "conclave_sfu_transport_feedback" in families and "conclave_sfu_bwe_probes" in families

    # The histogram: one series for worker 0, buckets in seconds from the worker's bounds.
    family = families[HISTOGRAM]
    assert family.type == "histogram"
    samples = [s for s in family.samples if s.labels.get("worker") == "0"]
    buckets = [(float(s.labels["le"]), s.value) for s in samples if s.name == HISTOGRAM + "_bucket"]
    count = next(s.value for s in samples if s.name == HISTOGRAM + "_count")
    total = next(s.value for s in samples if s.name == HISTOGRAM + "_sum")
    bounds = [le for le, _ in buckets]
    assert bounds == [*(b / 1e6 for b in FORWARD_TIME_BUCKETS_US), math.inf]
    cumulative = [value for _, value in buckets]
    assert cumulative == sorted(cumulative) and cumulative[-1] == count
    assert 1 <= count <= PACKETS // FORWARD_TIME_SAMPLE_EVERY + 1  # one packet in 256 is timed
    assert 0 < total < count  # seconds: each fan-out of 4 took well under a second

    # The same numbers the worker reports, converted to seconds (stats are unchanged since:
    # nothing was sent after the last packets drained).
    counters = worker_stats.counters
    assert count == counters["forward_time_samples"] == counters["forward_time_us_le_inf"]
    assert math.isclose(total, counters["forward_time_us_sum"] / 1e6)
    for bound, (_, value) in zip(FORWARD_TIME_BUCKETS_US, buckets):
        assert value == counters[f"forward_time_us_le_{bound}"]


class _Slot:
    def __init__(self, index: int, counters: dict[str, int], gauges: dict[str, float] | None = None) -> None:
        self.index = index
        self._counters = counters
        self._gauges = gauges or {}

    def counters(self) -> dict[str, int]:
        return self._counters

    def gauge(self, name: str) -> float:
        return self._gauges.get(name, 0.0)


def test_paused_tracks_are_one_gauge_by_worker_and_a_fixed_set_of_reasons():
    assert exporter.PAUSE_REASONS == PAUSE_REASONS
    family = exporter._tracks_paused([_Slot(0, {}, {"tracks_paused_last_n": 3.0, "tracks_paused_x": 1.0})])
    assert family.name == "conclave_sfu_tracks_paused" and family.type == "gauge"
    values = {(s.labels["worker"], s.labels["reason"]): s.value for s in family.samples}
    assert values == {("0", "bandwidth"): 0, ("0", "hidden"): 0, ("0", "last_n"): 3}


def test_allocation_counters_and_the_dynacast_gauge_come_from_the_worker():
    worker_counters, _ = Counters().snapshot()
    assert {"allocations", "layer_switches"} <= set(worker_counters)
    names = {key: name for key, (name, _) in exporter.WORKER_COUNTERS.items()}
    assert (names["allocations"], names["layer_switches"]) == ("conclave_sfu_allocations", "conclave_sfu_layer_switches")
    assert exporter.WORKER_GAUGES["dynacast_layers_paused"][0] == "conclave_sfu_dynacast_layers_paused"


def test_refused_nacks_are_one_counter_by_worker_and_a_fixed_set_of_reasons():
    assert exporter.NACK_REFUSED_REASONS == NACK_REFUSED_REASONS
    worker_counters, _ = Counters().snapshot()
    assert {f"nack_refused_{reason}" for reason in NACK_REFUSED_REASONS} <= set(worker_counters)
    family = exporter._nack_refused([_Slot(0, {"nack_refused_budget": 7, "nack_refused_bogus": 3}), _Slot(1, {})])
    assert family.name == "conclave_sfu_nack_refused" and family.type == "counter"
    values = {(s.labels["worker"], s.labels["reason"]): s.value for s in family.samples}
    assert values == {
        ("0", "budget"): 7, ("0", "duplicate"): 0, ("0", "too_old"): 0,
        ("1", "budget"): 0, ("1", "duplicate"): 0, ("1", "too_old"): 0,
    }  # fmt: skip


def test_ice_tcp_counts_by_reason_are_counters_with_the_workers_fixed_reasons():
    assert exporter.TCP_FRAMING_ERRORS == TCP_FRAMING_ERRORS
    assert exporter.TCP_DROP_REASONS == TCP_DROP_REASONS
    counters = Counters()
    counters.tcp_framing_errors["garbage"] += 2
    counters.tcp_dropped_packets["send_buffer_full"] += 5
    counters.tcp_dropped_bytes["send_buffer_full"] += 6000
    worker_counters, _ = counters.snapshot()
    families = {f.name: f for f in exporter._ice_tcp_by_reason([_Slot(0, worker_counters), _Slot(1, {})])}
    assert set(families) == {
        "conclave_sfu_ice_tcp_framing_errors", "conclave_sfu_ice_tcp_dropped_packets", "conclave_sfu_ice_tcp_dropped_bytes",
    }  # fmt: skip
    values = {
        (name, s.labels["worker"], s.labels["reason"]): s.value for name, f in families.items() for s in f.samples
    }
    assert all(f.type == "counter" for f in families.values())
    assert values[("conclave_sfu_ice_tcp_framing_errors", "0", "garbage")] == 2
    assert values[("conclave_sfu_ice_tcp_framing_errors", "0", "zero_length")] == 0
    assert values[("conclave_sfu_ice_tcp_dropped_packets", "0", "send_buffer_full")] == 5
    assert values[("conclave_sfu_ice_tcp_dropped_bytes", "0", "send_buffer_full")] == 6000
    assert values[("conclave_sfu_ice_tcp_dropped_packets", "1", "closed")] == 0
    assert len(values) == 2 * (len(TCP_FRAMING_ERRORS) + 2 * len(TCP_DROP_REASONS))
    assert exporter.WORKER_GAUGES["tcp_connections"][0] == "conclave_sfu_ice_tcp_connections"


def test_webhook_drops_and_attempts_by_outcome_are_counters():
    dropped, attempts = [0], {"delivered": 0, "failed": 0, "gave_up": 0}
    collector = exporter._WebhookCollector(lambda: dropped[0], lambda: attempts)
    dropped[0], attempts["failed"] = 3, 2  # read at each scrape
    drops, tries = list(collector.collect())
    assert (drops.name, drops.type) == ("conclave_webhook_events_dropped", "counter")
    assert [(s.name, s.value) for s in drops.samples] == [("conclave_webhook_events_dropped_total", 3)]
    assert (tries.name, tries.type) == ("conclave_webhook_delivery_attempts", "counter")
    assert {s.labels["outcome"]: s.value for s in tries.samples} == {"delivered": 0, "failed": 2, "gave_up": 0}


def test_active_speaker_changes_are_one_counter_without_labels():
    changes = [0]
    collector = exporter._ActiveSpeakerCollector(lambda: changes[0])
    changes[0] = 4  # read at each scrape
    [family] = list(collector.collect())
    assert (family.name, family.type) == ("conclave_sfu_active_speaker_changes", "counter")
    assert [(s.name, s.labels, s.value) for s in family.samples] == [("conclave_sfu_active_speaker_changes_total", {}, 4)]


class _Worker:
    def __init__(self, index: int, gauges: dict[str, float] | None, up: bool = True) -> None:
        self.index = index
        self.up = up
        self.stats = None if gauges is None else api.WorkerStats(gauges=gauges)


def test_subscriber_estimates_are_a_gauge_histogram_by_worker_in_bits_per_second():
    gauges = estimate_gauges([80_000, 350_000, 1_500_000, 1_500_000, 30_000_000])
    family = exporter._subscriber_estimates([_Worker(0, gauges), _Worker(1, None), _Worker(2, gauges, up=False)])
    assert (family.name, family.type) == ("conclave_sfu_subscriber_estimate_bps", "gaugehistogram")
    buckets = [(float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")]
    assert {s.labels["worker"] for s in family.samples} == {"0"}  # no stats, or down: no series
    assert buckets == [(float(b), c) for b, c in zip((*ESTIMATE_BUCKETS_BPS, math.inf), (1, 1, 2, 2, 4, 4, 4, 4, 5))]
    gsum = next(s.value for s in family.samples if s.name.endswith("_gsum"))
    assert gsum == 80_000 + 350_000 + 3_000_000 + 30_000_000
    assert exporter._subscriber_estimates([_Worker(0, estimate_gauges([]))]).samples[-2].value == 0  # gcount


def test_the_bandwidth_estimation_counters_are_exported_from_the_worker_s_keys():
    worker_counters, worker_dropped = Counters().snapshot()
    keys = {"transport_feedback_received", "remb_received", "bwe_probes", "bwe_probe_packets", "bwe_probe_bytes"}
    assert keys <= set(worker_counters) and keys <= set(exporter.WORKER_COUNTERS)
    assert exporter.WORKER_COUNTERS["transport_feedback_received"][0] == "conclave_sfu_transport_feedback"
    assert exporter.WORKER_COUNTERS["bwe_probes"][0] == "conclave_sfu_bwe_probes"
    assert exporter.WORKER_COUNTERS["bwe_probe_packets"][0] == "conclave_sfu_bwe_probe_packets"
    assert {"malformed_feedback", "feedback_over_budget"} <= set(worker_dropped)
