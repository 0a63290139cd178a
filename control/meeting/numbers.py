"""Meeting numbers: one grammar for every place that reads or writes them.

A meeting number is 11 digits that never start with 0 (so it always reads as 11 digits),
drawn from the OS's CSPRNG and unrelated to time or to other meetings. It is shown as
`123-4567-8901`; in a URL or a form it may be written with or without those two dashes,
and nothing else: `12-3456-78901`, `1234-567-8901` or 11 digits with spaces are not
meeting numbers anywhere (REST paths, the join form, the signaling URL, the CLI).
`PATTERN` is the same grammar for the OpenAPI document.
"""

from __future__ import annotations

import re
import secrets

DIGITS = 11
PATTERN = r"^[1-9]\d{2}-?\d{4}-?\d{4}$"
DISPLAY_PATTERN = r"^[1-9]\d{2}-\d{4}-\d{4}$"
MAX_CHARS = DIGITS + 2
_GRAMMAR = re.compile(PATTERN, re.ASCII)  # \d alone would take any script's digits


def new_number() -> str:
    """11 random digits, the first one not 0."""
    return str(10 ** (DIGITS - 1) + secrets.randbelow(9 * 10 ** (DIGITS - 1)))


def parse(text: object) -> str | None:
    """A meeting number as written by a person or a URL → its 11 digits, or None."""
    if not isinstance(text, str) or len(text) > MAX_CHARS or not _GRAMMAR.match(text):
        return None
    return text.replace("-", "")


def display(digits: str) -> str:
    """12345678901 → 123-4567-8901."""
    return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"


def signaling_url(base_url: str, number: str) -> str:
    """A meeting's signaling WebSocket URL on the server at `base_url` (http(s)://...)."""
    scheme, rest = base_url.rstrip("/").split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/api/v1/meetings/{display(number)}/ws"
