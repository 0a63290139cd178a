"""The meetings' TURN secrets in coturn's user database (the file as coturn reads it; the
managed coturn itself refusing an ended meeting's credential is in test_turn.py)."""

from __future__ import annotations

import os
import sqlite3
import stat

from control.processes.turn_secrets import MeetingTurnSecrets, meeting_secret
from control.processes.turn_settings import REALM


def rows(path) -> set[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return set(db.execute("SELECT realm, value FROM turn_secret"))


def test_each_live_session_has_its_own_secret_derived_from_the_servers():
    one, two = meeting_secret("server", "ls_1"), meeting_secret("server", "ls_2")
    assert one != two and len(one) == 64
    assert meeting_secret("server", "ls_1") == one  # derived, nothing to store
    assert meeting_secret("another server", "ls_1") != one
    assert "server" not in one


def test_granted_while_live_removed_when_ended(tmp_path):
    path = tmp_path / "turn" / "turndb"
    secrets = MeetingTurnSecrets(str(path), "server")
    secrets.reset()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert rows(path) == set()
    first = secrets.grant("ls_1")
    assert secrets.grant("ls_1") == first  # once per live session
    second = secrets.grant("ls_2")
    assert rows(path) == {(REALM, first), (REALM, second)} and secrets.granted == 2
    secrets.revoke("ls_1")
    secrets.revoke("ls_1")  # twice: nothing more
    secrets.revoke("never_granted")
    assert rows(path) == {(REALM, second)} and secrets.granted == 1


def test_a_restart_starts_with_no_secret_of_the_last_run(tmp_path):
    path = tmp_path / "turndb"
    MeetingTurnSecrets(str(path), "server")  # constructing touches nothing
    assert not path.exists()
    before = MeetingTurnSecrets(str(path), "server")
    before.reset()
    before.grant("ls_1")
    after = MeetingTurnSecrets(str(path), "server")
    after.reset()  # the meetings of the last run ended with it
    assert rows(path) == set() and after.granted == 0
    # coturn's other tables are there too (it queries them): the packaged schema's, when installed.
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "turn_secret" in tables
    if os.path.exists("/usr/share/coturn/schema.sql"):
        assert {"turnusers_lt", "allowed_peer_ip", "denied_peer_ip"} <= tables


def test_without_coturns_schema_file_the_secret_table_is_made(tmp_path):
    secrets = MeetingTurnSecrets(str(tmp_path / "turndb"), "server", schema_path=str(tmp_path / "missing.sql"))
    secrets.reset()
    assert rows(tmp_path / "turndb") == set()
    secrets.grant("ls_1")
    assert len(rows(tmp_path / "turndb")) == 1
