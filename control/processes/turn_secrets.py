"""One TURN secret per live meeting, in the managed coturn's own user database.

coturn's `use-auth-secret` accepts a TURN REST API credential whose HMAC matches any of
its realm's secrets; with a `userdb` it reads them from the `turn_secret` table on every
authentication (no restart, no signal). So the managed coturn runs without a static
secret, and control keeps exactly one row per live meeting there: the meeting's secret is
derived from the server's TURN secret and the live session's id (nothing new to store),
written when the meeting's first credential is handed out and deleted when the meeting
ends. A credential therefore stops working when its meeting ends, even before its expiry,
and a credential of an earlier meeting (an earlier live session of the same meeting too)
is refused. While two meetings are live at once coturn cannot tell whose client is whose;
what limits a credential then is that the relay reaches only the SFU's addresses, where
each transport has its own ICE credentials and DTLS (docs/signaling.md, "TURN").

The database file is coturn's (DATA_DIR/turn/turndb, in the 0700 directory, 0600):
control writes it, coturn reads it. Writes are one short SQLite transaction per meeting
start or end.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import sqlite3
from collections.abc import Iterator

from control.processes.turn_settings import REALM

log = logging.getLogger(__name__)

# coturn's SQLite schema as Debian's package ships it (every table coturn queries).
COTURN_SCHEMA = "/usr/share/coturn/schema.sql"
# What coturn needs of it when the packaged file is not there.
MINIMAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS turn_secret (realm varchar(127) default '', value varchar(256),
    primary key (realm, value));
"""
BUSY_TIMEOUT_S = 2.0


def meeting_secret(server_secret: str, live_session_id: str) -> str:
    """The TURN secret of one live session: HMAC of its id under the server's secret."""
    return hmac.new(server_secret.encode(), b"turn-meeting:" + live_session_id.encode(), hashlib.sha256).hexdigest()


class MeetingTurnSecrets:
    """The rows of coturn's `turn_secret` table: one per live meeting that handed out a
    credential. `grant` before a credential is given, `revoke` when the meeting ends."""

    def __init__(self, db_path: str, server_secret: str, schema_path: str = COTURN_SCHEMA) -> None:
        self._db_path = db_path
        self._server_secret = server_secret
        self._schema_path = schema_path
        self._granted: set[str] = set()

    @property
    def granted(self) -> int:
        return len(self._granted)

    def reset(self) -> None:
        """At start, before coturn runs: the database exists with coturn's tables, and no
        secret from before (every meeting ended with the last run)."""
        os.makedirs(os.path.dirname(self._db_path), mode=0o700, exist_ok=True)
        fd = os.open(self._db_path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(self._db_path, 0o600)
        with self._connect() as db:
            db.executescript(self._schema())
            db.execute("DELETE FROM turn_secret")
        self._granted.clear()

    def grant(self, live_session_id: str) -> str:
        """The meeting's secret, in coturn's table from now on (once per live session)."""
        secret = meeting_secret(self._server_secret, live_session_id)
        if live_session_id not in self._granted:
            with self._connect() as db:
                db.execute("INSERT OR IGNORE INTO turn_secret (realm, value) VALUES (?, ?)", (REALM, secret))
            self._granted.add(live_session_id)
        return secret

    def revoke(self, live_session_id: str) -> None:
        """The meeting ended: its credentials are refused from now on."""
        if live_session_id not in self._granted:
            return
        secret = meeting_secret(self._server_secret, live_session_id)
        try:
            with self._connect() as db:
                db.execute("DELETE FROM turn_secret WHERE realm = ? AND value = ?", (REALM, secret))
        except sqlite3.Error as exc:  # the meeting has ended either way; the row goes at the next start
            log.warning("turn: could not remove an ended meeting's secret: %s", exc)
            return
        self._granted.discard(live_session_id)

    def _schema(self) -> str:
        try:
            with open(self._schema_path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            return MINIMAL_SCHEMA
        # coturn's file says CREATE TABLE: make it safe to run on an existing database.
        return text.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One autocommit connection, closed after use (coturn holds its own)."""
        db = sqlite3.connect(self._db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            yield db
        finally:
            db.close()
