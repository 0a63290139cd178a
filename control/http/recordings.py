"""REST for recording and transcription (issue 5; docs/control-plane-reference.md, "Recording").

- Customer storage: `PUT|GET|DELETE /customers/{id}/storage` (the customer's admin or the
  operator; a local directory of the server only by the operator). The secret is
  write-only and never logged (the audit row names the kind and bucket, nothing else).
- Start/stop: `POST /meetings/{number}/recording|transcription {"action"}` (the meeting's
  host; transcription also a participant where `participants_may_transcribe`); the work
  is control.recording.service's (the live side), whose refusals are ApiErrors.
- Recordings with their files, short-lived signed download links (JWT, audience
  "conclave:download", 5 minutes) and the download itself, streamed from the customer's
  storage; deleting a recording takes its rows and deletes its files from the storage
  it was written to (202 with `storage_pending` when that storage cannot do it now).
- The consent ledger of a meeting.
- The operator's list of storage deletions still to do, and a retry of one.
Transcripts (`/t/<id>` and its JSON) are `control.http.transcripts`.
"""

from __future__ import annotations

import logging
import posixpath
import re
import time
from typing import Any

from aiohttp import web

from common.storage import InvalidKey, StorageError, StorageNotFound
from control.accounts.service import Actor
from control.accounts.tokens import DOWNLOAD_TTL_S, JoinClaims, TokenError, Tokens
from control.clock import iso_time
from control.errors import ApiError
from control.http.auth import Auth, bearer_token, looks_like_jwt, unauthorized
from control.http.permissions import forbidden, require_meeting_access, require_operator
from control.http.rest import check_outbound_url, invalid, json_body
from control.meeting import numbers
from control.meeting.limits import LimitsPolicy
from control.meeting.protocol import transcription_hints
from control.recording.archive import RecordingArchive
from control.recording.deletion import public_view as deletion_view
from control.recording.service import Recordings
from control.recording.storage_settings import public_view, validate_storage_settings
from control.store.base import (
    ConsentEntry,
    MeetingRecord,
    Recording,
    RecordingFile,
    Store,
)

log = logging.getLogger(__name__)

ACTIONS = ("start", "stop")
SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


# ---------------------------------------------------------------------- representations


def file_json(item: RecordingFile) -> dict[str, Any]:
    return {
        "id": item.id,
        "key": item.key,
        "kind": item.kind,
        "track_id": item.track_id,
        "size": item.size,
        "sha256": item.sha256,
        "content_type": item.content_type,
        "start": item.start,
        "end": item.end,
        "uploaded_at": iso_time(item.uploaded_at),
    }


def has_transcript(files: list[RecordingFile]) -> bool:
    return any(item.kind == "transcript" for item in files)


def recording_json(recording: Recording, files: list[RecordingFile]) -> dict[str, Any]:
    return {
        "id": recording.id,
        "meeting_id": recording.meeting_id,
        "live_session_id": recording.live_session_id,
        "kind": recording.kind,
        "state": recording.state,
        "started_at": iso_time(recording.started_at),
        "stopped_at": iso_time(recording.stopped_at),
        "started_by": recording.started_by,
        "error": recording.error,
        "transcript_url": f"/t/{recording.id}" if has_transcript(files) else None,
        "files": [file_json(item) for item in files],
    }


def consent_json(entry: ConsentEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "participant_id": entry.participant_id,
        "name": entry.name,
        "live_session_id": entry.live_session_id,
        "recording_id": entry.recording_id,
        "notified_at": iso_time(entry.notified_at),
        "channels": list(entry.channels),
        "decision": entry.decision,
        "decided_at": iso_time(entry.decided_at),
    }


def storage_json(settings: dict[str, Any] | None) -> dict[str, Any]:
    return {"configured": settings is not None, "settings": public_view(settings) if settings is not None else None}


# ---------------------------------------------------------------------- who asks


class RecordingRoutes:
    def __init__(
        self,
        *,
        store: Store,
        auth: Auth,
        tokens: Tokens,
        recordings: Recordings,
        archive: RecordingArchive,
        limits: LimitsPolicy,
        allowed_networks: tuple[str, ...] = (),
    ) -> None:
        self._store = store
        self._auth = auth
        self._tokens = tokens
        self._recordings = recordings
        self._archive = archive
        self._limits = limits
        self._allowed_networks = allowed_networks  # where S3 endpoints may lead besides public addresses

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_put("/api/v1/customers/{customer_id}/storage", self.put_storage)
        router.add_get("/api/v1/customers/{customer_id}/storage", self.get_storage)
        router.add_delete("/api/v1/customers/{customer_id}/storage", self.delete_storage)
        router.add_post("/api/v1/meetings/{number}/recording", self.recording_action)
        router.add_post("/api/v1/meetings/{number}/transcription", self.transcription_action)
        router.add_get("/api/v1/meetings/{number}/recordings", self.list_meeting_recordings)
        router.add_get("/api/v1/meetings/{number}/consent", self.consent_ledger)
        router.add_get("/api/v1/recordings/{recording_id}", self.get_recording)
        router.add_delete("/api/v1/recordings/{recording_id}", self.delete_recording)
        router.add_get("/api/v1/recordings/{recording_id}/files/{file_id}/link", self.file_link)
        router.add_get("/api/v1/download/{token}", self.download)
        router.add_get("/api/v1/storage-deletions", self.list_storage_deletions)
        router.add_post("/api/v1/storage-deletions/{deletion_id}/retry", self.retry_storage_deletion)
        router.add_delete("/api/v1/storage-deletions/{deletion_id}", self.forget_storage_deletion)

    async def recording_for(self, request: web.Request, actor: Actor) -> tuple[Recording, MeetingRecord]:
        """The recording in the path and its meeting, if the actor may see the meeting (its
        host, the customer's admin, the operator); like meetings, a missing one and another
        customer's look the same (403) to anyone but the operator."""
        store = self._store
        recording = await store.get_recording(request.match_info["recording_id"])
        meeting = await store.get_meeting(recording.meeting_id) if recording is not None else None
        if recording is None or meeting is None:
            if actor.is_operator:
                raise ApiError(404, "not_found", "no such recording")
            raise forbidden("no such recording, or not one you may see")
        require_meeting_access(actor, meeting)
        return recording, meeting

    # ------------------------------------------------------------------ customer storage

    async def put_storage(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        customer = await self._auth.customer_in_path(request, actor)
        body = await json_body(request)
        current = await self._store.get_customer_storage(customer.id)
        settings = validate_storage_settings(body, current)
        if settings["kind"] == "local" and not actor.is_operator:
            # A directory of this server: where the recorder writes and downloads read.
            raise forbidden("only the operator may choose a directory of the server; use kind s3")
        if settings.get("endpoint_url"):
            await check_outbound_url(settings["endpoint_url"], "storage.endpoint_url", self._allowed_networks)
        await self._store.set_customer_storage(customer.id, settings)
        detail = {k: settings[k] for k in ("kind", "root", "bucket", "endpoint_url", "prefix") if k in settings}
        await self._auth.audit(request, actor, "customer.storage_set", "customer", customer.id, **detail)
        return web.json_response(storage_json(settings))

    async def get_storage(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        customer = await self._auth.customer_in_path(request, actor)
        return web.json_response(storage_json(await self._store.get_customer_storage(customer.id)))

    async def delete_storage(self, request: web.Request) -> web.Response:
        """Forget the settings: recording is refused until there are new ones."""
        actor = await self._auth.authenticate(request)
        customer = await self._auth.customer_in_path(request, actor)
        if await self._store.delete_customer_storage(customer.id):
            await self._auth.audit(request, actor, "customer.storage_delete", "customer", customer.id)
        return web.Response(status=204)

    # ------------------------------------------------------------------ start / stop

    def _action(self, body: dict[str, Any]) -> str:
        action = body.get("action")
        if action not in ACTIONS:
            raise invalid("action", "must be 'start' or 'stop'")
        return action

    async def _active_kinds(self, meeting: MeetingRecord) -> dict[str, Any]:
        active = {r.kind for r in await self._store.list_recordings(meeting.id) if r.state == "active"}
        return {
            "meeting_number": numbers.display(meeting.meeting_number),
            "recording": "recording" in active,
            "transcription": "transcription" in active,
        }

    async def _host_name(self, actor: Actor) -> str:
        host = await self._store.get_host(actor.host_id) if actor.host_id else None
        return host.name if host is not None else "the host"

    async def recording_action(self, request: web.Request) -> web.Response:
        """The meeting's host starts or stops recording."""
        actor, meeting = await self._auth.moderator(request)
        action = self._action(await json_body(request))
        by = await self._host_name(actor)
        if action == "start":
            await self._recordings.start(meeting, "recording", by)
        else:
            await self._recordings.stop(meeting, "recording", by)
        return web.json_response(await self._active_kinds(meeting))

    async def _transcription_caller(self, request: web.Request) -> tuple[MeetingRecord, str]:
        """(meeting, name of who asks): the host as for recording, or a participant of the
        current live session when the customer allows participants to transcribe."""
        token = bearer_token(request)
        if token is not None and looks_like_jwt(token):
            try:
                claims = self._tokens.verify_join_token(token)
            except TokenError as exc:
                raise unauthorized(exc.message) from None
            if not claims.is_host:
                return await self._participant_transcribing(request, token, claims)
        actor, meeting = await self._auth.moderator(request)
        return meeting, await self._host_name(actor)

    async def _participant_transcribing(self, request: web.Request, token: str, claims: JoinClaims) -> tuple[MeetingRecord, str]:
        meeting = await self._auth.meeting_in_path(request)
        if meeting is None or meeting.id != claims.meeting_id:
            raise forbidden("this token is for another meeting")
        try:
            _, participant = await self._tokens.check_join_token(token, meeting.id)
        except TokenError as exc:
            raise forbidden(exc.message) from None
        live_session = await self._store.get_live_session(meeting.id)
        if live_session is None or participant.live_session_id != live_session.id or participant.state != "admitted":
            raise forbidden("only a participant in the live meeting may do this")
        customer = await self._store.get_customer(meeting.customer_id)
        if customer is None or not self._limits.account(customer).participants_may_transcribe:
            raise forbidden("only the host may start or stop transcription in this meeting")
        return meeting, participant.name

    async def transcription_action(self, request: web.Request) -> web.Response:
        meeting, by = await self._transcription_caller(request)
        body = await json_body(request)
        action = self._action(body)
        try:
            hints = transcription_hints(body.get("hints"))
        except ValueError as exc:
            field, _, problem = str(exc).partition(": ")
            raise invalid(field, problem) from None
        if action == "start":
            await self._recordings.start(meeting, "transcription", by, hints)
        else:
            await self._recordings.stop(meeting, "transcription", by)
        return web.json_response(await self._active_kinds(meeting))

    # ------------------------------------------------------------------ recordings

    async def list_meeting_recordings(self, request: web.Request) -> web.Response:
        """The meeting's host, the customer's admin, the operator."""
        _, meeting = await self._auth.moderator(request, admins_too=True)
        store = self._store
        items = []
        for recording in await store.list_recordings(meeting.id):
            items.append(recording_json(recording, await store.list_recording_files(recording.id)))
        return web.json_response({"meeting_number": numbers.display(meeting.meeting_number), "recordings": items})

    async def get_recording(self, request: web.Request) -> web.Response:
        recording, _ = await self.recording_for(request, await self._auth.authenticate(request))
        files = await self._store.list_recording_files(recording.id)
        return web.json_response(recording_json(recording, files))

    async def file_link(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        recording, _ = await self.recording_for(request, actor)
        item = await self._store.get_recording_file(request.match_info["file_id"])
        if item is None or item.recording_id != recording.id:
            raise ApiError(404, "not_found", "no such file in this recording")
        if item.kind == "transcript" and actor.kind != "host":
            # What was said is for the host and the participants (control.http.transcripts),
            # not the customer's admin or the operator.
            raise forbidden("only the meeting's host and participants may read its transcript")
        now = time.time()
        token = self._tokens.make_download_token(recording, item, now=now)
        return web.json_response({"url": f"/api/v1/download/{token}", "expires_at": iso_time(int(now) + DOWNLOAD_TTL_S)})

    def _filename(self, key: str) -> str:
        name = SAFE_FILENAME.sub("_", posixpath.basename(key)).strip("._")
        return name or "download"

    async def download(self, request: web.Request) -> web.StreamResponse:
        """Anyone holding a valid link (no other credential: it is the credential)."""
        link = self._tokens.verify_download_token(request.match_info["token"])
        if link is None:
            raise ApiError(403, "forbidden", "this download link is invalid or has expired")
        recording_id, file_id, customer_id = link
        item = await self._store.get_recording_file(file_id)
        recording = await self._store.get_recording(recording_id)
        if item is None or recording is None or item.recording_id != recording.id or recording.customer_id != customer_id:
            raise ApiError(404, "not_found", "this file no longer exists")
        storage = await self._archive.storage_for(recording)
        try:
            async with storage.open_object(item.key) as obj:
                response = web.StreamResponse(
                    headers={
                        "Content-Type": item.content_type or "application/octet-stream",
                        "Content-Disposition": f'attachment; filename="{self._filename(item.key)}"',
                        "Cache-Control": "no-store",
                        "X-Content-Type-Options": "nosniff",
                    }
                )
                if obj.size is not None:
                    response.content_length = obj.size
                await response.prepare(request)
                try:
                    async for chunk in obj.chunks:
                        await response.write(chunk)
                except StorageError as error:
                    # Headers are out: all we can do is cut the connection (the client sees a
                    # short body against Content-Length).
                    log.warning("download of recording %s file %s broke: %s", recording.id, item.id, error)
                    response.force_close()
                    return response
                await response.write_eof()
                return response
        except (StorageNotFound, InvalidKey):  # InvalidKey: a key that leads out of the storage
            raise ApiError(404, "not_found", "the file is not in the storage (any more)") from None
        except StorageError as error:
            log.warning("download of recording %s file %s failed: %s", recording.id, item.id, error)
            raise ApiError(502, "storage_unavailable", "the storage cannot be read right now; try again") from None

    async def delete_recording(self, request: web.Request) -> web.Response:
        actor = await self._auth.authenticate(request)
        recording, meeting = await self.recording_for(request, actor)
        if recording.state == "active":
            raise ApiError(409, "recording_active", "stop the recording before deleting it")
        removal = await self._archive.remove_recording(recording)
        await self._auth.audit(
            request, actor, "recording.delete", "recording", recording.id, meeting_id=meeting.id,
            files=removal.removed["files"], storage_pending=bool(removal.pending),
        )  # fmt: skip
        if removal.pending:  # gone from here; its storage still has the files (retried)
            return web.json_response(
                {"recording_id": recording.id, "storage_pending": removal.storage_pending()}, status=202
            )
        return web.Response(status=204)

    # ------------------------------------------------------------------ storage deletions

    async def list_storage_deletions(self, request: web.Request) -> web.Response:
        """Operator: deleted recordings whose files a storage still holds (`?state=pending`,
        the default) or that were deleted (`done`, kept a while); `?customer_id=`."""
        require_operator(await self._auth.authenticate(request))
        state = request.query.get("state", "pending")
        if state not in ("pending", "done"):
            raise invalid("state", "must be pending or done")
        customer_id = request.query.get("customer_id") or None
        deletions = await self._store.list_storage_deletions(state=state, customer_id=customer_id)
        return web.json_response({"deletions": [deletion_view(d) for d in deletions]})

    async def retry_storage_deletion(self, request: web.Request) -> web.Response:
        """Operator: try deleting the files of one deleted recording again (now)."""
        actor = await self._auth.authenticate(request)
        require_operator(actor)
        deletion = await self._store.get_storage_deletion(request.match_info["deletion_id"])
        if deletion is None:
            raise ApiError(404, "not_found", "no such storage deletion")
        if deletion.state == "pending":
            deletion = await self._archive.deletions.attempt(deletion)
        await self._auth.audit(request, actor, "recording.storage_delete_retry", "recording", deletion.recording_id,
                               state=deletion.state)  # fmt: skip
        return web.json_response(deletion_view(deletion))

    async def forget_storage_deletion(self, request: web.Request) -> web.Response:
        """Operator: give up on deleting a deleted recording's files (its storage is gone for
        good, or a person deleted them by hand): the record and its storage settings go."""
        actor = await self._auth.authenticate(request)
        require_operator(actor)
        deletion = await self._store.get_storage_deletion(request.match_info["deletion_id"])
        if deletion is None or not await self._store.forget_storage_deletion(deletion.id):
            raise ApiError(404, "not_found", "no such storage deletion")
        await self._auth.audit(request, actor, "recording.storage_delete_forget", "recording", deletion.recording_id,
                               state=deletion.state, files=len(deletion.keys))  # fmt: skip
        return web.Response(status=204)

    # ------------------------------------------------------------------ consent ledger

    async def consent_ledger(self, request: web.Request) -> web.Response:
        """The meeting's host, the customer's admin, the operator; ?live_session_id= narrows."""
        _, meeting = await self._auth.moderator(request, admins_too=True)
        live_session_id = request.query.get("live_session_id") or None
        entries = await self._store.list_consent(meeting.id, live_session_id)
        return web.json_response(
            {"meeting_number": numbers.display(meeting.meeting_number), "entries": [consent_json(e) for e in entries]}
        )
