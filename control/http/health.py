"""For load balancers, Kubernetes probes and Prometheus: `/healthz`, `/readyz`, `/metrics`.

- `/healthz`: 200 while the process serves HTTP at all (liveness: restart it if not).
- `/readyz`: 200 when it can serve a meeting: every SFU worker up, the store answering
  (within READY_STORE_TIMEOUT_S), the recorder up, the managed coturn up when there is
  one, the cluster's Redis answering this node's heartbeat when there is a cluster; else
  503 naming what fails (`failing`), with every check's state (`checks`).
- `/metrics`: Prometheus text, on the HTTP port or only on a listener of its own
  (`metrics.listen`), behind a bearer token when `metrics.token` is set.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from control.cluster.service import Cluster
from control.metrics.exporter import CONTENT_TYPE, Metrics
from control.processes.recorders import RecorderSupervisor
from control.processes.turn import TurnSupervisor
from control.processes.workers import WorkerSupervisor
from control.store.base import Store

log = logging.getLogger(__name__)

READY_STORE_TIMEOUT_S = 2.0


class Health:
    def __init__(self, workers: WorkerSupervisor, recorder: RecorderSupervisor, store: Store,
                 turn: TurnSupervisor, cluster: Cluster | None = None) -> None:  # fmt: skip
        self._workers = workers
        self._recorder = recorder
        self._store = store
        self._turn = turn
        self._cluster = cluster

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/healthz", self.healthz)
        router.add_get("/readyz", self.readyz)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        store = await self._store_state()
        checks: dict[str, Any] = {
            "workers": {str(w.index): "up" if w.up else "down" for w in self._workers.workers},
            "store": store,
            "recorder": "up" if self._recorder.up else "down",
        }
        failing = [name for name, ok in (("workers", self._workers.all_up()), ("store", store == "ok"),
                                         ("recorder", self._recorder.up)) if not ok]  # fmt: skip
        if self._turn.managed:
            checks["turn"] = "up" if self._turn.up else "down"
            if not self._turn.up:
                failing.append("turn")
        if self._cluster is not None:
            checks["redis"] = "up" if self._cluster.reachable else "down"
            if not self._cluster.reachable:
                failing.append("redis")
        body = {"status": "unavailable" if failing else "ok", "failing": failing, "checks": checks}
        return web.json_response(body, status=503 if failing else 200)

    async def _store_state(self) -> str:
        try:
            await asyncio.wait_for(self._store.schema_version(), READY_STORE_TIMEOUT_S)
        except asyncio.TimeoutError:
            return "timeout"
        except Exception as exc:  # any failure of the store is "not ready", said by its kind
            log.warning("readyz: the store does not answer: %s", exc)
            return "error"
        return "ok"


def metrics_handler(metrics: Metrics, token: str):
    """`/metrics`; with `token`, only for `Authorization: Bearer <token>` (401 otherwise)."""
    expected = f"Bearer {token}".encode()

    async def handler(request: web.Request) -> web.Response:
        if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return web.json_response({"error": {"code": "unauthorized", "message": "a bearer token is required"}},
                                     status=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})  # fmt: skip
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    return handler


def metrics_listener(metrics: Metrics, listen: str, token: str):
    """A cleanup context serving only `/metrics` on `listen` (IP:PORT) for the app's life."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        host, _, port = listen.rpartition(":")
        only = web.Application()
        only.router.add_get("/metrics", metrics_handler(metrics, token))
        runner = web.AppRunner(only, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host.strip("[]"), int(port))
        await site.start()
        log.info("metrics: served on http://%s/metrics only", listen)
        try:
            yield
        finally:
            await runner.cleanup()

    return run
