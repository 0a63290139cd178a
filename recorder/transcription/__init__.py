"""Transcription: engines (offline pocketsphinx, OpenAI-compatible HTTP service) that turn
one participant's audio into timed segments, and the WebVTT/JSON transcript of a meeting.
See docs/recorder.md.

    engine = engine_from_settings({"kind": "pocketsphinx"})
    own = await engine.transcribe(pcm, 48000, hints=["Conclave", "Alice Smith"])
    transcript = merge([place(own, "Alice", offset=12.5), place(theirs, "Bob", 3.0)])
    vtt, doc = to_webvtt(transcript), to_json(transcript, {"meeting_id": ...})
"""

# Each engine module registers its class with engine_from_settings when imported.
from recorder.transcription.base import (
    Segment,
    TranscriptionEngine,
    TranscriptionError,
    TranscriptionSettingsError,
    engine_from_settings,
    engine_kinds,
    register_engine,
)
from recorder.transcription.openai_engine import OpenAICompatibleEngine
from recorder.transcription.output import (
    DISCLAIMER,
    format_timestamp,
    merge,
    place,
    to_json,
    to_webvtt,
)
from recorder.transcription.pocketsphinx_engine import PocketSphinxEngine

__all__ = [
    "DISCLAIMER",
    "OpenAICompatibleEngine",
    "PocketSphinxEngine",
    "Segment",
    "TranscriptionEngine",
    "TranscriptionError",
    "TranscriptionSettingsError",
    "engine_from_settings",
    "engine_kinds",
    "format_timestamp",
    "merge",
    "place",
    "register_engine",
    "to_json",
    "to_webvtt",
]
