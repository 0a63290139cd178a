"""What every transcription engine is, and the registry that builds one from settings.

An engine turns one participant's audio into timed text. Times are seconds from the start
of the audio it was given; `recorder.transcription.output.place` moves them onto the
meeting timeline and names the speaker. Adding an engine is one class:

    @register_engine("myservice")
    class MyServiceEngine:
        name = "myservice"
        @classmethod
        def from_settings(cls, settings): ...
        async def transcribe(self, pcm, sample_rate, hints): ...
        async def close(self): ...

(and one import line in `recorder/transcription/__init__.py` so that it registers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class Segment:
    """One stretch of speech: start/end in seconds, its text, who said it ("" = unknown)."""

    start: float
    end: float
    text: str
    speaker: str = ""


class TranscriptionError(Exception):
    """An engine could not transcribe (service unreachable, refused, malformed answer)."""


class TranscriptionSettingsError(ValueError):
    """Engine settings are invalid; the message names the setting, never its value."""


@runtime_checkable
class TranscriptionEngine(Protocol):
    name: str

    async def transcribe(
        self, pcm: np.ndarray, sample_rate: int, hints: Sequence[str]
    ) -> list[Segment]:
        """Segments of pcm (mono, or frames x channels; int16 or float in [-1, 1])."""
        ...

    async def close(self) -> None:
        """Release threads, sessions and models. Idempotent."""
        ...


_EngineT = TypeVar("_EngineT")
_REGISTRY: dict[str, Callable[[Mapping[str, Any]], TranscriptionEngine]] = {}


def register_engine(kind: str) -> Callable[[_EngineT], _EngineT]:
    """Class decorator: settings {"kind": kind, ...} build this engine."""

    def decorate(cls: _EngineT) -> _EngineT:
        if kind in _REGISTRY:
            raise ValueError(f"transcription engine kind {kind!r} is registered twice")
        _REGISTRY[kind] = cls.from_settings  # type: ignore[attr-defined]
        return cls

    return decorate


def engine_kinds() -> list[str]:
    return sorted(_REGISTRY)


def engine_from_settings(settings: Mapping[str, Any]) -> TranscriptionEngine:
    """The engine that settings name ({"kind": ...}, default "pocketsphinx")."""
    kind = settings.get("kind", "pocketsphinx")
    factory = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if factory is None:
        raise TranscriptionSettingsError(
            f"transcription engine kind must be one of {', '.join(engine_kinds())}, not {kind!r}"
        )
    return factory({name: value for name, value in settings.items() if name != "kind"})


def check_settings(
    kind: str, settings: Mapping[str, Any], required: set[str], optional: set[str]
) -> None:
    """Unknown or missing keys are errors naming the key (values may be secrets)."""
    unknown = sorted(set(settings) - required - optional)
    if unknown:
        raise TranscriptionSettingsError(f"unknown {kind} setting(s): {', '.join(unknown)}")
    missing = sorted(name for name in required if settings.get(name) in (None, ""))
    if missing:
        raise TranscriptionSettingsError(f"missing {kind} setting(s): {', '.join(missing)}")
