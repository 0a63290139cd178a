"""aiortc peers for the two peer connections of a participant (docs/signaling.md).

- `PublishPeer`: our send tracks on sendonly transceivers; we offer (`publish`),
  the server answers (`publish_answer`, `a=setup:passive`: the server is the DTLS
  server, aiortc the client).
- `SubscribePeer`: the server offers (`offer`, `a=setup:actpass`), aiortc answers
  `a=setup:active` (DTLS client again) and we send `answer`. The server renegotiates
  whenever tracks come or go; offers are applied one at a time, in order.

The server is ICE-lite: it never sends checks, it only answers ours, so the only
thing we need from its SDP is its candidates. On a test machine it announces
127.0.0.1, which aioice refuses to gather (see `loopback_gathering`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import logging
from typing import Any, Callable, Iterator

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy

from .signaling import Message, SignalingClient

log = logging.getLogger(__name__)

SOURCES = ("microphone", "camera", "screen", "screen-audio")

# --- loopback gathering -------------------------------------------------------
#
# aioice 0.13 gathers host candidates from `aioice.ice.get_host_addresses()`, which
# skips 127.0.0.1 on purpose. Against a server that only announces 127.0.0.1 (tests,
# a bench on one machine) no candidate pair could then use loopback: either there is
# no candidate at all (aiortc then never starts ICE) or we would send from another
# interface's address. The patch below makes gathering return exactly 127.0.0.1, but
# only inside `loopback_gathering(True)`: a context variable scopes it to the
# gathering of one session's peer connection (aiortc gathers in the caller's task or
# in tasks it creates from it, which inherit the context), so other connections in
# the same process keep aioice's normal behaviour.

_LOOPBACK_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("conclave_loopback_only", default=False)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _LOOPBACK_ONLY.get():
        return ["127.0.0.1"] if use_ipv4 else []
    return _original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)


@contextlib.contextmanager
def loopback_gathering(enabled: bool) -> Iterator[None]:
    """Within this block (when enabled) aioice gathers only 127.0.0.1."""
    if not enabled:
        yield
        return
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses
    token = _LOOPBACK_ONLY.set(True)
    try:
        yield
    finally:
        _LOOPBACK_ONLY.reset(token)


def sdp_candidate_addresses(sdp: str) -> list[str]:
    """Connection addresses of the `a=candidate` lines (RFC 8839 section 5.1)."""
    addresses = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) >= 6:
                addresses.append(fields[4])
    return addresses


def sdp_uses_loopback(sdp: str) -> bool:
    """True when the remote side announces a loopback candidate."""
    for address in sdp_candidate_addresses(sdp):
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(address).is_loopback:
                return True
    return False


def sdp_mid_by_track_id(sdp: str) -> dict[str, str]:
    """track id (second `a=msid` field) -> mid, for each m-section that has both."""
    result: dict[str, str] = {}
    mid = msid_track = None
    for line in sdp.splitlines() + ["m="]:
        if line.startswith("m="):
            if mid is not None and msid_track is not None:
                result[msid_track] = mid
            mid = msid_track = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :].strip()
        elif line.startswith("a=msid:"):
            fields = line[len("a=msid:") :].split()
            if len(fields) == 2:
                msid_track = fields[1]
    return result


def make_peer_connection(ice_servers: list[dict[str, Any]] | None = None, relay_only: bool = False) -> RTCPeerConnection:
    """A peer connection with one transport for all m-lines and no default STUN.

    aiortc falls back to a public STUN server when iceServers is None; the
    server tells us which to use (`joined.ice_servers`: its TURN server with this
    participant's credentials, or none). aiortc uses the first turn: URL only.
    relay_only: TURN candidates only (iceTransportPolicy "relay"; tests, debugging).
    """
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers or []
    ]
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCPeerConnection(
        RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE, iceTransportPolicy=policy)
    )


async def wait_connected(pc: RTCPeerConnection, timeout: float) -> None:
    """Wait until `pc` is connected; raise ConnectionError if it fails or closes."""
    changed = asyncio.Event()
    pc.on("connectionstatechange", changed.set)
    try:
        async with asyncio.timeout(timeout):
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed"):
                    raise ConnectionError(f"peer connection {pc.connectionState}")
                changed.clear()
                await changed.wait()
    finally:
        pc.remove_listener("connectionstatechange", changed.set)


class PublishPeer:
    """Our outgoing tracks, one sendonly transceiver per source."""

    def __init__(
        self, signaling: SignalingClient, ice_servers: list[dict[str, Any]] | None = None, relay_only: bool = False
    ) -> None:
        self.signaling = signaling
        self.pc = make_peer_connection(ice_servers, relay_only)
        self._lock = asyncio.Lock()
        self._transceivers: dict[str, RTCRtpTransceiver] = {}  # source -> live transceiver
        self._tracks: dict[str, MediaStreamTrack] = {}  # source -> track
        self.published: dict[str, Message] = {}  # source -> publish_answer track entry
        self.negotiations = 0

    @property
    def sources(self) -> list[str]:
        return list(self._transceivers)

    def add_track(self, track: MediaStreamTrack, source: str) -> None:
        """Add a send track; it is announced by the next `negotiate()`."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        if source in self._transceivers:
            raise ValueError(f"source {source!r} is already published")
        self._transceivers[source] = self.pc.addTransceiver(track, direction="sendonly")
        self._tracks[source] = track

    def remove_track(self, source: str) -> MediaStreamTrack:
        """Stop sending `source`; its m-line becomes inactive at the next `negotiate()`.

        The mid is never reused: a later track of the same source gets a new m-line.
        """
        transceiver = self._transceivers.pop(source)
        transceiver.direction = "inactive"
        transceiver.sender.replaceTrack(None)
        self.published.pop(source, None)
        return self._tracks.pop(source)

    async def negotiate(self, timeout: float = 10.0) -> Message:
        """Offer the current tracks (`publish`) and apply the `publish_answer`."""
        async with self._lock:
            offer = await self.pc.createOffer()
            mids = sdp_mid_by_track_id(offer.sdp)
            tracks = [
                {"mid": mids[track.id], "source": source}
                for source, track in self._tracks.items()
                if track.id in mids
            ]
            reply = await self.signaling.request(
                {"type": "publish", "sdp": offer.sdp, "tracks": tracks},
                timeout=timeout,
                expect=("publish_answer",),
            )
            # The offer is applied only now, once the answer tells us where the
            # server is: gathering happens in setLocalDescription, and the server
            # needs none of our candidates (it learns our address from our checks).
            with loopback_gathering(sdp_uses_loopback(reply["sdp"])):
                await self.pc.setLocalDescription(offer)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
            self.published = {entry["source"]: entry for entry in reply.get("tracks", [])}
            self.negotiations += 1
            return reply

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await wait_connected(self.pc, timeout)

    async def close(self) -> None:
        await self.pc.close()


TrackCallback = Callable[[MediaStreamTrack, Message], None]


class SubscribePeer:
    """Receives what the server forwards to us; applies its offers in order."""

    def __init__(
        self,
        signaling: SignalingClient,
        on_track: TrackCallback,
        ice_servers: list[dict[str, Any]] | None = None,
        relay_only: bool = False,
    ) -> None:
        self.signaling = signaling
        self.pc = make_peer_connection(ice_servers, relay_only)
        self._on_track = on_track
        self._offers: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._started_mids: set[str] = set()
        self.tracks: dict[str, Message] = {}  # mid -> the offer's track entry (latest)
        self.negotiations = 0
        self.errors: list[str] = []

    def handle_offer(self, msg: Message) -> None:
        """Queue a server `offer`; suitable as a signaling handler."""
        if self._task is None:
            self._task = asyncio.create_task(self._apply_offers(), name="subscribe-offers")
        self._offers.put_nowait(msg)

    async def _apply_offers(self) -> None:
        while True:
            msg = await self._offers.get()
            try:
                await self._apply(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving later offers
                log.exception("applying subscribe offer failed")
                self.errors.append(f"{type(exc).__name__}: {exc}")

    async def _apply(self, msg: Message) -> None:
        for entry in msg.get("tracks", []):
            self.tracks[str(entry["mid"])] = entry
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
        for transceiver in self.pc.getTransceivers():
            track = transceiver.receiver.track
            mid = transceiver.mid
            if track is not None and mid in self.tracks and mid not in self._started_mids:
                self._started_mids.add(mid)
                self._on_track(track, self.tracks[mid])
        answer = await self.pc.createAnswer()
        with loopback_gathering(sdp_uses_loopback(msg["sdp"])):
            await self.pc.setLocalDescription(answer)
        await self.signaling.send({"type": "answer", "sdp": self.pc.localDescription.sdp})
        self.negotiations += 1

    def active_tracks(self) -> list[Message]:
        return [entry for entry in self.tracks.values() if entry.get("active", True)]

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await wait_connected(self.pc, timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pc.close()
