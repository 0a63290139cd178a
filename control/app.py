"""The composition root: `create_app(cfg)` builds every service of control, hands each
what it needs, wires who listens to whom, and mounts the routes.

Nothing in control finds a service again through another one: a service receives its
collaborators in its constructor, and the only place that knows them all is
`build_services` below. The app's lifecycle (aiohttp's cleanup contexts, so an aiohttp
test server and `conclave serve` run the same code) opens the store (first-start
bootstrap, meetings left live taken up again), starts the SFU workers and the recorder,
and at shutdown closes every signaling socket (1001), lets recordings go (to continue at
the next start; a cluster's node stops them), drains background tasks,
stops the processes by PID and closes the store, in reverse order of startup.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from config import Config, resolved_announced_ips, resolved_workers
from control.accounts import bootstrap
from control.accounts.bootstrap import Secrets
from control.accounts.service import Accounts
from control.accounts.tokens import Tokens
from control.clock import Clock, LoopClock
from control.cluster.limits import RedisWindows
from control.cluster.load import LoadMeter, WorkerReading
from control.cluster.placement import NodeLoad
from control.cluster.service import Cluster, node_id_of
from control.http import openapi, pages
from control.http.cluster import ClusterRoutes
from control.http.accounts import AccountRoutes
from control.http.auth import Auth
from control.http.health import Health, metrics_handler, metrics_listener
from control.http.ingest import IngestRoutes
from control.http.meetings import MeetingRoutes
from control.http.middleware import error_middleware
from control.http.proxies import trusted_proxy_middleware
from control.http.recordings import RecordingRoutes
from control.http.rejoin import RejoinRoutes
from control.http.requests_log import add_request_id, request_id_middleware
from control.http.sessions import SessionRoutes
from control.http.signaling import SignalingEndpoint
from control.http.transcripts import TranscriptRoutes
from control.http.urls import PublicUrls
from control.http.whep import WhepRoutes
from control.http.whip import WhipRoutes
from control.meeting.adaptive import AdaptiveMedia
from control.meeting.attendance import Attendance
from control.meeting.call_quality import CallQuality
from control.meeting.chat import Chat
from control.meeting.conference import Conference
from control.meeting.drain import Drain
from control.meeting.events import MeetingEvents
from control.meeting.ingest import Ingests
from control.meeting.lifecycle import Lifecycle
from control.meeting.limits import LimitsPolicy
from control.meeting.model import LiveMeeting, MeetingRegistry
from control.meeting.moderation import Moderation
from control.meeting.resumption import Resumption
from control.meeting.webinar import Webinar
from control.meeting.viewer_mix import ViewerMixes
from control.meeting.viewers import Viewers
from control.metrics.certificates import CertificateCollector
from control.metrics.cluster import ClusterCollector
from control.metrics.exporter import Metrics
from control.metrics.quality import QualityCollector
from control.metrics.resumption import ResumptionCollector
from control.metrics.store import StoreCollector
from control.metrics.turn import TurnCollector
from control.metrics.whep import WhepCollector
from control.processes import recorders, turn_settings, workers
from control.processes.recorders import RecorderSupervisor
from control.processes.turn import TurnSupervisor
from control.processes.workers import WorkerSupervisor
from control.recording.archive import RecordingArchive
from control.recording.continuation import continue_recordings
from control.recording.deletion import StorageDeletions
from control.recording.events import RecordingEvents
from control.recording.retention import Retention
from control.recording.service import Recordings
from control.store import open_store, store_location
from control.store.base import MeetingRecord, Store
from control.tasks import BackgroundTasks
from control.webhooks import WebhookSender

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
RECORDINGS_STOP_TIMEOUT_S = 20.0  # shutdown: active recordings close their last segments
BACKGROUND_DRAIN_S = 2.0


class EndedMeetingsLeaveTurn:
    """Lifecycle listener: an ended meeting's TURN credentials stop working at once
    (control.processes.turn_secrets)."""

    def __init__(self, turn: TurnSupervisor) -> None:
        self._turn = turn

    def meeting_started(self, record: MeetingRecord, meeting: LiveMeeting) -> None:
        """Nothing: the meeting's secret is written with its first credential."""

    async def meeting_ended(self, meeting: LiveMeeting, reason: str) -> None:
        self._turn.meeting_ended(meeting.live_session_id)

    async def limits_changed(self, meeting: LiveMeeting) -> None:
        """Nothing: credentials already handed out keep their expiry."""


@dataclass(frozen=True)
class Services:
    """Everything control is made of, built once per app (tests and the CLI read it too)."""

    cfg: Config
    store: Store
    secrets: Secrets
    tokens: Tokens
    accounts: Accounts
    webhooks: WebhookSender
    tasks: BackgroundTasks
    clock: Clock
    limits: LimitsPolicy
    registry: MeetingRegistry
    workers: WorkerSupervisor
    recorder: RecorderSupervisor
    turn: TurnSupervisor
    conference: Conference
    adaptive: AdaptiveMedia
    quality: CallQuality
    chat: Chat
    attendance: Attendance
    moderation: Moderation
    webinar: Webinar
    lifecycle: Lifecycle
    recordings: Recordings
    archive: RecordingArchive
    retention: Retention
    metrics: Metrics
    signaling: SignalingEndpoint
    ingests: Ingests
    viewers: Viewers
    resumption: Resumption  # reconnect credentials, meetings taken up after a restart
    cluster: Cluster | None = None  # with cluster.redis_url only (issue 13)
    drain: Drain | None = None  # with the cluster


SERVICES = web.AppKey("conclave_services", Services)


def build_services(
    cfg: Config,
    *,
    worker_command: Sequence[str] = workers.DEFAULT_COMMAND,
    recorder_command: Sequence[str] = recorders.DEFAULT_COMMAND,
    clock: Clock | None = None,
) -> Services:
    clock = clock or LoopClock()
    bootstrap.private_data_dir(cfg.data_dir)
    store = open_store(cfg)
    secrets = bootstrap.resolve_secrets(cfg)
    tasks = BackgroundTasks()
    tokens = Tokens(secrets.token_secret, store, cfg.auth.join_token_ttl_s)
    outbound = cfg.outbound
    webhooks = WebhookSender(
        store, allowed_networks=outbound.allowed_networks, max_response_bytes=outbound.webhook_max_response_bytes,
        max_pending_per_customer=outbound.webhook_max_pending_per_customer,
    )  # fmt: skip
    limits = LimitsPolicy(cfg.limits, cfg.signaling.max_participants_per_meeting)
    registry = MeetingRegistry()
    worker_supervisor = WorkerSupervisor(
        resolved_workers(cfg),
        workers.worker_config_json(cfg),
        restart_backoff_s=cfg.sfu.restart_backoff_s,
        stats_interval_s=cfg.sfu.stats_interval_s,
        command=worker_command,
    )
    recorder = RecorderSupervisor(
        recorders.recorder_config_json(cfg),
        restart_backoff_s=cfg.sfu.restart_backoff_s,
        stats_interval_s=cfg.sfu.stats_interval_s,
        command=recorder_command,
    )
    turn = TurnSupervisor(turn_settings.resolve(cfg), cfg.data_dir, restart_backoff_s=cfg.sfu.restart_backoff_s)
    conference = Conference(
        registry=registry,
        supervisor=worker_supervisor,
        tokens=tokens,
        clock=clock,
        tasks=tasks,
        answer_timeout_s=cfg.signaling.answer_timeout_s,
        simulcast=cfg.media.accept_simulcast,
        ice_servers=lambda meeting, participant: turn.ice_servers(
            meeting.live_session_id, participant.participant_id, clock.time(), meeting.ends_at
        ),
    )
    meeting_events = MeetingEvents(webhooks)
    chat = Chat(store, clock, cfg.signaling.chat_history, cfg.retention.chat_messages_per_meeting)
    attendance = Attendance(
        store=store, registry=registry, conference=conference, chat=chat, tokens=tokens, limits=limits,
        events=meeting_events, clock=clock, tasks=tasks,
    )  # fmt: skip
    webinar = Webinar(registry=registry, conference=conference, clock=clock)
    moderation = Moderation(
        store=store, registry=registry, conference=conference, attendance=attendance, events=meeting_events,
        webinar=webinar,
    )
    lifecycle = Lifecycle(
        store=store, registry=registry, conference=conference, attendance=attendance, moderation=moderation,
        tokens=tokens, limits=limits, events=meeting_events, clock=clock, tasks=tasks,
    )  # fmt: skip
    resumption = Resumption(
        store=store, registry=registry, attendance=attendance, lifecycle=lifecycle, tokens=tokens, clock=clock,
        tasks=tasks, ttl_s=cfg.auth.reconnect_ttl_s,
    )  # fmt: skip
    deletions = StorageDeletions(store, outbound.allowed_networks)
    recordings = Recordings(
        store=store, conference=conference, attendance=attendance, recorder=recorder, limits=limits,
        events=RecordingEvents(webhooks), tasks=tasks, settings=cfg.recorder, deletions=deletions,
    )  # fmt: skip
    metrics = Metrics(registry, worker_supervisor)
    quality = CallQuality(registry=registry, clock=clock)
    metrics.watch_webhooks(lambda: webhooks.dropped, lambda: webhooks.attempts)
    cluster = None
    if cfg.cluster.redis_url:
        cluster = Cluster(cfg, node_load(cfg, registry, worker_supervisor, clock, lambda: cluster.draining))
    signaling = SignalingEndpoint(
        settings=cfg.signaling, public_url=cfg.http.public_url, tokens=tokens, attendance=attendance, conference=conference, chat=chat,
        recordings=recordings, metrics=metrics, quality=quality, webinar=webinar, cluster=cluster, registry=registry,
    )  # fmt: skip
    services = Services(
        cfg=cfg,
        store=store,
        secrets=secrets,
        tokens=tokens,
        accounts=Accounts(store, secrets.operator_key, cfg.auth.host_login_policy, idle_s=cfg.auth.host_session_idle_s,
                          max_s=cfg.auth.host_session_max_s, clock=clock.time),  # fmt: skip
        webhooks=webhooks,
        tasks=tasks,
        clock=clock,
        limits=limits,
        registry=registry,
        workers=worker_supervisor,
        recorder=recorder,
        turn=turn,
        conference=conference,
        adaptive=AdaptiveMedia(registry=registry, supervisor=worker_supervisor, tasks=tasks),
        quality=quality,
        chat=chat,
        attendance=attendance,
        moderation=moderation,
        webinar=webinar,
        lifecycle=lifecycle,
        recordings=recordings,
        archive=RecordingArchive(store, recordings, deletions, outbound.allowed_networks),
        retention=Retention(store=store, deletions=deletions, settings=cfg.retention, clock=clock, tasks=tasks),
        metrics=metrics,
        signaling=signaling,
        ingests=Ingests(
            store=store, tokens=tokens, attendance=attendance, conference=conference, clock=clock, tasks=tasks,
            listen_ip=cfg.sfu.listen_ip, announced_ip=resolved_announced_ips(cfg)[0],
        ),
        viewers=Viewers(registry=registry, conference=conference, clock=clock, tasks=tasks,
                        mixes=ViewerMixes(conference=conference, recorder=recorder, tasks=tasks)),  # fmt: skip
        resumption=resumption,
        cluster=cluster,
        drain=Drain(cluster=cluster, registry=registry, conference=conference, clock=clock) if cluster else None,
    )
    _wire(services)
    return services


def _wire(s: Services) -> None:
    """Who listens to whom: written here, once."""
    s.workers.add_down_listener(s.conference.worker_down)
    s.workers.add_notification_listener(s.conference.worker_notification)
    s.workers.add_notification_listener(s.adaptive.worker_notification)
    s.conference.add_listener(s.adaptive)
    s.lifecycle.add_listener(s.adaptive)
    # After adaptive media: a pause for bandwidth is recorded before the score reads it.
    s.workers.add_notification_listener(s.quality.worker_notification)
    s.conference.add_listener(s.quality)
    s.metrics.registry.register(QualityCollector(s.quality))
    s.metrics.watch_active_speakers(lambda: s.conference.active_speaker_changes)
    s.conference.add_listener(s.recordings)
    s.conference.add_listener(s.resumption)
    s.metrics.registry.register(ResumptionCollector(s.resumption))
    s.conference.add_listener(s.webinar)
    s.lifecycle.add_listener(s.recordings)
    s.lifecycle.add_listener(s.ingests)
    s.lifecycle.add_listener(EndedMeetingsLeaveTurn(s.turn))
    s.recorder.add_up_listener(s.recordings.recorder_up)
    s.recorder.add_notification_listener(s.recordings.recorder_notification)
    s.recorder.add_stats_listener(lambda stats: s.metrics.recorder.update({"gauges": stats.gauges,
                                                                           "counters": stats.counters}))  # fmt: skip
    s.recorder.add_restart_listener(s.metrics.recorder.recorder_restarted)
    s.metrics.registry.register(TurnCollector(s.turn))
    s.metrics.registry.register(StoreCollector(s.store))
    https_cert = (s.cfg.https_certificate() or ("", ""))[0]
    turn_cert = s.turn.settings.tls_cert if s.turn.managed else ""
    # The same file for both (turns: on the HTTPS certificate): one sample, use "https".
    turn_cert = "" if turn_cert == https_cert else turn_cert
    s.metrics.registry.register(CertificateCollector({"https": https_cert, "turn": turn_cert}))
    # Viewers after the conference: it records a new active speaker before they follow it.
    s.workers.add_notification_listener(s.viewers.worker_notification)
    s.conference.add_listener(s.viewers)
    s.lifecycle.add_listener(s.viewers)
    if s.viewers.mixes is not None:  # the viewers' audio mix lives in the recorder process
        s.recorder.add_up_listener(s.viewers.mixes.recorder_up)
        s.recorder.add_down_listener(s.viewers.mixes.recorder_down)
    s.metrics.registry.register(WhepCollector(s.viewers))
    if s.cluster is not None:
        s.metrics.registry.register(ClusterCollector(s.cluster))
        s.lifecycle.join_cluster(s.cluster.bus)


def node_load(cfg: Config, registry: MeetingRegistry, supervisor: WorkerSupervisor, clock: Clock,
              draining: Callable[[], bool]):  # fmt: skip
    """What this node's heartbeat publishes: its meetings, participants and workers' load."""
    meter = LoadMeter()
    node_id = node_id_of(cfg)

    def load() -> NodeLoad:
        meter.update(clock.time(), [WorkerReading(w.index, w.gauge("cpu_seconds"), w.counters().get("packets_sent", 0))
                                    for w in supervisor.workers if w.up])  # fmt: skip
        participants = sum(len(meeting.participants) for meeting in registry)
        return NodeLoad(node_id, cfg.http.public_url, draining(), meter.cpu, participants, len(registry),
                        meter.packets_per_s)  # fmt: skip

    return load


def create_app(
    cfg: Config,
    *,
    worker_command: Sequence[str] = workers.DEFAULT_COMMAND,
    recorder_command: Sequence[str] = recorders.DEFAULT_COMMAND,
    clock: Clock | None = None,
) -> web.Application:
    services = build_services(cfg, worker_command=worker_command, recorder_command=recorder_command, clock=clock)
    middlewares = [error_middleware]
    if cfg.http.trusted_proxies:
        proxies = [ipaddress.ip_network(network) for network in cfg.http.trusted_proxies]
        middlewares.insert(0, trusted_proxy_middleware(proxies))
    middlewares.insert(0, request_id_middleware)  # outermost: error answers carry the id too
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app.on_response_prepare.append(add_request_id)
    app[SERVICES] = services
    app.cleanup_ctx.append(_run_store)
    app.cleanup_ctx.append(_run_workers)
    app.cleanup_ctx.append(_run_recorder)
    app.cleanup_ctx.append(_run_turn)
    if services.cluster is not None:
        app.cleanup_ctx.append(_run_cluster)
    if cfg.metrics.listen:
        app.cleanup_ctx.append(metrics_listener(services.metrics, cfg.metrics.listen, cfg.metrics.token))
    app.on_shutdown.append(_drain_first)
    app.on_shutdown.append(_close_sockets)
    _mount_routes(app.router, services)
    return app


def _mount_routes(router: web.UrlDispatcher, s: Services) -> None:
    auth = Auth(s.accounts, s.tokens, s.store)
    urls = PublicUrls(s.cfg.http.public_url, s.cluster)
    # Several nodes: every rate limit is also counted once for all of them (control.cluster.limits).
    shared_limits = RedisWindows(s.cluster.redis, s.tasks) if s.cluster is not None else None
    AccountRoutes(
        store=s.store, auth=auth, accounts=s.accounts, lifecycle=s.lifecycle, limits=s.limits, settings=s.cfg.auth,
        allowed_networks=s.cfg.outbound.allowed_networks, archive=s.archive, rate_limited=s.metrics.rate_limited,
        shared_limits=shared_limits,
    ).register(router)
    MeetingRoutes(
        store=s.store, auth=auth, tokens=s.tokens, lifecycle=s.lifecycle, archive=s.archive, limits=s.limits, urls=urls,
        adaptive=s.adaptive, webinar=s.webinar,
    ).register(router)
    SessionRoutes(
        store=s.store, auth=auth, tokens=s.tokens, registry=s.registry, attendance=s.attendance,
        moderation=s.moderation, lifecycle=s.lifecycle, limits=s.limits, urls=urls, settings=s.cfg.auth,
        max_waiting=s.cfg.signaling.max_waiting_per_meeting, rate_limited=s.metrics.rate_limited, quality=s.quality,
        shared_limits=shared_limits,
    ).register(router)  # fmt: skip
    allowed = s.cfg.outbound.allowed_networks
    RecordingRoutes(
        store=s.store, auth=auth, tokens=s.tokens, recordings=s.recordings, archive=s.archive, limits=s.limits,
        allowed_networks=allowed,
    ).register(router)  # fmt: skip
    TranscriptRoutes(
        store=s.store, accounts=s.accounts, tokens=s.tokens, allowed_networks=allowed,
        link_ttl_s=s.cfg.auth.transcript_link_ttl_s,
    ).register(router)  # fmt: skip
    IngestRoutes(auth=auth, ingests=s.ingests, recordings=s.recordings, urls=urls).register(router)
    WhipRoutes(
        store=s.store, ingests=s.ingests, conference=s.conference, settings=s.cfg.auth,
        rate_limited=s.metrics.rate_limited, shared_limits=shared_limits,
    ).register(router)
    WhepRoutes(
        store=s.store, auth=auth, tokens=s.tokens, registry=s.registry, viewers=s.viewers, clock=s.clock
    ).register(router)
    ClusterRoutes(auth=auth, cluster=s.cluster, drain=s.drain).register(router)
    RejoinRoutes(attendance=s.attendance, resumption=s.resumption, urls=urls).register(router)
    openapi.register(router)
    s.signaling.register(router)
    Health(s.workers, s.recorder, s.store, s.turn, s.cluster).register(router)
    if not s.cfg.metrics.listen:
        router.add_get("/metrics", metrics_handler(s.metrics, s.cfg.metrics.token))
    pages.register(router)


async def _run_store(app: web.Application) -> AsyncIterator[None]:
    """Open the store (migrations), bootstrap an empty one, take up the meetings left live
    (control.meeting.resumption), start the retention purges and the renewal of reconnect
    credentials; at the end stop them and webhook deliveries and close the store
    (after the workers: cleanup runs in reverse order, and the background tasks, a purge
    running among them, are drained by then)."""
    services = app[SERVICES]
    await services.store.open()
    log.info("store: %s, schema version %d", store_location(services.cfg), await services.store.schema_version())
    try:
        await bootstrap.first_start(services.store, services.cfg.data_dir)
        if services.cluster is None:
            # One node: whatever the store says is live was this node's: it goes on here,
            # its people come back with their reconnect credentials. In a cluster the
            # meetings are placed again at their next join (another node may hold them).
            await services.resumption.resume_left_live()
        services.retention.start()
        services.resumption.start_refreshing()
        yield
    finally:
        services.resumption.stop_refreshing()
        services.retention.stop()
        await services.webhooks.stop()
        await services.store.close()


async def _run_workers(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    services.metrics.loop_lag.start()
    await services.workers.start()
    yield
    await services.tasks.drain(BACKGROUND_DRAIN_S)
    await services.workers.stop()
    await services.metrics.loop_lag.stop()


async def _run_recorder(app: web.Application) -> AsyncIterator[None]:
    """The recorder process (after the workers; stopped before them). One node: the
    recordings the store has active continue with their meetings, or fail without them
    (control.recording.continuation), and at the end they are let go unfinished, to
    continue at the next start; a cluster's node stops its recordings. The server does
    not wait for the recorder to be ready: a recording start waits for it."""
    services = app[SERVICES]
    if services.cluster is None:
        await continue_recordings(services.recordings, services.store, services.registry, services.cfg.recorder)
    await services.recorder.start(wait_ready_s=0)
    yield
    if services.cluster is None:
        services.recordings.suspend()
    else:
        await services.recordings.shutdown(RECORDINGS_STOP_TIMEOUT_S)
    await services.recorder.stop()


async def _run_turn(app: web.Application) -> AsyncIterator[None]:
    """The managed coturn (control.processes.turn; nothing in other modes), stopped first."""
    turn = app[SERVICES].turn
    await turn.start()
    yield
    await turn.stop()


async def _run_cluster(app: web.Application) -> AsyncIterator[None]:
    """This node in the cluster's Redis (registered, subscribed), left first at the end."""
    cluster = app[SERVICES].cluster
    await cluster.start()
    yield
    await cluster.stop()


async def _drain_first(app: web.Application) -> None:
    """Several nodes: a stopping node hands its meetings to the others (after
    `shutdown.drain_timeout_s`) instead of ending them."""
    services = app[SERVICES]
    if services.drain is not None:
        moved = await services.drain.run(services.cfg.shutdown.drain_timeout_s)
        log.info("shutdown: %d meeting(s) handed to other nodes", moved)


async def _close_sockets(app: web.Application) -> None:
    """Shutdown: tell every signaling client (WebSocket close 1001 "going away")."""
    services = app[SERVICES]
    services.conference.close_all()
    await services.signaling.close_all()
