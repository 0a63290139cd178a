"""The local spool: finished files wait here until customer storage confirms them.

Layout of the spool directory, one pair per pending file:

    <id>.json   sidecar: target key, content type, routing target, size, attempts, ...
    <id>.data   the file itself (moved in, never copied when on the same filesystem)

Ids sort by enqueue time, so uploads go oldest first. The order of file operations makes
a crash at any point recoverable by the rescan that every new Spool does:

    enqueue:   write <id>.json (temp + fsync + rename), then rename the file to <id>.data
    confirmed: remove <id>.json, then <id>.data
    rescan:    *.tmp                      -> removed (an enqueue that never completed)
               <id>.json without .data    -> the move never happened: finish it from the
                                             source path in the sidecar (or drop the entry
                                             if that file is gone too)
               <id>.data without .json    -> already confirmed: removed

The uploader retries each file with capped exponential backoff and jitter until its
backend confirms it (size + SHA-256 verified), and only then deletes the local copy.
Nothing is ever dropped for lack of room: when the spool reaches its limit, `on_full` is
called so the recording can stop with a notice to the host.

Files belong to a group (`group_of`: the recording) and an account (`account_of`: the
customer). `discard(group)` drops a group for good: its pending files are deleted, an
upload in flight is cut off (one that completes anyway is deleted from its storage again),
and files of that group enqueued later are deleted on arrival. Each account may hold
`account_limit_bytes` (`account_full`); `uploaders` uploads run at a time, but an account
with none in flight may always start one: one customer's dead storage neither fills the
spool for everyone nor holds the uploads of the others.

One Spool object per directory at a time. Counters are plain ints for metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import logging
import os
import random
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.storage.base import StorageBackend, StorageError, StoredObject, check_key, fsync_path

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
DATA_SUFFIX = ".data"
TEMPORARY_SUFFIX = ".tmp"
CORRUPT_SUFFIX = ".corrupt"
SIDECAR_VERSION = 1
DISCARD_WAIT_S = 5.0  # how long `discard` lets an upload in flight finish before cutting it off


@dataclass
class SpoolItem:
    """One pending file. `target` is an opaque routing string chosen by the caller (for
    example the customer id) that `backend_for` uses to pick the storage."""

    id: str
    key: str
    content_type: str
    target: str
    size: int
    directory: Path
    source: str = ""
    enqueued_at: float = 0.0  # wall-clock seconds, for people reading the sidecar
    attempts: int = 0
    last_error: str = ""
    due: float = field(default=0.0, repr=False)  # event-loop time of the next attempt
    busy: bool = field(default=False, repr=False)

    @property
    def data_path(self) -> Path:
        return self.directory / f"{self.id}{DATA_SUFFIX}"

    @property
    def sidecar_path(self) -> Path:
        return self.directory / f"{self.id}{SIDECAR_SUFFIX}"

    def sidecar(self) -> dict[str, object]:
        return {
            "version": SIDECAR_VERSION,
            "key": self.key,
            "content_type": self.content_type,
            "target": self.target,
            "size": self.size,
            "source": self.source,
            "enqueued_at": self.enqueued_at,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


def backoff_delay(attempts: int, initial: float, cap: float, unit_random: float) -> float:
    """Seconds to wait after the attempts-th failure: exponential, capped, with "equal
    jitter" (between half and all of the step) so many files do not retry in lockstep."""
    step = min(cap, initial * 2.0 ** min(max(attempts - 1, 0), 60))
    return step / 2 + step / 2 * unit_random


class Spool:
    def __init__(
        self,
        directory: Path,
        backend_for: Callable[[SpoolItem], StorageBackend],
        *,
        limit_bytes: int | None = None,
        on_full: Callable[[int, int], None] | None = None,
        on_uploaded: Callable[[SpoolItem, StoredObject], None] | None = None,
        on_failure: Callable[[SpoolItem, Exception], None] | None = None,
        group_of: Callable[[SpoolItem], str] | None = None,
        account_of: Callable[[SpoolItem], str] | None = None,
        account_limit_bytes: int | None = None,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        uploaders: int = 2,
        attempt_timeout: float = 900.0,
        discard_wait: float = DISCARD_WAIT_S,
        unit_random: Callable[[], float] = random.random,
    ) -> None:
        """Opens (creating if needed) the spool directory and rescans it; blocking, so
        construct it at startup. `on_full(size_bytes, limit_bytes)` is called once each
        time the spool reaches limit_bytes; callbacks must not block. `group_of` and
        `account_of` read an item's group and account (default: its target)."""
        self.directory = Path(directory)
        self._backend_for = backend_for
        self.limit_bytes = limit_bytes
        self.account_limit_bytes = account_limit_bytes
        self._group_of = group_of or _whole_target
        self._account_of = account_of or _whole_target
        self._on_full = on_full
        self._on_uploaded = on_uploaded
        self._on_failure = on_failure
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._uploaders = max(1, uploaders)
        self._attempt_timeout = attempt_timeout
        self._discard_wait = discard_wait
        self._unit_random = unit_random
        self._items: dict[str, SpoolItem] = {}
        self._size = 0
        self._account_sizes: dict[str, int] = {}
        self._account_uploads: dict[str, int] = {}  # uploads in flight per account
        self._uploads: dict[str, asyncio.Future[None]] = {}  # item id -> its upload in flight
        self._discarded: set[str] = set()
        self._full = False
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()  # an upload ended (the drain at stop waits on it)
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._empty = asyncio.Event()
        self._running = False
        # Counters for metrics.
        self.upload_attempts = 0
        self.upload_failures = 0
        self.uploads_completed = 0
        self.bytes_uploaded = 0
        self.files_lost = 0  # a pending file vanished from the spool (someone deleted it)
        self.files_discarded = 0
        for item in _rescan(self.directory):
            self._add(item)
        self._refresh_empty()
        if self._items:
            log.info(
                "spool %s: %d file(s), %d bytes pending from before", self.directory, len(self._items), self._size
            )
        self._check_full()

    def __repr__(self) -> str:
        return f"Spool(directory={str(self.directory)!r}, pending={len(self._items)}, bytes={self._size})"

    # --- what callers use --------------------------------------------------------------------

    async def enqueue(self, path: Path, key: str, content_type: str, target: str = "") -> SpoolItem:
        """Move the finished file at path into the spool, to be uploaded as key.

        Always accepted, even past the limit (the limit triggers on_full; data is never
        dropped). Raises StorageError if the file cannot be moved in."""
        check_key(key)
        move = asyncio.ensure_future(
            asyncio.to_thread(_move_in, self.directory, Path(path), key, content_type, target)
        )
        try:
            # Shielded: once the file is moving in, its bookkeeping happens even if the caller
            # is cancelled (else the next rescan would find, and upload, a file nobody counted).
            item = await asyncio.shield(move)
        except asyncio.CancelledError:
            move.add_done_callback(self._adopt)
            raise
        except OSError as error:
            raise StorageError(f"cannot move {path} into spool {self.directory}: {error}", code="io") from error
        self._admit(item)
        return item

    def _adopt(self, move: asyncio.Future[SpoolItem]) -> None:
        if not move.cancelled() and move.exception() is None:
            self._admit(move.result())

    def _admit(self, item: SpoolItem) -> None:
        if self._group_of(item) in self._discarded:
            _remove_item_files(item)  # a discarded recording's late file: never uploaded
            self.files_discarded += 1
            return
        self._add(item)
        self._refresh_empty()
        self._wake.set()
        self._check_full()

    async def discard(self, group: str) -> tuple[int, int]:
        """Drop `group` for good (see the module's doc); (files, bytes) that went. Returns once
        no upload of it is in flight any more."""
        self._discarded.add(group)
        doomed = [item for item in self._items.values() if self._group_of(item) == group]
        uploads = [self._uploads[item.id] for item in doomed if item.id in self._uploads]
        if uploads:
            # An upload on its way is let finish for a moment (then deleted from the storage
            # again: the server might keep the bytes of a request cut off), then cut off.
            _, unfinished = await asyncio.wait(uploads, timeout=self._discard_wait)
            for upload in unfinished:
                upload.cancel()
            if unfinished:
                await asyncio.wait(unfinished)
        files = size = 0
        for item in doomed:
            if self._items.get(item.id) is not item:
                continue  # its upload finished first (and deleted what it had uploaded)
            await asyncio.to_thread(_remove_item_files, item)
            self._forget(item)
            files += 1
            size += item.size
        self.files_discarded += files
        if files:
            log.info("spool %s: discarded %d file(s), %d bytes, of %s", self.directory, files, size, group)
        return files, size

    def discarded(self, group: str) -> bool:
        return group in self._discarded

    def size_bytes(self) -> int:
        return self._size

    def pending(self) -> list[SpoolItem]:
        return sorted(self._items.values(), key=lambda item: item.id)

    @property
    def full(self) -> bool:
        return self._full

    def account_size(self, account: str) -> int:
        return self._account_sizes.get(account, 0)

    def account_full(self, account: str) -> bool:
        """The account holds its share of the spool (or more): its recordings should stop."""
        limit = self.account_limit_bytes
        return limit is not None and self.account_size(account) >= limit

    def stats(self) -> dict[str, int]:
        return {
            "pending_files": len(self._items),
            "pending_bytes": self._size,
            "upload_attempts": self.upload_attempts,
            "upload_failures": self.upload_failures,
            "uploads_completed": self.uploads_completed,
            "bytes_uploaded": self.bytes_uploaded,
            "files_lost": self.files_lost,
            "files_discarded": self.files_discarded,
        }

    async def wait_until_empty(self) -> None:
        """Return once nothing is pending (wrap in asyncio.timeout to bound it)."""
        await self._empty.wait()

    # --- the uploader ---------------------------------------------------------------------------

    async def run(self, grace: float = 5.0) -> None:
        """Upload until stop() is called. Then, for `grace` seconds, uploads in flight may
        finish and files due now still start; whatever is cut off stays in the spool for
        the next run."""
        if self._running:
            raise RuntimeError("this spool is already running")
        self._running = True
        self._stop.clear()
        self._stopped.clear()
        dispatcher = asyncio.create_task(self._dispatch(), name="spool-dispatcher")
        try:
            await self._stop.wait()
            await self._drain(grace)
        finally:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
            uploads = list(self._uploads.values())
            for upload in uploads:
                upload.cancel()
            await asyncio.gather(*uploads, return_exceptions=True)
            self._running = False
            self._stopped.set()

    async def _drain(self, grace: float) -> None:
        """After stop(): for up to `grace` seconds, what is due now still starts (the files a
        shutdown just queued) and what runs may finish; a file waiting for its backoff is
        left for the next run."""
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while loop.time() < end:
            if not self._uploads and self._next_due(loop.time())[0] is None:
                return
            self._progress.clear()
            try:
                async with asyncio.timeout_at(end):
                    await self._progress.wait()
            except TimeoutError:
                return

    async def stop(self) -> None:
        """Ask run() to finish and wait until it has (returns at once if it is not running)."""
        self._stop.set()
        self._wake.set()
        if self._running:
            await self._stopped.wait()

    async def _dispatch(self) -> None:
        """Start uploads as they fall due, within `_may_start`; each ends by waking us.
        Runs until run() cancels it (after the drain)."""
        loop = asyncio.get_running_loop()
        while True:
            # Clearing before looking means an enqueue (or an upload ending) after the look
            # still wakes us.
            self._wake.clear()
            item, wait = self._next_due(loop.time())
            if item is None:
                # asyncio.timeout, not wait_for: 3.11's wait_for swallows a cancel that
                # arrives as the event is set, and this loop would then never end.
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            self._start_upload(item)

    def _start_upload(self, item: SpoolItem) -> None:
        item.busy = True
        account = self._account_of(item)
        self._account_uploads[account] = self._account_uploads.get(account, 0) + 1
        upload = self._uploads[item.id] = asyncio.ensure_future(self._attempt(item))

        def finished(done: asyncio.Future[None]) -> None:
            item.busy = False
            self._uploads.pop(item.id, None)
            self._account_uploads[account] -= 1
            if not self._account_uploads[account]:
                del self._account_uploads[account]
            if not done.cancelled() and done.exception() is not None:
                log.error("upload of %s failed unexpectedly", item.key, exc_info=done.exception())
            self._wake.set()
            self._progress.set()

        upload.add_done_callback(finished)

    def _may_start(self, account: str) -> bool:
        """`uploaders` uploads at a time; but an account with none in flight may always start
        one, so that a storage that hangs holds its own customer's uploads only."""
        in_flight = self._account_uploads.get(account, 0)
        return in_flight == 0 or len(self._uploads) < self._uploaders

    def _next_due(self, now: float) -> tuple[SpoolItem | None, float | None]:
        """The oldest item due now that may start, else (None, seconds until the next one is
        due; None: wait to be woken)."""
        waiting = [item for item in self._items.values() if not item.busy and self._may_start(self._account_of(item))]
        if not waiting:
            return None, None
        soonest = min(waiting, key=lambda item: (item.due, item.id))
        if soonest.due <= now:
            return soonest, None
        return None, soonest.due - now

    async def _attempt(self, item: SpoolItem) -> None:
        self.upload_attempts += 1
        try:
            backend = self._backend_for(item)
            stored = await asyncio.wait_for(
                backend.put_file(item.data_path, item.key, item.content_type), self._attempt_timeout
            )
            if stored.size != item.size:
                raise StorageError(
                    f"{item.key!r}: backend confirmed {stored.size} bytes, the spooled file has {item.size}",
                    code="verification_failed",
                )
            await asyncio.to_thread(_remove_item_files, item)
        except Exception as error:  # noqa: BLE001 - every failure is retried, none escapes
            await self._after_failure(item, error)
            return
        self._forget(item)
        if self._group_of(item) in self._discarded:
            # Discarded while the bytes were on their way: they go from the storage again.
            await self._delete_uploaded(backend, item)
            return
        self.uploads_completed += 1
        self.bytes_uploaded += stored.size
        log.info("uploaded %s (%d bytes) after %d failed attempt(s)", item.key, stored.size, item.attempts)
        _call_safely(self._on_uploaded, item, stored)

    async def _delete_uploaded(self, backend: StorageBackend, item: SpoolItem) -> None:
        self.files_discarded += 1
        try:
            await asyncio.wait_for(backend.delete(item.key), self._attempt_timeout)
        except Exception as error:  # noqa: BLE001 - control deletes the prefix too
            log.warning("%s was uploaded after its recording was discarded; deleting it failed: %s",
                        item.key, _describe(error))  # fmt: skip

    async def _after_failure(self, item: SpoolItem, error: Exception) -> None:
        self.upload_failures += 1
        if not await asyncio.to_thread(item.data_path.exists):
            self.files_lost += 1
            log.error("spooled file for %s vanished from %s; dropping its entry", item.key, self.directory)
            await asyncio.to_thread(item.sidecar_path.unlink, True)
            self._forget(item)
            _call_safely(self._on_failure, item, error)
            return
        attempts = item.attempts + 1
        delay = backoff_delay(attempts, self._retry_initial, self._retry_max, self._unit_random())
        due = asyncio.get_running_loop().time() + delay
        written = dataclasses.replace(item, attempts=attempts, last_error=_describe(error))
        try:
            await asyncio.to_thread(_write_sidecar, written)  # so attempts survive a restart
        except OSError as sidecar_error:
            log.error("cannot update spool sidecar %s: %s", item.sidecar_path, sidecar_error)
        item.attempts, item.last_error, item.due = attempts, written.last_error, due
        # A warning on the 1st, 2nd, 4th, 8th... failure: visible, without flooding the log.
        level = logging.WARNING if item.attempts & (item.attempts - 1) == 0 else logging.DEBUG
        log.log(
            level,
            "upload of %s failed (attempt %d), retry in %.1f s: %s",
            item.key,
            item.attempts,
            delay,
            item.last_error,
        )
        _call_safely(self._on_failure, item, error)

    # --- bookkeeping -------------------------------------------------------------------------

    def _add(self, item: SpoolItem) -> None:
        self._items[item.id] = item
        self._size += item.size
        account = self._account_of(item)
        self._account_sizes[account] = self._account_sizes.get(account, 0) + item.size

    def _forget(self, item: SpoolItem) -> None:
        if self._items.pop(item.id, None) is not None:
            self._size -= item.size
            account = self._account_of(item)
            left = self._account_sizes.get(account, 0) - item.size
            if left > 0:
                self._account_sizes[account] = left
            else:
                self._account_sizes.pop(account, None)
        self._refresh_empty()
        if self._full and (self.limit_bytes is None or self._size < self.limit_bytes):
            self._full = False
            log.info("spool %s is below its limit again (%d bytes)", self.directory, self._size)

    def _refresh_empty(self) -> None:
        if self._items:
            self._empty.clear()
        else:
            self._empty.set()

    def _check_full(self) -> None:
        if self.limit_bytes is None or self._full or self._size < self.limit_bytes:
            return
        self._full = True
        log.error("spool %s is full: %d bytes pending, limit %d", self.directory, self._size, self.limit_bytes)
        _call_safely(self._on_full, self._size, self.limit_bytes)


# --- file operations (blocking: run in a thread, or at startup) -----------------------------


def _move_in(directory: Path, source: Path, key: str, content_type: str, target: str) -> SpoolItem:
    directory.mkdir(parents=True, exist_ok=True)
    item = SpoolItem(
        id=f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}",
        key=key,
        content_type=content_type,
        target=target,
        size=source.stat().st_size,
        directory=directory,
        source=str(source.resolve()),
        enqueued_at=time.time(),
    )
    _write_sidecar(item)
    try:
        _move_file(source, item.data_path)
    except OSError:
        item.sidecar_path.unlink(missing_ok=True)
        raise
    fsync_path(directory)
    return item


def _move_file(source: Path, destination: Path) -> None:
    try:
        os.rename(source, destination)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        # Another filesystem: copy to a temporary name, make it durable, then rename, and
        # only then remove the source.
        partial = destination.with_name(destination.name + TEMPORARY_SUFFIX)
        with open(source, "rb") as reader, open(partial, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1024 * 1024)
            writer.flush()
            os.fsync(writer.fileno())
        os.rename(partial, destination)
        source.unlink()


def _write_sidecar(item: SpoolItem) -> None:
    partial = item.directory / f"{item.id}{SIDECAR_SUFFIX}{TEMPORARY_SUFFIX}"
    with open(partial, "w", encoding="utf-8") as file:
        json.dump(item.sidecar(), file, indent=1)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, item.sidecar_path)


def _remove_item_files(item: SpoolItem) -> None:
    # Sidecar first: a data file without a sidecar means "confirmed" to the rescan.
    item.sidecar_path.unlink(missing_ok=True)
    item.data_path.unlink(missing_ok=True)


def _rescan(directory: Path) -> list[SpoolItem]:
    directory.mkdir(parents=True, exist_ok=True)
    names = set(os.listdir(directory))
    for name in sorted(names):
        if name.endswith(TEMPORARY_SUFFIX):
            (directory / name).unlink(missing_ok=True)
    items = []
    for name in sorted(n for n in names if n.endswith(SIDECAR_SUFFIX)):
        item = _recover(directory, name[: -len(SIDECAR_SUFFIX)])
        if item is not None:
            items.append(item)
    names = set(os.listdir(directory))  # again: recovery moved and set aside files
    keep = {n[: -len(SIDECAR_SUFFIX)] for n in names if n.endswith(SIDECAR_SUFFIX)}
    set_aside = SIDECAR_SUFFIX + CORRUPT_SUFFIX
    keep |= {n[: -len(set_aside)] for n in names if n.endswith(set_aside)}
    for name in names:
        if name.endswith(DATA_SUFFIX) and name[: -len(DATA_SUFFIX)] not in keep:
            (directory / name).unlink(missing_ok=True)  # confirmed before a crash
    return items


def _recover(directory: Path, item_id: str) -> SpoolItem | None:
    sidecar_path = directory / f"{item_id}{SIDECAR_SUFFIX}"
    try:
        fields = json.loads(sidecar_path.read_text(encoding="utf-8"))
        item = SpoolItem(
            id=item_id,
            key=check_key(fields["key"]),
            content_type=str(fields["content_type"]),
            target=str(fields.get("target", "")),
            size=int(fields["size"]),
            directory=directory,
            source=str(fields.get("source", "")),
            enqueued_at=float(fields.get("enqueued_at", 0.0)),
            attempts=int(fields.get("attempts", 0)),
            last_error=str(fields.get("last_error", "")),
        )
    except (OSError, ValueError, KeyError, TypeError, StorageError) as error:
        # Keep the data for a person to look at; never upload under a guessed key.
        log.error("unreadable spool sidecar %s (%s); set aside as %s", sidecar_path, error, CORRUPT_SUFFIX)
        sidecar_path.rename(sidecar_path.with_name(sidecar_path.name + CORRUPT_SUFFIX))
        return None
    if not item.data_path.exists():
        source = Path(item.source) if item.source else None
        if source is None or not source.is_file():
            log.error("spool entry %s (%s) has no data file; dropping it", item_id, item.key)
            sidecar_path.unlink(missing_ok=True)
            return None
        _move_file(source, item.data_path)  # the crash came between sidecar and move
    item.size = item.data_path.stat().st_size
    return item


def _whole_target(item: SpoolItem) -> str:
    return item.target


def _describe(error: BaseException) -> str:
    if isinstance(error, StorageError):
        return str(error)
    if isinstance(error, TimeoutError):
        return "upload timed out"
    return f"{type(error).__name__}: {error}"


def _call_safely(callback: Callable[..., object] | None, *args: object) -> None:
    # A broken callback must not stop uploads.
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:  # noqa: BLE001
        log.exception("spool callback %r failed", callback)
