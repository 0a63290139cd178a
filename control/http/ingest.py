"""REST for ingests (issue 12, items 4 and 6): the meeting's host brings a WHIP publisher
or an RTP sender (ffmpeg, GStreamer) into the live meeting (control.meeting.ingest).

    POST   /api/v1/meetings/{number}/ingests                       {"kind": "whip"|"rtp", "name", "srtp"?}
    GET    /api/v1/meetings/{number}/ingests
    DELETE /api/v1/meetings/{number}/ingests/{ingest_id}           revoke: the token stops working, the stream leaves
    POST   /api/v1/meetings/{number}/ingests/{ingest_id}/continue  consent to a recording for it (policy `require`)

The meeting's host (sign-in token, or the host's join token of the live session), its
customer's admin or the operator (`control.http.auth.Auth.moderator` with admins; the CLI,
control.cli.ingest, uses the operator key). A WHIP ingest's token and an RTP ingest's SRTP key are
in the creation's answer only; every change is audited (never with the token).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control.clock import iso_time
from control.errors import ApiError, SignalingError
from control.http.auth import Auth
from control.http.rest import bool_field, invalid, json_body
from control.http.urls import PublicUrls
from control.meeting import numbers
from control.meeting.ingest import Ingests, IngestSession
from control.meeting.protocol import clean_name
from control.recording.service import Recordings
from control.store.base import MeetingRecord
from control.store.ingests import INGEST_KINDS, IngestRecord


class IngestRoutes:
    def __init__(self, *, auth: Auth, ingests: Ingests, recordings: Recordings, urls: PublicUrls) -> None:
        self._auth = auth
        self._ingests = ingests
        self._recordings = recordings  # the host's consent for an ingest
        self._urls = urls

    def register(self, router: web.UrlDispatcher) -> None:
        prefix = "/api/v1/meetings/{number}/ingests"
        router.add_post(prefix, self.create)
        router.add_get(prefix, self.list_ingests)
        router.add_delete(f"{prefix}/{{ingest_id}}", self.revoke)
        router.add_post(f"{prefix}/{{ingest_id}}/continue", self.continue_recording)

    def whip_url(self, request: web.Request, record: MeetingRecord) -> str:
        return f"{self._urls.base(request)}/whip/{numbers.display(record.meeting_number)}"

    def ingest_json(
        self, request: web.Request, record: MeetingRecord, ingest: IngestRecord, session: IngestSession | None
    ) -> dict[str, Any]:
        participant = session.participant if session is not None else None
        body: dict[str, Any] = {
            "id": ingest.id,
            "kind": ingest.kind,
            "name": ingest.name,
            "state": ingest.state,
            "end_reason": ingest.end_reason or None,
            "created_at": iso_time(ingest.created_at),
            "expires_at": iso_time(ingest.expires_at),
            "ended_at": iso_time(ingest.ended_at),
            "connected": participant is not None,
            "participant_id": participant.participant_id if participant is not None else None,
            # Under the consent policy `require` its media waits for the host's continue.
            "media_held": bool(participant is not None and participant.media_held),
        }
        if ingest.kind == "whip":
            body["whip_url"] = self.whip_url(request, record)
        else:
            body["rtp"] = dict(ingest.details)
        return body

    async def create(self, request: web.Request) -> web.Response:
        actor, record = await self._auth.moderator(request, admins_too=True)
        body = await json_body(request)
        kind = body.get("kind")
        if kind not in INGEST_KINDS:
            raise invalid("kind", f"must be one of {', '.join(INGEST_KINDS)}")
        try:
            name = clean_name(body.get("name"))
        except ValueError as exc:
            raise invalid("name", str(exc)) from None
        srtp = bool_field(body, "srtp") or False
        if srtp and kind != "rtp":
            raise invalid("srtp", "only for kind rtp")
        if kind == "whip":
            ingest, token = await self._ingests.create_whip(record, record.host_id, name)
            answer = self.ingest_json(request, record, ingest, None)
            answer["token"] = token  # shown once: the store keeps its hash only
        else:
            made = await self._ingests.create_rtp(record, record.host_id, name, srtp)
            ingest = made.ingest
            answer = self.ingest_json(request, record, ingest, self._ingests.session_of(ingest.id))
            answer["srtp_key"] = made.srtp_key_base64
            answer["commands"] = made.commands
        await self._auth.audit(request, actor, "ingest.create", "meeting", record.id, ingest_id=ingest.id, kind=kind,
                               name=name)  # fmt: skip
        return web.json_response(answer, status=201)

    async def list_ingests(self, request: web.Request) -> web.Response:
        _, record = await self._auth.moderator(request, admins_too=True)
        listed = await self._ingests.list(record)
        return web.json_response({"ingests": [self.ingest_json(request, record, i, s) for i, s in listed]})

    async def revoke(self, request: web.Request) -> web.Response:
        actor, record = await self._auth.moderator(request, admins_too=True)
        ingest = await self._ingests.revoke(record, request.match_info["ingest_id"])
        await self._auth.audit(request, actor, "ingest.revoke", "meeting", record.id, ingest_id=ingest.id)
        return web.json_response(self.ingest_json(request, record, ingest, None))

    async def continue_recording(self, request: web.Request) -> web.Response:
        """The host consents for the ingest (it cannot press Continue): its media goes."""
        actor, record = await self._auth.moderator(request, admins_too=True)
        ingest = await self._ingests.get(record, request.match_info["ingest_id"])
        session = self._ingests.session_of(ingest.id)
        if session is None:
            raise ApiError(409, "not_connected", "the ingest is not in the meeting")
        try:
            await self._recordings.consent(session.meeting, session.participant, "continue")
        except SignalingError as exc:
            raise ApiError(409, exc.code, exc.message) from None
        await self._auth.audit(request, actor, "ingest.consent", "meeting", record.id, ingest_id=ingest.id)
        return web.json_response(self.ingest_json(request, record, ingest, session))
