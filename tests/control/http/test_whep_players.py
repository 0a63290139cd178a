"""WHEP playback proven with two real players (issue 12, item 5): a Chromium page running
a plain WHEP player (RTCPeerConnection recvonly + fetch, served from another origin, so
CORS is exercised) and GStreamer's webrtcbin (tests/support/whep_gst_player.py under the
system python3), both against a real server, worker and recorder on 127.0.0.1.

The meeting's media comes from a bot (the host): a 440 Hz tone and a 640x360 camera.
- Both players decode the camera and hear the tone.
- The host shares a 512x288 screen: both players' one video becomes the screen (its
  size changes) while Chromium's video receiver keeps its SSRC and its connection is
  never renegotiated: switching without renegotiation.
- The host starts recording: in each player's decoded audio the spoken notice is found
  by normalized cross-correlation with the notice clip (recorder/media/notice.py), piece
  by piece in the clip's order (`notice_pieces_found`). The players' audio is the
  meeting's mix by then (control.meeting.viewer_mix), so the notice reaches them in it,
  the tone ducked under it.
- The players end their sessions (DELETE): nobody watches any more.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from aiohttp import web

from client.media import GeneratedVideoTrack
from recorder.media import notice as notice_clip
from tests.support import browser
from tests.support.browser_fixtures import chromium_autoplay  # noqa: F401
from tests.support.paths import REPO_ROOT
from tests.support.whep import viewer_token

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

SYSTEM_PYTHON = "/usr/bin/python3"
GST_PLAYER = REPO_ROOT / "tests" / "support" / "whep_gst_player.py"
RATE = 48000
# The notice is "there" when at least NOTICE_FOUND of its NOTICE_PIECES pieces are found,
# in order, in a player's decoded audio, each correlating above PIECE_CORRELATION with
# its piece of the clip (1.0: the same waveform up to a gain). Decoded Opus scores
# 0.97-1.0 per piece; the meeting's 440 Hz tone scores below 0.2.
NOTICE_PIECES = 8
NOTICE_FOUND = 6
PIECE_CORRELATION = 0.8

PLAYER_PAGE = """<!doctype html><meta charset="utf-8"><title>WHEP player</title>
<video id="video" autoplay muted playsinline></video><audio id="audio" autoplay></audio>
<script>
window.player = {state: "new", error: null, location: null, chunks: []};
window.startPlayer = async (url, token) => {
  const pc = window.pc = new RTCPeerConnection({bundlePolicy: "max-bundle"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.ontrack = (event) => {
    if (event.track.kind === "video") document.getElementById("video").srcObject = new MediaStream([event.track]);
    else captureAudio(event.track);
  };
  pc.onsignalingstatechange = () => { if (pc.signalingState !== "stable") player.renegotiated = true; };
  await pc.setLocalDescription(await pc.createOffer());
  player.renegotiated = false;
  const reply = await fetch(url, {method: "POST", body: pc.localDescription.sdp,
    headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
  if (reply.status !== 201) { player.error = reply.status + " " + await reply.text(); return; }
  player.location = new URL(reply.headers.get("Location"), url).href;
  await pc.setRemoteDescription({type: "answer", sdp: await reply.text()});
  player.state = "answered";
};
function captureAudio(track) {
  // Chromium renders a remote track's audio only while an element plays it.
  const element = document.getElementById("audio");
  element.srcObject = new MediaStream([track]);
  element.play();
  const context = new AudioContext({sampleRate: 48000});
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const node = context.createScriptProcessor(4096, 1, 1);
  node.onaudioprocess = (event) => {
    const data = event.inputBuffer.getChannelData(0);
    player.chunks.push(Int16Array.from(data, (x) => Math.max(-1, Math.min(1, x)) * 32767));
  };
  source.connect(node);
  node.connect(context.destination);
}
window.takeAudio = () => {
  const all = new Int16Array(player.chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of player.chunks) { all.set(chunk, at); at += chunk.length; }
  player.chunks = [];
  let text = "";
  const bytes = new Uint8Array(all.buffer);
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
};
window.videoStats = async () => {
  const inbound = [...(await pc.getStats()).values()].filter((r) => r.type === "inbound-rtp" && r.kind === "video");
  const r = inbound[0] || {};
  return {count: inbound.length, ssrc: r.ssrc, frames: r.framesDecoded || 0, width: r.frameWidth || 0,
          height: r.frameHeight || 0, renegotiated: player.renegotiated};
};
window.endPlayer = async (token) => {
  const reply = await fetch(player.location, {method: "DELETE", headers: {"Authorization": "Bearer " + token}});
  pc.close();
  return reply.status;
};
</script>"""


# ---------------------------------------------------------------------- audio


def pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0


def best_match(pcm: np.ndarray, piece: np.ndarray) -> tuple[float, int]:
    """Where `piece` matches `pcm` best (FFT cross-correlation): its normalized correlation
    there (1.0: the same waveform up to a gain; windows without energy score 0) and the
    sample it starts at."""
    if len(pcm) < len(piece):
        return 0.0, -1
    size = 1 << int(np.ceil(np.log2(len(pcm) + len(piece))))
    scores = np.fft.irfft(np.fft.rfft(pcm, size) * np.conj(np.fft.rfft(piece, size)), size)[: len(pcm) - len(piece) + 1]
    squares = np.concatenate([[0.0], np.cumsum(pcm.astype(np.float64) ** 2)])
    window_energy = squares[len(piece):] - squares[: len(pcm) - len(piece) + 1]
    norm = np.sqrt(np.maximum(window_energy, 1e-12) * float(np.dot(piece, piece)))
    normalized = np.where(window_energy > 1e-6 * len(piece), scores / norm, 0.0)
    best = int(np.argmax(normalized))
    return float(normalized[best]), best


def notice_pieces_found(pcm: np.ndarray) -> int:
    """How many of the notice clip's NOTICE_PIECES consecutive pieces (~0.24 s each) are in
    `pcm` (correlation above PIECE_CORRELATION), counted along the longest run of them in
    the clip's own order. Pieces, not the whole clip: a player's jitter buffer may stretch
    or conceal a stretch of it when the machine is loaded (a stalled loop delays packets),
    which no longer matches as a whole but leaves the other pieces intact."""
    spoken, rate = notice_clip.notice_pcm("recording-started")
    assert rate == RATE
    found = [best_match(pcm, piece) for piece in np.array_split(spoken, NOTICE_PIECES)]
    starts = [start for score, start in found if score > PIECE_CORRELATION]
    # The longest run of matched pieces whose places in `pcm` keep the clip's order.
    longest = [1] * len(starts)
    for i in range(len(starts)):
        for j in range(i):
            if starts[j] < starts[i]:
                longest[i] = max(longest[i], longest[j] + 1)
    return max(longest, default=0)


def tone_level(pcm: np.ndarray, frequency: float = 440.0) -> float:
    """Amplitude of `frequency` in the last second of `pcm` (0 when there is none)."""
    tail = pcm[-RATE:]
    if len(tail) < RATE // 2:
        return 0.0
    t = np.arange(len(tail)) / RATE
    return float(2 * abs(np.dot(tail, np.exp(-2j * np.pi * frequency * t))) / len(tail))


# ---------------------------------------------------------------------- the players


@pytest.fixture
def chromium(chromium_autoplay):
    """Chromium that may play a page's audio without a click (browser_fixtures)."""
    return chromium_autoplay


@contextlib.asynccontextmanager
async def page_origin():
    """The player page on an origin of its own (another port): its fetches are cross-origin."""
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PLAYER_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


class GstPlayer:
    """tests/support/whep_gst_player.py in a subprocess: its last report, its PCM file."""

    def __init__(self, url: str, token: str, pcm_path: str, log_path: str) -> None:
        self.pcm_path, self.log_path = pcm_path, log_path
        with open(log_path, "wb") as log:  # GStreamer's warnings: a file, never a full pipe
            self.process = subprocess.Popen(
                [SYSTEM_PYTHON, "-I", str(GST_PLAYER), url, token, pcm_path],
                stdout=subprocess.PIPE, stderr=log, env={**os.environ, "GST_DEBUG": "1"},
            )  # fmt: skip
        self.last: dict = {}
        self._reader = asyncio.get_running_loop().run_in_executor(None, self._read)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.last = json.loads(line)

    def audio(self) -> np.ndarray:
        with open(self.pcm_path, "rb") as f:
            return pcm16(f.read())

    async def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # it DELETEs its session first
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        await self._reader
        with open(self.log_path, "rb") as log:
            return log.read().decode(errors="replace")[-2000:]


async def wait_for(what: str, check, timeout: float = 30.0):
    for _ in range(int(timeout / 0.25)):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}: {await check(final=True)}")


# ---------------------------------------------------------------------- the proof


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="needs the system python3 with python3-gi")
async def test_chromium_and_gstreamer_players_decode_switch_and_hear_the_notice(conclave_server, chromium, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    storage = tmp_path / "storage"
    await server.call("PUT", f"/customers/{meeting['customer_id']}/storage", token=server.operator_key,
                      json_body={"kind": "local", "root": str(storage)})  # fmt: skip
    host = server.bot(meeting, "Hana", token=meeting["host_token"], width=640, height=360, tone_hz=440.0)
    await host.start()
    page_token = await viewer_token(server, meeting, "Chromium player")
    gst_token = await viewer_token(server, meeting, "GStreamer player")
    whep_url = server.base_url + page_token["whep_url"]
    gst = GstPlayer(whep_url, gst_token["token"], str(tmp_path / "gst.pcm"), str(tmp_path / "gst.log"))
    async with page_origin() as origin:
        page = await chromium.new_page()
        try:
            await page.goto(origin)
            await page.evaluate("([url, token]) => startPlayer(url, token)", [whep_url, page_token["token"]])
            assert await page.evaluate("player.error") is None

            async def both_show(width: int, final: bool = False):
                chrome, gstreamer = await page.evaluate("videoStats()"), gst.last
                if final:
                    return {"chromium": chrome, "gstreamer": gstreamer}
                return (chrome, dict(gstreamer)) if (
                    chrome["frames"] > 10 and chrome["width"] == width
                    and gstreamer.get("video_frames", 0) > 10 and gstreamer.get("width") == width
                ) else None  # fmt: skip

            camera, gst_camera = await wait_for("both players to decode the camera", lambda final=False: both_show(640, final))
            assert server.services.viewers.count() == 2

            page_audio: list[np.ndarray] = []

            async def page_pcm() -> np.ndarray:
                page_audio.append(pcm16(base64.b64decode(await page.evaluate("takeAudio()"))))
                return np.concatenate(page_audio)

            async def tone_heard(final: bool = False):
                levels = (tone_level(await page_pcm()), tone_level(gst.audio()))
                return levels if final or min(levels) > 0.05 else None

            await wait_for("both players to hear the tone", tone_heard)

            await host.publish_screen(GeneratedVideoTrack(512, 288, fps=10))
            screen, gst_screen = await wait_for("both players to show the screen share",
                                                lambda final=False: both_show(512, final))  # fmt: skip
            assert screen["ssrc"] == camera["ssrc"] and screen["count"] == 1 and not screen["renegotiated"]
            assert screen["frames"] > camera["frames"] and gst_screen["video_frames"] > gst_camera["video_frames"]

            await page_pcm()
            page_audio.clear()  # from here on: what the recording's start sounds like
            gst_before = len(gst.audio())
            await host.start_recording()

            async def notice_heard(final: bool = False):
                found = (notice_pieces_found(await page_pcm()), notice_pieces_found(gst.audio()[gst_before:]))
                return found if final or min(found) >= NOTICE_FOUND else None

            found = await wait_for("both players to hear the spoken notice", notice_heard, timeout=20)
            mixes = server.services.viewers.mixes
            assert mixes.running() == 1 and mixes.events["lost"] == 0  # heard through the mix

            assert await page.evaluate("(token) => endPlayer(token)", page_token["token"]) == 200
        finally:
            await page.close()
            errors = await gst.stop()
            await host.stop()
    assert gst.process.returncode == 0, errors
    for _ in range(40):
        if server.services.viewers.count() == 0:
            break
        await asyncio.sleep(0.1)
    assert server.services.viewers.count() == 0
    print("notice pieces found (chromium, gstreamer):", found, file=sys.stderr)
