"""Helpers for driving the web client in Debian's Chromium with Playwright (async API).

Not a test file: the browser tests (`tests/control/static/`, ...) import it. Nothing here downloads a browser
(`playwright install` is never run); Chromium comes from /usr/bin/chromium and fakes the
camera and microphone (a test pattern and a beep), so pages can join without a person.

Every page opened through `new_media_page` records its console errors and uncaught
exceptions in `page.conclave_errors`; the waiting helpers append them to their
assertion messages, because a failed wait is usually explained there.

Screenshots: `await screenshot(page, "name")` writes `name.png` into the directory named by
the environment variable CONCLAVE_SCREENSHOTS, and does nothing when it is not set.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit, urlunsplit, urlencode, parse_qsl

from tests.support.paths import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
STATIC_DIR = REPO_ROOT / "control" / "static"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # Without it Chromium gathers no loopback candidates and ICE never starts.
    "--allow-loopback-in-peer-connection",
]

JOIN_TIMEOUT = 30.0
POLL_INTERVAL = 0.25


def chromium_available() -> bool:
    """True when the Chromium binary and Python Playwright are both installed."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return False
    return os.access(CHROMIUM, os.X_OK) or shutil.which("chromium") is not None


async def launch_chromium(playwright):
    """Launches the system Chromium headless, with fake media devices."""
    return await playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )


def _record_errors(page) -> None:
    page.conclave_errors = []

    def on_console(msg) -> None:
        if msg.type == "error":
            page.conclave_errors.append(f"console: {msg.text}")

    def on_page_error(exc) -> None:
        page.conclave_errors.append(f"uncaught: {exc}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)


def page_errors(page) -> str:
    """The page's recorded console errors, ready to append to an assertion message."""
    errors = getattr(page, "conclave_errors", [])
    if not errors:
        return " (no console errors)"
    return "\nconsole errors of the page:\n  " + "\n  ".join(errors[-30:])


async def new_media_page(browser, base_url: str):
    """A page in a fresh context (own storage: one participant) allowed camera and mic."""
    context = await browser.new_context(
        permissions=["camera", "microphone"], base_url=base_url
    )
    page = await context.new_page()
    _record_errors(page)
    return page


def _with_name(url: str, name: str) -> str:
    """`url` with ?name=... added (the page then joins without asking)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "name"]
    query.append(("name", name))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def open_meeting_page(browser, base_url: str, meeting: Any, name: str,
                            timeout: float = JOIN_TIMEOUT, *, state: str | None = "joined",
                            passcode: str | None = None):
    """Opens a meeting in a new context (one participant) as `name` and waits until the
    page's state is `state` ("joined", "waiting"; None: do not wait).

    `meeting` is what `create_meeting()` returned (its `join_url`, with the signed link
    token, is opened with ?name=..., so the page joins at once), a join URL, or a Meeting
    ID; with a bare Meeting ID the form is filled in with `passcode` and submitted.
    """
    page = await new_media_page(browser, base_url)
    page.conclave_name = name
    join_url = meeting.get("join_url") if isinstance(meeting, dict) else None
    if join_url is None and isinstance(meeting, str) and "/m/" in meeting:
        join_url = meeting
    if join_url is not None:
        await page.goto(_with_name(join_url, name))
    else:
        number = meeting.get("meeting_number") if isinstance(meeting, dict) else meeting
        if passcode is None and isinstance(meeting, dict):
            passcode = meeting.get("passcode")
        await join_through_form(page, base_url, number, passcode or "", name)
    if state is not None:
        await wait_for(page, f"window.conclave && window.conclave.state === {json.dumps(state)}", timeout,
                       what=f"{name} to be {state}")
    return page


async def join_through_form(page, base_url: str, number: str, passcode: str, name: str) -> None:
    """/join: types the Meeting ID, passcode and name, and presses Join."""
    await page.goto(f"{base_url.rstrip('/')}/join")
    await page.get_by_test_id("meeting-number-input").fill(number)
    await page.get_by_test_id("passcode-input").fill(passcode)
    await page.get_by_test_id("name-input").fill(name)
    await page.get_by_test_id("join-button").click()


async def sign_in_host(page, base_url: str, email: str, password: str) -> None:
    """/host: signs in through the form and waits for the dashboard."""
    await page.goto(f"{base_url.rstrip('/')}/host")
    await page.get_by_test_id("email").fill(email)
    await page.get_by_test_id("password").fill(password)
    await page.get_by_test_id("signin-button").click()
    await page.get_by_test_id("meetings").wait_for(state="attached")
    await page.locator("#dashboard-view").wait_for(state="visible")


async def screenshot(page, name: str) -> None:
    """Saves a screenshot when CONCLAVE_SCREENSHOTS names a directory (for looking at the UI)."""
    directory = os.environ.get("CONCLAVE_SCREENSHOTS")
    if not directory:
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(Path(directory) / f"{name}.png"))


async def wait_for(page, js_predicate: str, timeout: float = 20.0, what: str | None = None) -> Any:
    """Polls the JS expression `js_predicate` (it may await) until it is truthy; returns it.

    Fails with the page's console errors in the message when `timeout` seconds pass.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    expression = f"async () => {{ return await ({js_predicate}); }}"
    last_error = None
    while True:
        try:
            value = await page.evaluate(expression)
            if value:
                return value
        except Exception as exc:  # the page may be navigating; keep polling
            last_error = exc
        if loop.time() >= deadline:
            state = await _safe_state(page)
            detail = f"; last evaluation error: {last_error}" if last_error else ""
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what or js_predicate!r} "
                f"(page state: {state}){detail}{page_errors(page)}"
            )
        await asyncio.sleep(POLL_INTERVAL)


async def _safe_state(page) -> str:
    try:
        return await page.evaluate("window.conclave ? window.conclave.state : 'no hook'")
    except Exception as exc:
        return f"unknown ({exc})"


async def stats(page) -> dict:
    """window.conclave.stats(): {participant_id: {source: {kind, framesDecoded, ...}}}."""
    return await page.evaluate("window.conclave.stats()")


async def received_from(page, participant_id: str, source: str) -> dict | None:
    """Inbound counters of one remote track ({kind, framesDecoded, packetsReceived,
    bytesReceived}), or None if that track is not being received."""
    return (await stats(page)).get(participant_id, {}).get(source)


def _progress(entry: dict | None) -> int:
    """The counter that shows media is really flowing: frames decoded for video,
    packets received for audio."""
    if not entry:
        return -1
    if entry.get("kind") == "video":
        return int(entry.get("framesDecoded") or 0)
    return int(entry.get("packetsReceived") or 0)


async def participant_id(page) -> str:
    return await page.evaluate("window.conclave.participantId")


async def wait_media_from(page, other_pid: str, sources: Iterable[str] = ("microphone", "camera"),
                          timeout: float = 20.0) -> dict:
    """Waits until every source of `other_pid` is flowing on `page`: its counter (frames
    decoded for video, packets received for audio) is above zero and has risen since an
    earlier sample. Returns the last {source: counters}.
    """
    sources = tuple(sources)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    first: dict[str, int] = {}
    rising: set[str] = set()
    latest: dict[str, Any] = {}
    while True:
        per_source = (await stats(page)).get(other_pid, {})
        for source in sources:
            entry = per_source.get(source)
            latest[source] = entry
            value = _progress(entry)
            if value <= 0:
                continue
            if source not in first:
                first[source] = value
            elif value > first[source]:
                rising.add(source)
        if rising.issuperset(sources):
            return latest
        if loop.time() >= deadline:
            name = getattr(page, "conclave_name", "page")
            missing = [s for s in sources if s not in rising]
            raise AssertionError(
                f"{name}: media from {other_pid} not flowing within {timeout:.0f}s for "
                f"{missing}; last counters {json.dumps(latest)}; everything received: "
                f"{json.dumps(await stats(page))}{page_errors(page)}"
            )
        await asyncio.sleep(0.5)


async def share_canvas_screen(page, width: int = 640, height: int = 360, fps: int = 10) -> None:
    """Shares an animated canvas as the screen (headless Chromium has no screen picker).

    The canvas keeps changing so the encoder keeps producing frames.
    """
    await page.evaluate(
        """async ([width, height, fps]) => {
            const canvas = document.createElement('canvas');
            canvas.width = width; canvas.height = height;
            const ctx = canvas.getContext('2d');
            let n = 0;
            const draw = () => {
                n += 1;
                ctx.fillStyle = `hsl(${(n * 7) % 360} 60% 40%)`;
                ctx.fillRect(0, 0, width, height);
                ctx.fillStyle = '#fff';
                ctx.font = '48px sans-serif';
                ctx.fillText(`shared screen ${n}`, 40, height / 2);
            };
            draw();
            window.__conclaveCanvasTimer = setInterval(draw, 1000 / fps);
            const stream = canvas.captureStream(fps);
            window.__conclaveScreenStream = stream;
            await window.conclave.shareScreen(stream);
        }""",
        [width, height, fps],
    )


async def end_screen_track(page) -> None:
    """Acts like the browser's own "Stop sharing" bar: the shared track fires `ended`."""
    await page.evaluate(
        """() => {
            const track = window.__conclaveScreenStream.getVideoTracks()[0];
            track.stop();
            track.dispatchEvent(new Event('ended'));
            clearInterval(window.__conclaveCanvasTimer);
        }"""
    )


async def send_chat_via_ui(page, text: str) -> None:
    """Types `text` into the chat input and presses Enter, opening the chat panel if needed."""
    chat_input = page.get_by_test_id("chat-input")
    if not await chat_input.is_visible():
        await page.get_by_test_id("toggle-chat").click()
    await chat_input.fill(text)
    await chat_input.press("Enter")


async def close_page(page) -> None:
    """Closes the page's whole context (one participant)."""
    try:
        await page.context.close()
    except Exception:
        pass


def digits(number: str) -> str:
    """"123-4567-8901" → "12345678901"."""
    return number.replace("-", "")


async def open_host_page(browser, base_url: str, email: str, password: str):
    """A new context (the host's browser) signed in on /host, showing the dashboard."""
    page = await new_media_page(browser, base_url)
    page.conclave_name = "host"
    await sign_in_host(page, base_url, email, password)
    return page


async def start_from_dashboard(page, number: str, timeout: float = JOIN_TIMEOUT) -> None:
    """Clicks Start on the meeting's card and waits until the meeting page has joined as host."""
    card = page.locator(f"[data-testid=meeting][data-meeting-number='{digits(number)}']")
    await card.get_by_test_id("start-meeting").click()
    await page.wait_for_url(f"**/m/{digits(number)}")
    await wait_for(page, "window.conclave && window.conclave.state === 'joined' && window.conclave.role === 'host'",
                   timeout, what="the host to be in the meeting")


async def wait_waiting_listed(host_page, participant: str, present: bool = True, timeout: float = 20.0) -> None:
    """Waits until the host's waiting-room list has (or no longer has) `participant` (an id)."""
    check = "some" if present else "every"
    op = "===" if present else "!=="
    await wait_for(host_page, f"window.conclave.waitingRoom().{check}((p) => p.participant_id {op} {json.dumps(participant)})",
                   timeout, what=f"{participant} {'in' if present else 'out of'} the waiting room list")


async def ended_screen(page) -> dict:
    """{title, detail, kind} of the page's "it is over" screen."""
    return await page.evaluate(
        """() => ({title: document.querySelector('[data-testid=ended-title]').textContent,
                   detail: document.querySelector('[data-testid=ended-detail]').textContent,
                   visible: !document.querySelector('[data-testid=left-screen]').hidden,
                   kind: window.conclave.ended && window.conclave.ended.kind})"""
    )
