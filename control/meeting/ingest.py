"""Ingests (issue 12, items 4 and 6): a stream a host brings into a live meeting from
outside, as a participant of its own under the meeting's rules.

Two kinds, one model (`control.store.ingests.IngestRecord`), made by the meeting's host for
the current live session, with a display name:

- `whip`: a bearer token (`control.accounts.tokens.Tokens.make_ingest_token`, signed,
  expiring; the store keeps only its SHA-256) lets a WHIP client (RFC 9725) publish: each
  `POST /whip/{number}` is a session, a participant with a publish transport only (it
  receives nothing), whose offer the worker answers (ICE-lite, DTLS passive to an
  `actpass` offer). A new session of the same ingest replaces the one before.
- `rtp`: a plain transport on the meeting's worker with a VP8 and an Opus producer (SSRCs
  chosen here), joined at once; the host gets the address, the optional SRTP key and
  ready commands (`control.meeting.ingest_commands`).

The rules of the meeting apply because the ingest is a participant admitted through
`control.meeting.attendance.Attendance.admit_connected`: it is listed with its name, counts
toward the meeting's capacity (the store's atomic insert, then the conference's lock),
hears the recording notice and is held under the consent policy `require` (its media
stays paused on the media server until the host continues for it: the host created it,
and a stream cannot press Continue). It needs the meeting's account to be available (a
suspended host or customer: refused, and their meetings end); an ended meeting ends its
ingests (`meeting_ended`, a lifecycle listener) and their tokens stop working; the host's
removal of the participant revokes the ingest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from common.channel import ChannelError
from control.accounts.tokens import TokenError, Tokens
from control.clock import Clock
from control.errors import ApiError, SignalingError
from control.meeting import ingest_commands
from control.meeting.attendance import Attendance
from control.meeting.conference import Conference
from control.meeting.model import LiveMeeting, Participant, new_id
from control.store.base import LiveSession, MeetingFull, MeetingRecord, Store
from control.store.ingests import IngestRecord
from control.tasks import BackgroundTasks
from sfu import api

log = logging.getLogger(__name__)

# A WHIP token lives this long at most (and never past its live session).
INGEST_TOKEN_TTL_S = 24 * 3600
# What an ingest participant may do: publish, nothing else (it has no socket).
INGEST_GRANTS = {"publish": True, "subscribe": False, "chat": False, "screen": False, "moderate": False}
# The payload types of an RTP ingest: the worker's defaults (docs/plain-rtp.md).
VP8_PAYLOAD_TYPE, OPUS_PAYLOAD_TYPE = 96, 111
SRTP_KEY_BYTES = 30  # AES_CM_128_HMAC_SHA1_80: 16-byte key || 14-byte salt (RFC 4568 §6.2.1)
# Why an ingest's participant was taken out → what becomes of the ingest (None: nothing,
# a WHIP client may post again).
_EXIT_OUTCOME = {"removed": ("revoked", "removed_by_host"), "ended": ("ended", "meeting_ended")}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(eq=False)
class IngestSession:
    """An ingest connected to its meeting: its participant there."""

    ingest: IngestRecord
    meeting: LiveMeeting
    participant: Participant
    ice_ufrag: str = ""  # whip: the client's, from its offer (a PATCH with another is an ICE restart)
    etag: str = ""

    @property
    def session_id(self) -> str:
        return self.participant.participant_id


class IngestPeer:
    """The `Peer` of an ingest's participant: nobody to send to; a close is the server
    taking it out (the meeting ended, the host removed it, the media server restarted)."""

    def __init__(self, ingests: Ingests, session_id: str) -> None:
        self._ingests = ingests
        self._session_id = session_id

    def send(self, message: dict[str, Any]) -> None:
        """Signaling news has no reader here: the host sees the ingest's state over REST."""

    def close(self, code: int, reason: str) -> None:
        self._ingests.taken_out(self._session_id)


@dataclass(frozen=True)
class RtpIngestMade:
    """What the host gets back for a new RTP ingest (the key only now, never again)."""

    ingest: IngestRecord
    srtp_key_base64: str | None
    commands: dict[str, str]


class Ingests:
    def __init__(
        self,
        *,
        store: Store,
        tokens: Tokens,
        attendance: Attendance,
        conference: Conference,
        clock: Clock,
        tasks: BackgroundTasks,
        listen_ip: str,
        announced_ip: str,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._attendance = attendance
        self._conference = conference
        self._clock = clock
        self._tasks = tasks
        self._listen_ip = listen_ip  # where a plain transport binds (sfu.listen_ip)
        self._announced_ip = announced_ip  # where senders are told to send
        self._sessions: dict[str, IngestSession] = {}  # by session (participant) id

    # ------------------------------------------------------------------ the host's side

    async def create_whip(self, record: MeetingRecord, host_id: str, name: str) -> tuple[IngestRecord, str]:
        """A WHIP ingest of the meeting's live session and its bearer token (shown once)."""
        live_session = await self._require_live(record)
        ingest_id = new_id()
        expires_at = self._clock.time() + INGEST_TOKEN_TTL_S
        token = self._tokens.make_ingest_token(ingest_id, record.id, expires_at, now=self._clock.time())
        ingest = await self._store.create_ingest(
            meeting_id=record.id, live_session_id=live_session.id, kind="whip", name=name, created_by=host_id,
            expires_at=expires_at, ingest_id=ingest_id, token_hash=token_hash(token),
        )  # fmt: skip
        log.info("meeting %s: WHIP ingest %s made", record.id, ingest_id)
        return ingest, token

    async def create_rtp(self, record: MeetingRecord, host_id: str, name: str, srtp: bool) -> RtpIngestMade:
        """An RTP ingest, in the meeting at once: a plain transport with a VP8 and an Opus
        producer. Its participant leaves when it is revoked or the meeting ends."""
        live_session = await self._require_live(record)
        ingest = await self._store.create_ingest(
            meeting_id=record.id, live_session_id=live_session.id, kind="rtp", name=name, created_by=host_id,
            expires_at=self._clock.time() + INGEST_TOKEN_TTL_S,
        )  # fmt: skip
        try:
            session = await self._join(record, live_session, ingest, directions=())
            details, key = await self._plain_media(session, srtp)
        except BaseException:
            await self._store.update_ingest(ingest.id, state="ended", end_reason="failed")
            session = self._find_session(ingest.id)
            if session is not None:
                await self._end_session(session)
            raise
        ingest = await self._store.update_ingest(ingest.id, details=details)
        session.ingest = ingest
        commands = ingest_commands.rtp_commands(
            details["ip"], details["port"], details["video_ssrc"], details["audio_ssrc"], key
        )
        return RtpIngestMade(ingest, key, commands)

    async def list(self, record: MeetingRecord) -> list[tuple[IngestRecord, IngestSession | None]]:
        """The meeting's ingests, newest last, each with its session when connected."""
        rows = await self._store.list_ingests(record.id)
        live_session = await self._store.get_live_session(record.id)
        for index, row in enumerate(rows):
            # Its live session ended while nobody listened (control restarted meanwhile).
            if row.active and (live_session is None or live_session.id != row.live_session_id):
                rows[index] = await self._store.update_ingest(row.id, state="ended", end_reason="meeting_ended")
        return [(row, self._find_session(row.id)) for row in rows]

    async def get(self, record: MeetingRecord, ingest_id: str) -> IngestRecord:
        ingest = await self._store.get_ingest(ingest_id) if ingest_id else None
        if ingest is None or ingest.meeting_id != record.id:
            raise ApiError(404, "not_found", "no such ingest in this meeting")
        return ingest

    async def revoke(self, record: MeetingRecord, ingest_id: str) -> IngestRecord:
        """The host revokes it: its token stops working, its session leaves the meeting."""
        ingest = await self.get(record, ingest_id)
        if ingest.active:
            ingest = await self._store.update_ingest(ingest.id, state="revoked", end_reason="revoked_by_host")
        session = self._find_session(ingest.id)
        if session is not None:
            await self._end_session(session)
        return ingest

    def session_of(self, ingest_id: str) -> IngestSession | None:
        return self._find_session(ingest_id)

    # ------------------------------------------------------------------ WHIP

    async def whip_publish(self, record: MeetingRecord, token: str | None, offer: str) -> tuple[IngestSession, str]:
        """A WHIP client's offer: a new session (replacing the ingest's previous one) and
        the worker's answer. ApiError: 401/403 (token), 409 (not live, full), 400 (SDP)."""
        ingest = await self._authorized(record, token)
        live_session = await self._store.get_live_session(record.id)
        if live_session is None or live_session.id != ingest.live_session_id:
            await self._store.update_ingest(ingest.id, state="ended", end_reason="meeting_ended")
            raise ApiError(403, "ingest_ended", "the meeting session this token was for has ended")
        previous = self._find_session(ingest.id)
        if previous is not None:
            await self._end_session(previous)  # an encoder that reconnects: the new session wins
        session = await self._join(record, live_session, ingest, directions=("publish",))
        try:
            answer = await self._conference.publish(session.meeting, session.participant, offer, {})
        except SignalingError as exc:
            await self._end_session(session)
            if exc.extra.get("reason") == "invalid":
                raise ApiError(400, "bad_sdp", exc.message) from None
            raise ApiError(502, "media_error", exc.message) from None
        session.ice_ufrag = _attribute(offer, "ice-ufrag")
        session.etag = f'"{secrets.token_hex(8)}"'
        return session, answer

    async def whip_session(self, record: MeetingRecord, token: str | None, session_id: str) -> IngestSession:
        """The session `session_id` of the ingest whose token this is (401/403/404)."""
        ingest = await self._authorized(record, token, revoked_ok=True)
        session = self._sessions.get(session_id)
        if session is None or session.ingest.id != ingest.id:
            raise ApiError(404, "not_found", "no such WHIP session")
        return session

    async def whip_end(self, record: MeetingRecord, token: str | None, session_id: str) -> None:
        await self._end_session(await self.whip_session(record, token, session_id))

    async def _authorized(self, record: MeetingRecord, token: str | None, *, revoked_ok: bool = False) -> IngestRecord:
        """The active ingest of `token` (signed, unexpired, for this meeting, its hash the
        stored one) whose meeting's account is available. 401: no or a bad token; 403:
        revoked or ended, or the account is suspended."""
        if token is None:
            raise ApiError(401, "unauthorized", "this request needs Authorization: Bearer <ingest token>")
        try:
            ingest_id = self._tokens.verify_ingest_token(token, record.id)
        except TokenError as exc:
            raise ApiError(401, "unauthorized", exc.message) from None
        ingest = await self._store.get_ingest(ingest_id)
        if ingest is None or not hmac.compare_digest(ingest.token_hash, token_hash(token)):
            raise ApiError(401, "unauthorized", "unknown ingest token")
        if not ingest.active and not revoked_ok:
            raise ApiError(403, "ingest_revoked", f"this ingest is {ingest.state}")
        if not await self._attendance.account_available(record):
            raise ApiError(403, "meeting_unavailable", "this meeting is not available")
        return ingest

    # ------------------------------------------------------------------ joining, leaving

    async def _require_live(self, record: MeetingRecord) -> LiveSession:
        live_session = await self._store.get_live_session(record.id)
        if live_session is None:
            raise ApiError(409, "not_live", "the meeting is not live; start it first")
        return live_session

    async def _join(
        self, record: MeetingRecord, live_session: LiveSession, ingest: IngestRecord, directions: tuple[str, ...]
    ) -> IngestSession:
        """The ingest's participant, admitted (a place in the meeting first: the store's
        count, atomic), with the WebRTC transports of `directions`."""
        try:
            meeting = await self._attendance.live_meeting(record, live_session)
        except SignalingError as exc:
            raise ApiError(409, exc.code, exc.message) from None
        assert meeting.limits is not None
        try:
            person = await self._store.add_participant(
                record.id, name=ingest.name, role="participant", state="admitted", live_session_id=live_session.id,
                max_present=meeting.limits.capacity,
            )  # fmt: skip
        except MeetingFull as exc:
            raise ApiError(403, "meeting_full", str(exc)) from None
        participant = Participant(person.id, ingest.name, IngestPeer(self, person.id), grants=dict(INGEST_GRANTS))
        participant.directions = directions
        session = IngestSession(ingest, meeting, participant)
        self._sessions[person.id] = session
        try:
            await self._attendance.admit_connected(meeting, participant)
        except SignalingError as exc:
            self._sessions.pop(person.id, None)
            await self._store.update_participant(person.id, state="left")
            status = {"meeting_full": 403, "meeting_ended": 409}.get(exc.code, 503)
            raise ApiError(status, exc.code, exc.message) from None
        log.info("meeting %s: ingest %s (%s) in as %s", record.id, ingest.id, ingest.kind, person.id)
        return session

    async def _plain_media(self, session: IngestSession, srtp: bool) -> tuple[dict[str, Any], str | None]:
        """The RTP ingest's plain transport and its two producers; (details, SRTP key)."""
        meeting, participant = session.meeting, session.participant
        assert meeting.placement is not None
        transport_id = new_id()
        try:
            info = await self._conference.request(meeting, api.PlainTransportCreate(
                router_id=meeting.placement.router_id, transport_id=transport_id, listen_ip=self._listen_ip,
                srtp=srtp))  # fmt: skip
            participant.publish_transport_id = transport_id  # closed with the participant
            key = None
            if srtp:  # the sender's key: what the worker decrypts with (ours it never needs)
                key = base64.b64encode(secrets.token_bytes(SRTP_KEY_BYTES)).decode()
                await self._conference.request(
                    meeting, api.PlainTransportConnect(transport_id=transport_id, remote_srtp_key_base64=key)
                )
        except ChannelError as exc:
            raise ApiError(502, "media_error", f"plain transport: {exc.message}") from None
        assert isinstance(info, api.PlainTransportInfo)
        video_ssrc, audio_ssrc = _ssrc(), _ssrc()
        while audio_ssrc == video_ssrc:
            audio_ssrc = _ssrc()
        producers = [
            api.PlainProducerCreate(transport_id=transport_id, kind="video", codec_name="VP8", clock_rate=90000,
                                    payload_type=VP8_PAYLOAD_TYPE, ssrc=video_ssrc),
            api.PlainProducerCreate(transport_id=transport_id, kind="audio", codec_name="opus", clock_rate=48000,
                                    payload_type=OPUS_PAYLOAD_TYPE, ssrc=audio_ssrc, channels=2),
        ]  # fmt: skip
        try:
            await self._conference.publish_plain(meeting, participant, producers)
        except SignalingError as exc:
            raise ApiError(502, "media_error", exc.message) from None
        ip = self._announced_ip if info.ip in ("0.0.0.0", "::") else info.ip
        details = {"ip": ip, "port": info.port, "video_ssrc": video_ssrc, "audio_ssrc": audio_ssrc, "srtp": srtp}
        return details, key

    async def _end_session(self, session: IngestSession) -> None:
        """We end it (DELETE, a new session, a revocation): out of the meeting, recorded."""
        if self._sessions.pop(session.session_id, None) is None:
            return
        meeting, participant = session.meeting, session.participant
        await self._conference.leave(meeting, participant)
        await self._attendance.disconnected(meeting, participant, was_admitted=True)
        if session.ingest.kind == "rtp":  # its port is gone with it
            await self._ended(session.ingest.id, "ended", "left")
        log.info("meeting %s: ingest %s session %s ended", meeting.meeting_id, session.ingest.id, session.session_id)

    def taken_out(self, session_id: str) -> None:
        """The server took an ingest's participant out (IngestPeer.close)."""
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._tasks.spawn(self._after_taken_out(session), f"ingest-out-{session_id}")

    async def _after_taken_out(self, session: IngestSession) -> None:
        participant = session.participant
        await self._attendance.disconnected(session.meeting, participant, was_admitted=True)
        outcome = _EXIT_OUTCOME.get(participant.exit_reason or "")
        if outcome is None and session.ingest.kind == "rtp":
            outcome = ("ended", participant.exit_reason or "left")  # a plain transport is not re-made
        if outcome is not None:
            await self._ended(session.ingest.id, *outcome)

    async def _ended(self, ingest_id: str, state: str, reason: str) -> None:
        ingest = await self._store.get_ingest(ingest_id)
        if ingest is not None and ingest.active:
            await self._store.update_ingest(ingest_id, state=state, end_reason=reason)

    def _find_session(self, ingest_id: str) -> IngestSession | None:
        return next((s for s in self._sessions.values() if s.ingest.id == ingest_id), None)

    # ------------------------------------------------------------------ lifecycle listener

    def meeting_started(self, record: MeetingRecord, meeting: LiveMeeting) -> None:
        """Nothing to do: ingests are made for a live session."""

    async def meeting_ended(self, meeting: LiveMeeting, reason: str) -> None:
        """Its ingests end with it (their participants went with everyone)."""
        for ingest in await self._store.list_ingests(meeting.meeting_id, states=["active"]):
            await self._store.update_ingest(ingest.id, state="ended", end_reason="meeting_ended")

    async def limits_changed(self, meeting: LiveMeeting) -> None:
        """The conference applies the new limits to everyone alike."""


def _ssrc() -> int:
    """A random SSRC below 2**31: ffmpeg's -ssrc option is a signed 32-bit integer."""
    return secrets.randbelow(0x7FFFFFFE) + 1


def _attribute(sdp: str, name: str) -> str:
    """The first `a=name:value` of an SDP text ("" when absent)."""
    prefix = f"a={name}:"
    for line in sdp.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return ""
