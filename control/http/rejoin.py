"""`POST /api/v1/meetings/{number}/rejoin` (control.meeting.resumption): an admitted
participant whose connection was lost (the server restarted, the node holding the meeting
died) trades their reconnect credential for a join token marked resumed and the socket URL
of the node that holds the meeting now. Any node answers it (the page's origin, the bot's
REST base URL): it routes like a join.

    {"credential": "..."} -> 200 {"token", "participant_id", "ws_url", "status": "admitted",
                                  "role", "meeting": {"title", "meeting_number"}}

401 invalid_token / token_expired (the credential), 403 wrong_meeting, removed,
not_admitted, invalid_credential, 409 meeting_ended, 404 for an unknown number.
"""

from __future__ import annotations

from aiohttp import web

from control.errors import ApiError
from control.http.rest import json_body
from control.http.urls import PublicUrls
from control.meeting import numbers
from control.meeting.attendance import Attendance
from control.meeting.resumption import Resumption

MAX_CREDENTIAL_CHARS = 4096


class RejoinRoutes:
    def __init__(self, *, attendance: Attendance, resumption: Resumption, urls: PublicUrls) -> None:
        self._attendance = attendance
        self._resumption = resumption
        self._urls = urls

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/v1/meetings/{number}/rejoin", self.rejoin)

    async def rejoin(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        credential = body.get("credential")
        if not isinstance(credential, str) or not credential or len(credential) > MAX_CREDENTIAL_CHARS:
            raise ApiError(400, "invalid_field", "credential: the reconnect credential the server sent (a string)")
        record = await self._attendance.find_meeting(request.match_info["number"])
        if record is None:
            raise ApiError(404, "not_found", "no such meeting")
        rejoined = await self._resumption.rejoin(record, credential)
        route = await self._urls.route(request, record)  # the node holding it (placed anew if its node died)
        return web.json_response(
            {
                "token": rejoined.token,
                "participant_id": rejoined.person.id,
                "ws_url": route.ws_url,
                "status": "admitted",
                "role": rejoined.person.role,
                "meeting": {"title": record.title, "meeting_number": numbers.display(record.meeting_number)},
            }
        )
