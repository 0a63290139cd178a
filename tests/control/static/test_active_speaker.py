"""The active speaker in the web client, in real Chromium against the real server.

Chromium's default fake microphone is a beep every half second that fades like a cough:
the dominant-speaker detector rightly ignores it. So this Chromium's fake microphone plays
a file (`--use-file-for-fake-audio-capture`): espeak-ng speech where espeak-ng is
installed, else the synthetic voice of tests/support/speech_audio.py, looped. Every page
of this browser speaks it; a page whose microphone is muted (paused on the server) is not
heard.
"""

from __future__ import annotations

import wave

import pytest

from client.media import AUDIO_SAMPLE_RATE
from tests.support import browser
from tests.support.speech_audio import speech_samples

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
    pytest.mark.timeout(180),
]

SPEAKER_TIMEOUT = 10.0  # the detector needs ~0.6 s of speech; the pages poll every 0.25 s


@pytest.fixture
async def speaking_chromium(tmp_path):
    """Chromium whose fake microphone says something, over and over."""
    from playwright.async_api import async_playwright

    path = tmp_path / "speech.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(AUDIO_SAMPLE_RATE)
        writer.writeframes(speech_samples().tobytes())
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=browser.CHROMIUM, headless=True,
            args=[*browser.CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={path}"],
        )  # fmt: skip
        try:
            yield instance
        finally:
            await instance.close()


def tile(pid: str) -> str:
    return f"document.querySelector('[data-testid=tile][data-participant-id=\"{pid}\"]')"


async def speaking_tiles(page) -> list[str]:
    """participant ids of the tiles shown speaking (the local one as 'local')."""
    return await page.evaluate(
        """() => [...document.querySelectorAll('.tile[data-speaking=true]')].map(
              (t) => t.dataset.testid === 'tile-local' ? 'local' : t.dataset.participantId)"""
    )


async def featured_first_and_larger(page, pid: str) -> bool:
    """The tile of `pid` is placed first in the grid (its left column, before the others)
    and is larger than every other tile."""
    return await page.evaluate(
        """(pid) => {
            const tiles = [...document.querySelectorAll('#grid > .tile')];
            const it = tiles.find((t) => t.dataset.participantId === pid && t.dataset.testid === 'tile');
            if (!it || tiles.length < 2) return false;
            const mine = it.getBoundingClientRect();
            return tiles.every((t) => {
                if (t === it) return true;
                const other = t.getBoundingClientRect();
                return other.width < mine.width && other.height < mine.height && other.left >= mine.right - 1;
            });
        }""",
        pid,
    )


async def test_the_speaking_tile_is_highlighted_and_featured(conclave_server, speaking_chromium):
    meeting = await conclave_server.create_meeting()
    base = conclave_server.base_url
    # Bob comes first and mutes: alone nobody receives him, muted he is never heard.
    bob = await browser.open_meeting_page(speaking_chromium, base, meeting, "Bob")
    await bob.get_by_test_id("toggle-mic").click()
    await browser.wait_for(bob, "window.conclave.participants().length === 0", what="Bob alone")
    ada = await browser.open_meeting_page(speaking_chromium, base, meeting, "Ada")
    ada_id, bob_id = await browser.participant_id(ada), await browser.participant_id(bob)
    await browser.wait_media_from(bob, ada_id, ("microphone",), timeout=40)

    # Ada speaks: Bob's page rings her tile and features it; Ada's page rings her own.
    await browser.wait_for(bob, f"{tile(ada_id)} && {tile(ada_id)}.dataset.speaking === 'true'",
                           SPEAKER_TIMEOUT, what="Ada's tile to show her speaking")  # fmt: skip
    assert await bob.evaluate("window.conclave.activeSpeaker") == ada_id
    assert await speaking_tiles(bob) == [ada_id], browser.page_errors(bob)
    assert await bob.evaluate(f"{tile(ada_id)}.classList.contains('speaking')")
    assert await featured_first_and_larger(bob, ada_id)
    await browser.wait_for(ada, "window.conclave.activeSpeaker !== null", SPEAKER_TIMEOUT, what="Ada to hear it")
    assert await speaking_tiles(ada) == ["local"]

    # Ada mutes, Bob unmutes: the ring moves to Bob on both pages.
    await ada.get_by_test_id("toggle-mic").click()
    await bob.get_by_test_id("toggle-mic").click()
    await browser.wait_for(ada, f"{tile(bob_id)} && {tile(bob_id)}.dataset.speaking === 'true'",
                           SPEAKER_TIMEOUT, what="Bob's tile to show him speaking")  # fmt: skip
    assert await speaking_tiles(ada) == [bob_id]
    assert await featured_first_and_larger(ada, bob_id)
    await browser.wait_for(bob, "window.conclave.activeSpeaker === window.conclave.participantId",
                           SPEAKER_TIMEOUT, what="Bob to hear he speaks")  # fmt: skip
    assert await speaking_tiles(bob) == ["local"]
    assert await bob.evaluate(f"{tile(ada_id)}.dataset.speaking") == "false"
    await browser.screenshot(ada, "active-speaker")
