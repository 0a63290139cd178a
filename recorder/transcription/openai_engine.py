"""Adapter for a third-party speech-to-text service with the OpenAI-compatible endpoint

    POST {base_url}/v1/audio/transcriptions   (multipart/form-data)
      file=<audio>, model=<model>, response_format=verbose_json,
      timestamp_granularities[]=segment, prompt=<hints, joined>  [, language=<code>]
    Authorization: Bearer <api key>
    -> {"text": ..., "duration": ..., "segments": [{"start": s, "end": s, "text": ...}]}

The operator configures it; the meeting's participants chose it knowingly (the notice).
Failures that may pass (connection errors, timeouts, 408/429/5xx) are retried a bounded
number of times with capped backoff; anything else fails at once. The API key is sent only
in the Authorization header: it is never logged, never in repr, and is blanked out of any
error text the service sends back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import numpy as np

from recorder.transcription.audio import SPEECH_RATE, ogg_opus_bytes, to_speech_pcm, wav_bytes
from recorder.transcription.base import (
    Segment,
    TranscriptionError,
    TranscriptionSettingsError,
    check_settings,
    register_engine,
)

log = logging.getLogger(__name__)

ENDPOINT = "v1/audio/transcriptions"
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_PROMPT_CHARS = 1000  # Whisper reads ~224 prompt tokens; more is cut by the service
MAX_RETRY_AFTER_SECONDS = 30.0
MAX_ERROR_TEXT = 200
AUDIO_FORMATS = {"wav": ("audio.wav", "audio/wav"), "ogg": ("audio.ogg", "audio/ogg")}


@register_engine("openai")
class OpenAICompatibleEngine:
    """Transcribes through an OpenAI-compatible /v1/audio/transcriptions service."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        *,
        language: str | None = None,
        audio_format: str = "wav",
        timeout_seconds: float = 300.0,
        connect_timeout_seconds: float = 10.0,
        max_attempts: int = 3,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 20.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise TranscriptionSettingsError("base_url must be an http(s) URL")
        if audio_format not in AUDIO_FORMATS:
            raise TranscriptionSettingsError(f"audio_format must be one of {', '.join(AUDIO_FORMATS)}")
        if max_attempts < 1:
            raise TranscriptionSettingsError("max_attempts must be at least 1")
        self.url = _endpoint(url)
        self.model = model
        self.language = language
        self.audio_format = audio_format
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, sock_connect=connect_timeout_seconds
        )
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> OpenAICompatibleEngine:
        optional = {"language", "audio_format", "timeout_seconds", "max_attempts"}
        check_settings("openai", settings, {"base_url", "api_key", "model"}, optional)
        options = {name: settings[name] for name in optional if name in settings}
        base_url, api_key, model = (str(settings[name]) for name in ("base_url", "api_key", "model"))
        return cls(base_url, api_key, model, **options)

    def __repr__(self) -> str:
        # The key stays out of repr (and so out of tracebacks and logs that print us).
        return f"OpenAICompatibleEngine(url={self._loggable_url()!r}, model={self.model!r})"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def transcribe(
        self, pcm: np.ndarray, sample_rate: int, hints: Sequence[str] = ()
    ) -> list[Segment]:
        body = await asyncio.to_thread(self._encode, np.array(pcm, copy=True), sample_rate)
        prompt = _prompt(hints)
        last_problem = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            try:
                status, text, retry_after = await self._post(body, prompt)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last_problem = f"{type(exc).__name__}"
                retry_after = None
            else:
                if status == 200:
                    return parse_verbose_json(text)
                last_problem = f"HTTP {status}: {self._redact(text)[:MAX_ERROR_TEXT]}"
                if status not in RETRYABLE_STATUSES:
                    raise TranscriptionError(
                        f"transcription service refused the request ({last_problem})"
                    )
            if attempt < self.max_attempts:
                delay = self._delay(attempt, retry_after)
                log.warning(
                    "transcription request to %s failed (%s), attempt %d of %d, retrying in %.1f s",
                    self._loggable_url(), last_problem, attempt, self.max_attempts, delay,
                )
                await self._sleep(delay)
        raise TranscriptionError(
            f"transcription service failed after {self.max_attempts} attempts ({last_problem})"
        )

    # --- helpers ----------------------------------------------------------------------

    def _encode(self, pcm: np.ndarray, sample_rate: int) -> bytes:
        speech = to_speech_pcm(pcm, sample_rate)
        return ogg_opus_bytes(speech) if self.audio_format == "ogg" else wav_bytes(speech, SPEECH_RATE)

    async def _post(self, body: bytes, prompt: str) -> tuple[int, str, float | None]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        filename, content_type = AUDIO_FORMATS[self.audio_format]
        form = aiohttp.FormData()
        form.add_field("file", body, filename=filename, content_type=content_type)
        form.add_field("model", self.model)
        form.add_field("response_format", "verbose_json")
        form.add_field("timestamp_granularities[]", "segment")
        if prompt:
            form.add_field("prompt", prompt)
        if self.language:
            form.add_field("language", self.language)
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        async with self._session.post(self.url, data=form, headers=headers) as response:
            text = await response.text(errors="replace")
            return response.status, text, _retry_after(response.headers.get("Retry-After"))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_SECONDS)
        return min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text

    def _loggable_url(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{parts.port}" if parts.port else ""
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _endpoint(base: urllib.parse.SplitResult) -> str:
    """{base_url}/v1/audio/transcriptions, whether or not base_url already ends in /v1."""
    path = base.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urllib.parse.urlunsplit((base.scheme, base.netloc, f"{path}/{ENDPOINT}", "", ""))


def _prompt(hints: Sequence[str]) -> str:
    words = [" ".join(str(hint).split()) for hint in hints]
    prompt = ", ".join(word for word in words if word)
    return prompt[:MAX_PROMPT_CHARS].rsplit(", ", 1)[0] if len(prompt) > MAX_PROMPT_CHARS else prompt


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def parse_verbose_json(text: str) -> list[Segment]:
    """Segments of a verbose_json answer; TranscriptionError naming what is malformed."""
    try:
        body = json.loads(text)
    except ValueError:
        raise TranscriptionError("malformed response: not JSON") from None
    if not isinstance(body, dict):
        raise TranscriptionError("malformed response: not a JSON object")
    raw_segments = body.get("segments")
    if raw_segments is None:
        # Some services answer plain JSON ({"text": ...}) whatever was asked for.
        text_only = body.get("text")
        if not isinstance(text_only, str):
            raise TranscriptionError("malformed response: neither segments nor text")
        duration = _number(body.get("duration", 0.0), "duration")
        return [Segment(0.0, duration, " ".join(text_only.split()))] if text_only.strip() else []
    if not isinstance(raw_segments, list):
        raise TranscriptionError("malformed response: segments is not a list")
    segments = []
    for index, raw in enumerate(raw_segments):
        if not isinstance(raw, dict):
            raise TranscriptionError(f"malformed response: segments[{index}] is not an object")
        start = _number(raw.get("start"), f"segments[{index}].start")
        end = _number(raw.get("end"), f"segments[{index}].end")
        text = raw.get("text")
        if not isinstance(text, str):
            raise TranscriptionError(f"malformed response: segments[{index}].text is not a string")
        if text.strip():
            segments.append(Segment(start=start, end=max(start, end), text=" ".join(text.split())))
    return segments


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TranscriptionError(f"malformed response: {field} is not a finite number")
    if value < 0:
        raise TranscriptionError(f"malformed response: {field} is negative")
    return float(value)
