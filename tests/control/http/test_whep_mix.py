"""WHEP viewers hear the meeting's audio mixed (issue 12, item 5; control.meeting.viewer_mix,
recorder/live_mixing.py), proven with a Chromium WHEP player against a real server,
worker and recorder on 127.0.0.1.

Two bots publish a tone each, 440 Hz (the host) and 1000 Hz (a guest). One voice at a
time (today's fallback: the active speaker) would give the player one of them; the mix
gives it both at once: both tones in each of the last five 100 ms windows of its
decoded audio. Then the recorder is killed: the
player hears one tone again (the fallback), and both once the restarted recorder mixes
again; all on the one audio receiver, never renegotiated. The notice heard through the
mix is tests/control/http/test_whep_players.py's proof.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys

import numpy as np
import pytest

from tests.control.http.test_whep_players import RATE, chromium, page_origin, pcm16, tone_level, wait_for  # noqa: F401
from tests.support.browser_fixtures import chromium_autoplay  # noqa: F401  (fixture behind chromium)
from tests.support.whep import viewer_token

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

HEARD = 0.04  # a tone's amplitude in decoded audio (each bot sends 0.3; a player decodes ~0.2)
# "At once", not one after the other (the fallback's active speaker may switch within a
# second): both tones in every one of these windows at the end of the decoded audio.
WINDOWS, WINDOW = 5, RATE // 10


def both_at_once(pcm: np.ndarray) -> float:
    """The quieter tone's level in the quietest of the last WINDOWS 100 ms windows."""
    if len(pcm) < WINDOWS * WINDOW:
        return 0.0
    t = np.arange(WINDOW) / RATE
    lowest = []
    for k in range(WINDOWS):
        window = pcm[len(pcm) - (k + 1) * WINDOW : len(pcm) - k * WINDOW]
        lowest.append(min(2 * abs(np.dot(window, np.exp(-2j * np.pi * f * t))) / WINDOW for f in (440.0, 1000.0)))
    return float(min(lowest))


async def test_a_player_hears_two_voices_at_once_and_falls_back_while_the_recorder_restarts(conclave_server_factory,
                                                                                            chromium):
    # The restarted recorder mixes again ~1 s after its restart: a backoff of a few seconds
    # keeps the fallback long enough for the player's level meter to hear it.
    server = await conclave_server_factory(sfu={"restart_backoff_s": 4.0})
    meeting = await server.create_meeting()
    host = server.bot(meeting, "Hana", token=meeting["host_token"], width=640, height=360, tone_hz=440.0)
    guest = server.bot(meeting, "Gus", tone_hz=1000.0)
    await host.start()
    await guest.start(publish_video=False)
    issued = await viewer_token(server, meeting, "mix player")
    mixes = server.services.viewers.mixes
    async with page_origin() as origin:
        page = await chromium.new_page()
        try:
            await page.goto(origin)
            await page.evaluate("([url, token]) => startPlayer(url, token)",
                                [server.base_url + issued["whep_url"], issued["token"]])  # fmt: skip
            assert await page.evaluate("player.error") is None
            heard: list[np.ndarray] = []

            async def decoded() -> np.ndarray:
                heard.append(pcm16(base64.b64decode(await page.evaluate("takeAudio()"))))
                del heard[:-20]  # the last few seconds are enough
                return np.concatenate(heard)

            async def levels() -> tuple[float, float]:
                pcm = await decoded()
                return tone_level(pcm, 440.0), tone_level(pcm, 1000.0)

            async def both(final: bool = False):
                level = both_at_once(await decoded())
                return level if final or level > HEARD else None

            async def one_only(final: bool = False):
                found = await levels()
                return found if final or (max(found) > HEARD and min(found) < HEARD / 4) else None

            mixed = await wait_for("the player to hear both tones at once", both, timeout=40)
            assert mixes.running() == 1
            metrics = (await server.api("GET", "/../../metrics"))[1]
            assert "conclave_whep_audio_mixes 1.0" in metrics
            assert 'conclave_whep_audio_mix_events_total{event="started"} 1.0' in metrics

            pid = server.services.recorder.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)  # the supervisor restarts it
            fallback = await wait_for("the player to hear one voice (the fallback)", one_only, timeout=40)
            assert mixes.events["lost"] == 1
            again = await wait_for("the player to hear both tones again", both, timeout=60)
            assert mixes.events["started"] == 2 and server.services.recorder.pid != pid
            await server.services.recorder.refresh_stats()
            assert server.services.metrics.recorder.total("mix_frames_sent") > 0
            assert not await page.evaluate("player.renegotiated")
            assert await page.evaluate("(token) => endPlayer(token)", issued["token"]) == 200
        finally:
            await page.close()
            await guest.stop()
            await host.stop()
    for _ in range(40):
        if mixes.running() == 0:
            break
        await asyncio.sleep(0.1)
    assert mixes.running() == 0 and mixes.events["stopped"] == 1
    print("quieter tone (mixed), levels (fallback), quieter tone (mixed again):", mixed, fallback, again,
          file=sys.stderr)  # fmt: skip
