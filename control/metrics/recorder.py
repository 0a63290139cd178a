"""Prometheus metrics of the recorder, from its `RECORDER_GET_STATS` snapshots.

The recorder supervisor (control.processes.recorders) polls the recorder and hands each snapshot
here; /metrics renders the latest one. Nothing is computed per packet.

    metrics.recorder.update({"gauges": {...}, "counters": {...}})
    metrics.recorder.recorder_restarted()        # each time the supervisor restarts it

Counters stay monotonic across recorder restarts (a new recorder counts from 0 again):
when a counter goes down, what the old process had counted is kept as a base.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Recorder stats gauge key -> (metric name, help).
RECORDER_GAUGES = {
    "active_recordings": ("conclave_recordings_active", "Recordings the recorder is writing"),
    "spool_bytes": ("conclave_recording_spool_bytes", "Bytes waiting in the recorder's spool for upload"),
    "lag_seconds": (
        "conclave_recording_lag_seconds",
        "Longest time since a recorded track's newest media was written",
    ),
    "transcription_backlog_seconds": (
        "conclave_transcription_backlog_seconds",
        "Seconds of recorded audio not transcribed yet",
    ),
}
# Recorder stats counter key -> (metric name without _total, help).
RECORDER_COUNTERS = {
    "bytes_written": ("conclave_recording_bytes_written", "Bytes of recorded media written"),
    "segments_flushed": ("conclave_recording_segments_flushed", "Recording segments closed and queued for upload"),
    "upload_attempts": ("conclave_recording_upload_attempts", "Uploads to customer storage attempted"),
    "upload_failures": ("conclave_recording_upload_failures", "Uploads to customer storage that failed"),
    "packets_received": ("conclave_recorder_packets_received", "RTP packets the recorder received from the SFU"),
    "packets_lost": ("conclave_recorder_packets_lost", "RTP packets the recorder never got, even after NACKs"),
    "nacks_sent": ("conclave_recorder_nacks_sent", "Retransmission requests (NACK) the recorder sent"),
    "plis_sent": ("conclave_recorder_plis_sent", "Keyframe requests (PLI) the recorder sent"),
    "mix_frames_sent": ("conclave_recorder_mix_frames_sent", "20 ms frames of WHEP viewers' audio mixes sent"),
    "mix_frames_skipped": (
        "conclave_recorder_mix_frames_skipped",
        "20 ms frames of WHEP viewers' audio mixes skipped because the recorder's loop was late",
    ),
}
# Recorder stats counter key -> the reason label of conclave_recorder_packets_dropped_total.
RECORDER_DROPS = {
    "packets_unknown_ssrc": "unknown_ssrc",
    "packets_unknown_peer": "unknown_peer",
    "packets_malformed": "malformed",
}
DROPS = ("conclave_recorder_packets_dropped", "Packets the recorder dropped, by reason")
RESTARTS = ("conclave_recorder_restarts", "Times the recorder process was restarted")


class RecorderMetrics(Collector):
    """The latest recorder snapshot as metrics (registered on control's registry)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # /metrics may render on another thread
        self._gauges: dict[str, float] = {}
        self._last: dict[str, int] = {}  # counters as the current recorder reported them
        self._base: dict[str, int] = {}  # what earlier recorder processes had counted
        self.restarts = 0

    def update(self, stats: Mapping[str, Any]) -> None:
        """Take a snapshot: {"gauges": {...}, "counters": {...}} (RecorderStats), or one
        flat dict with the keys of both."""
        gauges = stats.get("gauges") if isinstance(stats.get("gauges"), Mapping) else stats
        counters = stats.get("counters") if isinstance(stats.get("counters"), Mapping) else stats
        with self._lock:
            for key in RECORDER_GAUGES:
                value = gauges.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._gauges[key] = float(value)
            for key in (*RECORDER_COUNTERS, *RECORDER_DROPS):
                value = counters.get(key)
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                value = int(value)
                last = self._last.get(key, 0)
                if value < last:  # a new recorder process: keep what the old one counted
                    self._base[key] = self._base.get(key, 0) + last
                self._last[key] = value

    def recorder_restarted(self) -> None:
        with self._lock:
            self.restarts += 1
            # The new process starts from 0: bank the old counts now (an update may come
            # only after it has counted past them again).
            for key, value in self._last.items():
                self._base[key] = self._base.get(key, 0) + value
            self._last = {}
            self._gauges["active_recordings"] = 0.0

    def total(self, key: str) -> int:
        with self._lock:
            return self._base.get(key, 0) + self._last.get(key, 0)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            for key, (name, text) in RECORDER_GAUGES.items():
                yield GaugeMetricFamily(name, text, value=self._gauges.get(key, 0.0))
            for key, (name, text) in RECORDER_COUNTERS.items():
                yield CounterMetricFamily(name, text, value=self._base.get(key, 0) + self._last.get(key, 0))
            dropped = CounterMetricFamily(*DROPS, labels=["reason"])
            for key, reason in RECORDER_DROPS.items():
                dropped.add_metric([reason], self._base.get(key, 0) + self._last.get(key, 0))
            yield dropped
            yield CounterMetricFamily(*RESTARTS, value=self.restarts)
