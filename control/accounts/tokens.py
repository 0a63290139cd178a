"""Signed tokens of the meeting side: join tokens (participants) and link tokens (join URLs).

All are JWTs signed with HS256 and the server's `token_secret` (config `auth.token_secret`
or DATA_DIR/token-secret, see control.accounts.bootstrap), made and checked by one `Tokens`
(built by the app with that secret and the store). Their audiences differ, so one can
never stand in for another.

- Join token (`aud` "conclave:join"), from `POST /meetings/{number}/join` or the host's
  start: `sub` participant id, `mtg` meeting id, `lsn` live session id (None before the
  host started), `name`, `role` host|participant, `grants` {publish, subscribe, chat,
  screen, moderate}, `iat`, `exp` (short: `auth.join_token_ttl_s`, long enough to connect;
  a connected socket is not cut at expiry), `jti`; host tokens also carry `hsn`, the host
  session that started the meeting (its controls die with that sign-in).
  Bound to the meeting: a token for another meeting is refused. Revoked when its
  participant is removed or denied (the store's participant row says so), checked by
  `check_join_token`.
- Link token (`aud` "conclave:link"), in a join URL `/m/{number}?t=...`: `mtg`, `num`
  and `pcv`, a keyed digest of the passcode (never the passcode): changing the passcode
  invalidates old links. No expiry: the link lives as long as the meeting and passcode.
- Download token (`aud` "conclave:download"), a recording file's short-lived link: `rec`,
  `fid`, `cus` (recording, file, customer), `exp` five minutes after `iat`.
- Viewer token (`aud` "conclave:viewer"), a WHEP player's bearer (control.meeting.viewers):
  `mtg` meeting id, `vwt` the store's viewer_token row (its label, revocation), `exp`.
  Checked against that row on every use (`check_viewer_token`): revoked, another meeting
  or an unknown row is refused.
- Transcript token (`aud` "conclave:transcript"), the `t=` of a transcript link: `rec`,
  `exp` (`auth.transcript_link_ttl_s`). Given only to the host and the participants; a link
  never carries a sign-in or a join token.
- Reconnect credential (`aud` "conclave:reconnect"), given to every admitted participant
  in the meeting (`reconnect_credential`, refreshed while they stay: control.meeting.resumption):
  `sub`, `mtg`, `lsn` (the live session they were admitted to), `name`, `role`, `hsn`,
  `iat`, `exp` (`auth.reconnect_ttl_s`). It proves who someone was after the server
  restarted or the node holding the meeting died: `POST /meetings/{number}/rejoin` trades
  it for a join token marked `rsm` (resumed), which lets them back in without the waiting
  room. Checked against an injected `now` (fake clocks in tests).
- Ingest token (`aud` "conclave:ingest"), a WHIP publisher's bearer token: `ing` (the
  ingest), `mtg`, `exp` (the ingest's expiry), `jti`. Revocable: the store's ingest row
  must be active and hold the token's SHA-256 (control.meeting.ingest).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from control.store.base import (
    MeetingRecord,
    ParticipantRecord,
    Recording,
    RecordingFile,
    Store,
    ViewerToken,
)

ALGORITHM = "HS256"
JOIN_AUDIENCE = "conclave:join"
LINK_AUDIENCE = "conclave:link"
ISSUER = "conclave"
GRANT_NAMES = ("publish", "subscribe", "chat", "screen", "moderate")
# Clock skew tolerated when checking exp/iat (several control nodes later).
LEEWAY_S = 5
MAX_TOKEN_CHARS = 4096
DOWNLOAD_AUDIENCE = "conclave:download"
DOWNLOAD_TTL_S = 300
TRANSCRIPT_AUDIENCE = "conclave:transcript"
INGEST_AUDIENCE = "conclave:ingest"
RECONNECT_AUDIENCE = "conclave:reconnect"
VIEWER_AUDIENCE = "conclave:viewer"


class TokenError(Exception):
    """A token that cannot be used. `code`: invalid_token | token_expired | wrong_meeting |
    revoked."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class JoinClaims:
    participant_id: str
    meeting_id: str
    live_session_id: str | None
    name: str
    role: str  # host | participant
    grants: dict[str, bool]
    issued_at: int
    expires_at: int
    token_id: str
    host_session_id: str | None = None
    resumed: bool = False  # made from a reconnect credential: they were admitted before

    @property
    def is_host(self) -> bool:
        return self.role == "host"

    def may(self, grant: str) -> bool:
        return bool(self.grants.get(grant))


def grants_for(role: str) -> dict[str, bool]:
    """What a role may do: everyone publishes, subscribes, chats and shares a screen; only
    the host moderates."""
    grants = {name: True for name in GRANT_NAMES}
    grants["moderate"] = role == "host"
    return grants


class Tokens:
    """Makes and checks every signed token of the server (see the module's doc)."""

    def __init__(self, secret: str, store: Store, join_ttl_s: int) -> None:
        if not secret:
            raise ValueError("the token secret is empty (control.accounts.bootstrap.resolve_secrets)")
        self._secret = secret
        self._store = store
        self.join_ttl_s = join_ttl_s

    # ------------------------------------------------------------------ join tokens

    def make_join_token(
        self,
        *,
        participant_id: str,
        meeting_id: str,
        live_session_id: str | None,
        name: str,
        role: str,
        host_session_id: str | None = None,
        resumed: bool = False,
        now: float | None = None,
    ) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": JOIN_AUDIENCE,
            "sub": participant_id,
            "mtg": meeting_id,
            "lsn": live_session_id,
            "name": name,
            "role": role,
            "grants": grants_for(role),
            "iat": issued,
            "exp": issued + int(self.join_ttl_s),
            "jti": secrets.token_urlsafe(12),
        }
        if host_session_id is not None:
            claims["hsn"] = host_session_id
        if resumed:
            claims["rsm"] = True
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_join_token(self, token: object, *, meeting_id: str | None = None, verify_exp: bool = True) -> JoinClaims:
        """The claims of a valid join token (signature, audience, expiry, shape), bound to
        `meeting_id` when given. Raises TokenError. Does not check revocation (async: see
        `check_join_token`)."""
        payload = self._decode(token, JOIN_AUDIENCE, verify_exp=verify_exp)
        try:
            claims = _join_claims(payload)
        except (KeyError, TypeError, ValueError):
            raise TokenError("invalid_token", "the join token is malformed") from None
        if meeting_id is not None and not hmac.compare_digest(claims.meeting_id, meeting_id):
            raise TokenError("wrong_meeting", "this token is for another meeting")
        return claims

    async def check_join_token(
        self, token: object, meeting_id: str, *, verify_exp: bool = True
    ) -> tuple[JoinClaims, ParticipantRecord]:
        """A join token for `meeting_id` that is valid and not revoked: (claims, the store's
        participant). Revoked: the participant was removed or denied, or is unknown to the
        store (the meeting was deleted and made again). Raises TokenError."""
        claims = self.verify_join_token(token, meeting_id=meeting_id, verify_exp=verify_exp)
        participant = await self._store.get_participant(claims.participant_id)
        if participant is None or participant.meeting_id != meeting_id:
            raise TokenError("revoked", "this join token is no longer valid")
        if participant.removed or participant.state in ("removed", "denied"):
            raise TokenError("revoked", "you were removed from this meeting")
        return claims, participant

    # ------------------------------------------------------------------ reconnect credentials

    def make_reconnect_credential(self, claims: ReconnectClaims) -> str:
        """The signed form of `claims` (their `issued_at` and `expires_at` included)."""
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": RECONNECT_AUDIENCE,
            "sub": claims.participant_id,
            "mtg": claims.meeting_id,
            "lsn": claims.live_session_id,
            "name": claims.name,
            "role": claims.role,
            "iat": claims.issued_at,
            "exp": claims.expires_at,
        }
        if claims.host_session_id is not None:
            payload["hsn"] = claims.host_session_id
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def verify_reconnect_credential(self, credential: object, meeting_id: str, now: float) -> ReconnectClaims:
        """The claims of a credential signed here for `meeting_id` and not expired at `now`
        (with LEEWAY_S). Raises TokenError: invalid_token, token_expired, wrong_meeting."""
        payload = self._decode(credential, RECONNECT_AUDIENCE, verify_exp=False)
        try:
            claims = _reconnect_claims(payload)
        except (KeyError, TypeError, ValueError):
            raise TokenError("invalid_token", "the reconnect credential is malformed") from None
        if not hmac.compare_digest(claims.meeting_id, meeting_id):
            raise TokenError("wrong_meeting", "this credential is for another meeting")
        if now > claims.expires_at + LEEWAY_S:
            raise TokenError("token_expired", "the reconnect credential has expired; join again")
        if claims.issued_at > now + LEEWAY_S:
            raise TokenError("invalid_token", "the reconnect credential is not valid yet")
        return claims

    # ------------------------------------------------------------------ link tokens

    def passcode_digest(self, meeting_id: str, passcode: str) -> str:
        """A keyed digest of the passcode: reveals nothing without the secret (a passcode
        is short, so an unkeyed hash would be guessed offline)."""
        mac = hmac.new(self._secret.encode(), f"passcode\0{meeting_id}\0{passcode}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:16]).rstrip(b"=").decode()

    def make_link_token(self, meeting: MeetingRecord) -> str:
        """The `t=` of a join URL for `meeting`."""
        claims = {
            "iss": ISSUER,
            "aud": LINK_AUDIENCE,
            "mtg": meeting.id,
            "num": meeting.meeting_number,
            "pcv": self.passcode_digest(meeting.id, meeting.passcode),
            "iat": int(time.time()),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def link_token_number(self, token: object) -> str | None:
        """The meeting number a valid link token names (signature checked), else None."""
        try:
            payload = self._decode(token, LINK_AUDIENCE, verify_exp=False)
        except TokenError:
            return None
        number = payload.get("num")
        return number if isinstance(number, str) else None

    def verify_link_token(self, token: object, meeting: MeetingRecord) -> bool:
        """True when `token` is a link token for this very meeting and its current passcode."""
        try:
            payload = self._decode(token, LINK_AUDIENCE, verify_exp=False)
        except TokenError:
            return False
        mtg, num, pcv = payload.get("mtg"), payload.get("num"), payload.get("pcv")
        if not (isinstance(mtg, str) and isinstance(num, str) and isinstance(pcv, str)):
            return False
        expected = self.passcode_digest(meeting.id, meeting.passcode)
        same_meeting = hmac.compare_digest(mtg, meeting.id) & hmac.compare_digest(num, meeting.meeting_number)
        return bool(same_meeting & hmac.compare_digest(pcv, expected))

    # ------------------------------------------------------------------ download links

    def make_download_token(self, recording: Recording, item: RecordingFile, *, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": ISSUER,
            "aud": DOWNLOAD_AUDIENCE,
            "rec": recording.id,
            "fid": item.id,
            "cus": recording.customer_id,
            "iat": issued,
            "exp": issued + DOWNLOAD_TTL_S,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_download_token(self, token: str) -> tuple[str, str, str] | None:
        """(recording id, file id, customer id) of a valid, unexpired link, else None."""
        try:
            claims = self._decode(token, DOWNLOAD_AUDIENCE, verify_exp=True)
        except TokenError:
            return None
        values = (claims.get("rec"), claims.get("fid"), claims.get("cus"))
        if not all(isinstance(value, str) and value for value in values):
            return None
        return values  # type: ignore[return-value]

    # ------------------------------------------------------------------ transcript links

    def make_transcript_token(self, recording_id: str, ttl_s: int, *, now: float | None = None) -> str:
        """The `t=` of a transcript link: this recording's transcript only, until `ttl_s`."""
        issued = int(time.time() if now is None else now)
        claims = {"iss": ISSUER, "aud": TRANSCRIPT_AUDIENCE, "rec": recording_id, "iat": issued, "exp": issued + ttl_s}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_transcript_token(self, token: object, recording_id: str) -> bool:
        try:
            claims = self._decode(token, TRANSCRIPT_AUDIENCE, verify_exp=True)
        except TokenError:
            return False
        rec = claims.get("rec")
        return isinstance(rec, str) and hmac.compare_digest(rec, recording_id)

    # ------------------------------------------------------------------ ingest tokens

    def make_ingest_token(self, ingest_id: str, meeting_id: str, expires_at: float, *, now: float | None = None) -> str:
        """A WHIP publisher's bearer token for ingest `ingest_id` of `meeting_id`."""
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": ISSUER, "aud": INGEST_AUDIENCE, "ing": ingest_id, "mtg": meeting_id, "iat": issued,
            "exp": int(expires_at), "jti": secrets.token_urlsafe(12),
        }  # fmt: skip
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_ingest_token(self, token: object, meeting_id: str) -> str:
        """The ingest id of a valid, unexpired ingest token for `meeting_id`. Raises
        TokenError (revocation is the store's: control.meeting.ingest)."""
        claims = self._decode(token, INGEST_AUDIENCE, verify_exp=True)
        ingest_id, mtg = claims.get("ing"), claims.get("mtg")
        if not (isinstance(ingest_id, str) and ingest_id and isinstance(mtg, str)):
            raise TokenError("invalid_token", "the ingest token is malformed")
        if not hmac.compare_digest(mtg, meeting_id):
            raise TokenError("wrong_meeting", "this token is for another meeting")
        return ingest_id

    # ------------------------------------------------------------------ viewer tokens

    def make_viewer_token(self, record: ViewerToken) -> str:
        """The signed token of a viewer_token row (expiring with it)."""
        claims = {
            "iss": ISSUER,
            "aud": VIEWER_AUDIENCE,
            "mtg": record.meeting_id,
            "vwt": record.id,
            "iat": int(record.created_at),
            "exp": int(record.expires_at),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    async def check_viewer_token(self, token: object, meeting_id: str) -> ViewerToken:
        """The row of a valid viewer token for `meeting_id`. TokenError: invalid_token,
        token_expired, wrong_meeting, revoked."""
        payload = self._decode(token, VIEWER_AUDIENCE, verify_exp=True)
        token_id, token_meeting = payload.get("vwt"), payload.get("mtg")
        if not isinstance(token_id, str) or not isinstance(token_meeting, str):
            raise TokenError("invalid_token", "the viewer token is malformed")
        if not hmac.compare_digest(token_meeting, meeting_id):
            raise TokenError("wrong_meeting", "this token is for another meeting")
        record = await self._store.get_viewer_token(token_id)
        if record is None or record.meeting_id != meeting_id:
            raise TokenError("revoked", "this viewer token no longer exists")
        if record.revoked_at is not None:
            raise TokenError("revoked", "this viewer token was revoked")
        return record

    # ------------------------------------------------------------------ decoding

    def _decode(self, token: object, audience: str, *, verify_exp: bool) -> dict[str, Any]:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenError("invalid_token", "missing or malformed token")
        options = {"require": ["iat", "aud", "iss"], "verify_exp": verify_exp}
        if audience == RECONNECT_AUDIENCE:
            options["verify_iat"] = False  # its times are checked against the caller's clock
        if verify_exp and audience in (JOIN_AUDIENCE, DOWNLOAD_AUDIENCE, TRANSCRIPT_AUDIENCE, INGEST_AUDIENCE, VIEWER_AUDIENCE):
            options["require"] = ["iat", "aud", "iss", "exp"]
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],  # never "none", never what the token's header asks for
                audience=audience,
                issuer=ISSUER,
                leeway=LEEWAY_S,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired", "the token has expired; join again") from None
        except jwt.PyJWTError:
            raise TokenError("invalid_token", "invalid token") from None
        if not isinstance(payload, dict):
            raise TokenError("invalid_token", "invalid token")
        return payload


def _join_claims(payload: dict[str, Any]) -> JoinClaims:
    def text(name: str) -> str:
        value = payload[name]
        if not isinstance(value, str) or not value:
            raise ValueError(name)
        return value

    live_session_id = payload.get("lsn")
    if live_session_id is not None and not isinstance(live_session_id, str):
        raise ValueError("lsn")
    role = text("role")
    if role not in ("host", "participant"):
        raise ValueError("role")
    raw_grants = payload["grants"]
    if not isinstance(raw_grants, dict):
        raise ValueError("grants")
    host_session_id = payload.get("hsn")
    if host_session_id is not None and not isinstance(host_session_id, str):
        raise ValueError("hsn")
    return JoinClaims(
        participant_id=text("sub"),
        meeting_id=text("mtg"),
        live_session_id=live_session_id,
        name=text("name"),
        role=role,
        grants={name: raw_grants.get(name) is True for name in GRANT_NAMES},
        issued_at=int(payload["iat"]),
        expires_at=int(payload["exp"]),
        token_id=text("jti"),
        host_session_id=host_session_id,
        resumed=payload.get("rsm") is True,
    )


@dataclass(frozen=True, slots=True)
class ReconnectClaims:
    """What a reconnect credential says: who was admitted to which live session."""

    participant_id: str
    meeting_id: str
    live_session_id: str
    name: str
    role: str  # host | participant
    issued_at: int
    expires_at: int
    host_session_id: str | None = None


def _reconnect_claims(payload: dict[str, Any]) -> ReconnectClaims:
    values = {key: payload[key] for key in ("sub", "mtg", "lsn", "name", "role")}
    if not all(isinstance(value, str) and value for value in values.values()):
        raise ValueError("a claim is missing or empty")
    if values["role"] not in ("host", "participant"):
        raise ValueError("role")
    issued, expires, host_session_id = payload["iat"], payload["exp"], payload.get("hsn")
    if not isinstance(issued, int) or not isinstance(expires, int) or isinstance(issued, bool) or isinstance(expires, bool):
        raise ValueError("iat/exp")
    if host_session_id is not None and not isinstance(host_session_id, str):
        raise ValueError("hsn")
    return ReconnectClaims(values["sub"], values["mtg"], values["lsn"], values["name"], values["role"], issued,
                           expires, host_session_id)  # fmt: skip
