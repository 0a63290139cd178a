"""The child process that decodes for PocketSphinxEngine, and the parent's handle on it.

Why a process: pocketsphinx holds the GIL while it decodes (measured: a coroutine ticking
every 10 ms got 7 turns during a second of decoding on a thread), so a thread would still
stall the event loop. Why not multiprocessing: its "spawn" start method re-runs the
caller's main script in the child, which fails in any program without a
`if __name__ == "__main__"` guard; `python -m recorder.transcription.pocketsphinx_worker`
is explicit and owned like any other child (started, tracked, stopped).

Protocol on the child's stdin/stdout, one request then one reply at a time:
    message = 4-byte big-endian length of a JSON header, the header, then
              header["payload_bytes"] bytes of payload
    request header: {"sample_rate", "hints", "pad_seconds", "dtype", "shape"};
                    payload: the PCM array's bytes (C order)
    reply header:   {"segments": [[start, end, text], ...]} or {"error": "..."}
The child exits when its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from recorder.transcription.base import Segment, TranscriptionError

HEADER_LENGTH = struct.Struct(">I")
MAX_HEADER_BYTES = 16 << 20  # hints are bounded; this is a sanity limit, not a budget
PCM_KINDS = "iuf"
STOP_GRACE_SECONDS = 5.0


def frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    encoded = json.dumps({**header, "payload_bytes": len(payload)}).encode()
    return HEADER_LENGTH.pack(len(encoded)) + encoded + payload


def _header_of(raw: bytes) -> dict[str, Any]:
    header = json.loads(raw)
    if not isinstance(header, dict) or not isinstance(header.get("payload_bytes"), int):
        raise ValueError("message header must be an object with payload_bytes")
    return header


class WorkerProcess:
    """One running worker; `transcribe` is one request/reply exchange with it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._in_exchange = False

    @classmethod
    async def start(cls) -> WorkerProcess:
        # The child must find this package even when it is not installed (a checkout
        # on sys.path): put the directory holding `recorder` first on its path.
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env.pop("_CONCLAVE_RECORDER_CONFIG", None)  # the recorder's settings (an API key): not its worker's
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        return cls(process)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def reusable(self) -> bool:
        """False after a died, killed or interrupted exchange: such a worker is stopped."""
        return not self._in_exchange and self._process.returncode is None

    async def transcribe(
        self, pcm: np.ndarray, sample_rate: int, hints: list[str], pad_seconds: float
    ) -> list[Segment]:
        samples = np.ascontiguousarray(pcm)
        header = {
            "sample_rate": int(sample_rate),
            "hints": hints,
            "pad_seconds": pad_seconds,
            "dtype": samples.dtype.str,
            "shape": list(samples.shape),
        }
        assert self._process.stdin is not None and self._process.stdout is not None
        self._in_exchange = True
        try:
            self._process.stdin.write(frame(header, samples.tobytes()))
            await self._process.stdin.drain()
            size = HEADER_LENGTH.unpack(await self._process.stdout.readexactly(HEADER_LENGTH.size))[0]
            reply = _header_of(await self._process.stdout.readexactly(size))
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            raise TranscriptionError("the pocketsphinx worker process died") from None
        self._in_exchange = False
        if "error" in reply:
            raise TranscriptionError(f"pocketsphinx failed: {reply['error']}")
        return [Segment(float(start), float(end), str(text)) for start, end, text in reply["segments"]]

    async def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Close its stdin (it exits), SIGKILL after the grace period, and reap it."""
        if self._process.returncode is None and grace_seconds > 0 and not self._in_exchange:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                await asyncio.wait_for(self._process.wait(), grace_seconds)
            except asyncio.TimeoutError:
                pass
        if self._process.returncode is None:
            self._process.kill()
        await self._process.wait()


# --- the child ------------------------------------------------------------------------


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _pcm_of(header: dict[str, Any], payload: bytes) -> np.ndarray:
    dtype = np.dtype(header["dtype"])
    if dtype.kind not in PCM_KINDS:
        raise ValueError(f"pcm must hold integers or floats, not {dtype}")
    return np.frombuffer(payload, dtype=dtype).reshape(header["shape"])


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until the input closes."""
    from recorder.transcription.pocketsphinx_engine import transcribe_blocking

    while True:
        prefix = _read_exactly(requests, HEADER_LENGTH.size)
        if prefix is None:
            return
        (size,) = HEADER_LENGTH.unpack(prefix)
        if size > MAX_HEADER_BYTES:
            raise SystemExit("request header too large")
        raw = _read_exactly(requests, size)
        header = _header_of(raw) if raw is not None else None
        payload = _read_exactly(requests, header["payload_bytes"]) if header else None
        if header is None or payload is None:
            return
        try:
            pcm = _pcm_of(header, payload)
            hints = tuple(str(hint) for hint in header["hints"])
            segments = transcribe_blocking(pcm, header["sample_rate"], hints, header["pad_seconds"])
            reply = {"segments": [[s.start, s.end, s.text] for s in segments]}
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(frame(reply))
        replies.flush()


def main() -> None:
    # Anything a library prints (Python or C) must not corrupt the protocol: replies get
    # their own copy of the pipe, and file descriptor 1 becomes stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
