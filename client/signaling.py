"""Signaling client: one WebSocket per participant, JSON messages (docs/signaling.md).

Knows nothing about media. Three ways to consume what the server sends:

- `await request(msg)`: sends `msg` with a fresh `id` and returns the direct reply
  (the server echoes the id); an `error` reply raises `SignalingError`.
- `on(type, handler)`: handler(msg) is called for every push of that type ("*" for
  all); a handler returning an awaitable is run as a task.
- `events(*types)` / `wait_for(type, ...)`: async streams of pushes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import itertools
import json
import logging
import urllib.parse
from typing import Any, AsyncIterator, Callable

import aiohttp

log = logging.getLogger(__name__)

Message = dict[str, Any]
Handler = Callable[[Message], Any]

# Replies that answer a request directly; the server echoes the request id in them.
# (`join` is answered by `joined`, or by `waiting` in the waiting room: then `joined`
# arrives later as a push, without an id, when the host admits us.)
REPLY_TYPES = frozenset({"joined", "waiting", "redirect", "publish_answer", "error", "ok", "pong"})


def _with_query(url: str, key: str, value: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != key] + [(key, value)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class SignalingError(Exception):
    """The server answered a request with an `error` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SignalingClosed(ConnectionError):
    """The WebSocket is closed (by us or by the server)."""


class EventStream:
    """An async iterator over pushes of some types, from creation until close."""

    def __init__(self, client: SignalingClient, types: frozenset[str]) -> None:
        self._client = client
        self.types = types
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()

    def _offer(self, msg: Message) -> None:
        if not self.types or msg.get("type") in self.types:
            self._queue.put_nowait(msg)

    def _end(self) -> None:
        self._queue.put_nowait(None)

    async def get(self, timeout: float | None = None) -> Message:
        """The next message; raises SignalingClosed at the end, TimeoutError on timeout."""
        msg = await asyncio.wait_for(self._queue.get(), timeout)
        if msg is None:
            self._queue.put_nowait(None)  # stay ended for later callers
            raise SignalingClosed("signaling connection closed")
        return msg

    def close(self) -> None:
        self._client._streams.discard(self)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.get()
            except SignalingClosed:
                return

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SignalingClient:
    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owns_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[Any, tuple[asyncio.Future[Message], frozenset[str]]] = {}
        self._handlers: dict[str, list[Handler]] = collections.defaultdict(list)
        self._streams: set[EventStream] = set()
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()
        self.joined: Message | None = None
        self.participant_id: str | None = None
        self.close_code: int | None = None
        # What the server sent on this socket: messages by type, and text bytes in all
        # (the bench's join storm reports them per join).
        self.received: collections.Counter[str] = collections.Counter()
        self.received_bytes = 0
        self.closed_by_us = False  # close() or leave() was called (not the server, not the network)

    # -- connection ---------------------------------------------------------

    async def connect(self, ws_url: str, timeout: float = 10.0, token: str | None = None) -> None:
        """Open the socket; `token` (a join token) goes in its URL."""
        if token is not None:
            ws_url = _with_query(ws_url, "token", token)
        if self._ws is not None:
            raise RuntimeError("already connected")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            self._ws = await asyncio.wait_for(self._session.ws_connect(ws_url, heartbeat=20.0), timeout)
        except BaseException:
            await self._close_session()
            raise
        self._reader = asyncio.create_task(self._read_loop(), name="signaling-reader")

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed and not self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self, timeout: float = 5.0) -> None:
        """Close the socket (bounded) and release everything; safe to call twice."""
        self.closed_by_us = True
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), timeout)
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self._finish()
        for task in list(self._handler_tasks):
            task.cancel()
        await self._close_session()

    async def _close_session(self) -> None:
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # -- sending ------------------------------------------------------------

    async def send(self, msg: Message) -> None:
        """Send one message without waiting for anything."""
        if not self.connected:
            raise SignalingClosed("signaling connection closed")
        assert self._ws is not None
        await self._ws.send_str(json.dumps(msg, separators=(",", ":")))

    async def request(
        self, msg: Message, timeout: float = 10.0, expect: tuple[str, ...] = ()
    ) -> Message:
        """Send `msg` with a new `id` and return the reply carrying that id.

        `expect` names reply types that may arrive without the id echoed (a
        server that only echoes ids in some replies); such a reply answers the
        oldest pending request that expects it.
        """
        request_id = next(self._ids)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (future, frozenset(expect))
        try:
            await self.send({**msg, "id": request_id})
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)
        if reply.get("type") == "error":
            raise SignalingError(str(reply.get("code")), str(reply.get("message")))
        return reply

    async def join(self, name: str | None = None, token: str | None = None, timeout: float = 10.0) -> Message:
        """Send `join` (with the join token unless it was in the socket URL); returns
        `joined`, or `waiting` when we are held in the waiting room or wait for the host, or
        `redirect` when the meeting runs on another node (its `url`)."""
        msg: Message = {"type": "join"}
        if name is not None:
            msg["name"] = name
        if token is not None:
            msg["token"] = token
        reply = await self.request(msg, timeout=timeout, expect=("joined", "waiting", "redirect"))
        self.participant_id = reply.get("participant_id", self.participant_id)
        if reply.get("type") == "joined":
            self.joined = reply
        return reply

    async def ping(self, timeout: float = 10.0) -> Message:
        return await self.request({"type": "ping"}, timeout=timeout, expect=("pong",))

    async def send_chat(self, text: str) -> None:
        """Send a chat message; everyone (us included) gets it back as a `chat` push."""
        await self.send({"type": "chat", "text": text})

    async def set_muted(self, source: str, muted: bool) -> None:
        await self.send({"type": "mute", "source": source, "muted": muted})

    async def set_subscribed(self, track_id: str, enabled: bool) -> None:
        await self.send({"type": "subscribe", "track_id": track_id, "enabled": enabled})

    async def set_tile(self, track_id: str, width: int, height: int, visible: bool = True) -> None:
        """How large (device pixels) the bot shows a remote video track, or that it does
        not: the server forwards the smallest simulcast layer that fills it, none hidden."""
        await self.send({"type": "tile_size", "track_id": track_id, "width": int(width),
                         "height": int(height), "visible": bool(visible)})

    async def consent(self, decision: str, timeout: float = 10.0) -> Message:
        """Answer a recording notice: "continue" (stay, and send media) or "leave".
        Returns the server's `ok`."""
        if decision not in ("continue", "leave"):
            raise ValueError(f"consent decision must be 'continue' or 'leave', not {decision!r}")
        return await self.request({"type": "consent", "decision": decision}, timeout=timeout, expect=("ok",))

    async def set_recording(self, kind: str, action: str, timeout: float = 10.0) -> Message:
        """Start or stop `kind` ("recording" or "transcription"); returns the server's `ok`
        (a refusal raises SignalingError). The new state arrives as `recording_state`."""
        if kind not in ("recording", "transcription"):
            raise ValueError(f"kind must be 'recording' or 'transcription', not {kind!r}")
        if action not in ("start", "stop"):
            raise ValueError(f"action must be 'start' or 'stop', not {action!r}")
        return await self.request({"type": kind, "action": action}, timeout=timeout, expect=("ok",))

    async def leave(self, timeout: float = 5.0) -> None:
        """Say goodbye and wait (bounded) for the server to close the socket."""
        self.closed_by_us = True
        if self.connected:
            with contextlib.suppress(SignalingClosed, ConnectionError):
                await self.send({"type": "leave"})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closed.wait(), timeout)
        await self.close()

    # -- receiving ----------------------------------------------------------

    def on(self, msg_type: str, handler: Handler) -> Callable[[], None]:
        """Call handler(msg) for each push of `msg_type` ("*": every push).

        Returns a function that removes the handler.
        """
        self._handlers[msg_type].append(handler)
        return lambda: self._handlers[msg_type].remove(handler)

    def events(self, *types: str) -> EventStream:
        """A stream of the pushes of `types` (all if none) arriving from now on."""
        stream = EventStream(self, frozenset(types))
        if self._closed.is_set():
            stream._end()
        else:
            self._streams.add(stream)
        return stream

    async def wait_for(
        self,
        msg_type: str,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float = 10.0,
    ) -> Message:
        """The next push of `msg_type` (matching `predicate`) arriving from now on."""
        with self.events(msg_type) as stream:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await stream.get()
                    if predicate is None or predicate(msg):
                        return msg

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._dispatch_text(frame.data)
                elif frame.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
        except Exception:  # a broken socket ends the session, never the program
            log.exception("signaling read loop failed")
        finally:
            self.close_code = self._ws.close_code
            self._finish()

    def _dispatch_text(self, text: str) -> None:
        self.received_bytes += len(text)
        try:
            msg = json.loads(text)
        except ValueError:
            log.warning("ignoring non-JSON signaling frame")
            return
        if not isinstance(msg, dict):
            log.warning("ignoring non-object signaling frame")
            return
        self.received[str(msg.get("type"))[:64]] += 1
        if msg.get("type") == "joined" and "id" not in msg:
            self.joined = msg  # admitted from the waiting room
            self.participant_id = msg.get("participant_id", self.participant_id)
        if self._resolve_reply(msg):
            return
        if msg.get("type") == "error":
            log.warning("server error without request: %s", msg)
        for stream in list(self._streams):
            stream._offer(msg)
        for handler in self._handlers.get(msg.get("type", ""), []) + self._handlers.get("*", []):
            self._call_handler(handler, msg)

    def _resolve_reply(self, msg: Message) -> bool:
        msg_type = msg.get("type")
        if msg_type not in REPLY_TYPES:
            return False
        entry = self._pending.get(msg.get("id")) if "id" in msg else None
        if entry is None and "id" not in msg:
            # An id-less reply answers the oldest request that expects its type.
            entry = next((e for e in self._pending.values() if msg_type in e[1]), None)
        if entry is None or entry[0].done():
            return False
        entry[0].set_result(msg)
        return True

    def _call_handler(self, handler: Handler, msg: Message) -> None:
        try:
            result = handler(msg)
        except Exception:
            log.exception("signaling handler for %s failed", msg.get("type"))
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._handler_tasks.add(task)
            task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[Any]) -> None:
        self._handler_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("signaling handler task failed", exc_info=task.exception())

    def _finish(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(SignalingClosed("signaling connection closed"))
        for stream in list(self._streams):
            stream._end()
        self._streams.clear()
