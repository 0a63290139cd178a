"""A meeting bot: joins over signaling, publishes generated (or file) media, and
decodes and counts everything it receives. Used by tests and the load generator.

    python -m control.client.bot http://127.0.0.1:8080/m/MEETING_ID --name bot1
    python -m control.client.bot http://127.0.0.1:8080 --name bot1   # creates a meeting
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import re
import signal
import sys
import time
import urllib.parse
from typing import Any, Callable

import aiohttp
import av
import numpy as np
from aiortc.contrib.media import MediaPlayer, MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .media import GeneratedVideoTrack, ToneAudioTrack, open_media_file, read_frame_counter, stop_media_player
from .peer import PublishPeer, SubscribePeer
from .signaling import Message, SignalingClient

log = logging.getLogger(__name__)

REJOIN_ATTEMPTS = 20
REJOIN_DELAY = 0.5  # seconds between attempts while the media server restarts


@dataclasses.dataclass
class ReceiveStats:
    """What we decoded from one remote participant's source."""

    participant_id: str
    source: str
    kind: str
    track_id: str = ""
    active: bool = True
    frames: int = 0  # decoded video frames / audio frames
    width: int = 0
    height: int = 0
    last_counter: int | None = None  # the sender's frame counter, if it is a bot
    counted_frames: int = 0  # video frames whose counter was readable
    samples: int = 0
    sample_rate: int = 0
    peak: int = 0  # audio: peak amplitude of the last frame (0 = silence)
    first_frame_at: float | None = None  # time.monotonic()
    last_frame_at: float | None = None


def meeting_ws_url(base_url: str, meeting_id: str, query: str = "") -> str:
    """http(s)://host[/prefix] -> ws(s)://host[/prefix]/api/v1/meetings/{id}/ws"""
    parts = urllib.parse.urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/") + f"/api/v1/meetings/{urllib.parse.quote(meeting_id)}/ws"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, query, ""))


def parse_meeting_link(link: str) -> tuple[str, str | None, str]:
    """A join link or a server URL -> (base_url, meeting_id or None, query)."""
    parts = urllib.parse.urlsplit(link)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {link!r}")
    match = re.match(r"^(.*?)/(?:m|api/v1/meetings)/([^/]+)(?:/ws)?/?$", parts.path)
    if match is None:
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        return base, None, ""
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, match.group(1), "", ""))
    return base, urllib.parse.unquote(match.group(2)), parts.query


class Bot:
    def __init__(
        self,
        base_url: str,
        meeting_id: str,
        name: str,
        *,
        video_file: str | None = None,
        fps: int = 15,
        width: int = 640,
        height: int = 360,
        tone_hz: float = 440.0,
        join_query: str = "",
    ) -> None:
        self.base_url = base_url
        self.meeting_id = meeting_id
        self.name = name
        self.ws_url = meeting_ws_url(base_url, meeting_id, join_query)
        self._video_file = video_file
        self._fps, self._width, self._height = fps, width, height
        self._tone_hz = tone_hz
        self._player: MediaPlayer | None = None
        # Our sources. aiortc stops a sender's track when its peer connection
        # closes, so senders get relay proxies and the sources survive a rejoin.
        self._tracks: dict[str, MediaStreamTrack] = {}  # source -> our media
        self._relay = MediaRelay()
        self.signaling: SignalingClient | None = None
        self.publisher: PublishPeer | None = None
        self.subscriber: SubscribePeer | None = None
        self._early_offers: list[Message] = []
        self._consumers: set[asyncio.Task[None]] = set()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._reconnect_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.participant_id: str | None = None
        self.participants: dict[str, Message] = {}
        self.remote_tracks: dict[str, Message] = {}  # track_id -> track (published by others)
        self.chat: list[Message] = []
        self.received: dict[str, dict[str, ReceiveStats]] = {}  # participant -> source -> stats
        self.reconnects = 0
        self.errors: list[Message] = []

    # -- lifecycle ------------------------------------------------------------

    async def start(self, publish_audio: bool = True, publish_video: bool = True, timeout: float = 15.0) -> Message:
        """Join, publish the requested media; returns the `joined` message."""
        self._make_tracks(publish_audio, publish_video)
        try:
            return await self._open_session(participant_id=None, timeout=timeout)
        except BaseException:
            await self._close_session()  # stop() still releases the tracks
            raise

    def _make_tracks(self, audio: bool, video: bool) -> None:
        if self._video_file is not None:
            self._player = open_media_file(self._video_file)
        file_audio = self._player.audio if self._player else None
        file_video = self._player.video if self._player else None
        if audio:
            self._tracks["microphone"] = file_audio or ToneAudioTrack(self._tone_hz)
        if video:
            hue = (sum(self.name.encode()) % 360) * math.pi / 180  # bots look different
            self._tracks["camera"] = file_video or GeneratedVideoTrack(
                self._width, self._height, self._fps, hue=hue
            )

    async def _open_session(self, participant_id: str | None, timeout: float) -> Message:
        signaling = SignalingClient()
        for msg_type, handler in self._handlers().items():
            signaling.on(msg_type, handler)
        self.signaling = signaling
        self._early_offers = []
        await signaling.connect(self.ws_url, timeout=timeout)
        joined = await signaling.join(self.name, participant_id=participant_id, timeout=timeout)
        self.participant_id = joined["participant_id"]
        self.participants = {p["participant_id"]: p for p in joined.get("participants", [])}
        self.remote_tracks = {t["track_id"]: t for t in joined.get("tracks", [])}
        self._merge_chat(joined.get("chat", []))  # on a rejoin: what we missed meanwhile
        ice_servers = joined.get("ice_servers") or []
        self.subscriber = SubscribePeer(signaling, self._on_remote_track, ice_servers)
        for offer in self._early_offers:
            self.subscriber.handle_offer(offer)
        self._early_offers = []
        self.publisher = PublishPeer(signaling, ice_servers)
        for source, track in self._tracks.items():
            self.publisher.add_track(self._relay.subscribe(track, buffered=False), source)
        if self._tracks:
            await self.publisher.negotiate(timeout=timeout)
        return joined

    async def _close_session(self) -> None:
        for peer in (self.publisher, self.subscriber):
            if peer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(peer.close(), 5.0)
        self.publisher = self.subscriber = None
        if self.signaling is not None:
            await self.signaling.close()

    async def stop(self, timeout: float = 10.0) -> None:
        """Leave the meeting and release everything (bounded by `timeout`)."""
        if self._stopping:
            return
        self._stopping = True
        try:
            async with asyncio.timeout(timeout):
                if self._reconnect_task is not None:
                    self._reconnect_task.cancel()
                    await asyncio.wait([self._reconnect_task])
                if self.signaling is not None:
                    await self.signaling.leave(timeout=min(3.0, timeout / 2))
                await self._close_session()
        except TimeoutError:
            log.warning("bot %s: stop timed out", self.name)
        finally:
            for task in list(self._consumers):
                task.cancel()
            if self._consumers:
                await asyncio.wait(self._consumers, timeout=2.0)
            for track in self._tracks.values():
                track.stop()
            if self._player is not None:
                stop_media_player(self._player)
            for _, future in self._waiters:
                if not future.done():
                    future.cancel()

    async def __aenter__(self) -> Bot:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- signaling pushes -------------------------------------------------------

    def _handlers(self) -> dict[str, Callable[[Message], Any]]:
        return {
            "offer": self._on_offer,
            "participant_joined": self._on_participant,
            "participant_updated": self._on_participant,
            "participant_left": self._on_participant_left,
            "track_published": self._on_track_published,
            "track_unpublished": self._on_track_unpublished,
            "chat": self._on_chat,
            "reconnect": self._on_reconnect,
            "error": self.errors.append,
            "*": lambda msg: self._notify(),  # after the handlers above: waiters see the change
        }

    def _on_offer(self, msg: Message) -> None:
        if self.subscriber is None or self.subscriber.signaling is not self.signaling:
            self._early_offers.append(msg)  # arrived between `joined` and our peers
        else:
            self.subscriber.handle_offer(msg)

    def _on_participant(self, msg: Message) -> None:
        participant = msg["participant"]
        self.participants[participant["participant_id"]] = participant

    def _on_participant_left(self, msg: Message) -> None:
        self.participants.pop(msg["participant_id"], None)

    def _on_track_published(self, msg: Message) -> None:
        self.remote_tracks[msg["track"]["track_id"]] = msg["track"]

    def _on_track_unpublished(self, msg: Message) -> None:
        self.remote_tracks.pop(msg["track_id"], None)
        for sources in self.received.values():
            for stats in sources.values():
                if stats.track_id == msg["track_id"]:
                    stats.active = False

    def _on_chat(self, msg: Message) -> None:
        self._merge_chat([msg["message"]])

    def _merge_chat(self, messages: list[Message]) -> None:
        """Add messages not seen yet, keeping the meeting's order (seq)."""
        seen = {m.get("seq") for m in self.chat}
        fresh = [m for m in messages if m.get("seq") not in seen]
        if fresh:
            self.chat = sorted(self.chat + fresh, key=lambda m: m.get("seq", 0))

    def _on_reconnect(self, msg: Message) -> None:
        if self._stopping or (self._reconnect_task is not None and not self._reconnect_task.done()):
            return
        log.info("bot %s: server asks to reconnect (%s)", self.name, msg.get("reason"))
        self._reconnect_task = asyncio.create_task(self._reconnect(), name=f"reconnect-{self.name}")

    async def _reconnect(self) -> None:
        """Close both peer connections and the socket, then join again as ourselves."""
        await self._close_session()
        for attempt in range(REJOIN_ATTEMPTS):
            try:
                await self._open_session(participant_id=self.participant_id, timeout=10.0)
            except Exception as exc:  # the server may still be restarting its media worker
                log.info("bot %s: rejoin attempt %d failed: %s", self.name, attempt + 1, exc)
                await self._close_session()
                await asyncio.sleep(REJOIN_DELAY)
            else:
                self.reconnects += 1
                self._notify()
                return
        log.error("bot %s: could not rejoin the meeting", self.name)

    # -- receiving ---------------------------------------------------------------

    def _on_remote_track(self, track: MediaStreamTrack, info: Message) -> None:
        participant_id = str(info.get("participant_id"))
        source = str(info.get("source"))
        stats = self.received.setdefault(participant_id, {}).get(source)
        if stats is None:
            stats = ReceiveStats(participant_id, source, track.kind)
            self.received[participant_id][source] = stats
        stats.track_id = str(info.get("track_id", ""))
        stats.active = bool(info.get("active", True))
        task = asyncio.create_task(self._consume(track, stats), name=f"consume-{participant_id}-{source}")
        self._consumers.add(task)
        task.add_done_callback(self._consumers.discard)

    async def _consume(self, track: MediaStreamTrack, stats: ReceiveStats) -> None:
        """Pull decoded frames from aiortc (this drives its decoder) and count them."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if stats.first_frame_at is None:
                stats.first_frame_at = now
            stats.last_frame_at = now
            stats.frames += 1
            if isinstance(frame, av.VideoFrame):
                stats.width, stats.height = frame.width, frame.height
                counter = read_frame_counter(frame)
                if counter is not None:
                    stats.last_counter = counter
                    stats.counted_frames += 1
            elif isinstance(frame, av.AudioFrame):
                stats.samples += frame.samples
                stats.sample_rate = frame.sample_rate
                stats.peak = int(np.abs(frame.to_ndarray()).max()) if frame.samples else 0
            self._notify()

    def _notify(self) -> None:
        for predicate, future in list(self._waiters):
            if not future.done() and predicate():
                future.set_result(None)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str = "condition") -> None:
        """Wait until predicate() holds (checked on every frame, chat and rejoin)."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"bot {self.name}: timed out waiting for {what}; received: {self.describe()}") from None
        finally:
            self._waiters.remove(entry)

    def find_stats(self, participant_id: str | None = None, source: str = "camera") -> ReceiveStats | None:
        """The stats with the most frames for `source` (from `participant_id` if given)."""
        candidates = [
            sources[source]
            for pid, sources in self.received.items()
            if source in sources and (participant_id is None or pid == participant_id)
        ]
        return max(candidates, key=lambda s: s.frames, default=None)

    async def wait_for_frames(
        self, participant_id: str | None = None, source: str = "camera", count: int = 1, timeout: float = 20.0
    ) -> ReceiveStats:
        """Wait until `count` frames of `source` were decoded (from anyone, or `participant_id`)."""

        def enough() -> bool:
            stats = self.find_stats(participant_id, source)
            return stats is not None and stats.frames >= count

        who = participant_id or "anyone"
        await self.wait_until(enough, timeout, f"{count} {source} frames from {who}")
        stats = self.find_stats(participant_id, source)
        assert stats is not None
        return stats

    async def wait_for_chat(self, text: str, timeout: float = 10.0) -> Message:
        def found() -> bool:
            return any(m.get("text") == text for m in self.chat)

        await self.wait_until(found, timeout, f"chat {text!r}")
        return next(m for m in self.chat if m.get("text") == text)

    def describe(self) -> str:
        parts = []
        for pid, sources in self.received.items():
            who = self.participants.get(pid, {}).get("name", pid)
            for source, stats in sources.items():
                parts.append(f"{who}/{source}: {stats.frames} frames")
        return ", ".join(parts) or "nothing"

    # -- actions ------------------------------------------------------------------

    async def send_chat(self, text: str) -> None:
        assert self.signaling is not None, "bot not started"
        await self.signaling.send_chat(text)

    async def set_muted(self, source: str, muted: bool) -> None:
        assert self.signaling is not None, "bot not started"
        await self.signaling.set_muted(source, muted)

    async def publish_screen(self, track: MediaStreamTrack | None = None) -> Message:
        """Start a screen share (a generated pattern unless `track` is given)."""
        assert self.publisher is not None, "bot not started"
        if track is None:
            track = GeneratedVideoTrack(self._width, self._height, fps=5, hue=math.pi)
        self._tracks["screen"] = track
        self.publisher.add_track(self._relay.subscribe(track, buffered=False), "screen")
        return await self.publisher.negotiate()

    async def unpublish_screen(self) -> Message:
        assert self.publisher is not None, "bot not started"
        track = self._tracks.pop("screen")
        self.publisher.remove_track("screen").stop()
        track.stop()
        return await self.publisher.negotiate()


# -- command line -----------------------------------------------------------------


async def create_meeting(base_url: str, title: str | None = None) -> Message:
    async with aiohttp.ClientSession() as session:
        body = {"title": title} if title else {}
        async with session.post(base_url.rstrip("/") + "/api/v1/meetings", json=body) as response:
            payload = await response.json()
            if response.status != 201:
                raise RuntimeError(f"creating a meeting failed: {response.status} {payload}")
            return payload


def _report_line(bot: Bot, previous: dict[tuple[str, str], int], elapsed: float) -> str:
    parts = []
    for pid, sources in sorted(bot.received.items()):
        who = bot.participants.get(pid, {}).get("name", pid[:8])
        for source, stats in sorted(sources.items()):
            rate = stats.frames - previous.get((pid, source), 0)
            previous[(pid, source)] = stats.frames
            extra = f" {stats.width}x{stats.height}" if stats.kind == "video" and stats.width else ""
            parts.append(f"{who}/{source} {stats.frames} (+{rate}/s){extra}")
    return f"[{elapsed:5.0f}s] {len(bot.participants)} others | " + (" | ".join(parts) or "receiving nothing")


async def run_cli(args: argparse.Namespace) -> int:
    base_url, meeting_id, query = parse_meeting_link(args.link)
    if meeting_id is None:
        created = await create_meeting(base_url)
        meeting_id = created["meeting_id"]
        print(f"created meeting {meeting_id}: {created.get('join_url')}", flush=True)
    bot = Bot(base_url, meeting_id, args.name, video_file=args.video, fps=args.fps, join_query=query)
    stop = asyncio.Event()
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
        print(f"joined {meeting_id} as {joined['participant_id']} ({args.name})", flush=True)
        started = time.monotonic()
        previous: dict[tuple[str, str], int] = {}
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            elapsed = time.monotonic() - started
            print(_report_line(bot, previous, elapsed), flush=True)
            if args.duration is not None and elapsed >= args.duration:
                break
        return 0
    finally:
        await bot.stop(timeout=10.0)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if joined_ok:
            print("left the meeting", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m control.client.bot",
        description="Join a meeting as a bot: publish a test pattern and a tone, print what arrives.",
    )
    parser.add_argument("link", metavar="URL_OR_MEETING_LINK", help="join link, or server URL to create a meeting")
    parser.add_argument("--name", default="bot", help="display name")
    parser.add_argument("--video", metavar="FILE", help="publish this file (audio and video) instead of a pattern")
    parser.add_argument("--duration", type=float, metavar="S", help="leave after S seconds")
    parser.add_argument("--fps", type=int, default=15, help="generated video frame rate")
    parser.add_argument("--no-audio", action="store_true")
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return asyncio.run(run_cli(args))
    except (ValueError, RuntimeError, OSError, aiohttp.ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
