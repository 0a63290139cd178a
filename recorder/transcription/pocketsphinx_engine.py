"""The offline default engine: pocketsphinx 5 with the English model it ships.

Per call (all of it in a worker process, `pocketsphinx_worker`, never on the event loop):
1. the audio becomes 16 kHz mono int16 (`audio.to_speech_pcm`);
2. pocketsphinx's endpointer (WebRTC-style VAD with a 0.3 s decision window) cuts it into
   speech regions, whose start/end become the segments' times;
3. each region (with a little audio either side, so the decoder sees silence around the
   words) is decoded:
   - with hints: first against a JSGF grammar whose only sentences are the hint phrases.
     The grammar is a closed set, so its result is used only when the search ends in the
     grammar's final state on a whole hint phrase AND the region is about as long as that
     phrase can be spoken; anything else falls back to the language model. The grammar
     search runs with wide beams, which is what lets other speech leave it: see
     `build_grammar` for the measurements. On espeak-ng speech the default LM turns "the
     meeting is being recorded" into "the the lord"; the grammar gets it exactly.
   - without hints (or on fallback): the n-gram language model shipped with pocketsphinx.

Known limits, worth knowing before trusting a transcript: the shipped acoustic model is
weak on synthetic and noisy speech; a close paraphrase of a hint can come out as the
hint; a hint spoken inside a longer sentence is either taken for the whole region (when
the rest is short: "... recorded on tuesday" -> the hint) or lost to the LM; short
one-word hints (names) are often missed; hint words missing from the pronouncing
dictionary are skipped (logged, never guessed).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recorder.transcription.audio import SPEECH_RATE, check_pcm, to_speech_pcm
from recorder.transcription.base import Segment, check_settings, register_engine

if TYPE_CHECKING:
    from recorder.transcription.pocketsphinx_worker import WorkerProcess

log = logging.getLogger(__name__)

SEARCH_LM = "_default"  # pocketsphinx's name for the search of the configured LM
MAX_HINTS = 500
MAX_HINT_WORDS = 16
# A hint phrase accepted from the grammar must fit the region it fills: at a nominal
# 80 ms per phone, the region may be this much shorter or longer than the phrase.
PHONE_SECONDS = 0.08
MIN_LENGTH_RATIO = 0.4
MAX_LENGTH_RATIO = 2.2
GRAMMAR_BEAMS = {"beam": 1e-90, "pbeam": 1e-90, "wbeam": 1e-70, "lpbeam": 1e-70}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_FILLERS = re.compile(r"^(<.*>|\[.*\]|\+\+?.*\+\+?)$")
_ALTERNATE = re.compile(r"\(\d+\)$")


@dataclass(frozen=True, slots=True)
class SpeechRegion:
    """Sample indices [first, last) of one stretch of speech in the 16 kHz audio."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class HintGrammar:
    search: str  # the decoder's search name for this grammar
    phrases: dict[str, str]  # normalized phrase -> the hint as given
    phones: dict[str, int]  # normalized phrase -> its number of phones


@register_engine("pocketsphinx")
class PocketSphinxEngine:
    """Offline speech-to-text; with hints, decodes against a grammar of them first.

    Decoding runs in child processes (`pocketsphinx_worker`), at most max_parallel at a
    time, each keeping its loaded model between calls.
    """

    name = "pocketsphinx"

    def __init__(self, *, max_parallel: int = 1, pad_seconds: float = 0.25) -> None:
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.max_parallel = max_parallel
        self.pad_seconds = pad_seconds
        self._slots = asyncio.Semaphore(max_parallel)
        self._idle: list[WorkerProcess] = []
        self._workers: set[WorkerProcess] = set()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> PocketSphinxEngine:
        check_settings("pocketsphinx", settings, set(), {"max_parallel", "pad_seconds"})
        options = {name: settings[name] for name in ("max_parallel", "pad_seconds") if name in settings}
        return cls(**options)

    def __repr__(self) -> str:
        return f"PocketSphinxEngine(max_parallel={self.max_parallel})"

    def worker_pids(self) -> list[int]:
        return sorted(worker.pid for worker in self._workers)

    async def transcribe(
        self, pcm: np.ndarray, sample_rate: int, hints: Sequence[str] = ()
    ) -> list[Segment]:
        samples = check_pcm(pcm, sample_rate)  # bad input is the caller's ValueError, here
        async with self._slots:
            if self._closed:
                raise RuntimeError("the engine is closed")
            worker = self._idle.pop() if self._idle else await self._start_worker()
            try:
                return await worker.transcribe(
                    samples, int(sample_rate), [str(hint) for hint in hints], self.pad_seconds
                )
            finally:
                # A worker that died, or was interrupted mid-exchange (cancellation), is
                # in an unknown state: stop it; the next call starts a fresh one.
                if worker.reusable and not self._closed:
                    self._idle.append(worker)
                else:
                    self._workers.discard(worker)
                    await asyncio.shield(worker.stop(grace_seconds=0))

    async def close(self) -> None:
        """Stop every worker process; a transcription in progress fails (TranscriptionError)."""
        self._closed = True
        self._idle.clear()
        workers, self._workers = list(self._workers), set()
        await asyncio.gather(*(worker.stop() for worker in workers))

    async def _start_worker(self) -> WorkerProcess:
        # Imported here, not at the top: the worker module is also the child's __main__,
        # and importing it with the package first would make runpy run it twice.
        from recorder.transcription.pocketsphinx_worker import WorkerProcess

        worker = await WorkerProcess.start()
        self._workers.add(worker)
        return worker


# --- in the worker process ------------------------------------------------------------

_state: dict[str, Any] = {}  # this process's decoder and the grammars it has built


def transcribe_blocking(
    pcm: np.ndarray, sample_rate: int, hints: tuple[str, ...], pad_seconds: float = 0.25
) -> list[Segment]:
    """The whole transcription of one audio, synchronously (the worker's entry point)."""
    speech = to_speech_pcm(pcm, sample_rate)
    decoder = _decoder()
    grammar = _grammar(decoder, hints) if hints else None
    pad = int(pad_seconds * SPEECH_RATE)
    segments = []
    for region in speech_regions(speech):
        chunk = speech[max(0, region.first - pad) : min(speech.size, region.last + pad)]
        # Times come from the endpointer: the decoder's word times are no better (the
        # grammar search stretches words over silence, the LM drops misheard words).
        start, end = region.first / SPEECH_RATE, region.last / SPEECH_RATE
        text = _decode_hint(decoder, grammar, chunk, end - start) if grammar else None
        if text is None:
            text = _decode_lm(decoder, chunk)
        if text:
            segments.append(Segment(start=round(start, 3), end=round(end, 3), text=text))
    return segments


def _decoder() -> Any:
    decoder = _state.get("decoder")
    if decoder is None:
        from pocketsphinx import Decoder

        # fsgusefiller=False: with filler words allowed at every grammar state the
        # search let them swallow speech and missed exact hints (measured).
        decoder = _state["decoder"] = Decoder(loglevel="FATAL", fsgusefiller=False)
        _state["grammars"] = {}
    return decoder


def _grammar(decoder: Any, hints: tuple[str, ...]) -> HintGrammar | None:
    grammars: dict[str, HintGrammar | None] = _state["grammars"]
    key = hashlib.sha256("\n".join(hints).encode()).hexdigest()[:16]
    if key not in grammars:
        if len(grammars) >= 8:  # meetings come and go: forget old grammars
            decoder.activate_search(SEARCH_LM)
            for old in grammars.values():
                if old is not None:
                    decoder.remove_search(old.search)
            grammars.clear()
        grammars[key] = build_grammar(decoder, f"hints_{key}", hints)
    return grammars[key]


def _decode_hint(decoder: Any, grammar: HintGrammar, chunk: np.ndarray, seconds: float) -> str | None:
    decoder.activate_search(grammar.search)
    hypothesis = _decode(decoder, chunk)
    phrase = " ".join(_words(hypothesis.hypstr)) if hypothesis is not None else ""
    if phrase not in grammar.phrases:
        return None  # no final state reached (or a partial path): not a hint
    expected = grammar.phones[phrase] * PHONE_SECONDS
    if not MIN_LENGTH_RATIO * expected <= seconds <= MAX_LENGTH_RATIO * expected:
        return None  # the region is not the length of that phrase: let the LM speak
    return grammar.phrases[phrase]


def _decode_lm(decoder: Any, chunk: np.ndarray) -> str:
    decoder.activate_search(SEARCH_LM)
    hypothesis = _decode(decoder, chunk)
    return " ".join(_words(hypothesis.hypstr)) if hypothesis is not None else ""


def _decode(decoder: Any, chunk: np.ndarray) -> Any:
    decoder.start_utt()
    decoder.process_raw(chunk.astype("<i2", copy=False).tobytes(), full_utt=True)
    decoder.end_utt()
    return decoder.hyp()


def _words(text: str) -> list[str]:
    return [_ALTERNATE.sub("", w) for w in text.split() if not _FILLERS.match(w)]


def normalize_phrase(text: str) -> list[str]:
    """Lower-case words of a hint as the dictionary spells them ("Bob's" -> "bob's")."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def build_grammar(decoder: Any, search: str, hints: Sequence[str]) -> HintGrammar | None:
    """Register a JSGF grammar of the hints' phrases; None if no hint is usable."""
    phrases: dict[str, str] = {}
    phones: dict[str, int] = {}
    skipped = 0
    for hint in list(hints)[:MAX_HINTS]:
        words = normalize_phrase(hint)
        if not words or len(words) > MAX_HINT_WORDS:
            skipped += 1
            continue
        pronunciations = [decoder.lookup_word(word) for word in words]
        if any(p is None for p in pronunciations):
            skipped += 1  # a word the dictionary cannot pronounce: never guessed
            continue
        phrase = " ".join(words)
        phrases.setdefault(phrase, hint.strip())
        phones[phrase] = sum(len(p.split()) for p in pronunciations)
    if skipped:
        log.info(
            "%d of %d transcription hints skipped (words not in the dictionary)",
            skipped,
            len(hints),
        )
    if not phrases:
        return None
    # The grammar's search gets wider beams than pocketsphinx's defaults (the LM search,
    # built at start-up, keeps its own). Measured on 45 espeak-ng clips (5 voices, 4 hints,
    # 5 other sentences): default beams 11 hints exact, 4 other sentences taken for a
    # hint; these beams 13 exact, 1 (a paraphrase: "the meeting is recorded"); and on 36
    # clips through Opus at 24/64 kbit/s, 12 of 12 exact and 0 false instead of 13 false.
    # With wide beams the search keeps the paths that leave the grammar, so an unrelated
    # sentence ends off the final state (rejected) instead of being squeezed into a hint.
    saved = {name: decoder.config[name] for name in GRAMMAR_BEAMS}
    try:
        for name, value in GRAMMAR_BEAMS.items():
            decoder.config[name] = value
        decoder.add_jsgf_string(search, jsgf_of(phrases))
    finally:
        for name, value in saved.items():
            decoder.config[name] = value
    return HintGrammar(search=search, phrases=phrases, phones=phones)


def jsgf_of(phrases: Mapping[str, str]) -> str:
    """A JSGF grammar whose sentences are exactly the given normalized phrases."""
    alternatives = " | ".join(f"( {phrase} )" for phrase in sorted(phrases))
    return f"#JSGF V1.0;\ngrammar hints;\npublic <hint> = {alternatives};\n"


def speech_regions(speech: np.ndarray, max_region_seconds: float = 30.0) -> list[SpeechRegion]:
    """Where speech is in 16 kHz int16 audio, by pocketsphinx's endpointer."""
    from pocketsphinx import Endpointer

    endpointer = Endpointer(sample_rate=SPEECH_RATE)
    frame = endpointer.frame_bytes // 2
    padded = np.zeros(-(-speech.size // frame) * frame, dtype="<i2")
    padded[: speech.size] = speech
    raw = padded.tobytes()
    regions: list[SpeechRegion] = []
    in_speech = False
    for offset in range(0, len(raw), frame * 2):
        if endpointer.process(raw[offset : offset + frame * 2]) is not None and not in_speech:
            in_speech = True
        if in_speech and not endpointer.in_speech:
            in_speech = False
            regions.append(_region(endpointer.speech_start, endpointer.speech_end, speech.size))
    if in_speech:  # the audio ends while someone speaks
        regions.append(_region(endpointer.speech_start, speech.size / SPEECH_RATE, speech.size))
    return [piece for region in regions for piece in _split(region, max_region_seconds)]


def _region(start: float, end: float, size: int) -> SpeechRegion:
    first = min(size, max(0, int(round(start * SPEECH_RATE))))
    return SpeechRegion(first, min(size, max(first, int(round(end * SPEECH_RATE)))))


def _split(region: SpeechRegion, max_seconds: float) -> list[SpeechRegion]:
    """Long monologues in pieces, so each segment's times stay meaningful."""
    limit = max(1, int(max_seconds * SPEECH_RATE))
    return [
        SpeechRegion(first, min(region.last, first + limit))
        for first in range(region.first, region.last, limit)
    ]
