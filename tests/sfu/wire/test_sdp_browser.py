"""Chromium accepts the SDP that sfu.wire.sdp writes.

Publish: Chromium's offer -> answer_publish -> Chromium setRemoteDescription(answer).
Subscribe: offer_subscribe -> Chromium setRemoteDescription(offer) + createAnswer ->
read_subscribe_answer. No media flows: the only traffic is Chromium's ICE checks towards
our announced candidate, a UDP socket this test binds on 127.0.0.1.

Skips only when Debian chromium is missing. The page is served by a Playwright route
(getUserMedia needs a secure context; about:blank has no navigator.mediaDevices).
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest
import pytest_asyncio

from sfu.wire import sdp
from sfu.wire.sdp import Fingerprint, LocalTransport, SubscribeTrack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    # Plain IP host candidates: no mDNS names and no multicast announcements.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
PAGE_URL = "http://localhost/"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
    pytest.mark.asyncio(loop_scope="module"),
]

PAGE_JS = """
window.pcs = {};
window.canvasTrack = (width, height, hint) => {
  const canvas = document.createElement('canvas');
  canvas.width = width; canvas.height = height;
  const g = canvas.getContext('2d');
  const draw = () => { g.fillStyle = `hsl(${(Date.now() / 10) % 360},60%,50%)`;
                       g.fillRect(0, 0, width, height); };
  draw(); setInterval(draw, 100);
  const track = canvas.captureStream(10).getVideoTracks()[0];
  track.contentHint = hint;
  return track;
};
window.camera = () => navigator.mediaDevices.getUserMedia({audio: true, video: true});
window.sendonly = (pc, track, stream, extra) =>
  pc.addTransceiver(track, Object.assign({direction: 'sendonly', streams: [stream]}, extra || {}));
window.publish = async (name, variant) => {
  const pc = new RTCPeerConnection(); pcs[name] = pc;
  if (variant === 'datachannel-only') {
    pc.createDataChannel('chat');
    await pc.setLocalDescription(await pc.createOffer());
    return pc.localDescription.sdp;
  }
  const s = await camera();
  if (variant === 'av1-first') {
    const video = sendonly(pc, s.getVideoTracks()[0], s);
    video.setCodecPreferences(RTCRtpSender.getCapabilities('video').codecs.filter(
      (c) => c.mimeType === 'video/AV1'));
    sendonly(pc, s.getAudioTracks()[0], s);
    await pc.setLocalDescription(await pc.createOffer());
    return pc.localDescription.sdp;
  }
  sendonly(pc, s.getAudioTracks()[0], s);
  if (variant === 'simulcast') {
    sendonly(pc, s.getVideoTracks()[0], s, {sendEncodings: [
      {rid: 'q', scaleResolutionDownBy: 4}, {rid: 'h', scaleResolutionDownBy: 2}, {rid: 'f'}]});
  } else {
    const video = sendonly(pc, s.getVideoTracks()[0], s);
    if (variant === 'h264') {
      video.setCodecPreferences(RTCRtpSender.getCapabilities('video').codecs.filter(
        (c) => c.mimeType === 'video/H264' || c.mimeType === 'video/rtx'));
    }
  }
  if (variant === '3video') {
    const other = new MediaStream([canvasTrack(640, 360, 'motion')]);
    const screen = new MediaStream([canvasTrack(1920, 1080, 'detail')]);
    sendonly(pc, other.getVideoTracks()[0], other);
    sendonly(pc, screen.getVideoTracks()[0], screen);
    pc.createDataChannel('chat');
  }
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
};
window.describe = (pc) => ({
  signaling: pc.signalingState,
  sctp: pc.sctp !== null,
  transceivers: pc.getTransceivers().map((t) => {
    const params = t.sender.getParameters();
    const receiving = t.receiver.getParameters();
    return {mid: t.mid, direction: t.currentDirection, kind: t.receiver.track.kind,
            sendCodec: params.codecs && params.codecs[0] ? params.codecs[0].mimeType : null,
            sendFmtp: params.codecs && params.codecs[0] ? params.codecs[0].sdpFmtpLine || '' : '',
            recvCodecs: (receiving.codecs || []).map((c) => c.mimeType),
            rids: params.encodings.map((e) => e.rid || null)};
  }),
});
window.applyAnswer = async (name, answer) => {
  await pcs[name].setRemoteDescription({type: 'answer', sdp: answer});
  return describe(pcs[name]);
};
window.reoffer = async (name, action) => {
  const pc = pcs[name];
  if (action === 'remove-audio') {
    pc.removeTrack(pc.getSenders().find((s) => s.track && s.track.kind === 'audio'));
  } else if (action === 'add-audio') {
    const s = await navigator.mediaDevices.getUserMedia({audio: true});
    pc.addTrack(s.getAudioTracks()[0], s);
  } else if (action === 'add-camera') {
    const s = await camera();
    for (const t of s.getTracks()) sendonly(pc, t, s);
  } else if (action === 'stop-video') {
    pc.getTransceivers().find((t) => t.mid === '1').stop();
  } else if (action === 'resume-first') {
    const first = pc.getTransceivers().find((t) => t.mid === '0');
    const s = await navigator.mediaDevices.getUserMedia({audio: true});
    await first.sender.replaceTrack(s.getAudioTracks()[0]);
    first.direction = 'sendonly';
  }
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
};
window.subscribe = async (name, offer) => {
  if (!pcs[name]) {
    pcs[name] = new RTCPeerConnection(); pcs[name].streams = {};
    pcs[name].ontrack = (e) => { pcs[name].streams[e.transceiver.mid] =
                                   e.streams.map((s) => s.id).concat([e.track.kind]); };
  }
  const pc = pcs[name];
  await pc.setRemoteDescription({type: 'offer', sdp: offer});
  await pc.setLocalDescription(await pc.createAnswer());
  return Object.assign(describe(pc), {answer: pc.localDescription.sdp, streams: pc.streams});
};
"""


@pytest.fixture
def local():
    """Our transport, announcing a UDP socket that soaks up Chromium's ICE checks."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    fingerprint = ":".join(f"{(i * 37) % 256:02X}" for i in range(32))
    yield LocalTransport("sfuL", "conclaveIceLitePassword0", [Fingerprint("sha-256", fingerprint)],
                         [("127.0.0.1", sink.getsockname()[1])])
    sink.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                    args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser, local):
    context = await browser.new_context()
    tab = await context.new_page()
    await tab.route(PAGE_URL, lambda route: route.fulfill(
        body="<!doctype html><title>sdp</title>", content_type="text/html"))
    await tab.goto(PAGE_URL)
    await tab.add_script_tag(content=PAGE_JS)
    yield tab
    await tab.evaluate("() => Object.values(pcs).forEach((pc) => pc.close())")
    await context.close()


async def publish(page, local, variant="av", policy=None):
    """Chromium offers, we answer, Chromium applies the answer; returns both sides' views."""
    offer = sdp.parse(await page.evaluate("([n, v]) => publish(n, v)", ["pub", variant]))
    answer, tracks, remote = sdp.answer_publish(offer, local, policy or sdp.default_codec_policy())
    state = await page.evaluate("([n, a]) => applyAnswer(n, a)", ["pub", sdp.serialize(answer)])
    assert state["signaling"] == "stable"
    return offer, answer, tracks, state


async def test_publish_audio_video(page, local):
    offer, answer, tracks, state = await publish(page, local)
    assert [t["direction"] for t in state["transceivers"]] == ["sendonly", "sendonly"]
    assert [t["sendCodec"] for t in state["transceivers"]] == ["audio/opus", "video/VP8"]
    assert all(track.active for track in tracks) and tracks[1].rtx_ssrc is not None


async def test_publish_h264_only_offer(page, local):
    offer, answer, tracks, state = await publish(page, local, "h264")
    video = state["transceivers"][1]
    assert video["sendCodec"] == "video/H264"
    assert "packetization-mode=1" in video["sendFmtp"]
    assert "profile-level-id=42e01f" in video["sendFmtp"]
    assert tracks[1].codec.name == "H264" and tracks[1].codec.rtx_payload_type is not None


async def test_publish_simulcast_declined_falls_back_to_one_encoding(page, local):
    offer, answer, tracks, state = await publish(page, local, "simulcast")
    assert tracks[1].rids == ["q", "h", "f"] and tracks[1].ssrc is None
    assert state["transceivers"][1]["direction"] == "sendonly"
    assert len(state["transceivers"][1]["rids"]) == 1


async def test_publish_simulcast_accepted(page, local):
    policy = dataclasses.replace(sdp.default_codec_policy(), accept_simulcast=True)
    offer, answer, tracks, state = await publish(page, local, "simulcast", policy)
    assert answer.media[1].simulcast == "recv q;h;f"
    assert state["transceivers"][1]["rids"] == ["q", "h", "f"]


async def test_publish_three_videos_rejects_data_channel(page, local):
    offer, answer, tracks, state = await publish(page, local, "3video")
    assert [t["direction"] for t in state["transceivers"]] == ["sendonly"] * 4
    assert not state["sctp"]  # the application m= section was rejected
    assert answer.media[4].rejected and answer.bundle == ["0", "1", "2", "3"]


async def test_publish_rejecting_the_offerer_tagged_section(page, local):
    # Mid 0 offers only AV1, which we do not take: the initial answer rejects the
    # offerer-tagged section and mid 1 becomes the answerer-tagged one (RFC 8843 §7.3.1).
    offer, answer, tracks, state = await publish(page, local, "av1-first")
    assert offer.bundle == ["0", "1"] and answer.media[0].rejected
    assert answer.bundle == ["1"]
    assert [(t.mid, t.active) for t in tracks] == [("0", False), ("1", True)]
    directions = {t["mid"]: t["direction"] for t in state["transceivers"]}
    assert directions.pop("0", "stopped") == "stopped" and directions == {"1": "sendonly"}
    _, active, directions = await renegotiate(page, local, "add-camera")
    assert list(active.values()).count(True) == 3


async def test_publish_data_channel_only_then_tracks(page, local):
    # Nothing acceptable: every section rejected, no BUNDLE group, still a valid answer.
    offer, answer, tracks, state = await publish(page, local, "datachannel-only")
    assert [m.kind for m in offer.media] == ["application"]
    assert answer.media[0].rejected and answer.bundle == [] and tracks == []
    assert not state["sctp"]
    # Tracks added later negotiate normally next to the rejected section.
    answer2, active, directions = await renegotiate(page, local, "add-camera")
    assert sorted(active.values()) == [True, True] and len(answer2.bundle) == 2
    assert sorted(directions.values()) == ["sendonly", "sendonly"]


async def renegotiate(page, local, action):
    offer = sdp.parse(await page.evaluate("([n, a]) => reoffer(n, a)", ["pub", action]))
    answer, tracks, _ = sdp.answer_publish(offer, local, sdp.default_codec_policy())
    state = await page.evaluate("([n, a]) => applyAnswer(n, a)", ["pub", sdp.serialize(answer)])
    assert state["signaling"] == "stable"
    directions = {t["mid"]: t["direction"] for t in state["transceivers"]}
    return answer, {t.mid: t.active for t in tracks}, directions


async def test_publish_renegotiation(page, local):
    _, first, _, _ = await publish(page, local)

    # removeTrack on the first (BUNDLE-tagged) track: inactive, the transport survives.
    answer, active, directions = await renegotiate(page, local, "remove-audio")
    assert answer.session_version > first.session_version
    assert active == {"0": False, "1": True}
    assert directions == {"0": "inactive", "1": "sendonly"}

    # A new track gets a new transceiver and mid.
    answer2, active, directions = await renegotiate(page, local, "add-audio")
    assert answer2.session_version > answer.session_version
    assert active == {"0": False, "1": True, "2": True}
    assert directions == {"0": "inactive", "1": "sendonly", "2": "sendonly"}

    # transceiver.stop(): the offer carries port 0 and the answer rejects it.
    answer3, active, directions = await renegotiate(page, local, "stop-video")
    assert answer3.media[1].rejected and answer3.bundle == ["0", "2"]
    assert active == {"0": False, "1": False, "2": True}
    assert directions.pop("1", "stopped") == "stopped"  # Chromium drops stopped transceivers
    assert directions == {"0": "inactive", "2": "sendonly"}

    # Re-using the inactive transceiver makes mid 0 active again.
    _, active, directions = await renegotiate(page, local, "resume-first")
    assert active == {"0": True, "1": False, "2": True}
    assert directions["0"] == "sendonly"


POLICY = sdp.default_codec_policy()
OPUS, VP8, H264 = POLICY.audio[0], POLICY.video[0], POLICY.video[1]


def track(mid, kind, codec, ssrc, stream, active=True):
    rtx = ssrc + 1 if codec.rtx_payload_type is not None else None
    return SubscribeTrack(mid, kind, codec, ssrc, rtx, f"cname-{stream}", stream,
                          f"{stream}-{mid}", active)


async def subscribe(page, local, tracks, version):
    offer = sdp.offer_subscribe(local, tracks, POLICY, 4242, version)
    state = await page.evaluate("([n, o]) => subscribe(n, o)", ["sub", sdp.serialize(offer)])
    assert state["signaling"] == "stable"
    return sdp.read_subscribe_answer(sdp.parse(state["answer"]), offer), state


async def test_subscribe_offer_is_accepted(page, local):
    tracks = [track("a0", "audio", OPUS, 1000, "alice"), track("v0", "video", VP8, 2000, "alice"),
              track("v1", "video", VP8, 3000, "bob", active=False)]
    result, state = await subscribe(page, local, tracks, 1)
    assert result.accepted == {"a0": True, "v0": True, "v1": False}
    assert result.extmap == POLICY.extensions
    assert result.rtx == {"a0": False, "v0": True, "v1": False}
    assert result.remote.dtls_role == "server"
    assert [t["direction"] for t in state["transceivers"]] == ["recvonly", "recvonly", "inactive"]
    assert state["streams"]["a0"] == ["alice", "audio"] and state["streams"]["v0"] == ["alice", "video"]
    assert [t["recvCodecs"][0] for t in state["transceivers"][:2]] == ["audio/opus", "video/VP8"]


async def test_subscribe_renegotiation_closes_and_adds_tracks(page, local):
    alice_audio, alice_video = track("a0", "audio", OPUS, 1000, "alice"), track(
        "v0", "video", VP8, 2000, "alice")
    result, _ = await subscribe(page, local, [alice_audio, alice_video], 1)
    assert result.accepted == {"a0": True, "v0": True}

    closed = dataclasses.replace(alice_video, active=False)
    screen = track("v1", "video", H264, 5000, "bob-screen")
    result, state = await subscribe(page, local, [alice_audio, closed, screen], 2)
    assert result.accepted == {"a0": True, "v0": False, "v1": True}
    assert result.rtx["v1"] is True
    directions = {t["mid"]: t["direction"] for t in state["transceivers"]}
    assert directions == {"a0": "recvonly", "v0": "inactive", "v1": "recvonly"}
    codecs = {t["mid"]: t["recvCodecs"] for t in state["transceivers"]}
    assert codecs["v1"][0] == "video/H264"
    assert state["streams"]["v1"] == ["bob-screen", "video"]
