"""Logging for every Conclave process (control, SFU workers, the recorder): one event per
line, as text or JSON (`logging.format`), levels per component (`logging.levels`), and
context fields bound per task (`bind`: the REST request's id, the meeting number and the
participant id of a signaling socket) added to every line logged in that task.

Secrets are kept out of log lines by construction (settings never log their secret
values; tokens and passwords are not logged); as a second line of defence every message
is passed through `redact`, which blanks what looks like a bearer token, a JWT, a host
session token, a `token=`/`password=`/`secret=` parameter or a URL's user:password.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

CONTEXT_FIELDS = ("request_id", "meeting", "participant")
LEVELS = ("debug", "info", "warning", "error")
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("conclave_log_context", default={})

_SECRET = re.compile(
    r"eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"  # a JWT
    r"|\b(?:hs|ck|op)_[A-Za-z0-9_-]{12,}"  # session, API and operator keys of ours
    r"|(?i:bearer)\s+[^\s,;]+"
    r"|(?i:\b(?:token|password|passcode|secret|api_key|key|sig|signature)=)[^&\s,;\"']+"
    r"|(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"  # the user:password of a URL (a database URL)
)


def redact(text: str) -> str:
    """`text` with anything that looks like a credential replaced by [redacted]."""
    return _SECRET.sub(_blank, text)


def _blank(match: re.Match[str]) -> str:
    found = match.group(0)
    if "=" in found and not found.startswith("eyJ"):
        return found.split("=", 1)[0] + "=[redacted]"
    if found.lower().startswith("bearer"):
        return "Bearer [redacted]"
    return "[redacted]"


def bind(**fields: str | None) -> contextvars.Token[dict[str, str]]:
    """Add context fields to every line logged from this task (and tasks it starts) on;
    `unbind(token)` restores the previous ones."""
    merged = {**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}}
    return _context.set(merged)


def unbind(token: contextvars.Token[dict[str, str]]) -> None:
    _context.reset(token)


def context() -> dict[str, str]:
    return dict(_context.get())


class _ContextFilter(logging.Filter):
    """Puts the bound context on each record (`record.conclave_context`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "conclave_context"):
            record.conclave_context = _context.get()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "process": self._process,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        entry.update(getattr(record, "conclave_context", {}))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__(f"%(asctime)s {process} %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        fields = getattr(record, "conclave_context", {})
        if fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return line


def parse_levels(levels: Iterable[str]) -> dict[str, str]:
    """`logging.levels` entries, "logger=level" (e.g. "sfu.worker=debug"), as a dict."""
    parsed = {}
    for entry in levels:
        name, _, level = entry.partition("=")
        if not name.strip() or level.strip().lower() not in LEVELS:
            raise ValueError(f"expected LOGGER=LEVEL with LEVEL one of {', '.join(LEVELS)}, got {entry!r}")
        parsed[name.strip()] = level.strip().lower()
    return parsed


def setup(process: str, level: str, fmt: str = "text", levels: Iterable[str] = ()) -> None:
    """Root logging to stderr for `process` (its name on each line), at `level`, with the
    per-logger `levels` over it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process) if fmt == "json" else TextFormatter(process))
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, component_level in parse_levels(levels).items():
        logging.getLogger(name).setLevel(component_level.upper())
