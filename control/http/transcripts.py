"""Transcripts: the page `/t/<recording_id>` (HTML) and `GET /api/v1/recordings/{id}/transcript`.

Only the meeting's host and its participants may read one; anyone else gets 403 (no
credentials: 401 for the JSON, 403 for the page, which has no sign-in of its own). The
customer's admin and the operator are not readers: they see that a transcript exists,
never what was said (control.http.recordings refuses them its file links too).
- The host: their host session (`Authorization: Bearer hs_...`), or their join token
  of that meeting (while the sign-in that started it lasts).
- A participant: the join token they got for that meeting, still valid (not expired,
  not removed or denied), and they were there: in the live session the recording belongs
  to, and on its consent ledger (everyone present while recording or transcription runs
  is on it) or admitted right now.
Those credentials go only in the `Authorization` header. A link is
`GET /api/v1/recordings/{id}/transcript/link` (the same readers) → `/t/<id>?t=<token>`:
a purpose-scoped token (audience `conclave:transcript`, this recording only) that expires
after `auth.transcript_link_ttl_s`; a URL never carries a sign-in or a join token (URLs
end up in histories, logs and Referer headers). The page says that transcripts may be
incomplete or inaccurate, and is sent with no-store, no-referrer and a CSP that allows no
script.
"""

from __future__ import annotations

import html
import json
import logging
import time
from typing import Any

from aiohttp import web

from common.storage import InvalidKey, StorageError, StorageNotFound, open_storage
from control.accounts.service import HOST_TOKEN_PREFIX, Accounts
from control.accounts.tokens import TokenError, Tokens
from control.clock import iso_time
from control.errors import ApiError
from control.http.auth import bearer_token, unauthorized
from control.http.permissions import forbidden
from control.meeting import numbers
from control.recording.storage_settings import resolve_storage
from control.store.base import MeetingRecord, Recording, RecordingFile, Store

log = logging.getLogger(__name__)

DISCLAIMER = "Transcripts may be incomplete or inaccurate."
MAX_TRANSCRIPT_BYTES = 16 * 1024 * 1024
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}


class NotReady(Exception):
    """The recording has no transcript (yet)."""


def _token(request: web.Request) -> str | None:
    """A credential of a reader, from the header only (never from the URL)."""
    return bearer_token(request)


class TranscriptRoutes:
    def __init__(
        self, *, store: Store, accounts: Accounts, tokens: Tokens, allowed_networks: tuple[str, ...] = (),
        link_ttl_s: int = 3600,
    ) -> None:  # fmt: skip
        self._link_ttl_s = link_ttl_s
        self._allowed_networks = allowed_networks  # where S3 endpoints may lead besides public addresses
        self._store = store
        self._accounts = accounts
        self._tokens = tokens

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/recordings/{recording_id}/transcript", self.transcript_json)
        router.add_get("/api/v1/recordings/{recording_id}/transcript/link", self.transcript_link)
        router.add_get("/t/{recording_id}", self.transcript_page)

    async def _may_read(self, token: str | None, recording: Recording, meeting: MeetingRecord) -> bool:
        if not token:
            return False
        if token.startswith(HOST_TOKEN_PREFIX):
            try:
                actor = await self._accounts.resolve_actor(token)
            except ApiError:  # an ended sign-in, a suspended account
                return False
            return actor is not None and actor.kind == "host" and actor.host_id == meeting.host_id
        if token.count(".") != 2:
            return False
        try:
            claims, participant = await self._tokens.check_join_token(token, meeting.id)  # an expired one is not
        except TokenError:
            return False
        if claims.is_host:
            if claims.host_session_id is None:
                return True
            session = await self._accounts.host_session_in_use(claims.host_session_id)
            return session is not None and session.active
        if recording.live_session_id is not None and participant.live_session_id != recording.live_session_id:
            return False
        if participant.state == "admitted":
            return True
        for entry in await self._store.list_consent(meeting.id, recording.live_session_id):
            if entry.participant_id == participant.id:
                return True
        return False

    async def _authorized(self, request: web.Request, *, link_ok: bool = True) -> tuple[Recording, MeetingRecord]:
        """The recording and meeting, if the request may read the transcript: a reader's
        credential in the header, or (`link_ok`) a transcript link's `t=`."""
        token = _token(request)
        recording = await self._store.get_recording(request.match_info["recording_id"])
        meeting = await self._store.get_meeting(recording.meeting_id) if recording is not None else None
        link = request.query.get("t") if link_ok else None
        if link and recording is not None and meeting is not None and self._tokens.verify_transcript_token(
            link, recording.id
        ):
            return recording, meeting
        if recording is None or meeting is None or not await self._may_read(token, recording, meeting):
            if token is None:
                raise unauthorized("this needs the host's sign-in or a participant's join token")
            raise forbidden("only the meeting's host and participants may read this transcript")
        return recording, meeting

    async def transcript_link(self, request: web.Request) -> web.Response:
        """A link to the page for a reader (see the module's doc), valid `transcript_link_ttl_s`."""
        recording, _ = await self._authorized(request, link_ok=False)
        now = int(time.time())
        token = self._tokens.make_transcript_token(recording.id, self._link_ttl_s, now=now)
        return web.json_response(
            {"url": f"/t/{recording.id}?t={token}", "expires_at": iso_time(now + self._link_ttl_s)},
            headers={"Cache-Control": "no-store"},
        )

    def _transcript_file(self, files: list[RecordingFile]) -> RecordingFile | None:
        """The JSON transcript (the recorder also writes WebVTT); the newest if several."""
        found = [
            f
            for f in files
            if f.kind == "transcript" and (f.content_type.startswith("application/json") or f.key.endswith(".json"))
        ]
        return found[-1] if found else None

    async def load_transcript(self, recording: Recording) -> dict[str, Any]:
        """The transcript JSON the recorder wrote (recorder/transcription/output.to_json);
        NotReady when there is none yet; ApiError 502 when the storage cannot be read."""
        item = self._transcript_file(await self._store.list_recording_files(recording.id))
        if item is None:
            raise NotReady()
        recorded = await self._store.get_recording_storage(recording.id)
        settings = resolve_storage(recorded, await self._store.get_customer_storage(recording.customer_id))
        if settings is None:
            raise NotReady()  # the storage settings were removed: the files are out of reach
        try:
            storage = open_storage(settings, allowed_networks=self._allowed_networks)
        except StorageError as error:  # an endpoint that leads inward
            log.warning("cannot read the transcript of recording %s: %s", recording.id, error)
            raise ApiError(502, "storage_unavailable", "the transcript cannot be read right now; try again") from None
        try:
            raw = await storage.read_bytes(item.key, MAX_TRANSCRIPT_BYTES)
            document = json.loads(raw)
        except (StorageNotFound, InvalidKey):
            raise NotReady() from None
        except (StorageError, ValueError) as error:
            log.warning("cannot read the transcript of recording %s: %s", recording.id, error)
            raise ApiError(502, "storage_unavailable", "the transcript cannot be read right now; try again") from None
        if not isinstance(document, dict):
            raise ApiError(502, "storage_unavailable", "the stored transcript is not readable")
        return document

    def _segments(self, document: dict[str, Any]) -> list[dict[str, Any]]:
        segments = []
        for segment in document.get("segments") or []:
            if not isinstance(segment, dict):
                continue
            start, end = segment.get("start"), segment.get("end")
            segments.append(
                {
                    "start": float(start) if isinstance(start, (int, float)) else 0.0,
                    "end": float(end) if isinstance(end, (int, float)) else 0.0,
                    "speaker": str(segment.get("speaker") or ""),
                    "text": str(segment.get("text") or ""),
                }
            )
        return segments

    async def transcript_json(self, request: web.Request) -> web.Response:
        recording, meeting = await self._authorized(request)
        try:
            document = await self.load_transcript(recording)
        except NotReady:
            raise ApiError(404, "not_ready", "this recording has no transcript (yet)") from None
        segments = self._segments(document)
        return web.json_response(
            {
                "recording_id": recording.id,
                "meeting_number": numbers.display(meeting.meeting_number),
                "title": meeting.title,
                "started_at": iso_time(recording.started_at),
                "disclaimer": DISCLAIMER,
                "speakers": sorted({s["speaker"] for s in segments if s["speaker"]}),
                "segments": segments,
            },
            headers={"Cache-Control": "no-store"},
        )

    # ------------------------------------------------------------------ the page

    def _clock(self, seconds: float) -> str:
        whole = int(max(0.0, seconds))
        return f"{whole // 3600:d}:{whole // 60 % 60:02d}:{whole % 60:02d}"

    def _page(self, title: str, body: str, status: int = 200) -> web.Response:
        text = f"""<!doctype html>
    <html lang="en"><head><meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="referrer" content="no-referrer">
    <title>{html.escape(title)}</title>
    <style>
    body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; }}
    .notice {{ background: #fff4d6; border: 1px solid #e0b84c; border-radius: 6px; padding: .6rem .9rem; }}
    .cue {{ margin: .4rem 0; }} .time {{ color: #666; font-variant-numeric: tabular-nums; margin-right: .5rem; }}
    .speaker {{ font-weight: 600; margin-right: .4rem; }}
    </style></head><body>
    {body}
    </body></html>
    """
        return web.Response(text=text, content_type="text/html", status=status, headers=PAGE_HEADERS)

    async def transcript_page(self, request: web.Request) -> web.Response:
        try:
            recording, meeting = await self._authorized(request)
        except ApiError:
            return self._page(
                "Transcript",
                "<h1>Transcript</h1><p>Only the meeting's host and its participants may read this transcript. "
                "Open it from the meeting, or add the link you were given.</p>",
                status=403,
            )
        notice = f'<p class="notice" role="note">{html.escape(DISCLAIMER)}</p>'
        heading = f"<h1>{html.escape(meeting.title or 'Meeting')}</h1>"
        when = f"<p>Meeting {numbers.display(meeting.meeting_number)}, started {iso_time(recording.started_at)}</p>"
        try:
            document = await self.load_transcript(recording)
        except NotReady:
            return self._page("Transcript", heading + when + notice + "<p>The transcript is not ready yet.</p>")
        except ApiError:
            return self._page("Transcript", heading + notice + "<p>The transcript cannot be read right now.</p>", 502)
        cues = "\n".join(
            f'<p class="cue"><span class="time">{self._clock(s["start"])}</span>'
            f'<span class="speaker">{html.escape(s["speaker"])}</span>{html.escape(s["text"])}</p>'
            for s in self._segments(document)
        )
        return self._page(f"Transcript: {meeting.title}", heading + when + notice + (cues or "<p>Nothing was said.</p>"))
