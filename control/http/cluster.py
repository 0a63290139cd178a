"""REST for the cluster (operator only; docs/cluster.md): the living nodes as this node
sees them, and draining this node."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from control.cluster.service import Cluster
from control.errors import ApiError
from control.http.auth import Auth
from control.http.permissions import require_operator
from control.http.rest import json_body
from control.meeting.drain import Drain

DEFAULT_DRAIN_TIMEOUT_S = 600.0
MAX_DRAIN_TIMEOUT_S = 86_400.0


class ClusterRoutes:
    def __init__(self, *, auth: Auth, cluster: Cluster | None, drain: Drain | None) -> None:
        self._auth = auth
        self._cluster = cluster
        self._drain = drain

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/cluster", self.status)
        router.add_post("/api/v1/cluster/drain", self.drain)

    async def status(self, request: web.Request) -> web.Response:
        cluster = await self._operator_cluster(request)
        nodes = await cluster.registry.nodes()
        return web.json_response({
            "node_id": cluster.node_id,
            "draining": cluster.draining,
            "nodes": [asdict(node) for node in sorted(nodes.values(), key=lambda n: n.node_id)],
        })  # fmt: skip

    async def drain(self, request: web.Request) -> web.Response:
        cluster = await self._operator_cluster(request)
        body: dict[str, Any] = await json_body(request) if request.can_read_body else {}
        timeout = body.get("timeout_s", DEFAULT_DRAIN_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout <= MAX_DRAIN_TIMEOUT_S:
            raise ApiError(400, "invalid_field", f"timeout_s: a number of seconds from 0 to {MAX_DRAIN_TIMEOUT_S:.0f}")
        assert self._drain is not None  # made with the cluster
        started = self._drain.start(float(timeout))
        return web.json_response({"node_id": cluster.node_id, "draining": True, "started": started}, status=202)

    async def _operator_cluster(self, request: web.Request) -> Cluster:
        require_operator(await self._auth.authenticate(request))
        if self._cluster is None:
            raise ApiError(409, "not_clustered", "this server is a single node (cluster.redis_url is not set)")
        return self._cluster
