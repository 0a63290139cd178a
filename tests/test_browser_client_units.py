"""Pieces of the web client checked inside Chromium without media or a meeting server: the
modules are imported from /static/ (served here by a bare static file server) and their
pure parts are called directly."""

from __future__ import annotations

import pytest
from aiohttp import web

from tests import browser

pytestmark = pytest.mark.skipif(not browser.chromium_available(), reason="needs /usr/bin/chromium and playwright")


@pytest.fixture
async def static_base_url():
    """http://127.0.0.1:PORT serving control/static/ under /static/ and a blank page at /."""
    app = web.Application()
    app.router.add_get("/", _blank)
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
