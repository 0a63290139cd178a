"""The aiohttp application: REST API, signaling WebSocket, web client, metrics, health.

`create_app(cfg)` builds everything; the app's cleanup context opens the store (first-start
bootstrap, meetings left live ended) and starts the SFU workers and the recorder with the
app, and stops them (recordings first, then the processes by PID) and closes the store
when it stops, so an aiohttp test server and `conclave serve` run the same code.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from aiohttp import WSCloseCode, web

from config import Config, resolved_workers
from control.http import accounts as api_accounts
from control.http import meetings as api_meetings
from control.http import recordings as api_recordings
from control.http import sessions as api_sessions
from control.accounts import bootstrap
from control.http import openapi
from control.processes import recorders
from control.meeting.conference import Conference
from control.errors import error_middleware
from control.meeting.model import MeetingRegistry, is_valid_id
from control.metrics.exporter import CONTENT_TYPE, Metrics
from control.metrics.recorder import recorder_metrics, recorder_restarted, update_recorder_metrics
from control.recording.service import Recordings, service
from control.meeting.signaling import CLOSE_FLUSH_TIMEOUT_S, websocket_handler
from control.state import STATE_KEY, AppState, get_state
from control.store import open_store
from control.webhooks import WebhookSender
from control.processes.workers import DEFAULT_COMMAND, WorkerSupervisor, worker_config_json

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 64 * 1024
RECORDINGS_STOP_TIMEOUT_S = 20.0  # shutdown: active recordings close their last segments


def create_app(
    cfg: Config,
    *,
    worker_command: Sequence[str] = DEFAULT_COMMAND,
    recorder_command: Sequence[str] = recorders.DEFAULT_COMMAND,
) -> web.Application:
    meetings = MeetingRegistry(chat_history=cfg.signaling.chat_history)
    supervisor = WorkerSupervisor(
        resolved_workers(cfg),
        worker_config_json(cfg),
        restart_backoff_s=cfg.sfu.restart_backoff_s,
        stats_interval_s=cfg.sfu.stats_interval_s,
        command=worker_command,
    )
    state = AppState(
        cfg=cfg,
        meetings=meetings,
        supervisor=supervisor,
        conference=Conference(
            meetings, supervisor, cfg.signaling.max_participants_per_meeting, cfg.signaling.answer_timeout_s
        ),
        metrics=Metrics(meetings, supervisor),
    )
    state.store = open_store(cfg)
    state.secrets = bootstrap.resolve_secrets(cfg)
    state.webhooks = WebhookSender(state.store)
    recorder = recorders.RecorderSupervisor(
        recorders.recorder_config_json(cfg),
        restart_backoff_s=cfg.sfu.restart_backoff_s,
        stats_interval_s=cfg.sfu.stats_interval_s,
        command=recorder_command,
    )
    recorder_metrics(state.metrics)  # exported (as 0) before the first snapshot
    recorder.add_stats_listener(
        lambda stats: update_recorder_metrics(state.metrics, {"gauges": stats.gauges, "counters": stats.counters})
    )
    recorder.add_restart_listener(lambda: recorder_restarted(state.metrics))
    Recordings(state, recorder)  # the conference's listener: recording jobs follow the meetings
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = state
    app.cleanup_ctx.append(_run_store)
    app.cleanup_ctx.append(_run_workers)
    app.cleanup_ctx.append(_run_recorder)
    app.on_shutdown.append(_close_sockets)
    api_accounts.register(app)
    api_meetings.register(app)
    api_sessions.register(app)
    api_recordings.register(app)
    openapi.register(app)
    app.router.add_get("/api/v1/meetings/{meeting_id}/ws", websocket_handler)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz_handler)
    app.router.add_get("/", index_page)
    app.router.add_get("/m/{meeting_id}", meeting_page)
    app.router.add_get("/join", join_page)
    app.router.add_get("/host", host_page)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    return app


async def _run_store(app: web.Application) -> AsyncIterator[None]:
    """Open the store (migrations), bootstrap an empty one, end meetings left live; at the
    end stop webhook deliveries and close the store (after the workers: cleanup runs in
    reverse order)."""
    state = get_state(app)
    await state.store.open()
    try:
        await bootstrap.first_start(state)
        await bootstrap.end_meetings_left_live(state.store)
        yield
    finally:
        await state.webhooks.stop()
        await state.store.close()


async def _run_workers(app: web.Application) -> AsyncIterator[None]:
    state = get_state(app)
    state.metrics.loop_lag.start()
    await state.supervisor.start()
    yield
    await state.conference.wait_background(timeout=2.0)
    await state.supervisor.stop()
    await state.metrics.loop_lag.stop()


async def _run_recorder(app: web.Application) -> AsyncIterator[None]:
    """The recorder process (after the workers; stopped before them). Recordings a crash
    of control left `active` in the store are over. The server does not wait for the
    recorder to be ready: a recording start waits for it."""
    state = get_state(app)
    recordings = service(state)
    for stale in await state.store.active_recordings():
        await state.store.update_recording(stale.id, state="failed", error="server_restart")
    await recordings.recorder.start(wait_ready_s=0)
    yield
    await recordings.shutdown(RECORDINGS_STOP_TIMEOUT_S)
    await recordings.recorder.stop()


async def _close_sockets(app: web.Application) -> None:
    """Shutdown: tell every signaling client (WebSocket close 1001 "going away")."""
    state = get_state(app)
    state.conference.close_all(WSCloseCode.GOING_AWAY, "server shutting down")
    for session in list(state.sessions):
        session.peer.close(WSCloseCode.GOING_AWAY, "server shutting down")
    for session in list(state.sessions):
        await session.peer.wait_closed(CLOSE_FLUSH_TIMEOUT_S)


# ---------------------------------------------------------------------- ops


async def metrics_handler(request: web.Request) -> web.Response:
    body = get_state(request.app).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def healthz_handler(request: web.Request) -> web.Response:
    supervisor = get_state(request.app).supervisor
    workers = {str(w.index): "up" if w.up else "down" for w in supervisor.workers}
    healthy = supervisor.all_up()
    body = {"status": "ok" if healthy else "unavailable", "workers": workers}
    return web.json_response(body, status=200 if healthy else 503)


# ---------------------------------------------------------------------- web client


def _page(name: str) -> web.StreamResponse:
    path = STATIC_DIR / name
    if not path.is_file():
        raise web.HTTPNotFound(text=f"{name} is not installed")
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


async def index_page(request: web.Request) -> web.StreamResponse:
    return _page("index.html")


async def join_page(request: web.Request) -> web.StreamResponse:
    """The meeting page without a number: it asks for Meeting ID, passcode and name."""
    return _page("meeting.html")


async def host_page(request: web.Request) -> web.StreamResponse:
    """Host sign-in and dashboard."""
    return _page("host.html")


async def meeting_page(request: web.Request) -> web.StreamResponse:
    if not is_valid_id(request.match_info["meeting_id"]):
        raise web.HTTPNotFound(text="no such meeting")
    return _page("meeting.html")
