"""The channel between control and a process it starts (an SFU worker, the recorder):
length-prefixed JSON frames over a unix socket, carrying `common.messages` messages.

Frame: 4-byte big-endian length, then a UTF-8 JSON object, one of
  {"type": "request", "id": N, "name": NAME, "data": {...}}
  {"type": "response", "id": N, "ok": true, "name": NAME, "data": {...}}
  {"type": "response", "id": N, "ok": false, "error": {"code": C, "message": M}}
  {"type": "notification", "name": NAME, "entity_id": ID, "data": {...}}
A request gets exactly one response. A malformed or unknown request is answered with an
error, never ignored. `FrameDecoder` and `encode_frame` are sans-I/O; the two endpoint
classes add asyncio streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from common.messages import Message, MessageError, message_class

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024
_LENGTH = struct.Struct("!I")


class ChannelError(Exception):
    """A request failed on the other side, or the channel broke."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def encode_frame(envelope: dict[str, Any]) -> bytes:
    body = json.dumps(envelope, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return _LENGTH.pack(len(body)) + body


class FrameDecoder:
    """Accumulates bytes and yields complete JSON envelopes."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 4:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > self._max_frame:
                raise ValueError(f"frame length {length} exceeds {self._max_frame}")
            if len(self._buffer) < 4 + length:
                break
            body = bytes(self._buffer[4 : 4 + length])
            del self._buffer[: 4 + length]
            try:
                envelope = json.loads(body)
            except RecursionError:  # deeply nested arrays/objects: not a message of ours
                raise ValueError("frame body: JSON nested too deeply") from None
            if not isinstance(envelope, dict):
                raise ValueError("frame is not a JSON object")
            frames.append(envelope)
        return frames


def request_envelope(request_id: int, message: Message) -> dict[str, Any]:
    return {"type": "request", "id": request_id, "name": message.NAME, "data": message.to_dict()}


def notification_envelope(entity_id: str, message: Message) -> dict[str, Any]:
    return {"type": "notification", "name": message.NAME, "entity_id": entity_id, "data": message.to_dict()}


def parse_message(envelope: dict[str, Any]) -> Message:
    name = envelope.get("name")
    if not isinstance(name, str):
        raise MessageError("envelope has no message name")
    return message_class(name).from_dict(envelope.get("data", {}))


class _Endpoint:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder()
        self._closed = asyncio.Event()

    def _send(self, envelope: dict[str, Any]) -> None:
        if self._writer.is_closing():
            raise ChannelError("closed", "channel is closed")
        self._writer.write(encode_frame(envelope))

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for envelope in self._decoder.feed(data):
                    await self._dispatch(envelope)
        except (ConnectionError, ValueError, ChannelError) as exc:
            log.warning("channel broken: %s", exc)
        finally:
            self._closed.set()
            self._on_closed()
            self._writer.close()

    async def _dispatch(self, envelope: dict[str, Any]) -> None:
        raise NotImplementedError

    def _on_closed(self) -> None:
        pass

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def close(self) -> None:
        self._writer.close()


NotificationHandler = Callable[[str, Message], None]


class ChannelClient(_Endpoint):
    """Control's side: sends requests, awaits responses, receives notifications."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_notification: NotificationHandler,
    ) -> None:
        super().__init__(reader, writer)
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._on_notification = on_notification
        self._task = asyncio.ensure_future(self._read_loop())

    async def request(self, message: Message, timeout: float = 10.0) -> Message:
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._send(request_envelope(request_id, message))
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise ChannelError("timeout", f"{message.NAME} got no response in {timeout} s") from None
        finally:
            self._pending.pop(request_id, None)

    async def _dispatch(self, envelope: dict[str, Any]) -> None:
        kind = envelope.get("type")
        if kind == "response":
            future = self._pending.get(envelope.get("id"))  # type: ignore[arg-type]
            if future is None or future.done():
                return
            if envelope.get("ok"):
                try:
                    future.set_result(parse_message(envelope))
                except MessageError as exc:
                    future.set_exception(ChannelError("bad_response", str(exc)))
            else:
                error = envelope.get("error") or {}
                future.set_exception(ChannelError(str(error.get("code")), str(error.get("message"))))
        elif kind == "notification":
            try:
                message = parse_message(envelope)
            except MessageError as exc:
                log.warning("dropping malformed notification: %s", exc)
                return
            try:
                self._on_notification(str(envelope.get("entity_id", "")), message)
            except Exception:  # a listener bug must not stop responses from arriving
                log.exception("notification handler failed for %s", message.NAME)

    def _on_closed(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelError("closed", "the channel closed"))


RequestHandler = Callable[[Message], Awaitable[Message]]


class RequestFailed(Exception):
    """Raised by a child's request handler to answer a request with a specific error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ChannelServer(_Endpoint):
    """The child's side (a worker, the recorder): answers each request with exactly one response."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: RequestHandler
    ) -> None:
        super().__init__(reader, writer)
        self._handler = handler

    async def serve(self) -> None:
        await self._read_loop()

    def notify(self, entity_id: str, message: Message) -> None:
        try:
            self._send(notification_envelope(entity_id, message))
        except ChannelError:
            pass

    async def _dispatch(self, envelope: dict[str, Any]) -> None:
        request_id = envelope.get("id")
        if envelope.get("type") != "request" or not isinstance(request_id, int):
            self._send_error(request_id, "bad_envelope", "expected a request with an integer id")
            return
        try:
            request = parse_message(envelope)
            response = await self._handler(request)
        except MessageError as exc:
            self._send_error(request_id, "bad_request", str(exc))
            return
        except RequestFailed as exc:
            self._send_error(request_id, exc.code, exc.message)
            return
        except Exception as exc:  # a handler bug must not kill the process
            log.exception("request %s failed", envelope.get("name"))
            self._send_error(request_id, "internal", f"{type(exc).__name__}: {exc}")
            return
        self._send({"type": "response", "id": request_id, "ok": True, "name": response.NAME, "data": response.to_dict()})

    def _send_error(self, request_id: Any, code: str, message: str) -> None:
        self._send({"type": "response", "id": request_id, "ok": False, "error": {"code": code, "message": message}})


# --------------------------------------------------------------------- a child's side
# What a process that control starts with `--channel-fd FD` (sfu.worker, the recorder)
# does with its channel: open it, then serve it until told to stop.

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def open_server(channel_fd: int, handler: RequestHandler) -> ChannelServer:
    """The channel on the socket descriptor this process inherited from control."""
    sock = socket.socket(fileno=channel_fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    return ChannelServer(reader, writer, handler)


async def serve_until_stopped(
    channel: ChannelServer, shutdown: Callable[[], Awaitable[None]], *, second_signal_exits: bool = False
) -> None:
    """Serve requests until SIGTERM/SIGINT or until control closes the channel; then
    `shutdown()` and close the channel. second_signal_exits: a signal that arrives while
    shutting down ends the process at once (exit status 1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    serve = asyncio.ensure_future(channel.serve())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([serve, stopper], return_when=asyncio.FIRST_COMPLETED)
    if second_signal_exits:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, lambda: os._exit(1))
    await shutdown()
    channel.close()
    for task in (serve, stopper):
        task.cancel()
