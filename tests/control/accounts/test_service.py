"""Host sign-ins expire when idle by their stored last use, so the rule holds after a
restart of control (and on every node sharing the store), not from the process's start."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.accounts.service import HOST_SESSION_TOUCH_S, Accounts
from control.store.sqlite import SqliteStore

pytestmark = pytest.mark.unit

IDLE_S = 3600.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def signed_in_host(store: SqliteStore) -> str:
    customer = await store.create_customer("Acme", api_key_hash="0" * 64)
    host = await store.create_host(customer.id, "ann@acme.example", "Ann", "unused-hash")
    session, _ = await store.open_host_session(host.id, "s" * 64, policy="replace")
    return session.id


async def test_idle_expiry_counts_from_the_last_use_across_a_restart(tmp_path: Path):
    clock = Clock(1_000_000.0)
    store = SqliteStore(str(tmp_path / "conclave.db"), clock=clock)
    await store.open()
    try:
        session_id = await signed_in_host(store)
        before = Accounts(store, "operator-key", "replace", idle_s=IDLE_S, clock=clock)
        clock.now += IDLE_S / 2
        assert (await before.host_session_in_use(session_id)).active  # a use, stored
        clock.now += IDLE_S - 10
        restarted = Accounts(store, "operator-key", "replace", idle_s=IDLE_S, clock=clock)
        assert (await restarted.host_session_in_use(session_id)).active  # idle IDLE_S - 10
        clock.now += IDLE_S + HOST_SESSION_TOUCH_S
        again = Accounts(store, "operator-key", "replace", idle_s=IDLE_S, clock=clock)
        ended = await again.host_session_in_use(session_id)
        assert (ended.active, ended.end_reason) == (False, "expired")
    finally:
        await store.close()


async def test_a_restart_does_not_give_an_idle_sign_in_a_fresh_start(tmp_path: Path):
    clock = Clock(1_000_000.0)
    store = SqliteStore(str(tmp_path / "conclave.db"), clock=clock)
    await store.open()
    try:
        session_id = await signed_in_host(store)  # signed in, never used since
        clock.now += IDLE_S - 10
        restarted = Accounts(store, "operator-key", "replace", idle_s=IDLE_S, clock=clock)  # control restarts
        clock.now += 20
        ended = await restarted.host_session_in_use(session_id)
        assert (ended.active, ended.end_reason) == (False, "expired")
    finally:
        await store.close()


async def test_uses_are_written_at_most_once_per_touch_interval(tmp_path: Path):
    clock = Clock(1_000_000.0)
    store = SqliteStore(str(tmp_path / "conclave.db"), clock=clock)
    await store.open()
    try:
        session_id = await signed_in_host(store)
        accounts = Accounts(store, "operator-key", "replace", idle_s=IDLE_S, clock=clock)
        for _ in range(10):
            clock.now += HOST_SESSION_TOUCH_S / 10
            await accounts.host_session_in_use(session_id)
        stored = await store.get_host_session(session_id)
        assert stored.last_used_at == pytest.approx(1_000_000.0 + HOST_SESSION_TOUCH_S)
    finally:
        await store.close()
