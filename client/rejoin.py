"""Coming back after the connection is lost (docs/signaling.md, "Reconnecting"): the
server restarted, the node holding the meeting died, the network dropped.

An admitted participant holds the server's latest reconnect credential
(`reconnect_credential` pushes). `request_rejoin` trades it, through the REST base URL
(any node: it routes), for a join token that lets us back in as ourselves, without the
waiting room, and the socket URL of the node holding the meeting. The bot retries with
`backoff_delay` until the server answers; a refusal (`RejoinRefused`) is final for that
credential.
"""

from __future__ import annotations

import random
import urllib.parse
from typing import Any, Callable

import aiohttp

# Closes after which we do not come back: we left (1000), the host's sign-in ended or we
# joined elsewhere (4001), the meeting ended (4002), removed (4003), denied (4004), and a
# redirect (4010), which the join follows itself.
FINAL_CLOSE_CODES = frozenset({1000, 4001, 4002, 4003, 4004, 4010})
BACKOFF_FIRST_S = 0.3
BACKOFF_MAX_S = 2.0  # a restarted server is back in seconds: look often
GIVE_UP_AFTER_S = 120.0


class RejoinRefused(RuntimeError):
    """The server will not take the credential back (`code`: token_expired, invalid_token,
    removed, not_admitted, meeting_ended, ...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"rejoin refused ({status} {code}): {message}")
        self.status = status
        self.code = code


def should_reconnect(close_code: int | None) -> bool:
    """A socket the server (or the network) closed with this code: come back?"""
    return close_code not in FINAL_CLOSE_CODES


def backoff_delay(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before attempt `attempt` (0-based): doubling, capped, with jitter so a whole
    meeting does not knock at the same instant."""
    base = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt)
    return base * (0.75 + 0.5 * rand())


async def request_rejoin(base_url: str, meeting: str, credential: str, session: aiohttp.ClientSession) -> dict[str, Any]:
    """POST /api/v1/meetings/{meeting}/rejoin: {token, participant_id, ws_url, status, role}.
    RejoinRefused for a 4xx other than 429; network errors, 429 and 5xx raise
    aiohttp.ClientError (try again later)."""
    url = base_url.rstrip("/") + f"/api/v1/meetings/{urllib.parse.quote(meeting)}/rejoin"
    async with session.post(url, json={"credential": credential}, timeout=aiohttp.ClientTimeout(total=10)) as response:
        payload = await response.json(content_type=None)
        if response.status == 200 and isinstance(payload, dict):
            return payload
        error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
        if 400 <= response.status < 500 and response.status != 429:
            raise RejoinRefused(response.status, str(error.get("code")), str(error.get("message")))
        raise aiohttp.ClientResponseError(response.request_info, (), status=response.status,
                                          message=str(error.get("message", "")))  # fmt: skip
