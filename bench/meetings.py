"""How the bench gets into a meeting: create one over REST, open a participant's signaling.

Kept in one place because it is the part of the server's API most likely to change; the
rest of the bench only sees a `MeetingRef` and a joined `SignalingClient`. Two flows:

- open (the walking skeleton): `POST /api/v1/meetings` needs no credentials; everyone
  joins `/api/v1/meetings/{id}/ws` with `{"type": "join", "name"}`.
- accounts (docs/control-plane-reference.md): that POST answers 401. The bench logs in as a host
  (for a server it started: `admin@localhost` and DATA_DIR/initial-host-password; with
  --url: --host-email/--host-password), creates the meeting without a waiting room and
  starts it; each participant `POST .../join {name, passcode}` for a join token, then
  opens the WebSocket with `?token=`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from client.signaling import Message, SignalingClient


@dataclass(frozen=True)
class MeetingRef:
    base_url: str
    meeting_id: str  # the open flow's id, or the accounts flow's meeting number
    passcode: str | None = None  # set: the accounts flow

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + f"/api/v1/meetings/{self.meeting_id}/ws"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HostLogin:
    email: str
    password: str


class BenchError(RuntimeError):
    pass


async def _json(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except ValueError:
        return {"error": {"message": (await response.text())[:200]}}


class MeetingMaker:
    """Creates (and for the accounts flow, starts) meetings; one host login per run."""

    def __init__(self, base_url: str, login: HostLogin | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.login = login
        self.host_token: str | None = None

    async def create(self, session: aiohttp.ClientSession, title: str) -> MeetingRef:
        if self.host_token is None:
            async with session.post(f"{self.base_url}/api/v1/meetings", json={"title": title}) as response:
                body = await _json(response)
                if response.status == 201 and "meeting_id" in body:
                    return MeetingRef(self.base_url, body["meeting_id"])
                if response.status != 401:
                    raise BenchError(f"creating a meeting failed: HTTP {response.status} {body}")
            await self._log_in(session)
        headers = {"Authorization": f"Bearer {self.host_token}"}
        async with session.post(
            f"{self.base_url}/api/v1/meetings", json={"title": title, "waiting_room": False}, headers=headers
        ) as response:
            meeting = await _json(response)
            if response.status != 201:
                raise BenchError(f"creating a meeting failed: HTTP {response.status} {meeting}")
        number = meeting["meeting_number"]
        async with session.post(f"{self.base_url}/api/v1/meetings/{number}/start", headers=headers) as response:
            if response.status != 200:
                raise BenchError(f"starting meeting {number} failed: HTTP {response.status} {await _json(response)}")
        return MeetingRef(self.base_url, number, meeting["passcode"])

    async def _log_in(self, session: aiohttp.ClientSession) -> None:
        if self.login is None:
            raise BenchError("the server wants a host login: pass --host-email and --host-password")
        async with session.post(
            f"{self.base_url}/api/v1/auth/login", json={"email": self.login.email, "password": self.login.password}
        ) as response:
            body = await _json(response)
            if response.status != 200:
                raise BenchError(f"host login failed: HTTP {response.status} {body}")
        self.host_token = body["token"]


async def open_signaling(
    session: aiohttp.ClientSession,
    meeting: MeetingRef,
    name: str,
    handlers: dict[str, Callable[[Message], Any]],
    timeout: float = 20.0,
) -> tuple[SignalingClient, Message]:
    """Connect and join; `handlers` (push type -> callable) are in place before `join`,
    so a push sent right after `joined` (the first subscribe offer) is not missed."""
    url, token = meeting.ws_url, None
    if meeting.passcode is not None:
        async with session.post(
            f"{meeting.base_url}/api/v1/meetings/{meeting.meeting_id}/join",
            json={"name": name, "passcode": meeting.passcode},
        ) as response:
            body = await _json(response)
            if response.status != 200:
                raise BenchError(f"join refused: HTTP {response.status} {body}")
        if body.get("status") != "admitted":
            raise BenchError(f"join left us in {body.get('status')!r}, not admitted")
        url, token = body["ws_url"], body["token"]
    client = SignalingClient(session)
    for push_type, handler in handlers.items():
        client.on(push_type, handler)
    await client.connect(url, timeout=timeout, token=token)
    try:
        joined = await client.join(name, timeout=timeout)
    except BaseException:
        await client.close()
        raise
    return client, joined
