"""What SqlStore gives the mixins that hold its tables' queries (recordings, deletion,
ingests, viewer tokens): declared once, for the type checker and the reader."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from control.store.sql_rows import Row


class SqlParts:
    # Provided by SqlStore (control.store.sql, see there) and its backend.
    IntegrityError: type[Exception]
    _clock: Callable[[], float]
    _db: Any  # the connection of this thread
    _run: Callable[..., Awaitable[Any]]
    _write: Callable[..., Any]
    _row: Callable[[str, Iterable[Any]], Row | None]
    _rows: Callable[[str, Iterable[Any]], list[Row]]
    _get: Callable[..., Any]
    _require: Callable[[str, str], None]
    _insert: Callable[..., Any]
    _update: Callable[..., Any]
    _stamp_unset: Callable[[str, str, str, dict[str, Any]], None]
    _delete: Callable[[str, str], None]
