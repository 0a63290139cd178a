"""Conclave's Grafana dashboard, as code (grafanalib): `python deploy/grafana/dashboard.py`
writes deploy/grafana/conclave.json, the file to import into Grafana (a Prometheus data
source scraping the server as job "conclave"). tests/deploy/test_dashboard.py checks the
JSON is what this code makes, and evaluates every panel's query in a real Prometheus
scraping a real server with a meeting in it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, Target, Template, Templating, TimeSeries

OUTPUT = Path(__file__).resolve().parent / "conclave.json"
DATASOURCE = "${datasource}"
WIDTH, HEIGHT = 12, 8
SEL = 'job="conclave", instance=~"$instance"'

# (title, unit, [(PromQL, legend)]): one time series panel each, two per row.
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Meetings and participants", "short", [
        (f"sum(conclave_meetings{{{SEL}}})", "meetings"),
        (f"sum(conclave_participants{{{SEL}}})", "participants"),
        (f"sum(conclave_tracks{{{SEL}}})", "tracks"),
    ]),
    ("Forwarded packets per second, by worker", "pps", [
        (f"sum by (instance, worker) (rate(conclave_worker_packets_sent_total{{{SEL}}}[1m]))", "{{instance}} w{{worker}} out"),
        (f"sum by (instance, worker) (rate(conclave_worker_packets_received_total{{{SEL}}}[1m]))", "{{instance}} w{{worker}} in"),
    ]),
    ("CPU per worker", "percentunit", [
        (f"rate(conclave_worker_cpu_seconds{{{SEL}}}[1m])", "{{instance}} w{{worker}}"),
    ]),
    ("Forwarding time (producer to last consumer's send)", "s", [
        (f"histogram_quantile(0.5, sum by (le) (rate(conclave_sfu_forward_latency_seconds_bucket{{{SEL}}}[1m])))", "p50"),
        (f"histogram_quantile(0.99, sum by (le) (rate(conclave_sfu_forward_latency_seconds_bucket{{{SEL}}}[1m])))", "p99"),
    ]),
    ("Keyframe requests and retransmissions per second", "short", [
        (f"sum(rate(conclave_worker_pli_received_total{{{SEL}}}[1m]))", "PLI from subscribers"),
        (f"sum(rate(conclave_worker_pli_sent_total{{{SEL}}}[1m]))", "PLI to publishers"),
        (f"sum(rate(conclave_worker_nack_requested_total{{{SEL}}}[1m]))", "NACKed packets"),
        (f"sum(rate(conclave_worker_nack_answered_total{{{SEL}}}[1m]))", "retransmitted"),
    ]),
    ("Dropped packets per second, by reason", "pps", [
        (f"sum by (reason) (rate(conclave_worker_packets_dropped_total{{{SEL}}}[1m]))", "{{reason}}"),
    ]),
    ("Subscribers' bandwidth estimates and paused video", "short", [
        (f"sum(conclave_sfu_subscriber_estimate_bps_gsum{{{SEL}}}) / sum(conclave_sfu_subscriber_estimate_bps_gcount{{{SEL}}})", "mean estimate (bit/s)"),
        (f"sum by (reason) (conclave_sfu_tracks_paused{{{SEL}}})", "paused: {{reason}}"),
    ]),
    ("Participants by connection quality", "short", [
        (f"sum by (quality) (conclave_participant_quality{{{SEL}}})", "{{quality}}"),
        (f"sum(conclave_participant_quality{{{SEL}, quality=\"poor\"}})"
         f" / clamp_min(sum(conclave_participant_quality{{{SEL}}}), 1)", "poor share"),
    ]),
    ("Round trip to subscribers and packet loss", "short", [
        (f"histogram_quantile(0.5, sum by (le) (rate(conclave_rtt_seconds_bucket{{{SEL}}}[5m])))", "RTT p50 (s)"),
        (f"histogram_quantile(0.95, sum by (le) (rate(conclave_rtt_seconds_bucket{{{SEL}}}[5m])))", "RTT p95 (s)"),
        (f"sum by (direction) (rate(conclave_loss_ratio_sum{{{SEL}}}[5m]))"
         f" / sum by (direction) (rate(conclave_loss_ratio_count{{{SEL}}}[5m]))", "mean loss ratio: {{direction}}"),
    ]),
    ("Recording: spool and transcription backlog", "bytes", [
        (f"sum(conclave_recording_spool_bytes{{{SEL}}})", "spool bytes"),
        (f"sum(conclave_recordings_active{{{SEL}}})", "active recordings"),
        (f"sum(conclave_transcription_backlog_seconds{{{SEL}}})", "transcription backlog (s)"),
    ]),
    ("Recording uploads per minute", "short", [
        (f"sum(increase(conclave_recording_upload_attempts_total{{{SEL}}}[5m])) / 5", "attempts"),
        (f"sum(increase(conclave_recording_upload_failures_total{{{SEL}}}[5m])) / 5", "failures"),
    ]),
    ("Webhook deliveries per minute, by outcome", "short", [
        (f"sum by (outcome) (increase(conclave_webhook_delivery_attempts_total{{{SEL}}}[5m])) / 5", "{{outcome}}"),
        (f"sum(increase(conclave_webhook_events_dropped_total{{{SEL}}}[5m])) / 5", "dropped"),
    ]),
    ("Restarts (last hour)", "short", [
        (f"sum by (worker) (increase(conclave_worker_restarts_total{{{SEL}}}[1h]))", "worker {{worker}}"),
        (f"sum(increase(conclave_recorder_restarts_total{{{SEL}}}[1h]))", "recorder"),
    ]),
    ("Control: event loop lag and refused requests", "short", [
        (f"max(conclave_event_loop_lag_seconds{{{SEL}}})", "loop lag (s)"),
        (f"sum by (limit) (rate(conclave_http_rate_limited_total{{{SEL}}}[5m]))", "rate limited: {{limit}}"),
    ]),
]


def panel(index: int, title: str, unit: str, queries: list[tuple[str, str]]) -> TimeSeries:
    targets = [Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + i), datasource=DATASOURCE)
               for i, (expr, legend) in enumerate(queries)]  # fmt: skip
    position = GridPos(h=HEIGHT, w=WIDTH, x=(index % 2) * WIDTH, y=(index // 2) * HEIGHT)
    return TimeSeries(title=title, dataSource=DATASOURCE, targets=targets, gridPos=position, unit=unit)


def dashboard() -> Dashboard:
    templating = Templating(list=[
        Template(name="datasource", type="datasource", query="prometheus", label="Data source", default="Prometheus"),
        Template(name="instance", label="Server", dataSource=DATASOURCE, includeAll=True, multi=True,
                 query='label_values(conclave_worker_up{job="conclave"}, instance)', default="$__all"),
    ])  # fmt: skip
    return Dashboard(
        title="Conclave", uid="conclave", tags=["conclave"], timezone="browser", refresh="30s",
        templating=templating, panels=[panel(i, *spec) for i, spec in enumerate(PANELS)],
    ).auto_panel_ids()  # fmt: skip


def render() -> str:
    return json.dumps(dashboard().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    sys.stdout.write(f"wrote {OUTPUT}\n")
