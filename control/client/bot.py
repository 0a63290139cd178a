"""A meeting bot: joins (REST join, then signaling with the join token), publishes
generated (or file) media, and decodes and counts everything it receives. Used by tests
and the load generator.

    python -m control.client.bot 'http://127.0.0.1:8080/m/123-4567-8901?t=LINK' --name bot1
    python -m control.client.bot http://127.0.0.1:8080/m/123-4567-8901 --passcode 123456
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
from .signaling import Message, SignalingClient, SignalingError

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


class JoinRefused(RuntimeError):
    """The server refused the REST join (`code`: invalid_credentials, meeting_locked,
    meeting_full, removed, rate_limited...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"join refused ({status} {code}): {message}")
        self.status = status
        self.code = code


async def request_join(
    base_url: str,
    meeting: str,
    name: str,
    *,
    passcode: str | None = None,
    link_token: str | None = None,
    session: aiohttp.ClientSession | None = None,
) -> Message:
    """POST /api/v1/meetings/{meeting}/join: {token, participant_id, ws_url, status, meeting}."""
    body: dict[str, Any] = {"name": name}
    if link_token:
        body["link_token"] = link_token
    else:
        body["passcode"] = passcode or ""
    url = base_url.rstrip("/") + f"/api/v1/meetings/{urllib.parse.quote(meeting)}/join"
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        async with session.post(url, json=body) as response:
            payload = await response.json(content_type=None)
            if response.status != 200:
                error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
                raise JoinRefused(response.status, str(error.get("code")), str(error.get("message")))
            return payload
    finally:
        if own:
            await session.close()


class Bot:
    """A participant. Joins with the meeting number and passcode, a link token (from a join
    link), or a join token it was given (e.g. the host's from Start).

    Waiting room: `start()` returns the server's `waiting` reply and the bot waits, with no
    media, until admitted (`await wait_admitted()`); then it publishes and receives like
    everyone. `waiting`, `admitted`, `removed`, `denied`, `meeting_ended` and
    `session_ended` are asyncio.Events; `end_reason` says why the meeting ended."""

    def __init__(
        self,
        base_url: str,
        meeting: str,
        name: str,
        *,
        passcode: str | None = None,
        link_token: str | None = None,
        token: str | None = None,
        video_file: str | None = None,
        fps: int = 15,
        width: int = 640,
        height: int = 360,
        tone_hz: float = 440.0,
        join_query: str = "",
    ) -> None:
        self.base_url = base_url
        self.meeting = meeting  # number (with or without dashes) as in a join link
        self.name = name
        self.passcode = passcode
        query = urllib.parse.parse_qs(join_query)
        self.link_token = link_token or (query.get("t") or [None])[0]
        self.token = token  # the join token of the next connection
        self.ws_url = meeting_ws_url(base_url, meeting)
        self.join_status: str | None = None  # the REST join's: waiting_for_host | waiting_room | admitted
        self._http: aiohttp.ClientSession | None = None  # keeps the server's device cookie
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
        self._media_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.participant_id: str | None = None
        self.participants: dict[str, Message] = {}
        self.remote_tracks: dict[str, Message] = {}  # track_id -> track (published by others)
        self.chat: list[Message] = []
        self.received: dict[str, dict[str, ReceiveStats]] = {}  # participant -> source -> stats
        self.reconnects = 0
        self.errors: list[Message] = []
        self.pushes: list[Message] = []  # every push received, in order
        self.waiting = asyncio.Event()
        self.waiting_reason: str | None = None
        self.admitted = asyncio.Event()
        self.removed = asyncio.Event()
        self.denied = asyncio.Event()
        self.meeting_ended = asyncio.Event()
        self.session_ended = asyncio.Event()
        self.end_reason: str | None = None
        self.muted_by_host: set[str] = set()
        self.waiting_room: list[Message] = []  # (host) who waits to be let in

    # -- lifecycle ------------------------------------------------------------

    async def start(self, publish_audio: bool = True, publish_video: bool = True, timeout: float = 15.0) -> Message:
        """Join (REST join unless we hold a token, then the socket); returns `joined`, or
        `waiting` when held outside: media starts once admitted."""
        self._make_tracks(publish_audio, publish_video)
        try:
            if self.token is None:
                await self.request_token()
            return await self._open_session(timeout=timeout)
        except BaseException:
            await self._close_session()  # stop() still releases the tracks
            raise

    async def request_token(self) -> Message:
        """A join token by meeting number + passcode or link token (REST join)."""
        if self._http is None:
            # The jar keeps the server's device cookie, also for a server named by its IP.
            self._http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        reply = await request_join(
            self.base_url,
            self.meeting,
            self.name,
            passcode=self.passcode,
            link_token=self.link_token,
            session=self._http,
        )
        self.token = reply["token"]
        self.participant_id = reply.get("participant_id")
        self.join_status = reply.get("status")
        return reply

    async def wait_admitted(self, timeout: float = 20.0) -> None:
        """Until we are in the meeting with our media set up."""
        await asyncio.wait_for(self.admitted.wait(), timeout)
        if self._media_task is not None:
            await asyncio.wait_for(asyncio.shield(self._media_task), timeout)

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

    async def _open_session(self, timeout: float) -> Message:
        signaling = SignalingClient()
        for msg_type, handler in self._handlers().items():
            signaling.on(msg_type, handler)
        self.signaling = signaling
        self._early_offers = []
        await signaling.connect(self.ws_url, timeout=timeout, token=self.token)
        reply = await signaling.join(self.name, timeout=timeout)
        self.participant_id = reply.get("participant_id", self.participant_id)
        if reply.get("type") == "waiting":
            self._on_waiting(reply)
            return reply
        await self._setup_media(reply, timeout)
        return reply

    async def _setup_media(self, joined: Message, timeout: float = 15.0) -> None:
        """In the meeting (`joined`): both peer connections, our tracks published."""
        signaling = self.signaling
        assert signaling is not None
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
        self.waiting.clear()
        self.admitted.set()
        for source, track in self._tracks.items():
            self.publisher.add_track(self._relay.subscribe(track, buffered=False), source)
        if self._tracks:
            await self.publisher.negotiate(timeout=timeout)
        self._notify()

    async def _close_session(self) -> None:
        if self._media_task is not None and not self._media_task.done():
            self._media_task.cancel()
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
            if self._http is not None:
                await self._http.close()
                self._http = None

    async def __aenter__(self) -> Bot:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- signaling pushes -------------------------------------------------------

    def _handlers(self) -> dict[str, Callable[[Message], Any]]:
        return {
            "offer": self._on_offer,
            "joined": self._on_joined_push,
            "waiting": self._on_waiting,
            "waiting_room": self._on_waiting_room,
            "removed": self._on_dismissed,
            "denied": self._on_dismissed,
            "meeting_ended": self._on_dismissed,
            "session_ended": self._on_dismissed,
            "muted_by_host": self._on_muted_by_host,
            "participant_joined": self._on_participant,
            "participant_updated": self._on_participant,
            "participant_left": self._on_participant_left,
            "track_published": self._on_track_published,
            "track_unpublished": self._on_track_unpublished,
            "chat": self._on_chat,
            "reconnect": self._on_reconnect,
            "error": self.errors.append,
            "*": self._on_any,  # after the handlers above: waiters see the change
        }

    def _on_any(self, msg: Message) -> None:
        self.pushes.append(msg)
        self._notify()

    def _on_waiting(self, msg: Message) -> None:
        self.waiting_reason = msg.get("reason")
        self.admitted.clear()
        self.waiting.set()

    def _on_joined_push(self, msg: Message) -> None:
        """Admitted from the waiting room: set up media now."""
        if self._stopping or self.publisher is not None:
            return
        self._media_task = asyncio.create_task(self._setup_media(msg), name=f"admitted-{self.name}")

    def _on_waiting_room(self, msg: Message) -> None:
        self.waiting_room = list(msg.get("participants", []))

    def _on_dismissed(self, msg: Message) -> None:
        kind = msg.get("type")
        if kind == "meeting_ended":
            self.end_reason = msg.get("reason")
        event = {
            "removed": self.removed,
            "denied": self.denied,
            "meeting_ended": self.meeting_ended,
            "session_ended": self.session_ended,
        }[str(kind)]
        event.set()

    def _on_muted_by_host(self, msg: Message) -> None:
        if msg.get("muted", True):
            self.muted_by_host.add(str(msg.get("source")))
        else:
            self.muted_by_host.discard(str(msg.get("source")))

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
        if msg.get("token"):
            self.token = msg["token"]  # to come back as ourselves
        self._reconnect_task = asyncio.create_task(self._reconnect(), name=f"reconnect-{self.name}")

    async def _reconnect(self) -> None:
        """Close both peer connections and the socket, then join again as ourselves."""
        await self._close_session()
        self.admitted.clear()
        for attempt in range(REJOIN_ATTEMPTS):
            try:
                await self._open_session(timeout=10.0)
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
    meeting_id = meeting
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
        print(f"joined {meeting_id} as {bot.participant_id} ({args.name})", flush=True)
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
