"""What SqliteStore gives the mixins that hold its tables' queries (recordings, deletion,
ingests, viewer tokens): declared once, for the type checker and the reader."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from typing import Any


class SqliteParts:
    # Provided by SqliteStore (control.store.sqlite, see there).
    _clock: Callable[[], float]
    _db: sqlite3.Connection
    _run: Callable[..., Awaitable[Any]]
    _write: Callable[..., Any]
    _row: Callable[[str, Iterable[Any]], sqlite3.Row | None]
    _rows: Callable[[str, Iterable[Any]], list[sqlite3.Row]]
    _get: Callable[..., Any]
    _require: Callable[[str, str], None]
    _insert: Callable[..., Any]
    _update: Callable[..., Any]
    _stamp_unset: Callable[[str, str, str, dict[str, Any]], None]
    _delete: Callable[[str, str], None]
