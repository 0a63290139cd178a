"""A meeting bot: joins (REST join, then signaling with the join token), publishes
generated (or file) media, decodes and counts everything it receives, and follows the
recording notices. Used by tests and the load generator; its command line is botcli.py.

    python -m client.bot 'http://127.0.0.1:8080/m/123-4567-8901?t=LINK' --name bot1
    python -m client.bot http://127.0.0.1:8080/m/123-4567-8901 --passcode 123456
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import re
import sys
import time
import urllib.parse
from typing import Any, Callable

import aiohttp
import av
import numpy as np
from aiortc.contrib.media import MediaPlayer, MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .adaptive import TRACK_STATE_EVENTS, TrackStates
from .media import GeneratedVideoTrack, ToneAudioTrack, open_media_file, read_frame_counter, stop_media_player
from .peer import PublishPeer, SubscribePeer
from .recording import ANNOUNCEMENT_SOURCE, CONSENT_DECISIONS, RecordingState, RecordingWatcher
from .rejoin import GIVE_UP_AFTER_S, RejoinRefused, backoff_delay, request_rejoin, should_reconnect
from .signaling import Message, SignalingClient, SignalingClosed, SignalingError
from .stage import StageState, send_hand, send_stage_change

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3  # in a row: nodes that keep sending us on disagree about the meeting


@dataclasses.dataclass
class ReceiveStats:
    """What we decoded from one remote participant's source (or from the server's
    announcement track: participant_id None, source "announcement")."""

    participant_id: str | None
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
    `session_ended` are asyncio.Events; `end_reason` says why the meeting ended.

    Recording: `recording_state` is the latest notice (a RecordingState), `on("recording_state",
    cb)` calls cb(state) on each, `await next_recording_state()` / `wait_recording_state(pred)`
    wait for one. Under the `require` policy the server pauses what the bot publishes until
    `consent("continue")`; `consent("leave")` leaves. The host's `start_recording()`,
    `stop_recording()`, `start_transcription()`, `stop_transcription()` return the server's
    `ok` or raise SignalingError. The server's spoken notices arrive on the announcement
    track: `announcement` (ReceiveStats, participant_id None), also
    `wait_for_frames(None, "announcement")`; it is nobody's, so never in `participants`.

    Media: a generated test pattern and a tone, or `video_file`'s; `audio` replaces the
    microphone's track (any aiortc audio track, e.g. recorded speech).

    Active speaker: `active_speaker` is the participant id the server last named as
    speaking (ours included; None before anyone spoke and after the speaker left),
    `active_speakers` every change as (monotonic time, participant id),
    `on("active_speaker", cb)` calls cb(msg) on each, `await wait_active_speaker(pid)`
    waits for one.

    Adaptive media: `track_states` (client.adaptive.TrackStates) keeps what the server says
    of each remote video track (`track_paused`, `track_resumed`, `track_quality`);
    `await wait_track_paused(track_id, reason)` waits for a pause (reason None: for it to
    be forwarded again). A bot publishes one layer: `publish_layers` does not concern it.

    Connection quality: `connection_quality` maps each participant id (ours included) to
    the level the server last gave it ("excellent", "good" or "poor"; `quality_scores`
    the MOS-like score with it), `await wait_connection_quality(pid, levels)` waits for
    one of `levels`."""

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
        audio: MediaStreamTrack | None = None,
        relay_only: bool = False,
    ) -> None:
        self.base_url = base_url
        self.relay_only = relay_only  # media through the server's TURN relay only (tests, debugging)
        self.meeting = meeting  # number (with or without dashes) as in a join link
        self.name = name
        self.passcode = passcode
        query = urllib.parse.parse_qs(join_query)
        self.link_token = link_token or (query.get("t") or [None])[0]
        self.token = token  # the join token of the next connection
        self.reconnect_credential: str | None = None  # the server's latest (client.rejoin)
        self.ws_url = meeting_ws_url(base_url, meeting)
        self.join_status: str | None = None  # the REST join's: waiting_for_host | waiting_room | admitted
        self._http: aiohttp.ClientSession | None = None  # keeps the server's device cookie
        self._video_file = video_file
        self._fps, self._width, self._height = fps, width, height
        self._tone_hz = tone_hz
        self._audio = audio  # the microphone's track, when given (else a tone, or the file's audio)
        self._player: MediaPlayer | None = None
        # Our sources. aiortc stops a sender's track when its peer connection
        # closes, so senders get relay proxies and the sources survive a rejoin.
        self._tracks: dict[str, MediaStreamTrack] = {}  # source -> our media
        self._relay = MediaRelay()
        self.signaling: SignalingClient | None = None
        self._ice_servers: list[Message] = []  # the last `joined`'s: a promotion's publish connection uses them
        self.publisher: PublishPeer | None = None
        self.subscriber: SubscribePeer | None = None
        self._early_offers: list[Message] = []
        self._early_roster: list[Message] = []  # participants_changed before `joined`'s list was taken
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
        self.redirects = 0  # times a node sent us to the node holding the meeting
        self._redirect_hops = 0  # redirects since the last join that held
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
        self.recording = RecordingWatcher()  # recording_state notices
        self.announcement: ReceiveStats | None = None  # the server's spoken notices
        self.active_speaker: str | None = None  # who speaks (`active_speaker`), or None
        self.active_speakers: list[tuple[float, str | None]] = []  # (time.monotonic(), who) per change
        self.track_states = TrackStates()  # track_id -> what the server says of it
        self.connection_quality: dict[str, str] = {}  # participant_id -> level (`connection_quality`)
        self.quality_scores: dict[str, float] = {}  # participant_id -> its MOS-like score
        self.left_by_consent = asyncio.Event()  # we answered a recording notice with "leave"
        self.stage = StageState()  # our webinar role; (host) the speakers and raised hands
        self._listeners: dict[str, list[Callable[[Any], Any]]] = {}

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
            self._tracks["microphone"] = self._audio or file_audio or ToneAudioTrack(self._tone_hz)
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
        self._early_roster = []
        await signaling.connect(self.ws_url, timeout=timeout, token=self.token)
        self._run_callback(self._watch_socket, signaling)
        self.participants = {}  # this connection's: `joined` and the pushes after it
        self._start_over()
        reply = await signaling.join(self.name, timeout=timeout)
        if reply.get("type") == "redirect":  # several nodes: the meeting runs on another one
            return await self._follow_redirect(reply, timeout)
        self._redirect_hops = 0
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
        # Merged: this connection's list starts empty (at connect); a legacy `participant_joined`
        # read right behind `joined` may have been handled first.
        self.participants.update({p["participant_id"]: p for p in joined.get("participants", [])})
        for batch in self._early_roster:  # the rest of a large meeting's list, and what changed since
            self._apply_participants_changed(batch)
        self._early_roster = []
        self.active_speaker = None  # `active_speaker` follows `joined` when someone spoke
        self.remote_tracks = {t["track_id"]: t for t in joined.get("tracks", [])}
        self._merge_chat(joined.get("chat", []))  # on a rejoin: what we missed meanwhile
        ice_servers = joined.get("ice_servers") or []
        self.subscriber = SubscribePeer(signaling, self._on_remote_track, ice_servers, self.relay_only)
        self._ice_servers = ice_servers
        for offer in self._early_offers:
            self.subscriber.handle_offer(offer)
        self._early_offers = []
        self.stage.joined(joined)
        self.waiting.clear()
        self.admitted.set()
        if self.stage.may_publish:  # a webinar's attendee receives only until promoted
            await self._start_publishing(timeout)
        self._notify()

    async def _start_publishing(self, timeout: float = 15.0) -> None:
        """Our publish connection, with our tracks offered."""
        assert self.signaling is not None
        self.publisher = PublishPeer(self.signaling, self._ice_servers, self.relay_only)
        for source, track in self._tracks.items():
            self.publisher.add_track(self._relay.subscribe(track, buffered=False), source)
        if self._tracks:
            await self.publisher.negotiate(timeout=timeout)

    async def _follow_role(self) -> None:
        """Promoted: publish. Demoted: the server closed our publish transport; close ours."""
        if self.stage.may_publish and self.publisher is None and self.subscriber is not None:
            await self._start_publishing()
        elif not self.stage.may_publish and self.publisher is not None:
            publisher, self.publisher = self.publisher, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(publisher.close(), 5.0)
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
            self.recording.close()
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
            "participants_changed": self._on_participants_changed,
            "track_published": self._on_track_published,
            "track_unpublished": self._on_track_unpublished,
            "chat": self._on_chat,
            "recording_state": self._on_recording_state,
            "active_speaker": self._on_active_speaker,
            "connection_quality": self._on_connection_quality,
            **{kind: self.track_states.handle for kind in TRACK_STATE_EVENTS},
            "stage_role": self._on_stage_role,
            "stage": self.stage.on_stage,
            "reconnect": self._on_reconnect,
            "reconnect_credential": self._on_reconnect_credential,
            "error": self.errors.append,
            "*": self._on_any,  # after the handlers above: waiters see the change
        }

    def _on_any(self, msg: Message) -> None:
        self.pushes.append(msg)
        msg_type = str(msg.get("type"))
        if msg_type != "recording_state":  # those listeners get the RecordingState
            for callback in list(self._listeners.get(msg_type, [])):
                self._run_callback(callback, msg)
        self._notify()

    def on(self, event: str, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """callback(state) for "recording_state" (a RecordingState), callback(msg) for any
        other push type; a coroutine function runs as a task. Kept across rejoins.
        Returns a function that removes the callback."""
        if event == "recording_state":
            return self.recording.on_change(callback)
        self._listeners.setdefault(event, []).append(callback)
        return lambda: self._listeners[event].remove(callback)

    def _run_callback(self, callback: Callable[[Any], Any], arg: Any) -> None:
        try:
            result = callback(arg)
        except Exception:
            log.exception("bot %s: callback for %s failed", self.name, getattr(arg, "get", lambda k: None)("type"))
            return
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            task = asyncio.ensure_future(result)
            self._consumers.add(task)
            task.add_done_callback(self._consumers.discard)

    def _on_recording_state(self, msg: Message) -> None:
        self.recording.handle(msg)

    def _on_waiting(self, msg: Message) -> None:
        self.waiting_reason = msg.get("reason")
        self.admitted.clear()
        self.waiting.set()

    def _start_over(self) -> None:
        """What the server tells of one subscribe connection starts over with the next
        `joined`. Cleared before it, never after: the news that follows `joined` (a
        track paused for last-N at once) is handled as it is read, before the coroutine
        that waited for `joined` resumes."""
        self.track_states.clear()
        self.connection_quality.clear()  # everyone's level follows `joined`
        self.quality_scores.clear()

    def _on_joined_push(self, msg: Message) -> None:
        """Admitted from the waiting room: set up media now."""
        if self._stopping or self.subscriber is not None:
            return
        self._start_over()
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

    def _on_stage_role(self, msg: Message) -> None:
        if self.stage.on_role(msg) and not self._stopping:
            task = asyncio.create_task(self._follow_role(), name=f"role-{self.name}")
            self._consumers.add(task)
            task.add_done_callback(self._consumers.discard)

    def _on_participant(self, msg: Message) -> None:
        participant = msg["participant"]
        self.participants[participant["participant_id"]] = participant

    def _on_participant_left(self, msg: Message) -> None:
        self._forget_participant(msg["participant_id"])

    def _on_participants_changed(self, msg: Message) -> None:
        """A batch of joins, updates and leaves (docs/signaling.md), or a page of the list
        that follows `joined` in a large meeting: kept until `joined`'s list is taken."""
        if self.subscriber is None or self.subscriber.signaling is not self.signaling:
            self._early_roster.append(msg)
        else:
            self._apply_participants_changed(msg)

    def _apply_participants_changed(self, msg: Message) -> None:
        for key in ("joined", "updated"):
            entries = msg.get(key)
            for participant in entries if isinstance(entries, list) else []:
                participant_id = participant.get("participant_id") if isinstance(participant, dict) else None
                if isinstance(participant_id, str) and participant_id != self.participant_id:
                    self.participants[participant_id] = participant
        left = msg.get("left")
        for participant_id in left if isinstance(left, list) else []:
            if isinstance(participant_id, str):
                self._forget_participant(participant_id)

    def _forget_participant(self, participant_id: str) -> None:
        self.participants.pop(participant_id, None)
        self.connection_quality.pop(participant_id, None)
        self.quality_scores.pop(participant_id, None)

    def _on_active_speaker(self, msg: Message) -> None:
        speaker = msg.get("participant_id")
        self.active_speaker = speaker if isinstance(speaker, str) and speaker else None
        self.active_speakers.append((time.monotonic(), self.active_speaker))

    def _on_connection_quality(self, msg: Message) -> None:
        entries = msg.get("participants")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("participant_id"), str):
                continue
            if entry.get("quality") in ("excellent", "good", "poor"):
                self.connection_quality[entry["participant_id"]] = entry["quality"]
                score = entry.get("score")
                if isinstance(score, (int, float)) and not isinstance(score, bool):
                    self.quality_scores[entry["participant_id"]] = float(score)

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

    def _on_reconnect_credential(self, msg: Message) -> None:
        if isinstance(msg.get("credential"), str):
            self.reconnect_credential = msg["credential"]

    async def _watch_socket(self, signaling: SignalingClient) -> None:
        """The server or the network closed our socket (not us, not for good): come back,
        through the REST base URL (client.rejoin)."""
        await signaling.wait_closed()
        if self._stopping or signaling.closed_by_us or self.signaling is not signaling:
            return
        if not should_reconnect(signaling.close_code) or self._dismissed():
            return
        if self._reconnect_task is not None and not self._reconnect_task.done():
            return  # told to reconnect already
        log.info("bot %s: connection lost (close code %s); reconnecting", self.name, signaling.close_code)
        self._reconnect_task = asyncio.create_task(self._reconnect(rejoin=True), name=f"reconnect-{self.name}")

    def _dismissed(self) -> bool:
        events = (self.removed, self.denied, self.meeting_ended, self.session_ended, self.left_by_consent)
        return any(event.is_set() for event in events)

    def _on_reconnect(self, msg: Message) -> None:
        if self._stopping or (self._reconnect_task is not None and not self._reconnect_task.done()):
            return
        log.info("bot %s: server asks to reconnect (%s)", self.name, msg.get("reason"))
        if msg.get("token"):
            self.token = msg["token"]  # to come back as ourselves
        url = msg.get("url")
        if isinstance(url, str) and url.startswith(("ws://", "wss://")):
            self.ws_url = url  # a draining node sends us to the one that holds the meeting now
        # The server's token (a worker restart, a drain) first; the credential if it fails.
        rejoin = not msg.get("token")
        self._reconnect_task = asyncio.create_task(self._reconnect(rejoin=rejoin), name=f"reconnect-{self.name}")

    async def _follow_redirect(self, reply: Message, timeout: float) -> Message:
        url = reply.get("url")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")) or self._redirect_hops >= MAX_REDIRECTS:
            raise RuntimeError(f"bot {self.name}: a redirect that cannot be followed: {reply}")
        log.info("bot %s: the meeting runs on another node: %s", self.name, url)
        self.ws_url = url
        self.redirects += 1
        self._redirect_hops += 1
        await self._close_session()
        return await self._open_session(timeout)

    async def _reconnect(self, rejoin: bool) -> None:
        """Close both peer connections and the socket, then join again as ourselves, with
        a backoff while the server is away. `rejoin`: first trade our reconnect credential
        for a token and the socket of the node holding the meeting (any node routes)."""
        await self._close_session()
        self.admitted.clear()
        give_up_at = time.monotonic() + GIVE_UP_AFTER_S
        attempt = 0
        while not self._stopping:
            try:
                if rejoin:
                    await self._rejoin_grant()
                await self._open_session(timeout=10.0)
            except RejoinRefused as exc:
                log.warning("bot %s: the server will not take us back: %s", self.name, exc)
                if exc.code == "meeting_ended":
                    self.meeting_ended.set()
                elif exc.code == "removed":
                    self.removed.set()
                self._notify()
                return
            except Exception as exc:  # the server restarting, its media worker too
                log.info("bot %s: rejoin attempt %d failed: %s", self.name, attempt + 1, exc)
                await self._close_session()
                if time.monotonic() >= give_up_at:
                    break
                await asyncio.sleep(backoff_delay(attempt))
                attempt += 1
                rejoin = True  # a server's token may be what failed: ask with the credential
            else:
                self.reconnects += 1
                self._notify()
                return
        log.error("bot %s: could not rejoin the meeting", self.name)

    async def _rejoin_grant(self) -> None:
        """A token and socket URL to come back with: by our reconnect credential, else
        (never admitted yet: waiting) the token we hold."""
        if self.reconnect_credential is None:
            return
        if self._http is None:
            self._http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        try:
            grant = await request_rejoin(self.base_url, self.meeting, self.reconnect_credential, self._http)
        except RejoinRefused as exc:
            if exc.code in ("meeting_ended", "removed") or not (self.passcode or self.link_token):
                raise
            log.info("bot %s: credential refused (%s); joining afresh", self.name, exc.code)
            self.reconnect_credential = None
            await self.request_token()
            return
        self.token = grant["token"]
        if isinstance(grant.get("ws_url"), str):
            self.ws_url = grant["ws_url"]

    # -- receiving ---------------------------------------------------------------

    def _on_remote_track(self, track: MediaStreamTrack, info: Message) -> None:
        source = str(info.get("source"))
        if source == ANNOUNCEMENT_SOURCE or info.get("participant_id") is None:
            # The server's own track (spoken notices): nobody's, counted on its own.
            if self.announcement is None:
                self.announcement = ReceiveStats(None, source, track.kind)
            stats = self.announcement
            stats.track_id = str(info.get("track_id", ""))
            stats.active = bool(info.get("active", True))
            task = asyncio.create_task(self._consume(track, stats), name=f"consume-{source}")
            self._consumers.add(task)
            task.add_done_callback(self._consumers.discard)
            return
        participant_id = str(info.get("participant_id"))
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
        """The stats with the most frames for `source` (from `participant_id` if given).
        Source "announcement" is the server's track (participant_id None)."""
        if source == ANNOUNCEMENT_SOURCE:
            return self.announcement
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

    async def wait_active_speaker(self, participant_id: str | None, timeout: float = 10.0) -> None:
        """Until the server names `participant_id` as the active speaker (None: nobody)."""
        await self.wait_until(lambda: self.active_speaker == participant_id, timeout, f"{participant_id} to speak")

    async def wait_connection_quality(
        self, participant_id: str, levels: tuple[str, ...] = ("excellent", "good", "poor"), timeout: float = 10.0
    ) -> str:
        """Until the server gives `participant_id` one of `levels`; returns it."""
        await self.wait_until(lambda: self.connection_quality.get(participant_id) in levels, timeout,
                              f"{participant_id}'s connection quality in {levels}")  # fmt: skip
        return self.connection_quality[participant_id]

    async def wait_track_paused(self, track_id: str, reason: str | None, timeout: float = 10.0) -> None:
        """Until the server pauses `track_id` for `reason` ("bandwidth", "last_n"), or
        forwards it (None)."""

        def reached() -> bool:
            state = self.track_states.get(track_id)
            return (state.paused if state else None) == reason

        await self.wait_until(reached, timeout, f"{track_id} paused: {reason}")

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
        if self.announcement is not None:
            parts.append(f"announcement: {self.announcement.frames} frames")
        return ", ".join(parts) or "nothing"

    # -- actions ------------------------------------------------------------------

    async def send_chat(self, text: str) -> None:
        assert self.signaling is not None, "bot not started"
        await self.signaling.send_chat(text)

    async def set_muted(self, source: str, muted: bool) -> None:
        assert self.signaling is not None, "bot not started"
        await self.signaling.set_muted(source, muted)

    async def set_tile(self, track_id: str, width: int, height: int, visible: bool = True) -> None:
        """The size it shows a remote video track at (`tile_size`): which simulcast layer
        it receives. (The bot itself publishes one layer: aiortc cannot send simulcast.)"""
        assert self.signaling is not None, "bot not started"
        await self.signaling.set_tile(track_id, width, height, visible)

    # -- webinar ---------------------------------------------------------------------

    async def raise_hand(self) -> Message:
        assert self.signaling is not None, "bot not started"
        return await send_hand(self.signaling, True)

    async def lower_hand(self, participant_id: str | None = None) -> Message:
        """Lower our hand, or (the host) someone else's."""
        assert self.signaling is not None, "bot not started"
        return await send_hand(self.signaling, False, participant_id)

    async def promote(self, participant_id: str) -> Message:
        """(The host) let an attendee publish; raises SignalingError when refused."""
        assert self.signaling is not None, "bot not started"
        return await send_stage_change(self.signaling, True, participant_id)

    async def demote(self, participant_id: str) -> Message:
        """(The host) make a speaker an attendee again: their tracks stop for everyone."""
        assert self.signaling is not None, "bot not started"
        return await send_stage_change(self.signaling, False, participant_id)

    async def wait_may_publish(self, may: bool = True, timeout: float = 10.0) -> None:
        """Until the server lets us publish (promoted) or not, and our publish connection
        follows (negotiated, or closed)."""

        def reached() -> bool:
            return self.stage.may_publish == may and (self.publisher is not None) == may

        await self.wait_until(reached, timeout, f"may_publish {may}")
        if may and self.publisher is not None and self._tracks:
            await self.wait_until(lambda: self.publisher is not None and bool(self.publisher.published), timeout,
                                  "our tracks published")  # fmt: skip

    # -- recording -----------------------------------------------------------------

    @property
    def recording_state(self) -> RecordingState:
        """The latest recording notice (all off until the server says otherwise)."""
        return self.recording.state

    async def next_recording_state(
        self, predicate: Callable[[RecordingState], bool] | None = None, timeout: float = 10.0
    ) -> RecordingState:
        """The next `recording_state` arriving from now on (matching `predicate`)."""
        return await self.recording.next(predicate, timeout)

    async def wait_recording_state(
        self, predicate: Callable[[RecordingState], bool], timeout: float = 10.0
    ) -> RecordingState:
        """The current state if it matches `predicate`, else the next one that does."""
        return await self.recording.wait(predicate, timeout)

    async def consent(self, decision: str, timeout: float = 10.0) -> Message | None:
        """Answer a recording notice. "continue": the server lets our media through (returns
        its `ok`). "leave": we leave the meeting (the server records that we did)."""
        if decision not in CONSENT_DECISIONS:
            raise ValueError(f"consent decision must be one of {CONSENT_DECISIONS}, not {decision!r}")
        assert self.signaling is not None, "bot not started"
        if decision == "continue":
            reply = await self.signaling.consent("continue", timeout=timeout)
            self.recording.consented()
            return reply
        self.left_by_consent.set()
        with contextlib.suppress(SignalingClosed, SignalingError, TimeoutError):
            # The server ends the session: its `ok` may or may not beat the socket's close.
            await self.signaling.consent("leave", timeout=min(timeout, 3.0))
        await self.stop()
        return None

    async def start_recording(self) -> Message:
        return await self._set_recording("recording", "start")

    async def stop_recording(self) -> Message:
        return await self._set_recording("recording", "stop")

    async def start_transcription(self) -> Message:
        return await self._set_recording("transcription", "start")

    async def stop_transcription(self) -> Message:
        return await self._set_recording("transcription", "stop")

    async def _set_recording(self, kind: str, action: str, timeout: float = 45.0) -> Message:
        # A start waits for the recorder (it may be restarting) and sets up the recording.
        assert self.signaling is not None, "bot not started"
        return await self.signaling.set_recording(kind, action, timeout=timeout)

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


def main(argv: list[str] | None = None) -> int:
    """`python -m client.bot ...`: see client/botcli.py."""
    from .botcli import main as cli_main  # the CLI imports this module: import it late

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
