"""The signaling WebSocket (docs/signaling.md): one per participant, opened with a join
token (control.accounts.tokens); control.meeting.attendance decides whether it waits or is
in the meeting, control.meeting.conference does what it asks of the media.

A socket's messages are handled one at a time, in order. Everything sent to a socket goes
through one queue and one writer task, so every participant sees broadcasts (chat, tracks)
in the same order. Bad input is answered with an `error` message and never logged with a
traceback; the socket stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from config import SignalingConfig
from control.accounts.tokens import JoinClaims, TokenError, Tokens
from control.errors import ApiError, SignalingError
from control.meeting import closecodes
from control.meeting.attendance import Attendance
from control.meeting.chat import Chat
from control.meeting.conference import Conference
from control.meeting.model import LiveMeeting, Participant
from control.meeting.protocol import (
    ClientMessage,
    Limits,
    TokenBucket,
    parse_client_message,
)
from control.metrics.exporter import Metrics
from control.recording.service import Recordings
from control.store.base import MeetingRecord, ParticipantRecord

log = logging.getLogger(__name__)

# A frame this much larger than max_message_bytes is not read at all (aiohttp closes the
# socket); up to it, an oversized message gets an error and the socket stays open.
HARD_LIMIT_FACTOR = 4
# Messages queued to a client that does not read; past this the socket is closed.
MAX_OUTBOX = 2000
HEARTBEAT_S = 30.0
CLOSE_FLUSH_TIMEOUT_S = 5.0
# A socket that has not joined (with a valid token) by then is closed.
JOIN_TIMEOUT_S = 60.0


def _rate_limited() -> SignalingError:
    return SignalingError("rate_limited", "too many messages; slow down")


class SocketPeer:
    """Sends to one WebSocket from any task, in order; implements meetings.Peer."""

    def __init__(self, ws: web.WebSocketResponse, metrics: Metrics) -> None:
        self._ws = ws
        self._metrics = metrics
        self._queue: asyncio.Queue[dict[str, Any] | tuple[int, str]] = asyncio.Queue()
        self._closing = False
        self._task = asyncio.create_task(self._write_loop(), name="ws-writer")

    def send(self, message: dict[str, Any]) -> None:
        if self._closing:
            return
        if self._queue.qsize() >= MAX_OUTBOX:
            log.warning("signaling client does not read its messages; closing it")
            self.close(closecodes.POLICY_VIOLATION, "too many unread messages")
            return
        if message.get("type") == "error":
            self._metrics.signaling_errors.inc(str(message.get("code", "")))
        self._queue.put_nowait(message)

    def close(self, code: int, reason: str) -> None:
        """Close after the messages already queued are sent."""
        if not self._closing:
            self._closing = True
            self._queue.put_nowait((code, reason))

    async def wait_closed(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            self._task.cancel()

    def abort(self) -> None:
        self._closing = True
        self._task.cancel()

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, tuple):
                    code, reason = item
                    await self._ws.close(code=code, message=reason.encode()[:120])
                    return
                await self._ws.send_str(json.dumps(item, separators=(",", ":")))
        except (ConnectionError, RuntimeError) as exc:  # the peer went away mid-send
            log.debug("signaling socket write failed: %s", exc)
            self._closing = True


class SignalingSession:
    """One participant's socket: join token, validation, rate limit, dispatch."""

    def __init__(
        self, endpoint: SignalingEndpoint, meeting_ref: str, ws: web.WebSocketResponse, url_token: str | None = None
    ) -> None:
        self._endpoint = endpoint
        self._meeting_ref = meeting_ref  # the number (or id) in the URL
        self._url_token = url_token
        self._ws = ws
        self._conference = endpoint.conference
        self._metrics = endpoint.metrics
        signaling_cfg = endpoint.settings
        self._max_bytes = signaling_cfg.max_message_bytes
        self._limits = Limits(chat_max_chars=signaling_cfg.chat_max_chars)
        rate = signaling_cfg.messages_per_second
        self._bucket = TokenBucket(rate=rate, burst=rate)
        self.peer = SocketPeer(ws, self._metrics)
        self.meeting: LiveMeeting | None = None
        self.participant: Participant | None = None
        self._leaving = False
        self._gone_recorded = False
        self._join_timer = asyncio.get_running_loop().call_later(JOIN_TIMEOUT_S, self._join_timed_out)

    def _join_timed_out(self) -> None:
        if self.participant is None:
            self.peer.close(closecodes.POLICY_VIOLATION, "no join")

    async def run(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type == WSMsgType.TEXT:
                    await self._on_text(frame.data)
                elif frame.type == WSMsgType.BINARY:
                    binary = SignalingError("bad_message", "binary frames are not accepted; send JSON text")
                    self._error(binary if self._bucket.allow() else _rate_limited())
                elif frame.type == WSMsgType.ERROR:
                    log.debug("signaling socket error: %s", self._ws.exception())
                    break
                if self._leaving:
                    break
        finally:
            self._join_timer.cancel()
            await self._cleanup()

    async def _cleanup(self) -> None:
        participant, meeting = self.participant, self.meeting
        if participant is not None and meeting is not None:
            # Shielded: the leave must finish even if this handler is being cancelled.
            leave = asyncio.ensure_future(self._leave(meeting, participant))
            try:
                await asyncio.shield(leave)
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("signaling: leaving after the socket closed failed")
        self.peer.close(closecodes.NORMAL, "bye")
        await self.peer.wait_closed(CLOSE_FLUSH_TIMEOUT_S)

    async def _leave(self, meeting: LiveMeeting, participant: Participant) -> None:
        """Release the participant and record (once) why they went."""
        was_admitted = participant.admitted
        if not participant.closed:
            await self._conference.leave(meeting, participant)
        if self._gone_recorded:
            return
        self._gone_recorded = True
        await self._endpoint.attendance.disconnected(meeting, participant, was_admitted)

    async def _on_text(self, text: str) -> None:
        allowed = self._bucket.allow()  # every frame costs a token, valid or not
        if len(text) > self._max_bytes or len(text.encode("utf-8", "surrogatepass")) > self._max_bytes:
            self._metrics.signaling_messages.inc("too_large")
            self._error(SignalingError("too_large", f"message is larger than {self._max_bytes} bytes"))
            return
        try:
            message = parse_client_message(text, self._limits)
        except SignalingError as exc:
            self._metrics.signaling_messages.inc("invalid")
            message_id = exc.extra.pop("id", None)
            self._error(exc if allowed else _rate_limited(), message_id)
            return
        if not allowed:
            self._metrics.signaling_messages.inc("rate_limited")
            self._error(_rate_limited(), message.id)
            return
        self._metrics.signaling_messages.inc(message.type)
        try:
            await self._dispatch(message)
        except SignalingError as exc:
            self._error(exc, message.id)
            if exc.code in closecodes.FOR_FINAL_ERROR:
                self.peer.close(closecodes.FOR_FINAL_ERROR[exc.code], exc.code)
        except Exception:
            log.exception("signaling: handling %r failed", message.type)
            self._error(SignalingError("internal", "the server failed to handle this message"), message.id)

    def _error(self, error: SignalingError, message_id: Any = None) -> None:
        self.peer.send(error.as_message(message_id))

    def _ok(self, message: ClientMessage) -> None:
        if message.id is not None:
            self.peer.send({"type": "ok", "id": message.id})

    def _present(self) -> tuple[LiveMeeting, Participant]:
        participant, meeting = self.participant, self.meeting
        if participant is None or meeting is None:
            raise SignalingError("not_joined", "send join first")
        if participant.closed:
            raise SignalingError("not_joined", "you are no longer in the meeting; join again")
        return meeting, participant

    async def _join(self, message: ClientMessage) -> None:
        if self.participant is not None:
            raise SignalingError("already_joined", "this socket has joined already")
        token = message.fields["token"] or self._url_token
        if not token:
            raise SignalingError("unauthorized", "join needs a join token (POST /api/v1/meetings/{number}/join)")
        try:
            record, claims, person = await self._endpoint.verified(self._meeting_ref, token)
        except TokenError as exc:
            raise SignalingError(_TOKEN_ERRORS.get(exc.code, "unauthorized"), exc.message) from None
        attendance = self._endpoint.attendance
        meeting, participant = await attendance.connect(record, claims, person, self.peer, message.id)
        self.meeting, self.participant = meeting, participant

    async def _dispatch(self, message: ClientMessage) -> None:
        fields = message.fields
        if message.type == "join":
            await self._join(message)
            return
        if message.type == "ping":
            reply: dict[str, Any] = {"type": "pong"}
            if message.id is not None:
                reply["id"] = message.id
            self.peer.send(reply)
            return
        meeting, participant = self._present()
        conference = self._conference
        if message.type == "leave":
            self._ok(message)
            await self._leave(meeting, participant)
            self._leaving = True
            return
        if not participant.admitted:
            # The waiting room: nothing they send goes anywhere.
            raise SignalingError("not_admitted", "you are waiting to be let in")
        if message.type == "publish":
            if not participant.may("publish"):
                raise SignalingError("forbidden", "you may not publish in this meeting")
            await conference.publish(meeting, participant, fields["sdp"], fields["sources"], message.id)
            return
        if message.type == "answer":
            await conference.answer(meeting, participant, fields["sdp"])
        elif message.type == "mute":
            await conference.mute(meeting, participant, fields["source"], fields["muted"])
        elif message.type == "chat":
            await self._endpoint.chat.post(meeting, participant, fields["text"])
        elif message.type == "subscribe":
            await conference.set_subscription(meeting, participant, fields["track_id"], fields["enabled"])
        elif message.type in ("recording", "transcription"):
            await self._endpoint.recordings.from_signaling(
                meeting, participant, message.type, fields["action"], fields.get("hints")
            )
        elif message.type == "consent":
            await self._endpoint.recordings.consent(meeting, participant, fields["decision"])
            # Acknowledged even without an id: the client waits for it before it goes on.
            self.peer.send({"type": "ok", **({"id": message.id} if message.id is not None else {})})
            if fields["decision"] == "leave":  # declining ends their session, like `leave`
                await self._leave(meeting, participant)
                self._leaving = True
            return
        # "ice" needs nothing: the server is ICE-lite and learns addresses from STUN.
        self._ok(message)


# Token problems as the client sees them.
_TOKEN_ERRORS = {
    "invalid_token": "unauthorized",
    "token_expired": "token_expired",
    "wrong_meeting": "wrong_meeting",
    "revoked": "removed",
}
class SignalingEndpoint:
    """`/api/v1/meetings/{number}/ws[?token=JWT]` and the sockets open on it. A token in
    the URL is checked before the upgrade (401/403); without one, the first message must be
    `join` with a token. Nothing here tells whether a meeting number exists to someone
    without a valid token."""

    def __init__(
        self,
        *,
        settings: SignalingConfig,
        tokens: Tokens,
        attendance: Attendance,
        conference: Conference,
        chat: Chat,
        recordings: Recordings,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.attendance = attendance
        self.conference = conference
        self.chat = chat
        self.recordings = recordings
        self.metrics = metrics
        self.sessions: set[SignalingSession] = set()

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/meetings/{meeting_id}/ws", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        meeting_ref = request.match_info["meeting_id"]  # the number (with or without dashes) or the id
        url_token = request.query.get("token") or None
        if url_token is not None:
            await self._check_url_token(meeting_ref, url_token)
        ws = web.WebSocketResponse(
            max_msg_size=self.settings.max_message_bytes * HARD_LIMIT_FACTOR,
            heartbeat=HEARTBEAT_S,
        )
        await ws.prepare(request)
        session = SignalingSession(self, meeting_ref, ws, url_token)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
        return ws

    async def verified(self, meeting_ref: str, token: str) -> tuple[MeetingRecord, JoinClaims, ParticipantRecord]:
        """The meeting `meeting_ref` names and a valid, unrevoked join token for it: (meeting,
        claims, the store's participant). Raises TokenError."""
        claims = self.tokens.verify_join_token(token)  # the signature first: no lookup without it
        record = await self.attendance.find_meeting(meeting_ref)
        if record is None or record.id != claims.meeting_id:
            raise TokenError("wrong_meeting", "this token is for another meeting")
        claims, person = await self.tokens.check_join_token(token, record.id)
        return record, claims, person

    async def _check_url_token(self, meeting_ref: str, token: str) -> None:
        try:
            await self.verified(meeting_ref, token)
        except TokenError as exc:
            status = 401 if exc.code in ("invalid_token", "token_expired") else 403
            raise ApiError(status, _TOKEN_ERRORS.get(exc.code, "unauthorized"), exc.message) from None

    async def close_all(self) -> None:
        """Shutdown: tell every socket (1001 "going away") and let their queues flush."""
        for session in list(self.sessions):
            session.peer.close(closecodes.GOING_AWAY, "server shutting down")
        for session in list(self.sessions):
            await session.peer.wait_closed(CLOSE_FLUSH_TIMEOUT_S)
