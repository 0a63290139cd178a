"""What one Conclave app holds, and how handlers reach it (`get_state(request.app)`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from config import Config
from control.meeting.conference import Conference
from control.meeting.model import MeetingRegistry
from control.metrics.exporter import Metrics
from control.store.base import Store
from control.processes.workers import WorkerSupervisor


@dataclass
class AppState:
    cfg: Config
    meetings: MeetingRegistry
    supervisor: WorkerSupervisor
    conference: Conference
    metrics: Metrics
    sessions: set[Any] = field(default_factory=set)  # control.meeting.signaling.SignalingSession
    # Accounts (issue 4): the store (opened at app startup), the operator key and join-token
    # secret (control.accounts.bootstrap.Secrets), and the webhook sender (control.webhooks).
    store: Store = None  # type: ignore[assignment]  # always set by create_app
    secrets: Any = None
    webhooks: Any = None


STATE_KEY = web.AppKey("conclave_state", AppState)


def get_state(app: web.Application) -> AppState:
    return app[STATE_KEY]
