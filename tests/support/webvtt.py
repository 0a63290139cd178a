"""A strict WebVTT reader written from the spec, for the transcript tests: it checks the
file as it reads it (AssertionError wherever it is not well-formed).

    notes, cues = parse_webvtt(to_webvtt(segments))   # cues: start, end, speaker, text
"""

from __future__ import annotations

import re

TIMESTAMP = r"(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})"
TIMING = re.compile(rf"^{TIMESTAMP} --> {TIMESTAMP}$")
VOICE = re.compile(r"^<v ([^>]*)>(.*)</v>$")


def seconds_of(hours: str, minutes: str, secs: str, millis: str) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + int(secs) + int(millis) / 1000


def parse_webvtt(text: str) -> tuple[list[str], list[dict]]:
    """(NOTE texts, cues) of a WebVTT file; AssertionError wherever it is not well-formed."""
    assert text.startswith("WEBVTT") and text.split("\n", 1)[0] in ("WEBVTT",), "header"
    blocks = [block for block in text.split("\n\n")[1:] if block.strip()]
    notes, cues = [], []
    previous_start = -1.0
    for block in blocks:
        lines = block.strip("\n").split("\n")
        if lines[0].startswith("NOTE"):
            assert all("-->" not in line for line in lines), "NOTE must not contain -->"
            notes.append("\n".join(lines[1:]) if lines[0] == "NOTE" else lines[0][5:])
            continue
        if "-->" not in lines[0]:
            identifier, lines = lines[0], lines[1:]
            assert identifier and "-->" not in identifier
        timing = TIMING.match(lines[0])
        assert timing, f"malformed cue timing: {lines[0]!r}"
        start = seconds_of(*timing.groups()[:4])
        end = seconds_of(*timing.groups()[4:])
        assert end > start, f"cue ends before it starts: {lines[0]}"
        assert start >= previous_start, "cues out of order"
        previous_start = start
        payload = lines[1:]
        assert len(payload) == 1 and payload[0].strip(), "one non-empty line of cue text"
        voice = VOICE.match(payload[0])
        speaker, words = (voice.group(1), voice.group(2)) if voice else ("", payload[0])
        assert "<" not in words and ">" not in words, "unescaped markup in cue text"
        cues.append({"start": start, "end": end, "speaker": unescape(speaker), "text": unescape(words)})
    return notes, cues


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
