"""Client peers against an aiortc test double of the server, all on 127.0.0.1.

The double plays the server's part of docs/signaling.md: it answers publish offers
with `a=setup:passive` (it is the DTLS server, like the real SFU) and offers
sendonly tracks on the subscribe connection. The real server is exercised by
test_bot.py.
"""

import asyncio
import contextlib

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from client.media import GeneratedVideoTrack, ToneAudioTrack, read_frame_counter
from client.peer import (
    PublishPeer,
    SubscribePeer,
    loopback_gathering,
    make_peer_connection,
    sdp_candidate_addresses,
    sdp_mid_by_track_id,
    sdp_uses_loopback,
)

SDP = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=msid:s1 trackA\r\n"
    "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=msid:s1 trackB\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\n"
)


def test_sdp_helpers():
    assert sdp_candidate_addresses(SDP) == ["127.0.0.1"]
    assert sdp_uses_loopback(SDP)
    assert not sdp_uses_loopback(SDP.replace("127.0.0.1", "192.0.2.7"))
    assert not sdp_uses_loopback("v=0\r\n")
    assert sdp_mid_by_track_id(SDP) == {"trackA": "0", "trackB": "1"}


async def gathered_addresses(loopback: bool) -> list[str]:
    pc = make_peer_connection()
    pc.addTransceiver("audio", direction="sendonly")
    try:
        with loopback_gathering(loopback):
            await pc.setLocalDescription(await pc.createOffer())
        return sdp_candidate_addresses(pc.localDescription.sdp)
    finally:
        await pc.close()


async def test_loopback_gathering_is_scoped():
    assert await gathered_addresses(True) == ["127.0.0.1"]
    # Outside the block aioice behaves as usual: it never gathers loopback.
    assert "127.0.0.1" not in await gathered_addresses(False)


def serve_as_dtls_server(answer_sdp: str) -> str:
    return answer_sdp.replace("a=setup:active", "a=setup:passive")


class ServerDouble:
    """An aiortc stand-in for the SFU's two peer connections of one participant."""

    def __init__(self) -> None:
        self.publish_pc = RTCPeerConnection()
        self.subscribe_pc = RTCPeerConnection()
        self.received_tracks: list = []
        self.publish_requests: list[dict] = []
        self.answers: asyncio.Queue[str] = asyncio.Queue()
        self.publish_pc.on("track", self.received_tracks.append)

    # The SignalingClient surface the peers use.
    async def request(self, msg, timeout=10.0, expect=()):
        assert msg["type"] == "publish"
        self.publish_requests.append(msg)
        await self.publish_pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
        answer = await self.publish_pc.createAnswer()
        with loopback_gathering(True):
            await self.publish_pc.setLocalDescription(
                RTCSessionDescription(serve_as_dtls_server(answer.sdp), "answer")
            )
        sdp = self.publish_pc.localDescription.sdp
        return {"type": "publish_answer", "id": msg.get("id"), "sdp": sdp, "tracks": []}

    async def send(self, msg):
        assert msg["type"] == "answer"
        await self.subscribe_pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
        await self.answers.put(msg["sdp"])

    async def offer(self, tracks: dict[str, tuple]) -> dict:
        """A subscribe offer; tracks: track_id -> (track, participant_id, source)."""
        for track, _, _ in tracks.values():
            self.subscribe_pc.addTransceiver(track, direction="sendonly")
        with loopback_gathering(True):
            await self.subscribe_pc.setLocalDescription(await self.subscribe_pc.createOffer())
        sdp = self.subscribe_pc.localDescription.sdp
        entries = []
        for mid_track_id, mid in sdp_mid_by_track_id(sdp).items():
            for track, participant_id, source in tracks.values():
                if track.id == mid_track_id:
                    entries.append(
                        {"mid": mid, "track_id": track.id, "participant_id": participant_id,
                         "source": source, "kind": track.kind, "active": True}
                    )
        return {"type": "offer", "sdp": sdp, "tracks": entries}

    async def close(self):
        await self.publish_pc.close()
        await self.subscribe_pc.close()


@pytest.fixture
async def double():
    server = ServerDouble()
    yield server
    await server.close()


async def first_counter(track, frames: int = 60) -> int | None:
    for _ in range(frames):
        counter = read_frame_counter(await asyncio.wait_for(track.recv(), 10))
        if counter is not None:
            return counter
    return None


async def test_publish_peer_sends_decodable_media(double):
    peer = PublishPeer(double)
    video, audio = GeneratedVideoTrack(fps=15), ToneAudioTrack()
    try:
        peer.add_track(audio, "microphone")
        peer.add_track(video, "camera")
        await peer.negotiate()
        request = double.publish_requests[0]
        mids = sdp_mid_by_track_id(request["sdp"])
        assert request["tracks"] == [
            {"mid": mids[audio.id], "source": "microphone"},
            {"mid": mids[video.id], "source": "camera"},
        ]
        assert "a=candidate" not in request["sdp"]  # sent before gathering
        await peer.wait_connected(timeout=15)
        assert set(sdp_candidate_addresses(peer.pc.localDescription.sdp)) == {"127.0.0.1"}
        remote_video = next(t for t in double.received_tracks if t.kind == "video")
        remote_audio = next(t for t in double.received_tracks if t.kind == "audio")
        assert await first_counter(remote_video) is not None
        frame = await asyncio.wait_for(remote_audio.recv(), 10)
        assert frame.sample_rate == 48000

        # Screen share on, then off: a new m-line, then an inactive one.
        screen = GeneratedVideoTrack(fps=5)
        peer.add_track(screen, "screen")
        await peer.negotiate()
        assert [t["source"] for t in double.publish_requests[1]["tracks"]] == ["microphone", "camera", "screen"]
        peer.remove_track("screen")
        await peer.negotiate()
        last = double.publish_requests[2]
        assert [t["source"] for t in last["tracks"]] == ["microphone", "camera"]
        assert last["sdp"].count("a=inactive") == 1
    finally:
        await peer.close()
        for track in (video, audio):
            track.stop()


async def test_subscribe_peer_applies_offers_in_order(double):
    seen: list[tuple] = []
    peer = SubscribePeer(double, lambda track, info: seen.append((track, info)))
    camera = GeneratedVideoTrack(fps=15)
    mic = ToneAudioTrack()
    screen = GeneratedVideoTrack(fps=5)
    try:
        peer.handle_offer(await double.offer({"c": (camera, "p2", "camera"), "m": (mic, "p2", "microphone")}))
        answer = await asyncio.wait_for(double.answers.get(), 10)
        assert "a=setup:active" in answer  # the server is the DTLS server
        await peer.wait_connected(timeout=15)
        assert sorted(info["source"] for _, info in seen) == ["camera", "microphone"]
        video = next(track for track, info in seen if info["source"] == "camera")
        assert await first_counter(video) is not None

        # Renegotiation by the server: one more track.
        peer.handle_offer(await double.offer({"s": (screen, "p3", "screen")}))
        await asyncio.wait_for(double.answers.get(), 10)
        assert [info["participant_id"] for _, info in seen][-1] == "p3"
        assert peer.negotiations == 2 and not peer.errors
        new_video = seen[-1][0]
        assert await first_counter(new_video) is not None
    finally:
        await peer.close()
        for track in (camera, mic, screen):
            with contextlib.suppress(Exception):
                track.stop()
