"""OpenAICompatibleEngine against a stand-in for the service: a local aiohttp server on
127.0.0.1 that implements POST /v1/audio/transcriptions and records every request, so the
tests check what the adapter sends (multipart fields, audio, key) and how it reads
answers, retries and fails. The real service is outside our network; this stand-in is only
for the adapter's unit test."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import wave
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from recorder.transcription import (
    OpenAICompatibleEngine,
    PocketSphinxEngine,
    Segment,
    TranscriptionError,
    TranscriptionSettingsError,
    engine_from_settings,
)

API_KEY = "sk-test-4f8a0c1e9b7d-secret"
VERBOSE = {
    "task": "transcribe",
    "language": "english",
    "duration": 3.0,
    "text": "Hello there. General Kenobi.",
    "segments": [
        {"id": 0, "start": 0.5, "end": 1.25, "text": " Hello there."},
        {"id": 1, "start": 1.5, "end": 2.75, "text": " General  Kenobi."},
    ],
}


@dataclass
class Service:
    """Answers queued (status, body, headers) or callables in order, then 200 VERBOSE."""

    answers: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fields: dict[str, Any] = {}
        async for part in await request.multipart():
            data = await part.read()
            fields[part.name] = {
                "data": data,
                "filename": part.filename,
                "content_type": part.headers.get("Content-Type"),
            }
        self.requests.append({"path": request.path, "headers": dict(request.headers), "fields": fields})
        answer = self.answers.pop(0) if self.answers else (200, VERBOSE, {})
        if callable(answer):
            return await answer(request)
        status, body, headers = answer
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=status, text=text, headers=headers, content_type="application/json")

    def text(self, index: int, name: str) -> str:
        return self.requests[index]["fields"][name]["data"].decode()


@pytest.fixture
async def service():
    stand_in = Service()
    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", stand_in.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    stand_in.url = str(server.make_url(""))
    try:
        yield stand_in
    finally:
        await server.close()


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)


async def no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


def engine_for(service: Service, **options: Any) -> OpenAICompatibleEngine:
    options.setdefault("sleep", no_sleep)
    return OpenAICompatibleEngine(service.url, API_KEY, "whisper-1", **options)


async def test_request_carries_audio_model_prompt_and_format(service, caplog):
    caplog.set_level(logging.DEBUG)
    engine = engine_for(service, language="en")
    stereo = np.stack([tone(3.0, 48000), tone(3.0, 48000)], axis=1)
    try:
        segments = await engine.transcribe(stereo, 48000, ["Conclave", "Alice  Smith"])
    finally:
        await engine.close()
    assert segments == [Segment(0.5, 1.25, "Hello there."), Segment(1.5, 2.75, "General Kenobi.")]
    [request] = service.requests
    assert request["path"] == "/v1/audio/transcriptions"
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert service.text(0, "model") == "whisper-1"
    assert service.text(0, "response_format") == "verbose_json"
    assert service.text(0, "timestamp_granularities[]") == "segment"
    assert service.text(0, "prompt") == "Conclave, Alice Smith"
    assert service.text(0, "language") == "en"
    upload = request["fields"]["file"]
    assert upload["filename"] == "audio.wav" and upload["content_type"] == "audio/wav"
    with wave.open(io.BytesIO(upload["data"])) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        assert abs(wav.getnframes() - 3 * 16000) < 160
    assert API_KEY not in caplog.text


async def test_ogg_body_and_no_prompt_without_hints(service):
    engine = engine_for(service, audio_format="ogg")
    try:
        await engine.transcribe((tone(2.0, 16000) * 32767).astype(np.int16), 16000, [])
    finally:
        await engine.close()
    fields = service.requests[0]["fields"]
    assert "prompt" not in fields and "language" not in fields
    assert fields["file"]["filename"] == "audio.ogg" and fields["file"]["content_type"] == "audio/ogg"
    with av.open(io.BytesIO(fields["file"]["data"])) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
        assert container.streams.audio[0].codec_context.name == "opus"
    assert abs(samples / 48000 - 2.0) < 0.05


async def test_base_url_with_v1_and_trailing_slash_reaches_the_same_endpoint(service):
    engine = OpenAICompatibleEngine(service.url.rstrip("/") + "/v1/", API_KEY, "m", sleep=no_sleep)
    try:
        await engine.transcribe(tone(0.5, 16000), 16000, [])
    finally:
        await engine.close()
    assert service.requests[0]["path"] == "/v1/audio/transcriptions"


async def test_server_errors_are_retried_then_succeed(service, caplog):
    caplog.set_level(logging.DEBUG)
    service.answers = [(500, {"error": "boom"}, {}), (503, "busy", {}), (200, VERBOSE, {})]
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    engine = engine_for(service, sleep=record_sleep, backoff_seconds=0.5, max_attempts=3)
    try:
        segments = await engine.transcribe(tone(1.0, 16000), 16000, ["x"])
    finally:
        await engine.close()
    assert len(segments) == 2 and len(service.requests) == 3
    assert slept == [0.5, 1.0]  # capped exponential backoff
    assert "retrying" in caplog.text and API_KEY not in caplog.text


async def test_retry_after_is_honoured_and_attempts_are_bounded(service):
    service.answers = [(429, {"error": "slow down"}, {"Retry-After": "2"})] * 5
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    engine = engine_for(service, sleep=record_sleep, max_attempts=3)
    try:
        with pytest.raises(TranscriptionError, match="after 3 attempts.*HTTP 429"):
            await engine.transcribe(tone(1.0, 16000), 16000, [])
    finally:
        await engine.close()
    assert len(service.requests) == 3 and slept == [2.0, 2.0]


async def test_refusal_fails_at_once_without_leaking_the_key(service, caplog):
    caplog.set_level(logging.DEBUG)
    # A careless service that echoes the key back in its error.
    service.answers = [(401, {"error": f"invalid key {API_KEY}"}, {})]
    engine = engine_for(service)
    try:
        with pytest.raises(TranscriptionError) as caught:
            await engine.transcribe(tone(1.0, 16000), 16000, [])
    finally:
        await engine.close()
    assert len(service.requests) == 1
    assert "HTTP 401" in str(caught.value) and "[redacted]" in str(caught.value)
    assert API_KEY not in str(caught.value) and API_KEY not in caplog.text
    assert API_KEY not in repr(engine)


async def test_a_silent_service_times_out_and_is_retried_a_bounded_number_of_times(service):
    async def hang(_request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response()

    service.answers = [hang, hang]
    engine = engine_for(service, timeout_seconds=0.3, max_attempts=2)
    try:
        with pytest.raises(TranscriptionError, match="after 2 attempts.*TimeoutError"):
            await engine.transcribe(tone(0.5, 16000), 16000, [])
    finally:
        await engine.close()
    assert len(service.requests) == 2


async def test_unreachable_service_fails_after_bounded_attempts():
    # A port that was just free: connection refused on 127.0.0.1.
    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url(""))
    await server.close()
    engine = OpenAICompatibleEngine(url, API_KEY, "m", max_attempts=2, sleep=no_sleep)
    try:
        with pytest.raises(TranscriptionError, match="after 2 attempts.*ClientConnectorError"):
            await engine.transcribe(tone(0.5, 16000), 16000, [])
    finally:
        await engine.close()


@pytest.mark.parametrize(
    "body, problem",
    [
        ("<html>oops</html>", "not JSON"),
        ([1, 2], "not a JSON object"),
        ({"segments": "nope"}, "segments is not a list"),
        ({"segments": [{"start": "0", "end": 1, "text": "x"}]}, r"segments\[0\]\.start"),
        ({"segments": [{"start": 0, "end": float("inf"), "text": "x"}]}, r"segments\[0\]\.end"),
        ({"segments": [{"start": 0, "end": 1, "text": 5}]}, r"segments\[0\]\.text"),
        ({"nothing": True}, "neither segments nor text"),
    ],
)
async def test_malformed_answers_are_errors_that_say_what_is_wrong(service, body, problem):
    text = body if isinstance(body, str) else json.dumps(body)
    service.answers = [(200, text, {})]
    engine = engine_for(service)
    try:
        with pytest.raises(TranscriptionError, match=problem):
            await engine.transcribe(tone(0.5, 16000), 16000, [])
    finally:
        await engine.close()
    assert len(service.requests) == 1  # a malformed answer is not retried


async def test_text_only_answer_becomes_one_segment(service):
    service.answers = [(200, {"text": " just  text ", "duration": 4.5}, {})]
    engine = engine_for(service)
    try:
        assert await engine.transcribe(tone(0.5, 16000), 16000, []) == [Segment(0.0, 4.5, "just text")]
    finally:
        await engine.close()


def test_engines_come_from_settings_and_bad_settings_name_the_key():
    engine = engine_from_settings(
        {"kind": "openai", "base_url": "https://stt.example", "api_key": API_KEY, "model": "m"}
    )
    assert isinstance(engine, OpenAICompatibleEngine)
    assert engine.url == "https://stt.example/v1/audio/transcriptions"
    assert API_KEY not in repr(engine)
    assert isinstance(engine_from_settings({"kind": "pocketsphinx"}), PocketSphinxEngine)
    with pytest.raises(TranscriptionSettingsError, match="missing openai setting.*api_key"):
        engine_from_settings({"kind": "openai", "base_url": "https://x", "model": "m"})
    with pytest.raises(TranscriptionSettingsError, match="unknown openai setting.*colour"):
        engine_from_settings(
            {"kind": "openai", "base_url": "https://x", "api_key": "k", "model": "m", "colour": 1}
        )
    with pytest.raises(TranscriptionSettingsError, match="kind must be one of openai, pocketsphinx"):
        engine_from_settings({"kind": "carrier-pigeon"})
    with pytest.raises(TranscriptionSettingsError, match="base_url"):
        OpenAICompatibleEngine("ftp://x", API_KEY, "m")
