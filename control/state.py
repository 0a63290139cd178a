"""What one Conclave app holds, and how handlers reach it (`get_state(request.app)`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from config import Config
from control.conference import Conference
from control.meetings import MeetingRegistry
from control.metrics import Metrics
from control.permissions import MeetingPolicy
from control.workers import WorkerSupervisor


@dataclass
class AppState:
    cfg: Config
    meetings: MeetingRegistry
    supervisor: WorkerSupervisor
    conference: Conference
    metrics: Metrics
    policy: MeetingPolicy
    sessions: set[Any] = field(default_factory=set)  # control.signaling.SignalingSession


STATE_KEY = web.AppKey("conclave_state", AppState)


def get_state(app: web.Application) -> AppState:
    return app[STATE_KEY]
