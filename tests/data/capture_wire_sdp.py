"""Regenerate the SDP captures used by tests/sfu/wire/test_sdp.py.

    cd /work/main && python tests/data/capture_wire_sdp.py

Drives Debian chromium (Playwright, no network: the page is served by a Playwright route,
because getUserMedia needs a secure context and about:blank has no mediaDevices) and
aiortc (no STUN server, so nothing leaves the machine). ICE checks that the browsers
send towards our announced candidate land on a UDP socket this script binds on
127.0.0.1. Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from sfu.wire import sdp  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    # Keep host candidates as plain IPs: no mDNS names, no multicast announcements.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
PAGE_URL = "http://localhost/"

# Page helpers shared by every capture. window.pcs keeps PeerConnections between calls.
PAGE_JS = """
window.pcs = {};
window.gathered = (pc) => new Promise((resolve) => {
  if (pc.iceGatheringState === 'complete') return resolve();
  pc.addEventListener('icegatheringstatechange', () => {
    if (pc.iceGatheringState === 'complete') resolve();
  });
  setTimeout(resolve, 5000);
});
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
"""


def local_transport(port: int) -> sdp.LocalTransport:
    return sdp.LocalTransport(
        ice_ufrag="sfuL", ice_pwd="conclaveIceLitePassword0",
        fingerprints=[sdp.Fingerprint("sha-256", ":".join(f"{i * 7 % 256:02X}" for i in range(32)))],
        candidates=[("127.0.0.1", port)],
    )


def write(name: str, text: str) -> None:
    (HERE / name).write_text(text, newline="")
    print(f"wrote tests/data/{name} ({len(text.splitlines())} lines)")


async def capture_chromium(port: int) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.route(PAGE_URL, lambda route: route.fulfill(
                body="<!doctype html><title>sdp</title>", content_type="text/html"))
            await page.goto(PAGE_URL)
            await page.add_script_tag(content=PAGE_JS)
            await capture_publish_offers(page)
            await capture_reoffer(page, port)
            await capture_subscribe_answer(page, port)
        finally:
            await browser.close()


async def capture_publish_offers(page) -> None:
    write("chromium_publish_offer.sdp", await page.evaluate("""async () => {
      const pc = new RTCPeerConnection(); const s = await camera();
      for (const t of s.getTracks()) pc.addTransceiver(t, {direction: 'sendonly', streams: [s]});
      const offer = await pc.createOffer(); pc.close(); return offer.sdp;
    }"""))
    write("chromium_publish_offer_gathered.sdp", await page.evaluate("""async () => {
      const pc = new RTCPeerConnection(); const s = await camera();
      for (const t of s.getTracks()) pc.addTransceiver(t, {direction: 'sendonly', streams: [s]});
      await pc.setLocalDescription(await pc.createOffer()); await gathered(pc);
      const sdp = pc.localDescription.sdp; pc.close(); return sdp;
    }"""))
    # Camera, a second camera-like canvas and a 1080p "screen share" canvas, plus chat.
    write("chromium_publish_offer_3video.sdp", await page.evaluate("""async () => {
      const pc = new RTCPeerConnection(); const s = await camera();
      const screen = new MediaStream([canvasTrack(1920, 1080, 'detail')]);
      const other = new MediaStream([canvasTrack(640, 360, 'motion')]);
      pc.addTransceiver(s.getAudioTracks()[0], {direction: 'sendonly', streams: [s]});
      pc.addTransceiver(s.getVideoTracks()[0], {direction: 'sendonly', streams: [s]});
      pc.addTransceiver(other.getVideoTracks()[0], {direction: 'sendonly', streams: [other]});
      pc.addTransceiver(screen.getVideoTracks()[0], {direction: 'sendonly', streams: [screen]});
      pc.createDataChannel('chat');
      const offer = await pc.createOffer(); pc.close(); return offer.sdp;
    }"""))
    write("chromium_publish_offer_simulcast.sdp", await page.evaluate("""async () => {
      const pc = new RTCPeerConnection(); const s = await camera();
      pc.addTransceiver(s.getAudioTracks()[0], {direction: 'sendonly', streams: [s]});
      pc.addTransceiver(s.getVideoTracks()[0], {direction: 'sendonly', streams: [s],
        sendEncodings: [{rid: 'q', scaleResolutionDownBy: 4}, {rid: 'h', scaleResolutionDownBy: 2},
                        {rid: 'f'}]});
      const offer = await pc.createOffer(); pc.close(); return offer.sdp;
    }"""))


async def capture_reoffer(page, port: int) -> None:
    """A completed publish exchange, then the microphone is removed: the re-offer."""
    offer = await page.evaluate("""async () => {
      const pc = new RTCPeerConnection(); pcs.publish = pc; const s = await camera();
      for (const t of s.getTracks()) pc.addTransceiver(t, {direction: 'sendonly', streams: [s]});
      await pc.setLocalDescription(await pc.createOffer()); return pc.localDescription.sdp;
    }""")
    answer, _, _ = sdp.answer_publish(sdp.parse(offer), local_transport(port),
                                      sdp.default_codec_policy())
    write("chromium_publish_reoffer.sdp", await page.evaluate("""async (answer) => {
      const pc = pcs.publish;
      await pc.setRemoteDescription({type: 'answer', sdp: answer});
      pc.removeTrack(pc.getSenders().find((sender) => sender.track.kind === 'audio'));
      const offer = await pc.createOffer(); pc.close(); return offer.sdp;
    }""", sdp.serialize(answer)))


def subscribe_offer(port: int) -> sdp.SessionDescription:
    policy = sdp.default_codec_policy()
    opus, vp8 = policy.audio[0], policy.video[0]
    tracks = [
        sdp.SubscribeTrack("a0", "audio", opus, 1001, None, "alice", "alice-cam", "alice-mic", True),
        sdp.SubscribeTrack("v0", "video", vp8, 2001, 2002, "alice", "alice-cam", "alice-cam-v", True),
        sdp.SubscribeTrack("v1", "video", vp8, 3001, 3002, "bob", "bob-screen", "bob-screen-v", False),
    ]
    return sdp.offer_subscribe(local_transport(port), tracks, policy, 7000, 3)


async def capture_subscribe_answer(page, port: int) -> None:
    offer = sdp.serialize(subscribe_offer(port))
    write("subscribe_offer.sdp", offer)
    write("chromium_subscribe_answer.sdp", await page.evaluate("""async (offer) => {
      const pc = new RTCPeerConnection();
      await pc.setRemoteDescription({type: 'offer', sdp: offer});
      await pc.setLocalDescription(await pc.createAnswer());
      const sdp = pc.localDescription.sdp; pc.close(); return sdp;
    }""", offer))


async def capture_aiortc(port: int) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    # iceServers=[]: aiortc's default is a public STUN server.
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    subscriber = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
        publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        write("aiortc_publish_offer.sdp", publisher.localDescription.sdp)
        offer = sdp.serialize(subscribe_offer(port))
        await subscriber.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        write("aiortc_subscribe_answer.sdp", subscriber.localDescription.sdp)
    finally:
        await publisher.close()
        await subscriber.close()


async def main() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))  # absorbs the browsers' ICE checks
    try:
        port = sink.getsockname()[1]
        await capture_chromium(port)
        await capture_aiortc(port)
    finally:
        sink.close()


if __name__ == "__main__":
    asyncio.run(main())
