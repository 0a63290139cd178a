"""Pieces of the web client checked inside Chromium without a meeting server: the modules
are imported from /static/ (served here by a bare static file server) and their pure parts
are called directly. Session logic that needs a signaling peer talks over a real WebSocket
to `SignalingPeer`, a small peer in this file that speaks the messages of docs/signaling.md
(the whole server is exercised by the other files of tests/control/static/)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from tests.support import browser

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright"),
]


class SignalingPeer:
    """The server's side of one signaling socket at /ws: answers `join` with `joined`,
    `ping` with `pong`, and `consent`/`recording`/`transcription` with `ok` (or with what
    `replies[type]` says); `publish` gets an error (there is no media server here)."""

    def __init__(self) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self.received: list[dict] = []
        self.replies: dict[str, dict] = {}
        self.after_join: list[dict] = []  # pushed right after each `joined`
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for frame in ws:
            msg = json.loads(frame.data)
            self.received.append(msg)
            self.changed.set()
            if msg.get("type") == "leave":
                break
            reply = self.reply(msg)
            if reply is not None:
                await ws.send_json(reply)
            if reply is not None and reply["type"] == "joined":
                for push in self.after_join:
                    await ws.send_json(push)
        await ws.close()
        return ws

    def reply(self, msg: dict) -> dict | None:
        kind = msg.get("type")
        echo = {"id": msg["id"]} if "id" in msg else {}
        if kind in self.replies:
            return {**self.replies[kind], **echo}
        if kind == "join":
            return {"type": "joined", "participant_id": "p1", "meeting_id": "m1", "role": "participant",
                    "participants": [], "tracks": [], "chat": [], "ice_servers": [], **echo}
        if kind in ("consent", "recording", "transcription"):
            return {"type": "ok", **echo}
        if kind == "ping":
            return {"type": "pong", **echo}
        if kind == "publish":
            return {"type": "error", "code": "unavailable", "message": "no media server here", **echo}
        return None

    async def push(self, msg: dict) -> None:
        for ws in self.sockets:
            if not ws.closed:
                await ws.send_json(msg)

    async def wait_received(self, predicate, timeout: float = 10.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                found = next((m for m in self.received if predicate(m)), None)
                if found is not None:
                    return found
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def signaling_peer() -> SignalingPeer:
    return SignalingPeer()


@pytest.fixture
async def static_base_url(signaling_peer):
    """http://127.0.0.1:PORT serving control/static/ under /static/, a blank page at /, and
    the `signaling_peer` at /ws."""
    app = web.Application()
    app.router.add_get("/", _blank)
    app.router.add_get("/ws", signaling_peer.handle)
    app.router.add_static("/static/", browser.STATIC_DIR)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def _blank(request: web.Request) -> web.Response:
    return web.Response(text="<!doctype html><title>units</title>", content_type="text/html")


@pytest.fixture
async def page(static_base_url):
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await browser.launch_chromium(playwright)
        try:
            page = await browser.new_media_page(chromium, static_base_url)
            await page.goto(static_base_url + "/")
            yield page
        finally:
            await chromium.close()


async def test_chat_is_kept_in_server_order_without_duplicates(page):
    seqs = await page.evaluate(
        """async () => {
            const { MeetingSession } = await import('/static/session.js');
            const session = new MeetingSession('x', { wsUrl: 'ws://127.0.0.1:9/none', mediaDevices: {} });
            const arrivals = [3, 1, 2, 3, 5, 4, 1];
            for (const seq of arrivals) session.insertChat({ seq, name: 'n', text: `t${seq}` });
            return session.chat.map((m) => m.seq);
        }"""
    )
    assert seqs == [1, 2, 3, 4, 5]


async def test_reconnect_backoff_grows_and_is_capped(page):
    delays = await page.evaluate(
        """async () => {
            const { backoffDelay } = await import('/static/session.js');
            return [0, 1, 2, 3, 10, 50].map((n) => [backoffDelay(n, () => 0), backoffDelay(n, () => 0.999)]);
        }"""
    )
    lows = [low for low, _ in delays]
    assert lows == sorted(lows), delays
    assert all(low <= high for low, high in delays), delays
    assert delays[0][0] > 0
    assert delays[-1][1] <= 12500, "the backoff must stay capped"


async def test_signaling_urls_follow_the_page_scheme_and_carry_the_token(page):
    urls = await page.evaluate(
        """async () => {
            const { signalingUrl, socketUrl } = await import('/static/session.js');
            return [signalingUrl('a b', { protocol: 'http:', host: 'h:1' }),
                    signalingUrl('abc', { protocol: 'https:', host: 'meet.example' }),
                    socketUrl('/api/v1/meetings/1/ws', 'x.y.z', { protocol: 'https:', host: 'meet.example' }),
                    socketUrl('http://h:2/api/v1/meetings/1/ws?a=1', 't+/=', { protocol: 'http:', host: 'h:1' })];
        }"""
    )
    assert urls == [
        "ws://h:1/api/v1/meetings/a%20b/ws",
        "wss://meet.example/api/v1/meetings/abc/ws",
        "wss://meet.example/api/v1/meetings/1/ws?token=x.y.z",
        "ws://h:2/api/v1/meetings/1/ws?a=1&token=t%2B%2F%3D",
    ]


async def test_meeting_numbers_are_read_and_shown_with_dashes(page):
    result = await page.evaluate(
        """async () => {
            const api = await import('/static/api.js');
            const inputs = ['123-4567-8901', ' 12345678901 ', '123 4567 8901', '1234567890', '123-4567-890a', '',
                            'https://meet.example/m/123-4567-8901?t=abc.def', '/m/12345678901', 'https://x/m/1/'];
            return {
                digits: inputs.map(api.meetingDigits),
                shown: ['12345678901', '123-4567-8901', 'abc'].map(api.formatMeetingNumber),
                parsed: inputs.map((text) => api.parseMeetingInput(text, 'https://meet.example')),
                paths: [api.meetingPath('123-4567-8901'), api.meetingPath('12345678901', 'a.b+c')],
            };
        }"""
    )
    assert result["digits"] == ["12345678901", "12345678901", "12345678901", None, None, None, None, None, None]
    assert result["shown"] == ["123-4567-8901", "123-4567-8901", "abc"]
    assert result["parsed"] == [
        {"number": "12345678901", "linkToken": None},
        {"number": "12345678901", "linkToken": None},
        {"number": "12345678901", "linkToken": None},
        None,
        None,
        None,
        {"number": "12345678901", "linkToken": "abc.def"},
        {"number": "12345678901", "linkToken": None},
        None,
    ]
    assert result["paths"] == ["/m/12345678901", "/m/12345678901?t=a.b%2Bc"]


async def test_generated_passcodes_are_accepted_by_the_server_rules(page):
    codes = await page.evaluate(
        """async () => {
            const { generatePasscode } = await import('/static/api.js');
            return Array.from({ length: 200 }, () => generatePasscode());
        }"""
    )
    import re

    assert all(re.fullmatch(r"[A-Za-z0-9]{6,32}", code) for code in codes), codes[:5]
    assert len(set(codes)) == len(codes), "passcodes must not repeat"


async def test_join_token_claims_are_read_without_trusting_them(page):
    result = await page.evaluate(
        """async () => {
            const { tokenClaims, tokenSecondsLeft } = await import('/static/api.js');
            const b64 = (o) => btoa(String.fromCharCode(...new TextEncoder().encode(JSON.stringify(o))))
                .replace(/=+$/, '').replace(/\\+/g, '-').replace(/\\//g, '_');
            const token = `${b64({ alg: 'HS256' })}.${b64({ role: 'host', name: 'Ådä ☃', exp: 1000 })}.sig`;
            return {
                claims: tokenClaims(token),
                left: tokenSecondsLeft(token, 400 * 1000),
                garbage: [tokenClaims('nope'), tokenClaims(''), tokenClaims('a.!!!.b')],
                noExp: tokenSecondsLeft('a.b.c'),
            };
        }"""
    )
    assert result["claims"]["role"] == "host"
    assert result["claims"]["name"] == "Ådä ☃"
    assert result["left"] == 600
    assert result["garbage"] == [{}, {}, {}]
    assert result["noExp"] == float("inf")


async def test_join_refusals_are_worded_for_people(page):
    texts = await page.evaluate(
        """async () => {
            const { ApiError } = await import('/static/api.js');
            const { joinErrorText } = await import('/static/joinflow.js');
            return [
                joinErrorText(new ApiError(403, 'invalid_credentials', 'invalid credentials')),
                joinErrorText(new ApiError(429, 'rate_limited', 'slow down', 17)),
                joinErrorText(new ApiError(403, 'meeting_locked', 'locked')),
                joinErrorText(new ApiError(403, 'removed', 'removed')),
                joinErrorText(new ApiError(403, 'something_new', 'the server says no')),
            ];
        }"""
    )
    assert "Meeting ID or passcode" in texts[0]
    assert "17 seconds" in texts[1]
    assert "locked" in texts[2]
    assert "cannot join it again" in texts[3]
    assert texts[4] == "The server says no"  # the server's phrase, as a sentence


async def test_signed_out_reasons_are_explained(page):
    texts = await page.evaluate(
        """async () => {
            const { ApiError, sessionEndedText, isSignedOutError } = await import('/static/api.js');
            return {
                texts: [
                    sessionEndedText(new ApiError(401, 'session_ended', 'this sign-in has ended (signed_in_elsewhere); sign in again')),
                    sessionEndedText('signed_in_elsewhere'),
                    sessionEndedText(new ApiError(403, 'account_suspended', 'this account is suspended')),
                    sessionEndedText(null),
                ],
                signedOut: [new ApiError(401, 'unauthorized', ''), new ApiError(403, 'account_suspended', ''),
                            new ApiError(403, 'forbidden', ''), new ApiError(409, 'host_has_live_meeting', '')].map(isSignedOutError),
            };
        }"""
    )
    assert "signed in somewhere else" in texts["texts"][0]
    assert "signed in somewhere else" in texts["texts"][1]
    assert "suspended" in texts["texts"][2]
    assert "sign in again" in texts["texts"][3]
    assert texts["signedOut"] == [True, True, False, False]


async def test_the_address_says_how_to_join(page):
    places = await page.evaluate(
        """async () => {
            const { readLocation } = await import('/static/joinflow.js');
            const at = (url) => { const u = new URL(url, 'http://h'); return readLocation({ pathname: u.pathname, search: u.search }); };
            return [at('/m/123-4567-8901?t=tok&name=Ada'), at('/m/12345678901'), at('/join'), at('/m/abc')];
        }"""
    )
    assert places[0] == {"number": "12345678901", "rawNumber": "123-4567-8901", "linkToken": "tok", "name": "Ada",
                         "isJoinPage": False}
    assert places[1]["number"] == "12345678901" and places[1]["linkToken"] is None
    assert places[2]["isJoinPage"] is True and places[2]["number"] is None
    assert places[3]["number"] is None and places[3]["rawNumber"] == "abc"


# ---------------------------------------------------------------- recording notice and consent


async def test_recording_state_is_read_and_worded(page):
    result = await page.evaluate(
        """async () => {
            const rec = await import('/static/recording.js');
            const states = [
                { recording: true, transcription: false, consent_policy: 'notify', consent_required: false, by: 'Ada' },
                { recording: false, transcription: true },
                { recording: true, transcription: true, consent_policy: 'require', consent_required: true },
                { recording: 'yes', transcription: 1, consent_policy: 'maybe', consent_required: 'true', by: 7 },
                null,
            ].map(rec.readState);
            return {
                states,
                texts: states.map(rec.noticeText),
                stopped: [
                    rec.stoppedText(states[0], rec.OFF), rec.stoppedText(states[1], rec.OFF),
                    rec.stoppedText(states[2], rec.OFF), rec.stoppedText(states[2], states[1]),
                    rec.stoppedText(rec.OFF, states[0]), rec.stoppedText(states[0], states[0]),
                ],
                details: [rec.noticeDetail(states[0], false), rec.noticeDetail(states[1], false),
                          rec.noticeDetail(states[2], true), rec.noticeDetail(states[0], false, { host: true })],
            };
        }"""
    )
    states = result["states"]
    assert states[0] == {"recording": True, "transcription": False, "consentPolicy": "notify",
                         "consentRequired": False, "by": "Ada"}
    assert states[2]["consentPolicy"] == "require" and states[2]["consentRequired"] is True
    # Anything but the documented values reads as off: the banner never guesses.
    assert states[3] == states[4] == {"recording": False, "transcription": False, "consentPolicy": "notify",
                                      "consentRequired": False, "by": None}
    assert result["texts"] == [
        "This meeting is being recorded",
        "This meeting is being transcribed",
        "This meeting is being recorded and transcribed",
        None,
        None,
    ]
    assert result["stopped"] == ["Recording stopped", "Transcription stopped", "Recording and transcription stopped",
                                 "Recording stopped", None, None]
    assert result["details"][0].startswith("Started by Ada.") and "leave" in result["details"][0]
    assert "transcribed" in result["details"][1] and "Started by" not in result["details"][1]
    assert "until you choose Continue" in result["details"][2]
    assert result["details"][3] == "Started by Ada. Everyone in the meeting sees this notice and hears it announced."


async def test_recording_notice_shows_stopped_for_a_while_then_goes(page):
    result = await page.evaluate(
        """async () => {
            const rec = await import('/static/recording.js');
            const timers = [];
            let changes = 0;
            const notice = new rec.RecordingNotice({
                onChange: () => { changes += 1; },
                setTimer: (fn, ms) => { timers.push({ fn, ms, cancelled: false }); return timers.length; },
                clearTimer: (id) => { timers[id - 1].cancelled = true; },
                stoppedMs: 4000,
            });
            const on = rec.readState({ recording: true, by: 'Ada' });
            const pending = rec.readState({ recording: true, consent_policy: 'require', consent_required: true });
            const transcribing = rec.readState({ transcription: true });
            const views = {};
            views.initial = { ...notice.view };
            notice.update(rec.OFF, on, false);
            views.on = { ...notice.view };
            notice.update(on, pending, true);
            views.pending = { ...notice.view };
            notice.update(pending, rec.OFF, false);
            views.stopped = { ...notice.view };
            const firstTimer = timers[timers.length - 1];
            notice.update(rec.OFF, transcribing, false);   // on again before the timer fired
            views.backOn = { ...notice.view };
            const firstCancelled = firstTimer.cancelled;
            notice.update(transcribing, rec.OFF, false);
            views.stoppedAgain = { ...notice.view };
            timers[timers.length - 1].fn();
            views.gone = { ...notice.view };
            notice.update(rec.OFF, rec.OFF, false);           // nothing was on: nothing to say
            views.still = { ...notice.view };
            return { views, firstMs: firstTimer.ms, firstCancelled, timers: timers.length, changes };
        }"""
    )
    views = result["views"]
    assert views["initial"]["mode"] == "hidden"
    assert views["on"] == {"mode": "on", "text": "This meeting is being recorded",
                           "detail": views["on"]["detail"], "canContinue": False}
    assert views["pending"]["canContinue"] is True and "Continue" in views["pending"]["detail"]
    assert views["stopped"] == {"mode": "stopped", "text": "Recording stopped", "detail": "", "canContinue": False}
    assert result["firstMs"] == 4000
    assert views["backOn"]["mode"] == "on" and views["backOn"]["text"] == "This meeting is being transcribed"
    assert result["firstCancelled"], "a stale timer must not hide a banner that came back on"
    assert views["stoppedAgain"]["text"] == "Transcription stopped"
    assert views["gone"]["mode"] == "hidden" and views["still"]["mode"] == "hidden"
    assert result["timers"] == 2


async def test_recording_command_errors_are_worded_for_the_host(page):
    texts = await page.evaluate(
        """async () => {
            const { commandErrorText } = await import('/static/recording.js');
            const err = (code, message) => Object.assign(new Error(message), { code });
            return [
                commandErrorText('recording', 'start', err('forbidden', 'only the host may do this')),
                commandErrorText('recording', 'start', err('storage_not_configured', 'no storage')),
                commandErrorText('transcription', 'start', err('transcription_not_allowed', 'x')),
                commandErrorText('recording', 'stop', err('something_new', 'the recorder went away')),
                commandErrorText('transcription', 'start', new Error('no ok from the server')),
            ];
        }"""
    )
    assert texts[0] == "Only the host can turn recording on or off."
    assert texts[1] == "Recording needs storage: your account administrator has to set it up first."
    assert texts[2] == "Transcription is not enabled for your account."
    assert texts[3] == "Could not stop recording. The recorder went away."
    assert texts[4] == "Could not start transcription. No ok from the server."


async def join_test_session(page, base_url: str) -> None:
    """A MeetingSession in the page (window.s) joined through the test's SignalingPeer."""
    ws_url = base_url.replace("http://", "ws://") + "/ws"
    await page.evaluate(
        """async (wsUrl) => {
            const { MeetingSession } = await import('/static/session.js');
            window.s = new MeetingSession('m1', { wsUrl });
            await window.s.join('Ada');
        }""",
        ws_url,
    )
    await browser.wait_for(page, "window.s.state === 'joined' && window.s.pubSources.size === 2",
                           what="the session to join with a camera and a microphone")


SENDERS = "[...window.s.pubSources.keys()].map((t) => t.sender.track ? t.sender.track.kind : null)"
PENDING = {"type": "recording_state", "recording": True, "transcription": False, "consent_policy": "require",
           "consent_required": True, "by": "Host"}


async def test_consent_pending_sends_no_media_until_continue(page, static_base_url, signaling_peer):
    await join_test_session(page, static_base_url)
    assert sorted(await page.evaluate(SENDERS)) == ["audio", "video"]

    await signaling_peer.push(PENDING)
    await browser.wait_for(page, "window.s.recording.consentPending", what="consent to be pending")
    await browser.wait_for(page, f"{SENDERS}.every((kind) => kind === null)", what="every sender to hold its track")
    assert await page.evaluate("window.s.recording.snapshot()") == {
        "recording": True, "transcription": False, "consentPolicy": "require", "consentRequired": True,
        "by": "Host", "consentPending": True, "busy": []}

    # A screen shared meanwhile waits too.
    await page.evaluate(
        """async () => {
            const canvas = document.createElement('canvas');
            canvas.width = 320; canvas.height = 180;
            canvas.getContext('2d').fillRect(0, 0, 320, 180);
            await window.s.shareScreen(canvas.captureStream(5));
        }"""
    )
    assert await page.evaluate(f"{SENDERS}.length") == 3
    await browser.wait_for(page, f"{SENDERS}.every((kind) => kind === null)", what="the screen to wait as well")

    await page.evaluate("window.s.recording.consent('continue')")
    sent = await signaling_peer.wait_received(lambda m: m.get("type") == "consent")
    assert sent == {"type": "consent", "decision": "continue", "id": sent["id"]}
    await browser.wait_for(page, f"{SENDERS}.every((kind) => kind !== null)", what="the tracks to be sent again")
    assert sorted(await page.evaluate(SENDERS)) == ["audio", "video", "video"]
    assert await page.evaluate("window.s.recording.consentPending") is False

    # Recording stops and starts again with consent required: held again; Leave says so
    # to the server before leaving.
    await signaling_peer.push({**PENDING, "recording": False, "consent_required": False})
    await signaling_peer.push(PENDING)
    await browser.wait_for(page, f"{SENDERS}.every((kind) => kind === null)", what="the second hold")
    await page.evaluate("window.s.recording.consent('leave')")
    await signaling_peer.wait_received(lambda m: m.get("type") == "leave")
    decisions = [m["decision"] for m in signaling_peer.received if m.get("type") == "consent"]
    assert decisions == ["continue", "leave"]
    assert await page.evaluate("window.s.state") == "left"
    assert await page.evaluate("window.s.ended") == {"kind": "left", "reason": None, "code": "left_recording"}
    assert await page.evaluate("window.s.recording.snapshot().recording") is False
    assert not uncaught(page), page.conclave_errors


async def test_a_refused_command_is_reported_and_frees_the_button(page, static_base_url, signaling_peer):
    signaling_peer.replies["transcription"] = {"type": "error", "code": "forbidden", "message": "host only"}
    await join_test_session(page, static_base_url)
    outcome = await page.evaluate(
        """async () => {
            const ok = await window.s.recording.command('recording', 'start');
            let error = null;
            try { await window.s.recording.command('transcription', 'start'); }
            catch (err) { error = { code: err.code, message: err.message }; }
            return { ok: ok.type, error, busy: [...window.s.recording.busy] };
        }"""
    )
    assert outcome == {"ok": "ok", "error": {"code": "forbidden", "message": "host only"}, "busy": []}
    commands = [(m["type"], m["action"]) for m in signaling_peer.received if m["type"] in ("recording", "transcription")]
    assert commands == [("recording", "start"), ("transcription", "start")]


BANNER_DOM = """
<div id="root" role="alert" hidden><strong id="text"></strong><span id="detail"></span>
  <button id="continue" hidden>Continue</button><button id="leave">Leave</button></div>
<div id="toasts"></div>
"""


async def test_banner_shows_the_notice_its_buttons_act_and_it_goes(page, static_base_url, signaling_peer):
    await join_test_session(page, static_base_url)
    await page.evaluate(
        """async (html) => {
            document.body.innerHTML = html;
            const { RecordingBanner } = await import('/static/recordingbanner.js');
            const $ = (id) => document.getElementById(id);
            window.banner = new RecordingBanner(window.s, {
                root: $('root'), text: $('text'), detail: $('detail'),
                continueButton: $('continue'), leaveButton: $('leave'),
            }, { stoppedMs: 400 });
        }""",
        BANNER_DOM,
    )
    assert await page.locator("#root").is_hidden()

    await signaling_peer.push({"type": "recording_state", "recording": True, "transcription": False,
                               "consent_policy": "notify", "consent_required": False, "by": "Grace"})
    await page.locator("#root").wait_for(state="visible")
    assert await page.locator("#text").inner_text() == "This meeting is being recorded"
    assert (await page.locator("#detail").inner_text()).startswith("Started by Grace.")
    assert await page.locator("#leave").is_visible() and await page.locator("#continue").is_hidden()
    assert await page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--rec-h')") != "0px"

    await signaling_peer.push({**PENDING, "transcription": True})
    await page.locator("#continue").wait_for(state="visible")
    assert await page.locator("#text").inner_text() == "This meeting is being recorded and transcribed"
    await page.locator("#continue").click()
    await page.locator("#continue").wait_for(state="hidden")
    assert [m["decision"] for m in signaling_peer.received if m["type"] == "consent"] == ["continue"]

    # Transcription stops, recording goes on: a short message, the banner stays.
    await signaling_peer.push({**PENDING, "transcription": False, "consent_required": False})
    await browser.wait_for(page, "document.getElementById('text').textContent === 'This meeting is being recorded'",
                           what="the banner to show recording only")
    assert "Transcription stopped." in await page.locator("#toasts").inner_text()

    await signaling_peer.push({"type": "recording_state", "recording": False, "transcription": False,
                               "consent_policy": "require", "consent_required": False})
    await browser.wait_for(page, "document.getElementById('text').textContent === 'Recording stopped'",
                           what="the stopped notice")
    assert await page.locator("#leave").is_hidden()
    await page.locator("#root").wait_for(state="hidden", timeout=5000)
    assert await page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--rec-h')") == "0px"

    # On again (notify): Leave leaves, without a consent message (none was asked for).
    await signaling_peer.push({"type": "recording_state", "recording": True, "transcription": False,
                               "consent_policy": "notify", "consent_required": False})
    await page.locator("#leave").click()
    await signaling_peer.wait_received(lambda m: m.get("type") == "leave")
    assert await page.evaluate("window.s.state") == "left"
    assert [m["decision"] for m in signaling_peer.received if m["type"] == "consent"] == ["continue"]
    await page.locator("#root").wait_for(state="hidden")
    assert not uncaught(page), page.conclave_errors


def uncaught(page) -> list[str]:
    return [e for e in page.conclave_errors if e.startswith("uncaught")]


async def test_after_a_rejoin_the_state_is_what_the_server_says_again(page, static_base_url, signaling_peer):
    await join_test_session(page, static_base_url)
    on = {"type": "recording_state", "recording": True, "transcription": False, "consent_policy": "notify",
          "consent_required": False, "by": "Host"}
    await signaling_peer.push(on)
    await browser.wait_for(page, "window.s.recording.state.recording", what="recording on")
    await page.evaluate("window.s.recording.staleMs = 300")

    # The server says it again on the rejoin: it stays on, past the stale time.
    signaling_peer.after_join = [on]
    await page.evaluate("window.s.simulateDisconnect()")
    await browser.wait_for(page, "window.s.reconnects === 1 && window.s.state === 'joined'", what="the first rejoin")
    await asyncio.sleep(0.8)
    assert await page.evaluate("window.s.recording.state.recording") is True

    # Recording stopped while we were away: the server says nothing, so it is off.
    signaling_peer.after_join = []
    await page.evaluate("window.s.simulateDisconnect()")
    await browser.wait_for(page, "window.s.reconnects === 2 && window.s.state === 'joined'", what="the second rejoin")
    await browser.wait_for(page, "!window.s.recording.state.recording", timeout=5, what="the stale state to go")
    assert not uncaught(page), page.conclave_errors


async def test_adaptive_media_is_read_into_tile_states_and_layer_flags(page):
    got = await page.evaluate(
        """async () => {
            const { activeFlags, TrackStates, qualityOf } = await import('/static/adaptive.js');
            const states = new TrackStates();
            const seen = [];
            const hear = (msg) => { states.onMessage({ track_id: 't1', ...msg }); seen.push(qualityOf(states.get('t1'))); };
            hear({ type: 'track_quality', spatial: 2, layers: 3, height: 720, paused: null });
            hear({ type: 'track_quality', spatial: 0, layers: 3, height: 180, paused: null });
            hear({ type: 'track_quality', spatial: 1, temporal: 0, layers: 3, height: 360, fps: 7.5, paused: null });
            hear({ type: 'track_paused', reason: 'bandwidth' });
            hear({ type: 'track_quality', spatial: -1, layers: 3, height: 0, paused: 'hidden' });
            hear({ type: 'track_resumed' });
            hear({ type: 'track_quality', spatial: 0, layers: 1, height: 360, paused: null });
            hear({ type: 'track_paused', reason: 'last_n' });
            return {
                seen,
                flags: [activeFlags(['q', 'h', 'f'], ['q']), activeFlags(['q', 'h', 'f'], ['h', 'f']),
                        activeFlags(['q', 'h', 'f'], []), activeFlags(['q', 'h', 'f'], ['x'])],
                ignored: states.onMessage({ type: 'track_paused' }),
            };
        }"""
    )
    bars = [q and (q["bars"], q["label"]) for q in got["seen"]]
    assert bars == [
        (3, "720p, layer 3 of 3"),
        (1, "180p, layer 1 of 3"),
        (2, "360p, 7.5 fps, layer 2 of 3"),  # the middle layer at a reduced frame rate
        (0, "paused: bandwidth"),
        (0, "paused: bandwidth"),  # our own hiding changes nothing the server said
        None,  # resumed, the hidden tile's layer not known yet
        (3, "360p, layer 1 of 1"),  # a single-layer track at its one layer: full
        (0, "paused: not among the last speakers"),
    ]
    assert got["flags"] == [[True, False, False], [False, True, True], [True, False, False], [True, False, False]]
    assert got["ignored"] is False


async def test_connection_quality_is_read_into_levels_and_freezes_are_summed(page):
    got = await page.evaluate(
        """async () => {
            const quality = await import('/static/quality.js');
            const { ConnectionQuality, connectionOf, freezeTotals, FreezeReporter } = quality;
            const levels = new ConnectionQuality();
            const changed = [
                levels.onMessage({ participants: [{ participant_id: 'a', quality: 'excellent', score: 4.4 },
                                                  { participant_id: 'b', quality: 'poor', score: 2.1 }] }),
                levels.onMessage({ participants: [{ participant_id: 'a', quality: 'excellent', score: 4.3 }] }),
                levels.onMessage({ participants: [{ participant_id: 'a', quality: 'superb' }, 'x', null] }),
                levels.onMessage({}),
                levels.onMessage({ participants: [{ participant_id: 'b', quality: 'good', score: 3.7 }] }),
            ];
            levels.forget('a');
            // A peer connection's stats as Chromium reports them: two videos, one audio.
            const reports = [
                { type: 'inbound-rtp', kind: 'video', freezeCount: 2, totalFreezesDuration: 1.5 },
                { type: 'inbound-rtp', kind: 'video', freezeCount: 1, totalFreezesDuration: 0.25 },
                { type: 'inbound-rtp', kind: 'audio', freezeCount: 9, totalFreezesDuration: 9 },
                { type: 'outbound-rtp', kind: 'video', freezeCount: 9, totalFreezesDuration: 9 },
            ];
            const pc = { getStats: async () => new Map(reports.map((r, i) => [String(i), r])) };
            const sent = [];
            const reporter = new FreezeReporter((m) => { sent.push(m); return true; }, () => pc);
            await reporter.report();
            return {
                changed,
                a: levels.get('a'),
                b: levels.get('b'),
                history: levels.history.length,
                shown: [connectionOf(levels.get('b')), connectionOf(null), connectionOf({ quality: 'x' })],
                totals: await freezeTotals(pc),
                none: await freezeTotals(null),
                sent,
            };
        }"""
    )
    assert got["changed"] == [True, False, False, False, True]  # a new score at the same level is no change
    assert got["a"] is None and got["b"] == {"quality": "good", "score": 3.7}
    assert got["history"] == 4
    assert got["shown"] == [{"quality": "good", "label": "Connection: Good"}, None, None]
    assert got["totals"] == {"count": 3, "seconds": 1.75} and got["none"] == {"count": 0, "seconds": 0}
    assert got["sent"] == [{"type": "media_stats", "freeze_count": 3, "freeze_seconds": 1.75}]


async def test_participant_batches_and_pages_are_applied_to_the_list(page):
    got = await page.evaluate(
        """async () => {
            const { applyParticipantsChanged } = await import('/static/roster.js');
            const people = new Map([['a', { participant_id: 'a', name: 'Ada' }]]);
            const steps = [
                applyParticipantsChanged(people, { joined: [{ participant_id: 'b', name: 'Bo' },
                                                            { participant_id: 'me', name: 'Me' }] }, 'me'),
                applyParticipantsChanged(people, { updated: [{ participant_id: 'a', name: 'Ada L' }], left: ['b', 'zz'] }, 'me'),
                applyParticipantsChanged(people, { joined: 'all', updated: [null, 5, {}], left: [7] }, 'me'),
                applyParticipantsChanged(people, {}, 'me'),
            ];
            return { steps, people: [...people.values()] };
        }"""
    )
    assert got["steps"] == [
        {"changed": True, "left": []},
        {"changed": True, "left": ["b"]},  # zz was never listed
        {"changed": False, "left": []},  # malformed entries change nothing
        {"changed": False, "left": []},
    ]
    assert got["people"] == [{"participant_id": "a", "name": "Ada L"}]  # never ourselves


async def test_a_refused_credential_falls_back_to_joining_but_an_unreachable_server_is_retried(page):
    verdicts = await page.evaluate(
        """async () => {
            const { credentialRefused } = await import('/static/rejoin.js');
            const { ApiError } = await import('/static/api.js');
            const cases = [[401, 'token_expired'], [403, 'not_admitted'], [401, 'invalid_token'],
                           [409, 'meeting_ended'], [403, 'removed'], [0, 'network'], [503, 'cluster_unavailable'],
                           [429, 'rate_limited']];
            return cases.map(([status, code]) => credentialRefused(new ApiError(status, code, code)));
        }"""
    )
    # Expired or no longer in: join the ordinary way. Ended, removed: final (the join's
    # answer says so). Away, busy: try the credential again after the backoff.
    assert verdicts == [True, True, True, False, False, False, False, False]
