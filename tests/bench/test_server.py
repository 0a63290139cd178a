"""bench.server: the server's /metrics page read per worker."""

from __future__ import annotations

from bench.server import parse_metrics


def test_metrics_page_is_read_per_worker():
    text = "\n".join(
        [
            "# HELP conclave_worker_packets_sent_total Packets the worker sent",
            'conclave_worker_packets_sent_total{worker="0"} 1234.0',
            'conclave_worker_packets_sent_total{worker="1"} 5.0',
            'conclave_worker_packets_dropped_total{reason="srtp_error",worker="1"} 7.0',
            'conclave_worker_consumers{worker="0"} 32.0',
            'conclave_meetings 3.0',
        ]
    )
    workers = parse_metrics(text)
    assert workers[0].counters == {"packets_sent": 1234.0, "consumers": 32.0}
    assert workers[1].dropped == {"srtp_error": 7.0}


def test_pipe_counters_are_read_per_worker_beside_the_workers_own():
    text = "\n".join(
        [
            'conclave_sfu_pipe_packets_sent_total{worker="0"} 900.0',
            'conclave_sfu_pipe_packets_received_total{worker="1"} 901.0',
            'conclave_sfu_pipe_transports{worker="0"} 1.0',
            'conclave_sfu_allocations_total{worker="0"} 4.0',
        ]
    )
    workers = parse_metrics(text)
    assert workers[0].counters == {"pipe_packets_sent": 900.0, "pipe_transports": 1.0}
    assert workers[1].counters == {"pipe_packets_received": 901.0}
