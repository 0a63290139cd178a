"""aiortc accepts the SDP that sfu.wire.sdp writes (aiortc is a test-only dependency here).

Publish: aiortc's offer -> answer_publish -> aiortc setRemoteDescription(answer).
Subscribe: offer_subscribe -> aiortc setRemoteDescription(offer) + createAnswer ->
read_subscribe_answer. aiortc gets no STUN server (its default is a public one), so the
only traffic is its ICE checks towards our candidate, a UDP socket bound on 127.0.0.1.
"""

from __future__ import annotations

import socket

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from sfu.wire import sdp
from sfu.wire.sdp import Fingerprint, LocalTransport, SubscribeTrack


@pytest.fixture
def local():
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    fingerprint = ":".join(f"{(i * 53) % 256:02X}" for i in range(32))
    yield LocalTransport("sfuL", "conclaveIceLitePassword0", [Fingerprint("sha-256", fingerprint)],
                         [("127.0.0.1", sink.getsockname()[1])])
    sink.close()


@pytest.fixture
async def peer():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    yield pc
    await pc.close()


async def test_aiortc_accepts_publish_answer(peer, local):
    peer.addTransceiver(AudioStreamTrack(), direction="sendonly")
    peer.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await peer.setLocalDescription(await peer.createOffer())
    offer = sdp.parse(peer.localDescription.sdp)
    answer, tracks, remote = sdp.answer_publish(offer, local, sdp.default_codec_policy())
    await peer.setRemoteDescription(RTCSessionDescription(sdp.serialize(answer), "answer"))
    assert peer.signalingState == "stable"
    assert [t.currentDirection for t in peer.getTransceivers()] == ["sendonly", "sendonly"]
    assert [t.codec.name for t in tracks] == ["opus", "VP8"] and all(t.active for t in tracks)
    assert remote.dtls_role == "server" and tracks[1].rtx_ssrc is not None


async def test_aiortc_accepts_subscribe_offer(peer, local):
    policy = sdp.default_codec_policy()
    opus, vp8 = policy.audio[0], policy.video[0]
    tracks = [
        SubscribeTrack("a0", "audio", opus, 1000, None, "alice", "alice", "alice-mic", True),
        SubscribeTrack("v0", "video", vp8, 2000, 2001, "alice", "alice", "alice-cam", True),
        SubscribeTrack("v1", "video", vp8, 3000, 3001, "bob", "bob", "bob-cam", False),
    ]
    offer = sdp.offer_subscribe(local, tracks, policy, 99, 1)
    await peer.setRemoteDescription(RTCSessionDescription(sdp.serialize(offer), "offer"))
    await peer.setLocalDescription(await peer.createAnswer())
    result = sdp.read_subscribe_answer(sdp.parse(peer.localDescription.sdp), offer)
    assert result.accepted == {"a0": True, "v0": True, "v1": False}
    assert result.rtx == {"a0": False, "v0": True, "v1": False}
    assert result.extmap == {sdp.URI_AUDIO_LEVEL: 1, sdp.URI_ABS_SEND_TIME: 2}
    assert result.remote.dtls_role == "server"
    assert [t.currentDirection for t in peer.getTransceivers()] == ["recvonly", "recvonly",
                                                                   "inactive"]
