"""Transcription of a live meeting, end to end: control + a real SFU worker + the real
recorder process with the offline engine (pocketsphinx), bots on 127.0.0.1.

A bot publishes speech made with espeak-ng (a WAV file played through
client.media.open_media_file), the host starts transcription over signaling with
the spoken phrase as a vocabulary hint. After the stop the transcript arrives
(`transcript.ready` webhook) and is checked through the REST API: one segment, with the
bot's display name, exactly the phrase, at the place on the meeting timeline where the
host heard the bot speak. The transcript page works for the host and for a participant's
join token and says that it may be incomplete or inaccurate; anyone else gets 403.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from client.bot import Bot

PHRASE = "welcome to the quarterly review"
SPEAKER = "Robin Speaker"
LEAD_SILENCE_S = 1.0  # before the phrase: the bot's connection is up when it speaks
TAIL_SILENCE_S = 60.0  # after it: the player loops the file, the phrase must come once
JOIN_AFTER_S = 3.0  # the speaker joins this long after transcription started
TIMELINE_TOLERANCE_S = 1.0
HEARD_PEAK = 1000  # int16 peak of a decoded 20 ms frame that counts as speech (silence is ~0)
DISCLAIMER = "Transcripts may be incomplete or inaccurate."

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def speech_wav(directory: Path) -> tuple[Path, float]:
    """A WAV of PHRASE (espeak-ng -w) in silence; returns it and the phrase's seconds."""
    spoken = directory / "spoken.wav"
    subprocess.run(["espeak-ng", "-w", str(spoken), PHRASE], check=True, capture_output=True, timeout=30)
    with wave.open(str(spoken)) as reader:
        params = reader.getparams()
        speech = reader.readframes(reader.getnframes())
    assert params.nchannels == 1 and params.sampwidth == 2, params
    rate = params.framerate
    padded = directory / "speech.wav"
    with wave.open(str(padded), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(bytes(2 * int(LEAD_SILENCE_S * rate)) + speech + bytes(2 * int(TAIL_SILENCE_S * rate)))
    return padded, len(speech) / 2 / rate


class Webhooks:
    """A real HTTP receiver for the customer's webhook (events as parsed JSON)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(json.loads(await request.read()))
        self.arrived.set()
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if e.get("event") == event]
            if found:
                return found[0]
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [e.get("event") for e in self.events]
                raise AssertionError(f"no {event} webhook within {timeout:.0f} s (got {seen})")
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                pass


async def get_page(url: str, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers, allow_redirects=False) as response:
            return response.status, await response.text()


async def test_transcript_of_a_bots_speech(conclave_server, tmp_path):
    server = conclave_server
    wav, phrase_seconds = speech_wav(tmp_path)
    created = await server.new_customer({"max_live_meetings_per_host": 10, "max_concurrent_meetings": 10})
    customer_id = created["customer"]["id"]
    account = await server.new_host(customer_id)
    await server.call("PUT", f"/customers/{customer_id}/storage", token=server.operator_key,
                      json_body={"kind": "local", "root": str(tmp_path / "storage")})  # fmt: skip
    hooks = Webhooks()
    await hooks.start()
    await server.call("PUT", f"/customers/{customer_id}/webhook", token=created["api_key"],
                      json_body={"url": hooks.url})  # fmt: skip
    meeting = await server.create_meeting("Quarterly review", host=account)
    host = Bot(server.base_url, meeting["meeting_number"], "Host", token=meeting["host_token"])
    speaker = server.bot(meeting, SPEAKER, video_file=str(wav))
    try:
        await host.start(publish_audio=False, publish_video=False)  # only the speaker's voice
        reply = await host.signaling.request(
            {"type": "transcription", "action": "start", "hints": [PHRASE]}, timeout=30
        )
        assert reply["type"] == "ok"
        [row] = await server.services.store.list_recordings(meeting["meeting_id"])
        assert (row.kind, row.state) == ("transcription", "active")

        # Some seconds into the transcription the speaker joins and publishes the file (so
        # the phrase is well away from where their audio starts); the host hears when the
        # phrase starts.
        await asyncio.sleep(JOIN_AFTER_S)
        await speaker.start(publish_video=False)
        heard: list[float] = []

        def speaking() -> bool:
            stats = host.find_stats(speaker.participant_id, "microphone")
            if stats is not None and stats.peak > HEARD_PEAK and not heard:
                heard.append(time.time())
            return bool(heard)

        await host.wait_until(speaking, 20, "the speaker's phrase")
        expected_start = heard[0] - row.started_at
        expected_end = expected_start + phrase_seconds
        await asyncio.sleep(phrase_seconds + 2.0)  # the phrase, then a little silence
        assert (await host.signaling.request({"type": "transcription", "action": "stop"}, timeout=40))["type"] == "ok"

        ready = await hooks.wait_for("transcript.ready", 60)
        assert ready["data"]["recording_id"] == row.id and ready["data"]["transcript_url"] == f"/t/{row.id}"
        listing = await server.call("GET", f"/meetings/{meeting['number']}/recordings", token=meeting["host_session"])
        [recording] = listing["recordings"]
        assert recording["transcript_url"] == f"/t/{row.id}"
        assert {f["kind"] for f in recording["files"]} >= {"track", "transcript"}

        api_path = f"/recordings/{row.id}/transcript"
        transcript = await server.call("GET", api_path, token=meeting["host_token"])
        assert transcript["disclaimer"] == DISCLAIMER and transcript["speakers"] == [SPEAKER]
        [segment] = transcript["segments"]
        assert segment["speaker"] == SPEAKER and segment["text"] == PHRASE, segment
        assert abs(segment["start"] - expected_start) < TIMELINE_TOLERANCE_S, (segment, expected_start)
        assert abs(segment["end"] - expected_end) < TIMELINE_TOLERANCE_S, (segment, expected_end)
        assert expected_start > JOIN_AFTER_S + LEAD_SILENCE_S - 0.5  # the timeline, not the speaker's own clock
        [vtt] = [f for f in recording["files"] if f["key"].endswith("transcript.vtt")]
        cues = (tmp_path / "storage" / vtt["key"]).read_text()
        assert cues.startswith("WEBVTT") and f"<v {SPEAKER}>{PHRASE}" in cues, cues

        # The page: the host (sign-in and join token) and a participant (their join token).
        page = f"{server.base_url}/t/{row.id}"
        for token in (meeting["host_session"], meeting["host_token"], speaker.token):
            status, text = await get_page(page, token)
            assert status == 200, (token, text)
            assert DISCLAIMER in text and PHRASE in text and SPEAKER in text
        assert (await server.call("GET", api_path, token=speaker.token))["segments"] == transcript["segments"]

        # Everyone else: 403 (no credentials at all: 401 from the JSON API, 403 from the page).
        elsewhere = await server.create_meeting("Elsewhere", host=account)
        outsider = await server.join(elsewhere, "Eve")
        for token in (outsider["token"], server.operator_key, elsewhere["host_token"], None):
            status, text = await get_page(page, token)
            assert status == 403 and PHRASE not in text, (token, status)
            status, body, _ = await server.api("GET", api_path, token=token)
            assert status == (401 if token is None else 403) and PHRASE not in json.dumps(body), (token, body)
    finally:
        await asyncio.gather(host.stop(), speaker.stop(), return_exceptions=True)
        await hooks.stop()
