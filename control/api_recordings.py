"""REST for recording and transcription (issue 5; docs/control-plane.md, "Recording").

- Customer storage: `PUT|GET|DELETE /customers/{id}/storage` (the customer's admin or the
  operator; a local directory of the server only by the operator). The secret is
  write-only and never logged (the audit row names the kind and bucket, nothing else).
- Start/stop: `POST /meetings/{number}/recording|transcription {"action"}` (the meeting's
  host; transcription also a participant where `participants_may_transcribe`); the work
  is control.recording's (the live side), whose refusals are ApiErrors.
- Recordings with their files, short-lived signed download links (JWT, audience
  "conclave:download", 5 minutes) and the download itself, streamed from the customer's
  storage; deleting a recording deletes its files from the storage, then its rows.
- The consent ledger of a meeting.
Transcripts (`/t/<id>` and its JSON) are `control.api_transcripts`.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re
import time
from typing import Any

import jwt
from aiohttp import web

from common.storage import InvalidKey, StorageBackend, StorageError, StorageNotFound, open_storage
from control import accounts, tokens
from control.accounts import Actor
from control.api_accounts import customer_in_path
from control.api_sessions import looks_like_jwt, moderator
from control.errors import ApiError
from control.permissions import forbidden, require_meeting_access
from control.protocol import transcription_hints
from control.rest import display_number, invalid, iso_time, json_body
from control.state import AppState, get_state
from control.storage_settings import public_view, storage_for, validate_storage_settings
from control.store.base import ConsentEntry, Meeting, Recording, RecordingFile

log = logging.getLogger(__name__)

DOWNLOAD_AUDIENCE = "conclave:download"
DOWNLOAD_TTL_S = 300
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


async def recording_for(request: web.Request, actor: Actor) -> tuple[Recording, Meeting]:
    """The recording in the path and its meeting, if the actor may see the meeting (its
    host, the customer's admin, the operator); like meetings, a missing one and another
    customer's look the same (403) to anyone but the operator."""
    store = get_state(request.app).store
    recording = await store.get_recording(request.match_info["recording_id"])
    meeting = await store.get_meeting(recording.meeting_id) if recording is not None else None
    if recording is None or meeting is None:
        if actor.is_operator:
            raise ApiError(404, "not_found", "no such recording")
        raise forbidden("no such recording, or not one you may see")
    require_meeting_access(actor, meeting)
    return recording, meeting


# ---------------------------------------------------------------------- customer storage


async def put_storage(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    customer = await customer_in_path(request, actor)
    state = get_state(request.app)
    body = await json_body(request)
    current = await state.store.get_customer_storage(customer.id)
    settings = validate_storage_settings(body, current)
    if settings["kind"] == "local" and not actor.is_operator:
        # A directory of this server: where the recorder writes and downloads read.
        raise forbidden("only the operator may choose a directory of the server; use kind s3")
    await state.store.set_customer_storage(customer.id, settings)
    detail = {k: settings[k] for k in ("kind", "root", "bucket", "endpoint_url", "prefix") if k in settings}
    await accounts.audit(state, request, actor, "customer.storage_set", "customer", customer.id, **detail)
    return web.json_response(storage_json(settings))


async def get_storage(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    customer = await customer_in_path(request, actor)
    return web.json_response(storage_json(await get_state(request.app).store.get_customer_storage(customer.id)))


async def delete_storage(request: web.Request) -> web.Response:
    """Forget the settings: recording is refused until there are new ones."""
    actor = await accounts.authenticate(request)
    customer = await customer_in_path(request, actor)
    state = get_state(request.app)
    if await state.store.delete_customer_storage(customer.id):
        await accounts.audit(state, request, actor, "customer.storage_delete", "customer", customer.id)
    return web.Response(status=204)


# ---------------------------------------------------------------------- start / stop


def _action(body: dict[str, Any]) -> str:
    action = body.get("action")
    if action not in ACTIONS:
        raise invalid("action", "must be 'start' or 'stop'")
    return action


async def _live_functions() -> Any:
    try:
        from control import recording  # the live side; imported late (it imports much of control)
    except ImportError:
        raise ApiError(503, "unavailable", "recording is not available on this server") from None
    return recording


async def _active_kinds(state: AppState, meeting: Meeting) -> dict[str, Any]:
    active = {r.kind for r in await state.store.list_recordings(meeting.id) if r.state == "active"}
    return {
        "meeting_number": display_number(meeting.meeting_number),
        "recording": "recording" in active,
        "transcription": "transcription" in active,
    }


async def _host_name(state: AppState, actor: Actor) -> str:
    host = await state.store.get_host(actor.host_id) if actor.host_id else None
    return host.name if host is not None else "the host"


async def recording_action(request: web.Request) -> web.Response:
    """The meeting's host starts or stops recording."""
    actor, meeting = await moderator(request)
    state = get_state(request.app)
    action = _action(await json_body(request))
    live = await _live_functions()
    by = await _host_name(state, actor)
    if action == "start":
        await live.start_recording(state, meeting, by)
    else:
        await live.stop_recording(state, meeting, by)
    return web.json_response(await _active_kinds(state, meeting))


async def _transcription_caller(request: web.Request) -> tuple[Meeting, str]:
    """(meeting, name of who asks): the host as for recording, or a participant of the
    current live session when the customer allows participants to transcribe."""
    state = get_state(request.app)
    token = accounts.bearer_token(request)
    if token is not None and looks_like_jwt(token):
        try:
            claims = tokens.verify_join_token(state, token)
        except tokens.TokenError as exc:
            raise accounts.unauthorized(exc.message) from None
        if not claims.is_host:
            return await _participant_transcribing(request, token, claims)
    actor, meeting = await moderator(request)
    return meeting, await _host_name(state, actor)


async def _participant_transcribing(request: web.Request, token: str, claims: tokens.JoinClaims) -> tuple[Meeting, str]:
    state = get_state(request.app)
    number = request.match_info["number"].replace("-", "")
    meeting = await state.store.get_meeting_by_number(number) if len(number) == 11 and number.isdigit() else None
    if meeting is None or meeting.id != claims.meeting_id:
        raise forbidden("this token is for another meeting")
    try:
        _, participant = await tokens.check_join_token(state, token, meeting.id)
    except tokens.TokenError as exc:
        raise forbidden(exc.message) from None
    live_session = await state.store.get_live_session(meeting.id)
    if live_session is None or participant.live_session_id != live_session.id or participant.state != "admitted":
        raise forbidden("only a participant in the live meeting may do this")
    customer = await state.store.get_customer(meeting.customer_id)
    if customer is None or not accounts.customer_limits(state, customer)["participants_may_transcribe"]:
        raise forbidden("only the host may start or stop transcription in this meeting")
    return meeting, participant.name


async def transcription_action(request: web.Request) -> web.Response:
    meeting, by = await _transcription_caller(request)
    state = get_state(request.app)
    body = await json_body(request)
    action = _action(body)
    try:
        hints = transcription_hints(body.get("hints"))
    except ValueError as exc:
        field, _, problem = str(exc).partition(": ")
        raise invalid(field, problem) from None
    live = await _live_functions()
    if action == "start":
        await live.start_transcription(state, meeting, by, hints=hints)
    else:
        await live.stop_transcription(state, meeting, by)
    return web.json_response(await _active_kinds(state, meeting))


# ---------------------------------------------------------------------- recordings


async def list_meeting_recordings(request: web.Request) -> web.Response:
    """The meeting's host, the customer's admin, the operator."""
    _, meeting = await moderator(request, admins_too=True)
    store = get_state(request.app).store
    items = []
    for recording in await store.list_recordings(meeting.id):
        items.append(recording_json(recording, await store.list_recording_files(recording.id)))
    return web.json_response({"meeting_number": display_number(meeting.meeting_number), "recordings": items})


async def get_recording(request: web.Request) -> web.Response:
    recording, _ = await recording_for(request, await accounts.authenticate(request))
    files = await get_state(request.app).store.list_recording_files(recording.id)
    return web.json_response(recording_json(recording, files))


def make_download_token(state: Any, recording: Recording, item: RecordingFile, *, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": tokens.ISSUER,
        "aud": DOWNLOAD_AUDIENCE,
        "rec": recording.id,
        "fid": item.id,
        "cus": recording.customer_id,
        "iat": issued,
        "exp": issued + DOWNLOAD_TTL_S,
    }
    return jwt.encode(claims, state.secrets.token_secret, algorithm=tokens.ALGORITHM)


def verify_download_token(state: Any, token: str) -> tuple[str, str, str]:
    """(recording id, file id, customer id) of a valid, unexpired link; else 403."""
    refused = ApiError(403, "forbidden", "this download link is invalid or has expired")
    if not token or len(token) > tokens.MAX_TOKEN_CHARS:
        raise refused
    try:
        claims = jwt.decode(
            token,
            state.secrets.token_secret,
            algorithms=[tokens.ALGORITHM],
            audience=DOWNLOAD_AUDIENCE,
            issuer=tokens.ISSUER,
            options={"require": ["iat", "exp", "aud", "iss"]},
        )
    except jwt.PyJWTError:
        raise refused from None
    values = (claims.get("rec"), claims.get("fid"), claims.get("cus"))
    if not all(isinstance(value, str) and value for value in values):
        raise refused
    return values  # type: ignore[return-value]


async def customer_storage(state: AppState, customer_id: str) -> StorageBackend:
    """The customer's storage to read or delete in; 409 when it has none configured (the
    settings were removed after recording: set them again to reach the files)."""
    settings = await storage_for(state, customer_id)
    if settings is None:
        raise ApiError(409, "storage_not_configured", "the account has no storage configured")
    return open_storage(settings)


async def file_link(request: web.Request) -> web.Response:
    recording, _ = await recording_for(request, await accounts.authenticate(request))
    state = get_state(request.app)
    item = await state.store.get_recording_file(request.match_info["file_id"])
    if item is None or item.recording_id != recording.id:
        raise ApiError(404, "not_found", "no such file in this recording")
    now = time.time()
    token = make_download_token(state, recording, item, now=now)
    return web.json_response({"url": f"/api/v1/download/{token}", "expires_at": iso_time(int(now) + DOWNLOAD_TTL_S)})


def _filename(key: str) -> str:
    name = SAFE_FILENAME.sub("_", posixpath.basename(key)).strip("._")
    return name or "download"


async def download(request: web.Request) -> web.StreamResponse:
    """Anyone holding a valid link (no other credential: it is the credential)."""
    state = get_state(request.app)
    recording_id, file_id, customer_id = verify_download_token(state, request.match_info["token"])
    item = await state.store.get_recording_file(file_id)
    recording = await state.store.get_recording(recording_id)
    if item is None or recording is None or item.recording_id != recording.id or recording.customer_id != customer_id:
        raise ApiError(404, "not_found", "this file no longer exists")
    storage = await customer_storage(state, recording.customer_id)
    try:
        async with storage.open_object(item.key) as obj:
            response = web.StreamResponse(
                headers={
                    "Content-Type": item.content_type or "application/octet-stream",
                    "Content-Disposition": f'attachment; filename="{_filename(item.key)}"',
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


async def remove_recording(state: AppState, recording: Recording) -> int:
    """Delete the recording's files from the customer's storage, then its rows; how many
    files went. Raises ApiError 502 (rows kept, so it can be tried again) when the storage
    refuses, 409 when the customer has no storage configured. Objects under the
    recording's key prefix that never reached the store (an upload that finished late) go
    too."""
    files = await state.store.list_recording_files(recording.id)
    storage = await customer_storage(state, recording.customer_id)
    try:
        for item in files:
            with contextlib.suppress(InvalidKey):  # a key outside the storage: nothing of ours there
                await storage.delete(item.key)
        if recording.key_prefix:
            with contextlib.suppress(InvalidKey):
                await storage.delete_prefix(recording.key_prefix)
    except StorageError as error:
        log.warning("cannot delete the files of recording %s: %s", recording.id, error)
        raise ApiError(502, "storage_unavailable", "the storage refused the deletion; try again") from None
    await state.store.delete_recording(recording.id)
    return len(files)


async def delete_recording(request: web.Request) -> web.Response:
    actor = await accounts.authenticate(request)
    recording, meeting = await recording_for(request, actor)
    if recording.state == "active":
        raise ApiError(409, "recording_active", "stop the recording before deleting it")
    state = get_state(request.app)
    removed = await remove_recording(state, recording)
    await accounts.audit(
        state, request, actor, "recording.delete", "recording", recording.id, meeting_id=meeting.id, files=removed
    )
    return web.Response(status=204)


async def remove_meeting_recordings(state: AppState, meeting: Meeting) -> dict[str, int]:
    """Operator content removal: stop what is running (through the live side), then delete
    every recording and transcript of the meeting. {recordings, files} removed."""
    recordings = await state.store.list_recordings(meeting.id)
    if any(r.state == "active" for r in recordings):
        await _stop_everything(state, meeting)
    removed = {"recordings": 0, "files": 0}
    for recording in await state.store.list_recordings(meeting.id):
        if recording.state == "active":  # the live side could not stop it: the rows go anyway
            await state.store.update_recording(recording.id, state="stopped")
        removed["files"] += await remove_recording(state, recording)
        removed["recordings"] += 1
    return removed


async def _stop_everything(state: AppState, meeting: Meeting) -> None:
    try:
        from control import recording as live
    except ImportError:
        return
    for stop in (live.stop_recording, live.stop_transcription):
        try:
            await stop(state, meeting, "the operator")
        except ApiError:
            pass  # not running
        except Exception:
            log.exception("cannot stop recording of meeting %s before removing it", meeting.id)


# ---------------------------------------------------------------------- consent ledger


async def consent_ledger(request: web.Request) -> web.Response:
    """The meeting's host, the customer's admin, the operator; ?live_session_id= narrows."""
    _, meeting = await moderator(request, admins_too=True)
    live_session_id = request.query.get("live_session_id") or None
    entries = await get_state(request.app).store.list_consent(meeting.id, live_session_id)
    return web.json_response(
        {"meeting_number": display_number(meeting.meeting_number), "entries": [consent_json(e) for e in entries]}
    )


def register(app: web.Application) -> None:
    from control import api_transcripts
    add = app.router
    add.add_put("/api/v1/customers/{customer_id}/storage", put_storage)
    add.add_get("/api/v1/customers/{customer_id}/storage", get_storage)
    add.add_delete("/api/v1/customers/{customer_id}/storage", delete_storage)
    add.add_post("/api/v1/meetings/{number}/recording", recording_action)
    add.add_post("/api/v1/meetings/{number}/transcription", transcription_action)
    add.add_get("/api/v1/meetings/{number}/recordings", list_meeting_recordings)
    add.add_get("/api/v1/meetings/{number}/consent", consent_ledger)
    add.add_get("/api/v1/recordings/{recording_id}", get_recording)
    add.add_delete("/api/v1/recordings/{recording_id}", delete_recording)
    add.add_get("/api/v1/recordings/{recording_id}/files/{file_id}/link", file_link)
    add.add_get("/api/v1/download/{token}", download)
    api_transcripts.register(app)
