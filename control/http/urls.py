"""The server's public URLs as clients must use them: `http.public_url` when set (behind a
proxy, with TLS), else as the request reached the server. In a cluster, a meeting's
signaling URL is that of the node holding it (control.cluster, docs/cluster.md)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from control.cluster.placement import NoNodeAvailable
from control.cluster.service import Cluster, ClusterUnavailable
from control.errors import ApiError
from control.meeting import numbers
from control.store.base import MeetingRecord


class PublicUrls:
    def __init__(self, public_url: str, cluster: Cluster | None = None) -> None:
        self._public_url = public_url.rstrip("/")
        self._cluster = cluster

    def base(self, request: web.Request) -> str:
        return self._public_url or f"{request.scheme}://{request.host}"

    def signaling(self, request: web.Request, meeting: MeetingRecord) -> str:
        return signaling_at(self.base(request), meeting)

    def join(self, request: web.Request, meeting: MeetingRecord, link_token: str) -> str:
        return f"{self.base(request)}/m/{numbers.display(meeting.meeting_number)}?t={link_token}"

    async def route(self, request: web.Request, meeting: MeetingRecord) -> Route:
        """Where the meeting's clients connect: the node that holds it (placed now if it has
        none); 503 `cluster_unavailable` while the cluster cannot place it."""
        if self._cluster is None:
            return Route(self.signaling(request, meeting), node_id="", here=True)
        try:
            node = await self._cluster.host_of(meeting.id)
        except (ClusterUnavailable, NoNodeAvailable):
            raise ApiError(503, "cluster_unavailable", "the cluster cannot place meetings now; try again") from None
        here = node.node_id == self._cluster.node_id
        return Route(signaling_at(node.public_url, meeting), node.node_id, here)


@dataclass(frozen=True, slots=True)
class Route:
    ws_url: str  # the signaling WebSocket on the node holding the meeting
    node_id: str  # that node ("" on a single node)
    here: bool  # that node is this one


def signaling_at(base_url: str, meeting: MeetingRecord) -> str:
    """The meeting's signaling WebSocket URL on the server at `base_url`."""
    return numbers.signaling_url(base_url, meeting.meeting_number)
