"""WHEP helpers for the playback tests: a viewer token from the host's REST, the player's
POST, and a recvonly offer from aiortc (a player without a browser)."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiortc import RTCPeerConnection

SDP = "application/sdp"


async def viewer_token(server: Any, meeting: dict[str, Any], label: str = "lobby screen", **fields: Any) -> dict:
    """POST /meetings/{number}/viewer-tokens as the meeting's host: {id, token, whep_url, ...}."""
    return await server.call("POST", f"/meetings/{meeting['number']}/viewer-tokens", token=meeting["host_session"],
                             json_body={"label": label, **fields}, expect=201)  # fmt: skip


async def whep(server: Any, method: str, path: str, *, token: str | None = None, body: str | None = None,
               content_type: str = SDP) -> tuple[int, str, Any]:  # fmt: skip
    """One WHEP request to `path` (e.g. /whep/NUMBER): (status, body text, headers)."""
    headers = {"Content-Type": content_type} if body is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session:
        async with session.request(method, server.base_url + path, data=body, headers=headers) as reply:
            return reply.status, await reply.text(), reply.headers


async def aiortc_offer() -> tuple[RTCPeerConnection, str]:
    """A player's offer: recvonly audio and video (close the connection after)."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp
