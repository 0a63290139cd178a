"""The aiohttp application: REST API, signaling WebSocket, web client, metrics, health.

`create_app(cfg)` builds everything; the app's cleanup context starts the SFU workers
with the app and stops them (by PID) when it stops, so an aiohttp test server and
`conclave serve` run the same code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, web

from config import Config, resolved_workers
from control.conference import Conference
from control.errors import ApiError, error_middleware
from control.meetings import MeetingRegistry, is_valid_id
from control.metrics import CONTENT_TYPE, Metrics
from control.permissions import MeetingPolicy
from control.signaling import CLOSE_FLUSH_TIMEOUT_S, websocket_handler
from control.state import STATE_KEY, AppState, get_state
from control.workers import DEFAULT_COMMAND, WorkerSupervisor, worker_config_json

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_TITLE_CHARS = 200
MAX_BODY_BYTES = 64 * 1024


def create_app(
    cfg: Config,
    *,
    policy: MeetingPolicy | None = None,
    worker_command: Sequence[str] = DEFAULT_COMMAND,
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
        conference=Conference(meetings, supervisor, cfg.signaling.max_participants_per_meeting),
        metrics=Metrics(meetings, supervisor),
        policy=policy or MeetingPolicy(),
    )
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = state
    app.cleanup_ctx.append(_run_workers)
    app.on_shutdown.append(_close_sockets)
    app.router.add_post("/api/v1/meetings", create_meeting)
    app.router.add_get("/api/v1/meetings/{meeting_id}", get_meeting)
    app.router.add_get("/api/v1/meetings/{meeting_id}/ws", websocket_handler)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz_handler)
    app.router.add_get("/", index_page)
    app.router.add_get("/m/{meeting_id}", meeting_page)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    return app


async def _run_workers(app: web.Application) -> AsyncIterator[None]:
    state = get_state(app)
    state.metrics.loop_lag.start()
    await state.supervisor.start()
    yield
    await state.conference.wait_background(timeout=2.0)
    await state.supervisor.stop()
    await state.metrics.loop_lag.stop()


async def _close_sockets(app: web.Application) -> None:
    """Shutdown: tell every signaling client (WebSocket close 1001 "going away")."""
    state = get_state(app)
    state.conference.close_all(WSCloseCode.GOING_AWAY, "server shutting down")
    for session in list(state.sessions):
        session.peer.close(WSCloseCode.GOING_AWAY, "server shutting down")
    for session in list(state.sessions):
        await session.peer.wait_closed(CLOSE_FLUSH_TIMEOUT_S)


# ---------------------------------------------------------------------- REST


def join_url(request: web.Request, meeting_id: str) -> str:
    base = get_state(request.app).cfg.http.public_url or f"{request.scheme}://{request.host}"
    return f"{base.rstrip('/')}/m/{meeting_id}"


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_json", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "request body must be a JSON object")
    return body


async def create_meeting(request: web.Request) -> web.Response:
    state = get_state(request.app)
    if not await state.policy.may_create_meeting(request):
        raise ApiError(403, "forbidden", "you may not create meetings")
    body = await _json_body(request)
    title = body.get("title", "")
    if title is None:
        title = ""
    if not isinstance(title, str) or len(title) > MAX_TITLE_CHARS:
        raise ApiError(400, "invalid_field", f"title: must be a string of at most {MAX_TITLE_CHARS} characters")
    meeting = state.meetings.create(title.strip())
    log.info("meeting %s created", meeting.meeting_id)
    payload = {
        "meeting_id": meeting.meeting_id,
        "join_url": join_url(request, meeting.meeting_id),
        "title": meeting.title,
    }
    return web.json_response(payload, status=201)


async def get_meeting(request: web.Request) -> web.Response:
    state = get_state(request.app)
    meeting = state.meetings.get(request.match_info["meeting_id"])
    if meeting is None:
        raise ApiError(404, "not_found", "no such meeting")
    payload = {**meeting.public(), "join_url": join_url(request, meeting.meeting_id)}
    return web.json_response(payload)


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


async def meeting_page(request: web.Request) -> web.StreamResponse:
    if not is_valid_id(request.match_info["meeting_id"]):
        raise web.HTTPNotFound(text="no such meeting")
    return _page("meeting.html")
