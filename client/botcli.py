"""The bot's command line (`python -m client.bot`): join a meeting, publish a
test pattern and a tone, print once a second what arrives, and print every recording
notice as it comes ("notice: This meeting is being recorded (started by Ada)") and every
change of the active speaker ("speaking: Ada").

    python -m client.bot 'http://127.0.0.1:8080/m/123-4567-8901?t=LINK' --name bot1
    python -m client.bot http://127.0.0.1:8080/m/123-4567-8901 --passcode 123456

Under the customer's `require` consent policy the server holds the bot's media until it
consents: `--consent continue` consents by itself, `--consent leave` leaves; without the
option the bot says so and stays, receiving only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
import urllib.parse
from typing import Any, Callable

import aiohttp

from .bot import Bot, parse_meeting_link
from .recording import CONSENT_DECISIONS, RecordingState
from .signaling import SignalingClosed, SignalingError


def _report_line(bot: Bot, previous: dict[tuple[str, str], int], elapsed: float) -> str:
    parts = []
    for pid, sources in sorted(bot.received.items()):
        who = bot.participants.get(pid, {}).get("name", pid[:8])
        for source, stats in sorted(sources.items()):
            rate = stats.frames - previous.get((pid, source), 0)
            previous[(pid, source)] = stats.frames
            extra = f" {stats.width}x{stats.height}" if stats.kind == "video" and stats.width else ""
            parts.append(f"{who}/{source} {stats.frames} (+{rate}/s){extra}")
    if bot.announcement is not None:
        frames = bot.announcement.frames
        rate = frames - previous.get(("", "announcement"), 0)
        previous[("", "announcement")] = frames
        parts.append(f"announcement {frames} (+{rate}/s)")
    return f"[{elapsed:5.0f}s] {len(bot.participants)} others | " + (" | ".join(parts) or "receiving nothing")


def recording_notices(bot: Bot, decision: str | None, stop: asyncio.Event) -> Callable[[RecordingState], Any]:
    """The bot's `recording_state` callback: prints the notice, answers a consent request."""
    last = [RecordingState()]

    async def on_notice(state: RecordingState) -> None:
        before, last[0] = last[0], state
        print(f"notice: {state.describe(before)}", flush=True)
        if not state.consent_required:
            return
        if decision is None:
            print("consent required: the server holds our media; rerun with --consent continue to take part",
                  flush=True)
            return
        print(f"consent: {decision}", flush=True)
        if decision == "leave":
            stop.set()
            await bot.consent("leave")
            return
        try:
            await bot.consent("continue")
        except (SignalingError, SignalingClosed, TimeoutError) as exc:
            print(f"consent failed: {exc}", flush=True)

    return on_notice


def speaker_lines(bot: Bot) -> Callable[[dict[str, Any]], None]:
    """The bot's `active_speaker` callback: prints who speaks now, by name."""

    def on_speaker(msg: dict[str, Any]) -> None:
        who = msg.get("participant_id")
        if who is None:
            print("speaking: nobody", flush=True)
            return
        name = "us" if who == bot.participant_id else bot.participants.get(who, {}).get("name", str(who)[:8])
        print(f"speaking: {name}", flush=True)

    return on_speaker


def print_recording_failure(msg: dict[str, Any]) -> None:
    """The server tells the host when the recorder gave up (spool full, storage refused)."""
    if msg.get("code") == "recording_failed":
        print(f"error: {msg.get('message')}", flush=True)


async def run_cli(args: argparse.Namespace) -> int:
    base_url, meeting, query = parse_meeting_link(args.link)
    if meeting is None:
        raise ValueError("give a meeting link: http(s)://HOST/m/NUMBER?t=... or http(s)://HOST/m/NUMBER --passcode P")
    link_token = (urllib.parse.parse_qs(query).get("t") or [None])[0]
    if not (link_token or args.passcode or args.token):
        raise ValueError("this link has no link token (?t=...): give --passcode")
    bot = Bot(
        base_url,
        meeting,
        args.name,
        passcode=args.passcode,
        link_token=link_token,
        token=args.token,
        video_file=args.video,
        fps=args.fps,
    )
    stop = asyncio.Event()
    bot.on("recording_state", recording_notices(bot, args.consent, stop))
    bot.on("error", print_recording_failure)
    bot.on("active_speaker", speaker_lines(bot))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    joined_ok = False
    try:
        starting = asyncio.create_task(bot.start(publish_audio=not args.no_audio, publish_video=not args.no_video))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():  # interrupted while joining
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 130
        joined = starting.result()
        joined_ok = True
        if joined.get("type") == "waiting":
            print(f"waiting to be let in ({joined.get('reason')}) as {args.name}", flush=True)
            events = (bot.admitted, stop, bot.denied, bot.removed, bot.meeting_ended)
            waits = [asyncio.create_task(event.wait()) for event in events]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            if not bot.admitted.is_set():
                print("not let in" if not stop.is_set() else "stopped while waiting", flush=True)
                return 130 if stop.is_set() else 1
        print(f"joined {meeting} as {bot.participant_id} ({args.name})", flush=True)
        started = time.monotonic()
        previous: dict[tuple[str, str], int] = {}
        while not stop.is_set() and not (bot.removed.is_set() or bot.meeting_ended.is_set() or bot.denied.is_set()):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            elapsed = time.monotonic() - started
            print(_report_line(bot, previous, elapsed), flush=True)
            if args.duration is not None and elapsed >= args.duration:
                break
        if bot.removed.is_set() or bot.meeting_ended.is_set():
            print("removed by the host" if bot.removed.is_set() else f"meeting ended ({bot.end_reason})", flush=True)
        if bot.left_by_consent.is_set():
            print("left: did not consent to the recording", flush=True)
        return 0
    finally:
        await bot.stop(timeout=10.0)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if joined_ok:
            print("left the meeting", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m client.bot",
        description="Join a meeting as a bot: publish a test pattern and a tone, print what arrives "
        "and every recording notice.",
    )
    parser.add_argument(
        "link", metavar="MEETING_LINK", help="join link (http(s)://HOST/m/NUMBER?t=...), or the meeting's URL with --passcode"
    )
    parser.add_argument("--passcode", help="the meeting's passcode (when the link has no ?t=)")
    parser.add_argument("--token", help="a join token to use instead of joining with a passcode (e.g. the host's)")
    parser.add_argument("--name", default="bot", help="display name")
    parser.add_argument("--video", metavar="FILE", help="publish this file (audio and video) instead of a pattern")
    parser.add_argument("--duration", type=float, metavar="S", help="leave after S seconds")
    parser.add_argument("--fps", type=int, default=15, help="generated video frame rate")
    parser.add_argument("--no-audio", action="store_true")
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument(
        "--consent", choices=CONSENT_DECISIONS,
        help="the answer when the meeting is recorded and consent is required (default: ask, i.e. print and wait)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return asyncio.run(run_cli(args))
    except (ValueError, RuntimeError, OSError, aiohttp.ClientError, SignalingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
