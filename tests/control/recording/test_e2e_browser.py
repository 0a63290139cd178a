"""A meeting of two Chromium pages and a bot, recorded for about 10 s, end to end: control +
a real SFU worker + the real recorder process, the customer's storage a local directory
(set through the REST API), the host starting and stopping with the page's button.

What is checked, from the files in the customer's storage alone:
- every per-track segment and every mix segment decodes with av and starts where
  meeting.json says;
- each track covers the recording (first to last decoded frame, on the timeline its file
  carries) within 1 s of the recording's duration in meeting.json (stop - start); so does
  the mix;
- the mix starts with the spoken notice, found by cross-correlating the decoded mix with
  the decoded notice clip: the best lag is 0 (+-10 ms), the notice is there at its own
  level (gain ~1), no other lag comes close, and where no participant made a sound the
  mix is the notice (correlation > 0.9);
- the mix carries each marked voice at the level of that voice's own track file;
- meeting.json: the three participants and their names, the six tracks with offsets
  matching their files, a consent-ledger entry for everyone (notified_at, channels,
  decision), the chat message sent during the recording, start/stop and software versions.

"Tracks line up within 100 ms": what is proven, and for which tracks. Two senders carry
a marker stamped from the machine's wall clock (all processes share it): every 3 s of
epoch time (t % 3 s == 0) a 300 ms tone burst starts on their microphone and their
camera turns white for 300 ms.
- the bot (aiortc, client): generated audio (1500 Hz bursts) and video (30 fps),
  frames captured on the wall-clock grid, so a burst and a flash start at the same instant;
- the page "Grace": the real web client in Chromium, whose getUserMedia returns a canvas
  stream (30 fps, flashes drawn on the wall-clock grid) and a WebAudio stream (2500 Hz
  bursts scheduled at the same wall-clock instants).
For every marker inside the recording, its onset is found (detected, not assumed) in the
bot's audio file, the bot's video file, Grace's audio file, Grace's video file and, at
each frequency, in the mix; all six onsets lie within 100 ms of each other: lip sync of
each sender, the two senders against each other (an aiortc and a Chromium RTP stack,
placed on the timeline by their RTCP sender reports), and the mix against the tracks.
Each onset is also within 250 ms of where the wall clock says it belongs (marker time -
recording start): the timeline's zero is the recording's start, not the recorder's.
The host's page uses Chromium's own fake camera and microphone (a test pattern and a
400 Hz beep every 0.5 s, not synchronized with each other or with any clock we can read),
so its two tracks are checked for decoding and duration, not for line-up; its loud beeps
are why the notice and level checks look only where the host is silent.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import math
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from client.bot import Bot
from recorder.media import notice as notice_clip
from tests.support import browser
from tests.support.browser_fixtures import chromium_autoplay  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.timeout(120),
]

RATE = 48000
PERIOD_S = 3  # a marker every 3 s of epoch time
BURST_S = 0.3  # the tone burst / white flash lasts this long
FPS = 30  # both marker cameras; 3 s and 0.3 s are whole numbers of frames
BOT_TONE_HZ = 1500
PAGE_TONE_HZ = 2500
LEVEL = 0.3  # both bursts at once stay below the mixer's limiter knee (0.7)
RECORD_S = 10.0
SEGMENT_S = 4.0  # several segments per track: their boundaries are crossed
LINE_UP_S = 0.100
ABSOLUTE_S = 0.250
DURATION_SLACK_S = 1.0
MEDIA_TIMEOUT = 40.0
STORAGE_TIMEOUT = 40.0
CHAT_TEXT = "said while the tape was rolling"


# ---------------------------------------------------------------------- marker media


def burst_on_samples(first: int, count: int) -> np.ndarray:
    """For epoch sample indexes first..first+count: inside a burst?"""
    n = np.arange(first, first + count, dtype=np.int64)
    return (n % (PERIOD_S * RATE)) < round(BURST_S * RATE)


class MarkerAudioTrack(MediaStreamTrack):
    """48 kHz mono, 20 ms frames on the epoch grid (frame n covers [n·20 ms, (n+1)·20 ms)
    of wall-clock time, released at its start like ToneAudioTrack); silence except a
    `LEVEL` burst of `frequency` for `BURST_S` from every multiple of `PERIOD_S`."""

    kind = "audio"
    SAMPLES = 960

    def __init__(self, frequency: int) -> None:
        super().__init__()
        self.frequency = frequency
        self._next: int | None = None
        self._first = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        step = self.SAMPLES / RATE
        if self._next is None or time.time() - self._next * step > 0.5:  # first, or far behind
            self._next = math.ceil(time.time() / step)
            self._first = self._first or self._next
        index = self._next
        self._next += 1
        delay = index * step - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        first_sample = index * self.SAMPLES
        on = burst_on_samples(first_sample, self.SAMPLES)
        n = np.arange(first_sample, first_sample + self.SAMPLES, dtype=np.int64) % RATE
        wave = LEVEL * np.sin(2 * np.pi * self.frequency * n / RATE) * on
        frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = (index - self._first) * self.SAMPLES
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class MarkerVideoTrack(MediaStreamTrack):
    """320x240 at `FPS`, frame n captured at n/FPS epoch seconds: dark grey with a moving
    square, all white during a burst."""

    kind = "video"
    WIDTH, HEIGHT = 320, 240

    def __init__(self) -> None:
        super().__init__()
        self._next: int | None = None
        self._first = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._next is None or time.time() - self._next / FPS > 0.5:
            self._next = math.ceil(time.time() * FPS)
            self._first = self._first or self._next
        index = self._next
        self._next += 1
        delay = index / FPS - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        flash = index % (PERIOD_S * FPS) < round(BURST_S * FPS)
        buffer = np.full((self.HEIGHT * 3 // 2, self.WIDTH), 128, np.uint8)
        buffer[: self.HEIGHT] = 235 if flash else 40
        left = (index * 4) % (self.WIDTH - 20)
        buffer[200:220, left : left + 20] = 128  # motion, so that frames differ
        frame = av.VideoFrame.from_ndarray(buffer, format="yuv420p")
        frame.pts = (index - self._first) * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


class MarkerBot(Bot):
    """A bot publishing the marker tracks instead of its tone and pattern."""

    def _make_tracks(self, audio: bool, video: bool) -> None:
        if audio:
            self._tracks["microphone"] = MarkerAudioTrack(BOT_TONE_HZ)
        if video:
            self._tracks["camera"] = MarkerVideoTrack()


# The page's camera and microphone: the same markers, made in the page (installed before
# the web client's scripts run; the client calls navigator.mediaDevices.getUserMedia).
MARKER_MEDIA_JS = """
({ PERIOD_MS, BURST_MS, FPS, TONE_HZ, LEVEL }) => {
  const wall = () => performance.timeOrigin + performance.now();
  const frames = (ms) => Math.round(ms * FPS / 1000);

  function camera() {
    const canvas = document.createElement('canvas');
    canvas.width = 320; canvas.height = 240;
    const g = canvas.getContext('2d');
    const [track] = canvas.captureStream(0).getVideoTracks();
    const step = 1000 / FPS;
    const draw = () => {
      if (track.readyState !== 'live') return;
      const index = Math.round(wall() / step);  // the grid slot this timer was set for
      const flash = index % frames(PERIOD_MS) < frames(BURST_MS);
      g.fillStyle = flash ? '#ffffff' : '#282828';
      g.fillRect(0, 0, 320, 240);
      g.fillStyle = '#808080';
      g.fillRect((index * 4) % 300, 200, 20, 20);
      track.requestFrame();
      setTimeout(draw, Math.max(0, (index + 1) * step - wall()));
    };
    draw();
    return track;
  }

  async function microphone() {
    const ctx = new AudioContext({ sampleRate: 48000 });
    await ctx.resume();
    const osc = ctx.createOscillator();
    osc.frequency.value = TONE_HZ;
    const gain = ctx.createGain();
    gain.gain.value = 0;
    const out = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(out);
    osc.start();
    const scheduled = new Set();
    const schedule = () => {
      // Context time <-> wall clock, sampled together; bursts up to 2 s ahead.
      const nowWall = wall(), nowCtx = ctx.currentTime;
      for (let k = Math.ceil(nowWall / PERIOD_MS); k * PERIOD_MS < nowWall + 2000; k++) {
        const at = nowCtx + (k * PERIOD_MS - nowWall) / 1000;
        if (scheduled.has(k) || at < nowCtx + 0.1) continue;
        gain.gain.setValueAtTime(LEVEL, at);
        gain.gain.setValueAtTime(0, at + BURST_MS / 1000);
        scheduled.add(k);
      }
    };
    schedule();
    setInterval(schedule, 250);
    window.__markerAudio = ctx;  // held, so that it is never collected
    return out.stream.getAudioTracks()[0];
  }

  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const tracks = [];
    if (constraints.audio) tracks.push(await microphone());
    if (constraints.video) tracks.push(camera());
    return new MediaStream(tracks);
  };
}
"""
MARKER_SETTINGS = {
    "PERIOD_MS": PERIOD_S * 1000,
    "BURST_MS": round(BURST_S * 1000),
    "FPS": FPS,
    "TONE_HZ": PAGE_TONE_HZ,
    "LEVEL": LEVEL,
}
PAGE_MARKER_MEDIA = f"({MARKER_MEDIA_JS})({json.dumps(MARKER_SETTINGS)});"


# ---------------------------------------------------------------------- decoding


@dataclass
class AudioOnTimeline:
    pcm: np.ndarray  # mono float32, index 0 = recording time 0
    first: float  # first decoded sample (recording seconds)
    end: float  # end of the last decoded frame


@dataclass
class VideoOnTimeline:
    times: np.ndarray  # each decoded frame's start (recording seconds)
    luma: np.ndarray  # each frame's mean luma
    end: float  # end of the last frame (its start + the frame interval before it)


def start_tag(container: Any) -> float:
    """The mix segment's place on the timeline (its Ogg timestamps restart at 0)."""
    tags = {**container.metadata, **(container.streams[0].metadata if container.streams else {})}
    value = next((v for k, v in tags.items() if k.upper() == "CONCLAVE_START_SECONDS"), None)
    assert value is not None, f"a mix segment without its start tag: {tags}"
    return float(value)


def decode_audio(root: Path, segments: list[dict[str, Any]], length_s: float, *, tagged: bool) -> AudioOnTimeline:
    """Decode every segment file and place its samples on the recording timeline: by the
    file's own timestamps (track files carry timeline milliseconds) plus, for the mix, its
    start tag. Channels are averaged (a WebRTC voice is mono sent as stereo: L = R). Each
    file must decode and start where meeting.json says."""
    pcm = np.zeros(int(length_s * RATE), np.float32)
    first, end = math.inf, -math.inf
    for segment in segments:
        path = root / segment["key"]
        starts = []
        with av.open(str(path)) as container:
            base = start_tag(container) if tagged else 0.0
            resampler = av.AudioResampler(format="fltp", rate=RATE)  # planar, its own channels
            for frame in container.decode(audio=0):
                assert frame.pts is not None, f"{path.name}: a frame without a timestamp"
                at = base + float(frame.pts * frame.time_base)
                starts.append(at)
                for planar in resampler.resample(frame):
                    samples = planar.to_ndarray().mean(axis=0)
                    lo = max(round(at * RATE), 0)
                    hi = min(lo + len(samples), len(pcm))
                    pcm[lo:hi] = samples[: hi - lo]
                    end = max(end, at + len(samples) / RATE)
                    at += len(samples) / RATE
        assert starts, f"{path.name}: nothing decoded"
        assert starts[0] == pytest.approx(segment["start"], abs=0.002), (path.name, starts[0], segment)
        first = min(first, starts[0])
    return AudioOnTimeline(pcm, first, end)


def decode_video(root: Path, segments: list[dict[str, Any]]) -> VideoOnTimeline:
    times, luma = [], []
    for segment in segments:
        path = root / segment["key"]
        with av.open(str(path)) as container:
            frames = 0
            for frame in container.decode(video=0):
                assert frame.pts is not None, f"{path.name}: a frame without a timestamp"
                at = float(frame.pts * frame.time_base)
                if not frames:
                    assert at == pytest.approx(segment["start"], abs=0.002), (path.name, at, segment)
                frames += 1
                times.append(at)
                luma.append(float(frame.reformat(format="gray").to_ndarray().mean()))
        assert frames, f"{path.name}: nothing decoded"
    order = np.argsort(times)
    times_a, luma_a = np.asarray(times)[order], np.asarray(luma)[order]
    assert len(times_a) > 1 and np.all(np.diff(times_a) > 0), "video frames out of order or at one time"
    return VideoOnTimeline(times_a, luma_a, float(times_a[-1] + np.median(np.diff(times_a))))


# ---------------------------------------------------------------------- detection


def tone_envelope(pcm: np.ndarray, frequency: float) -> np.ndarray:
    """Amplitude of `frequency` over time: mix down to 0 Hz, then a 10 ms moving average
    (its zeros at every multiple of 100 Hz reject the other marker tone)."""
    n = np.arange(len(pcm))
    base = pcm * np.exp(-2j * np.pi * frequency * n / RATE)
    width = RATE // 100
    return 2 * np.abs(np.convolve(base, np.ones(width) / width, mode="same"))


def audio_onset(pcm: np.ndarray, frequency: float, expected: float, search: float = 0.4) -> float | None:
    """Where a burst of `frequency` starts near `expected` (recording seconds): the first
    sample at half the burst's peak amplitude; None if no clear burst is there."""
    lo, hi = max(0, int((expected - search) * RATE)), min(len(pcm), int((expected + search + BURST_S) * RATE))
    envelope = tone_envelope(pcm[lo:hi], frequency)
    peak = float(envelope.max(initial=0.0))
    if peak < LEVEL / 4 or peak < 5 * float(np.median(envelope)):
        return None
    return (lo + int(np.argmax(envelope >= peak / 2))) / RATE


def video_onset(video: VideoOnTimeline, expected: float, search: float = 0.4) -> float | None:
    """The first white frame near `expected`; None if there is no clear flash."""
    inside = (video.times >= expected - search) & (video.times <= expected + search + BURST_S)
    luma, times = video.luma[inside], video.times[inside]
    if len(luma) < 3 or luma.max() - luma.min() < 100:
        return None
    return float(times[np.argmax(luma >= (luma.max() + luma.min()) / 2)])


def sounding(pcm: np.ndarray, margin_s: float = 0.010) -> np.ndarray:
    """Where `pcm` is not silent, widened by `margin_s` on both sides."""
    loud = (np.abs(pcm) > 1e-3).astype(np.float32)
    width = 2 * round(margin_s * RATE) + 1
    return np.convolve(loud, np.ones(width, np.float32), mode="same") > 0


def notice_match(mix: np.ndarray, others: np.ndarray) -> dict[str, float]:
    """The spoken notice in the mix's first seconds, found by cross-correlation with the
    notice clip (lags from -0.1 s): its lag, its gain there (1 = all of it, at its own
    level), how far the peak stands out from every lag more than 50 ms away, and the
    normalized correlation over the samples where no participant (`others`: where their
    tracks sound) made a sound: there the mix must be the notice alone."""
    spoken, rate = notice_clip.notice_pcm("recording-started")
    assert rate == RATE
    pad = RATE // 10
    head = np.concatenate([np.zeros(pad, np.float32), mix[: len(spoken) + RATE]])
    scores = np.correlate(head, spoken, mode="valid")
    best = int(np.argmax(scores))
    energy = float(np.dot(spoken, spoken))
    away = np.abs(np.arange(len(scores)) - best) > RATE // 20
    window = head[best : best + len(spoken)]
    positions = np.arange(best - pad, best - pad + len(spoken))
    quiet = (positions >= 0) & ~others[np.clip(positions, 0, len(others) - 1)]
    a, b = window[quiet], spoken[quiet]
    return {
        "lag_s": (best - pad) / RATE,
        "gain": float(scores[best]) / energy,
        "prominence": float(scores[best]) / float(np.max(np.abs(scores[away]))),
        "quiet_share": float(quiet.mean()),
        "quiet_correlation": float(np.dot(a, b)) / math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b))),
        "length_s": len(spoken) / RATE,
    }


def tone_level(pcm: np.ndarray, frequency: float, onset: float, quiet: np.ndarray) -> float | None:
    """The amplitude of a burst of `frequency` starting at `onset`, over its samples where
    `quiet` holds (the mix's limiter may bend a burst where a loud beep sounds with it);
    None if fewer than 30 ms of it are quiet."""
    lo, hi = int((onset + 0.010) * RATE), int((onset + BURST_S - 0.010) * RATE)
    envelope = tone_envelope(pcm[lo - RATE // 50 : hi + RATE // 50], frequency)[RATE // 50 : -(RATE // 50)]
    usable = envelope[quiet[lo:hi]]
    return float(np.median(usable)) if len(usable) >= 0.030 * RATE else None


# ---------------------------------------------------------------------- the stage


@pytest.fixture
def chromium(chromium_autoplay):
    """Chromium that may play a page's audio without a click (browser_fixtures)."""
    return chromium_autoplay


async def open_marker_page(chromium, server, meeting: dict[str, Any], name: str):
    """The web client as `name`, its getUserMedia giving the marker camera and microphone."""
    context = await chromium.new_context(permissions=["camera", "microphone"], base_url=server.base_url)
    await context.add_init_script(PAGE_MARKER_MEDIA)
    page = await context.new_page()
    page.conclave_name = name
    page.conclave_errors = []
    page.on("console", lambda msg: msg.type == "error" and page.conclave_errors.append(f"console: {msg.text}"))
    page.on("pageerror", lambda exc: page.conclave_errors.append(f"uncaught: {exc}"))
    separator = "&" if "?" in meeting["join_url"] else "?"
    await page.goto(meeting["join_url"] + separator + urllib.parse.urlencode({"name": name}))
    await browser.wait_for(page, "window.conclave && window.conclave.state === 'joined'", 30, what=f"{name} to join")
    return page


async def wait_for_files(root: Path, prefix: str, timeout: float) -> dict[str, Any]:
    """meeting.json once it and every file it lists are in storage at their sizes."""
    deadline = time.monotonic() + timeout
    missing: list[str] = ["meeting.json"]
    while time.monotonic() < deadline:
        path = root / prefix / "meeting.json"
        if path.is_file():
            manifest = json.loads(path.read_text())
            segments = [s for t in manifest["tracks"] for s in t["segments"]] + manifest["mix"]["segments"]
            missing = [
                s["key"]
                for s in segments
                if not (root / s["key"]).is_file() or (root / s["key"]).stat().st_size != s["size"]
            ]
            if not missing:
                return manifest
        await asyncio.sleep(0.5)
    raise AssertionError(f"not in storage after {timeout:.0f} s: {missing}")


async def wait_wall_phase(low: float, high: float) -> None:
    """Until epoch time mod PERIOD_S is in [low, high): recording starts just after a
    marker, so the spoken notice (~2 s) and the first marker in the mix do not overlap."""
    while not low <= time.time() % PERIOD_S < high:
        await asyncio.sleep(0.01)


async def test_two_pages_and_a_bot_recorded_decode_and_line_up(conclave_server_factory, chromium, tmp_path):
    server = await conclave_server_factory(recorder={"segment_seconds": SEGMENT_S})
    storage = tmp_path / "storage"
    owner = await server.new_host(limits={"max_live_meetings_per_host": 10, "max_concurrent_meetings": 10})
    await server.call("PUT", f"/customers/{owner['customer_id']}/storage", token=server.operator_key,
                      json_body={"kind": "local", "root": str(storage)})  # fmt: skip
    meeting = await server.create_meeting("Recorded end to end", host=owner, start=False)
    assert await server.services.recorder.wait_up(30), "the recorder did not come up"
    host_name = (await server.services.store.get_host(owner["host_id"])).name

    bot = MarkerBot(server.base_url, meeting["meeting_number"], "Marker bot", passcode=meeting["passcode"])
    pages = []
    try:
        host = await browser.open_host_page(chromium, server.base_url, owner["email"], owner["password"])
        pages.append(host)
        await browser.start_from_dashboard(host, meeting["meeting_number"])
        grace = await open_marker_page(chromium, server, meeting, "Grace")
        pages.append(grace)
        await bot.start()
        host_id, grace_id = await browser.participant_id(host), await browser.participant_id(grace)
        names = {host_id: host_name, grace_id: "Grace", bot.participant_id: "Marker bot"}
        # Everyone's media flows before the recording starts: all six tracks are recorded
        # from its first second to its last.
        for other in (grace_id, bot.participant_id):
            await browser.wait_media_from(host, other, timeout=MEDIA_TIMEOUT)
        await browser.wait_media_from(grace, host_id, timeout=MEDIA_TIMEOUT)
        for other in (host_id, grace_id):
            for source in ("microphone", "camera"):
                await bot.wait_for_frames(other, source, 10, timeout=MEDIA_TIMEOUT)
        published = {t.track_id: t for t in server.services.registry.get(meeting["meeting_id"]).tracks()}
        assert len(published) == 6, published

        await wait_wall_phase(0.35, 0.6)
        clicked = time.time()
        await host.get_by_test_id("toggle-recording").click()
        await bot.wait_recording_state(lambda state: state.recording, timeout=30)
        await asyncio.sleep(RECORD_S / 2 - (time.time() - clicked))
        await browser.send_chat_via_ui(grace, CHAT_TEXT)
        await bot.wait_for_chat(CHAT_TEXT)
        await asyncio.sleep(RECORD_S - (time.time() - clicked))
        await host.get_by_test_id("toggle-recording").click()
        await bot.wait_recording_state(lambda state: not state.recording, timeout=40)
        [recording] = await server.services.store.list_recordings(meeting["meeting_id"])
        manifest = await wait_for_files(storage, recording.key_prefix, STORAGE_TIMEOUT)
        for page in pages:
            assert await page.get_by_test_id("error-toast").count() == 0, browser.page_errors(page)
    finally:
        await bot.stop()
        for page in pages:
            await browser.close_page(page)

    # ------------------------------------------------------------------ meeting.json
    times = manifest["recording"]
    assert times["id"] == recording.id and times["failure"] is None
    started_at, duration = times["started_at"], times["duration"]
    assert times["stopped_at"] - started_at == pytest.approx(duration, abs=0.002)
    assert started_at == pytest.approx(manifest["started_at"], abs=0.001)  # control's and the recorder's t=0
    assert 0 <= times["stopped_at"] - manifest["stopped_at"] < 2.0
    assert clicked < started_at < clicked + 3.0
    assert RECORD_S - 3.0 < duration < RECORD_S + 5.0, duration  # "about 10 s"
    assert manifest["software"]["name"] == "conclave" and manifest["software"]["version"]
    assert manifest["recorder"]["version"] == manifest["software"]["version"]

    assert {p["participant_id"]: p["name"] for p in manifest["participants"]} == names
    ledger = {entry["participant_id"]: entry for entry in manifest["consent"]}
    assert set(ledger) == set(names)
    for participant_id, entry in ledger.items():
        assert entry["name"] == names[participant_id]
        assert started_at <= entry["notified_at"] < started_at + 5.0, entry
        assert set(entry["channels"]) == {"banner", "event", "audio"}, entry  # everyone heard it
        assert entry["decision"] == "continued", entry  # under notify, staying is continuing
    [chat] = manifest["chat"]
    assert (chat["text"], chat["name"], chat["participant_id"]) == (CHAT_TEXT, "Grace", grace_id)
    assert started_at * 1000 < chat["ts"] < manifest["stopped_at"] * 1000

    tracks = {t["track_id"]: t for t in manifest["tracks"]}
    assert set(tracks) == set(published)
    for track_id, track in tracks.items():
        assert (track["participant_id"], track["source"]) == (
            published[track_id].participant_id, published[track_id].source)  # fmt: skip
        assert track["display_name"] == names[track["participant_id"]]
        assert track["kind"] == ("audio" if track["source"] == "microphone" else "video")
        assert track["codec"] == ("opus" if track["kind"] == "audio" else "vp8")
        assert track["segments"] and track["offset"] == track["segments"][0]["start"]
        assert len(track["segments"]) >= 2, track  # 10 s in segments of 4 s
    length = duration + 2.0

    # ------------------------------------------------------------------ every file decodes
    audio: dict[str, AudioOnTimeline] = {}
    coverage: dict[str, list[float]] = {}  # first, end
    video: dict[str, VideoOnTimeline] = {}
    for track_id, track in tracks.items():
        if track["kind"] == "audio":
            audio[track_id] = got = decode_audio(storage, track["segments"], length, tagged=False)
            first, end = got.first, got.end
        else:
            video[track_id] = got = decode_video(storage, track["segments"])
            first, end = got.times[0], got.end
        who = f"{names[track['participant_id']]}'s {track['source']}"
        # The file's timestamps are where meeting.json says the track starts and ends.
        assert first == pytest.approx(track["offset"], abs=0.002), who
        assert end == pytest.approx(track["end"], abs=0.05), who
        covered = end - first
        coverage[who] = [round(first, 3), round(end, 3)]
        assert abs(covered - duration) <= DURATION_SLACK_S, f"{who} covers {covered:.3f} s of {duration:.3f} s"
    mix = decode_audio(storage, manifest["mix"]["segments"], length, tagged=True)
    assert mix.first == pytest.approx(0.0, abs=0.002)
    assert abs((mix.end - mix.first) - duration) <= DURATION_SLACK_S, (mix.first, mix.end, duration)

    # ------------------------------------------------------------------ the notice opens the mix
    by_source = {(t["participant_id"], t["source"]): track_id for track_id, t in tracks.items()}
    voices = {pid: audio[by_source[pid, "microphone"]].pcm for pid in names}
    found = notice_match(mix.pcm, sounding(sum(voices.values())))
    assert abs(found["lag_s"]) < 0.010, found  # at the very start
    assert 0.8 < found["gain"] < 1.25, found  # all of it, at its own level
    assert found["prominence"] > 3.0, found  # nowhere else nearly as well
    # Where nobody else spoke (the host's fake microphone beeps), the mix is the notice.
    assert found["quiet_share"] > 0.3 and found["quiet_correlation"] > 0.9, found

    # ------------------------------------------------------------------ line-up
    bot_audio, grace_audio = voices[bot.participant_id], voices[grace_id]
    series = {
        "bot audio": lambda at: audio_onset(bot_audio, BOT_TONE_HZ, at),
        "bot video": lambda at: video_onset(video[by_source[bot.participant_id, "camera"]], at),
        "page audio": lambda at: audio_onset(grace_audio, PAGE_TONE_HZ, at),
        "page video": lambda at: video_onset(video[by_source[grace_id, "camera"]], at),
        "mix bot": lambda at: audio_onset(mix.pcm, BOT_TONE_HZ, at),
        "mix page": lambda at: audio_onset(mix.pcm, PAGE_TONE_HZ, at),
    }
    host_quiet = ~sounding(voices[host_id])
    first_marker = math.ceil((started_at + max(1.0, found["length_s"] + 0.3)) / PERIOD_S)
    markers = [k * PERIOD_S for k in range(first_marker, math.floor((started_at + duration - 1.0) / PERIOD_S) + 1)]
    assert len(markers) >= 2, (started_at, duration)
    report: dict[float, dict[str, Any]] = {}
    levels: dict[str, list[float]] = {}  # voice -> its level in the mix / in its track, per marker
    for marker in markers:
        expected = marker - started_at
        onsets = {name: find(expected) for name, find in series.items()}
        entry = report[round(expected, 3)] = {
            n: None if v is None else round(v - expected, 3) for n, v in onsets.items()
        }
        missing = [name for name, onset in onsets.items() if onset is None]
        assert not missing, f"marker at {expected:.3f} s not found in {missing}: {report}"
        spread = max(onsets.values()) - min(onsets.values())
        assert spread < LINE_UP_S, f"marker at {expected:.3f} s: onsets spread over {spread * 1000:.0f} ms: {report}"
        worst = max(abs(onset - expected) for onset in onsets.values())
        assert worst < ABSOLUTE_S, f"marker at {expected:.3f} s is {worst * 1000:.0f} ms off the clock: {report}"
        for who, pcm, tone in (("bot", bot_audio, BOT_TONE_HZ), ("page", grace_audio, PAGE_TONE_HZ)):
            own = tone_level(pcm, tone, onsets[f"{who} audio"], host_quiet)
            mixed = tone_level(mix.pcm, tone, onsets[f"mix {who}"], host_quiet)
            assert own is not None and mixed is not None, f"{who}'s burst at {expected:.3f} s is all beeps"
            entry[f"{who} level in mix / in track"] = ratio = round(mixed / own, 3)
            levels.setdefault(who, []).append(ratio)
    # The mix carries each voice at the level of its own track (nothing added, nothing
    # lost; a downmix adding the two channels of a mono voice would make it 1.41). One
    # burst may come out ~20 % low: the mix's Opus encoder (48 kb/s) codes the seconds
    # after the spoken notice in its hybrid speech mode (SILK), which can render a pure
    # tone that much weaker.
    for who, ratios in levels.items():
        assert all(0.7 < r < 1.3 for r in ratios) and 0.9 < float(np.median(ratios)) < 1.1, (who, report)
    print(f"duration {duration:.3f} s, covered:", json.dumps(coverage))
    print("marker onsets - expected (s):", json.dumps(report), "notice:", found)
