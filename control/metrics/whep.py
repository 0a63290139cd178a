"""WHEP viewers in Prometheus (control.meeting.viewers): how many watch now, how each
WHEP session request ended (a bounded set of outcomes), and their audio mixes
(control.meeting.viewer_mix): how many run now, and how often one started, failed to
start, was lost with the recorder or stopped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control.meeting.viewer_mix import EVENTS
from control.meeting.viewers import Viewers

# Every outcome a WHEP POST can have, exported from the start (at 0) so rates exist.
OUTCOMES = ("started", "full", "not_live", "bad_offer", "unauthorized", "forbidden", "failed")


class WhepCollector(Collector):
    def __init__(self, viewers: Viewers) -> None:
        self._viewers = viewers

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("conclave_whep_viewers", "WHEP viewers watching meetings now",
                                value=self._viewers.count())  # fmt: skip
        sessions = CounterMetricFamily("conclave_whep_sessions", "WHEP session requests by outcome",
                                       labels=["outcome"])  # fmt: skip
        for outcome in OUTCOMES:
            sessions.add_metric([outcome], self._viewers.sessions.get(outcome, 0))
        yield sessions
        mixes = self._viewers.mixes
        yield GaugeMetricFamily("conclave_whep_audio_mixes", "Meetings whose viewers hear the server's audio mix now",
                                value=mixes.running() if mixes is not None else 0)  # fmt: skip
        events = CounterMetricFamily("conclave_whep_audio_mix_events", "Viewer audio mixes started, failed to "
                                     "start, lost with the recorder, or stopped", labels=["event"])  # fmt: skip
        for event in EVENTS:
            events.add_metric([event], mixes.events.get(event, 0) if mixes is not None else 0)
        yield events
