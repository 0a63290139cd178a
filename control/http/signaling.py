"""The signaling WebSocket (docs/signaling.md): one per participant, opened with a join
token (control.accounts.tokens); control.meeting.attendance decides whether it waits or is
in the meeting, control.meeting.conference does what it asks of the media.

A socket's messages are handled one at a time, in order. Everything sent to a socket goes
through one queue and one writer task, so every participant sees broadcasts (chat, tracks)
in the same order. Bad input is answered with an `error` message and never logged with a
traceback; the socket stays open.

Against a hostile client (docs/security-control.md): the `Origin` of a browser must be the
server's own (`http.public_url`, or the request's host) or listed in
`signaling.allowed_origins`; sockets that have not joined are capped per client and in
all before the upgrade; a frame is counted against the socket's message and byte buckets
before it is read as JSON, and dropped unread when over (one `rate_limited` error a
second at most; far over for long, the socket is closed 1008); a message larger than
`signaling.max_message_bytes` is refused by its frame header and closes the socket with
1009 (nothing of it is read); what waits to be sent to a client that does not read is
capped in bytes (`signaling.max_outbox_bytes`), then the socket is cut.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from common import logs
from config import SignalingConfig
from control.accounts.tokens import JoinClaims, TokenError, Tokens
from control.cluster.placement import NoNodeAvailable
from control.cluster.service import Cluster, ClusterUnavailable, origin_of
from control.errors import ApiError, SignalingError
from control.http.auth import client_address
from control.http.limiter import client_key
from control.http.urls import signaling_at
from control.meeting import closecodes
from control.meeting.attendance import Attendance
from control.meeting.call_quality import CallQuality
from control.meeting.chat import Chat
from control.meeting.conference import Conference
from control.meeting.model import LiveMeeting, MeetingRegistry, Participant
from control.meeting.protocol import (
    ClientMessage,
    Limits,
    TokenBucket,
    parse_client_message,
)
from control.meeting.roster import EncodedMessage
from control.meeting.webinar import Webinar
from control.metrics.exporter import Metrics
from control.recording.service import Recordings
from control.store.base import MeetingRecord, ParticipantRecord

log = logging.getLogger(__name__)

# Messages queued to a client that does not read; past this (or max_outbox_bytes) the
# socket is cut.
MAX_OUTBOX = 2000
# A socket over its buckets may go on this many seconds' worth of excess before it is closed.
PATIENCE_S = 5.0
ERROR_INTERVAL_S = 1.0  # at most one rate_limited error per this while over
HARD_CLOSE_TIMEOUT_S = 2.0
HEARTBEAT_S = 30.0
CLOSE_FLUSH_TIMEOUT_S = 5.0
# A socket that has not joined (with a valid token) by then is closed.
JOIN_TIMEOUT_S = 60.0


def _rate_limited() -> SignalingError:
    return SignalingError("rate_limited", "too many messages; slow down")


class SocketPeer:
    """Sends to one WebSocket from any task, in order; implements meetings.Peer. Messages
    are serialized when queued, so the queue is bounded in bytes as well as in count."""

    def __init__(
        self, ws: web.WebSocketResponse, metrics: Metrics, max_outbox_bytes: int,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:  # fmt: skip
        self._ws = ws
        self._transport = transport
        self._metrics = metrics
        self._max_outbox_bytes = max_outbox_bytes
        self._queue: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue()
        self._queued_bytes = 0
        self._closing = False
        self._cut = False
        self._task = asyncio.create_task(self._write_loop(), name="ws-writer")

    def send(self, message: dict[str, Any]) -> None:
        if self._closing:
            return
        if isinstance(message, EncodedMessage):  # one batch for many sockets: encoded once
            text = message.text
        else:
            text = json.dumps(message, separators=(",", ":"))  # ASCII: characters are bytes
        if self._queue.qsize() >= MAX_OUTBOX or self._queued_bytes + len(text) > self._max_outbox_bytes:
            log.warning("signaling client does not read its messages; cutting it off")
            self._metrics.signaling_refused.inc("outbox_full")
            self.cut(closecodes.POLICY_VIOLATION, "too many unread messages")
            return
        if message.get("type") == "error":
            self._metrics.signaling_errors.inc(str(message.get("code", "")))
        self._queued_bytes += len(text)
        self._queue.put_nowait(text)

    def close(self, code: int, reason: str) -> None:
        """Close after the messages already queued are sent."""
        if not self._closing:
            self._closing = True
            self._queue.put_nowait((code, reason))

    def cut(self, code: int, reason: str) -> None:
        """Close now, dropping what is queued (a client that does not read, or floods):
        the close frame goes next, and the connection is dropped if it is still open
        HARD_CLOSE_TIMEOUT_S later (a client that does not read never gets the frame)."""
        if self._cut:
            return
        self._cut = self._closing = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queued_bytes = 0
        self._queue.put_nowait((code, reason))
        asyncio.get_running_loop().call_later(HARD_CLOSE_TIMEOUT_S, self._drop_connection)

    def _drop_connection(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()

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
                self._queued_bytes -= len(item)
                await self._ws.send_str(item)
        except (ConnectionError, RuntimeError) as exc:  # the peer went away mid-send
            log.debug("signaling socket write failed: %s", exc)
            self._closing = True


class SignalingSession:
    """One participant's socket: join token, validation, rate limit, dispatch."""

    def __init__(
        self, endpoint: SignalingEndpoint, meeting_ref: str, ws: web.WebSocketResponse, url_token: str | None = None,
        transport: asyncio.BaseTransport | None = None, on_joined: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        self._endpoint = endpoint
        self._on_joined = on_joined  # the endpoint stops counting it among sockets not joined
        self._meeting_ref = meeting_ref  # the number (or id) in the URL
        self._url_token = url_token
        self._ws = ws
        self._conference = endpoint.conference
        self._metrics = endpoint.metrics
        signaling_cfg = endpoint.settings
        self._max_bytes = signaling_cfg.max_message_bytes
        self._limits = Limits(chat_max_chars=signaling_cfg.chat_max_chars)
        rate, byte_rate = signaling_cfg.messages_per_second, signaling_cfg.bytes_per_second
        self._bucket = TokenBucket(rate=rate, burst=rate)
        self._byte_bucket = TokenBucket(rate=byte_rate, burst=max(byte_rate, 2 * self._max_bytes))
        # What a socket over its buckets may send in excess (dropped unread) before it is closed.
        self._excess = TokenBucket(rate=rate, burst=rate * PATIENCE_S)
        self._excess_bytes = TokenBucket(rate=byte_rate, burst=byte_rate * PATIENCE_S)
        self._last_limited_error = -ERROR_INTERVAL_S
        self.peer = SocketPeer(ws, self._metrics, signaling_cfg.max_outbox_bytes, transport)
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
                if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    data = frame.data
                    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
                    if not self._within_buckets(size):
                        if self._leaving:
                            break
                        continue  # dropped unread
                    if frame.type == WSMsgType.TEXT:
                        await self._on_text(data, size)
                    else:
                        self._error(SignalingError("bad_message", "binary frames are not accepted; send JSON text"))
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

    def _within_buckets(self, size: int) -> bool:
        """Whether a frame of `size` bytes is read at all: it costs one message and its
        bytes (every frame, valid or not). Over: dropped, one `rate_limited` error a second
        at most; past PATIENCE_S seconds' worth of excess, the socket is cut (1008)."""
        if self._bucket.allow() and self._byte_bucket.allow(size):
            return True
        self._metrics.signaling_messages.inc("rate_limited")
        if not (self._excess.allow() and self._excess_bytes.allow(min(size, self._excess_bytes.burst))):
            log.info("signaling client far over its rate limit; closing it")
            self._metrics.signaling_refused.inc("flood")
            self.peer.cut(closecodes.POLICY_VIOLATION, "rate limit")
            self._leaving = True
            return False
        now = asyncio.get_running_loop().time()
        if now - self._last_limited_error >= ERROR_INTERVAL_S:
            self._last_limited_error = now
            self._error(_rate_limited())
        return False

    async def _on_text(self, text: str, size: int) -> None:
        if size > self._max_bytes:  # aiohttp refuses larger frames by their header (1009)
            self._error(SignalingError("too_large", f"message is larger than {self._max_bytes} bytes"))
            return
        try:
            message = parse_client_message(text, self._limits)
        except SignalingError as exc:
            self._metrics.signaling_messages.inc("invalid")
            message_id = exc.extra.pop("id", None)
            self._error(exc, message_id)
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
        redirect = await self._endpoint.elsewhere(record)
        if redirect is not None:  # several nodes: this token's meeting runs on another one
            reply: dict[str, Any] = {"type": "redirect", "url": redirect}
            if message.id is not None:
                reply["id"] = message.id
            self.peer.send(reply)
            self.peer.close(closecodes.REDIRECTED, "the meeting runs on another node")
            return
        if self._on_joined is not None:  # a valid token: counted as a participant from here on
            self._on_joined()
        attendance = self._endpoint.attendance
        meeting, participant = await attendance.connect(record, claims, person, self.peer, message.id)
        self.meeting, self.participant = meeting, participant
        # Every line logged for this socket from now on says whose it is (its task's context).
        logs.bind(meeting=record.meeting_number, participant=participant.participant_id)

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
        elif message.type == "tile_size":
            await conference.set_tile(
                meeting, participant, fields["track_id"], fields["width"], fields["height"], fields["visible"]
            )
        elif message.type == "media_stats":
            if self._endpoint.quality is not None:
                self._endpoint.quality.freezes_reported(meeting, participant, fields["freeze_seconds"])
        elif message.type == "subscribe":
            await conference.set_subscription(meeting, participant, fields["track_id"], fields["enabled"])
        elif message.type in ("recording", "transcription"):
            await self._endpoint.recordings.from_signaling(
                meeting, participant, message.type, fields["action"], fields.get("hints")
            )
        elif message.type in ("hand", "promote", "demote"):
            await self._stage(meeting, participant, message)
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

    async def _stage(self, meeting: LiveMeeting, participant: Participant, message: ClientMessage) -> None:
        """Raised hands, promotions and demotions (control.meeting.webinar)."""
        webinar, target = self._endpoint.webinar, message.fields["participant_id"]
        if message.type == "hand":
            webinar.hand(meeting, participant, message.fields["raised"], target)
        elif message.type == "promote":
            await webinar.promote(meeting, participant, target)
        else:
            await webinar.demote(meeting, participant, target)


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
        public_url: str,
        tokens: Tokens,
        attendance: Attendance,
        conference: Conference,
        chat: Chat,
        recordings: Recordings,
        metrics: Metrics,
        quality: CallQuality | None = None,
        webinar: Webinar,
        cluster: Cluster | None = None,
        registry: MeetingRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.webinar = webinar  # raised hands, promotions, demotions
        self.cluster = cluster  # several nodes: a socket for a meeting held elsewhere is redirected
        self.registry = registry  # the meetings running here (kept here while Redis is away)
        self.quality = quality  # call quality: the clients' freeze reports (`media_stats`)
        self.tokens = tokens
        self.attendance = attendance
        self.conference = conference
        self.chat = chat
        self.recordings = recordings
        self.metrics = metrics
        self.sessions: set[SignalingSession] = set()
        self._public_origin = origin_of(public_url) if public_url else None
        self._allowed_origins = frozenset(settings.allowed_origins)
        # Sockets that have not joined yet, per client (limiter.client_key) and in all.
        self._unjoined: collections.Counter[str] = collections.Counter()
        self._unjoined_total = 0

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/meetings/{meeting_id}/ws", self.handle)

    def origin_allowed(self, request: web.Request) -> bool:
        """A browser's socket must come from the server's own pages (or a listed origin);
        a client that sends no Origin is not a browser a page could misuse."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        origin = origin.strip().lower()
        own = self._public_origin or f"{request.scheme}://{request.host}".lower()
        if origin == own or origin in self._allowed_origins:
            return True
        # Several nodes: a page served by one node opens its socket on the node holding the meeting.
        return self.cluster is not None and origin in self.cluster.node_origins()

    def _hold_unjoined(self, request: web.Request) -> Callable[[], None]:
        """Count a new socket among those not joined, or refuse it (ApiError) when its client
        or everyone has too many; returns the release (idempotent)."""
        client = client_key(client_address(request))
        if self._unjoined[client] >= self.settings.max_unjoined_sockets_per_address:
            self.metrics.signaling_refused.inc("address_limit")
            raise ApiError(429, "rate_limited", "too many connections from this address; join or close them first")
        if self._unjoined_total >= self.settings.max_unjoined_sockets:
            self.metrics.signaling_refused.inc("total_limit")
            raise ApiError(503, "unavailable", "too many connections; try again shortly")
        self._unjoined[client] += 1
        self._unjoined_total += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._unjoined_total -= 1
                self._unjoined[client] -= 1
                if self._unjoined[client] <= 0:
                    del self._unjoined[client]

        return release

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.origin_allowed(request):
            self.metrics.signaling_refused.inc("origin")
            raise ApiError(403, "forbidden", "this page may not open the meeting's socket (Origin)")
        release = self._hold_unjoined(request)
        try:
            meeting_ref = request.match_info["meeting_id"]  # the number (with or without dashes) or the id
            url_token = request.query.get("token") or None
            if url_token is not None:
                await self._check_url_token(meeting_ref, url_token)
            ws = web.WebSocketResponse(
                # Larger messages are refused by their frame header: closed 1009, never read.
                max_msg_size=self.settings.max_message_bytes,
                heartbeat=HEARTBEAT_S,
                compress=False,  # JSON this small gains nothing; inflating costs the server
            )
            await ws.prepare(request)
            session = SignalingSession(self, meeting_ref, ws, url_token, request.transport, release)
            self.sessions.add(session)
            try:
                await session.run()
            finally:
                self.sessions.discard(session)
            return ws
        finally:
            release()

    async def elsewhere(self, record: MeetingRecord) -> str | None:
        """The signaling URL of the other node that holds the meeting, or None (this node,
        or a single node). Without Redis a meeting already running here goes on here."""
        if self.cluster is None:
            return None
        try:
            node = await self.cluster.elsewhere(record.id)
        except (ClusterUnavailable, NoNodeAvailable):
            if self.registry is not None and self.registry.get(record.id) is not None:
                return None
            raise SignalingError("cluster_unavailable", "the cluster cannot place this meeting now; try again") from None
        return signaling_at(node.public_url, record) if node is not None else None

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
