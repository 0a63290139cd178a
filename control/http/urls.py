"""The server's public URLs as clients must use them: `http.public_url` when set (behind a
proxy, with TLS), else as the request reached the server."""

from __future__ import annotations

from aiohttp import web

from control.meeting import numbers
from control.store.base import MeetingRecord


class PublicUrls:
    def __init__(self, public_url: str) -> None:
        self._public_url = public_url.rstrip("/")

    def base(self, request: web.Request) -> str:
        return self._public_url or f"{request.scheme}://{request.host}"

    def signaling(self, request: web.Request, meeting: MeetingRecord) -> str:
        scheme, rest = self.base(request).split("://", 1)
        number = numbers.display(meeting.meeting_number)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/api/v1/meetings/{number}/ws"

    def join(self, request: web.Request, meeting: MeetingRecord, link_token: str) -> str:
        return f"{self.base(request)}/m/{numbers.display(meeting.meeting_number)}?t={link_token}"
