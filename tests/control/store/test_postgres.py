"""control/store/postgres.py: what is PostgreSQL's own — the dialect bridge (placeholders,
rows, constraint wording, the password kept out of messages) as pure functions, and on a
real server: the cross-node rules under concurrent calls through separate stores (each
its own connections, as separate nodes would be), enforced by the database."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from control.store import AlreadyLive, HostHasLiveMeeting, HostSessionActive, StoreError, StoreStats
from control.store.postgres import PgRow, PostgresStore, redacted, to_pyformat
from control.store.schema import SCHEMA_VERSION, revision_of
from tests.support.stores import direct_connection

pytestmark = pytest.mark.timeout(120)
NODES = 20


# ---------------------------------------------------------------------- pure


@pytest.mark.unit
def test_placeholders_become_pyformat_outside_quotes_and_percent_is_doubled():
    assert (
        to_pyformat("SELECT * FROM t WHERE a = ? AND b IN (?, ?)") == "SELECT * FROM t WHERE a = %s AND b IN (%s, %s)"
    )
    assert to_pyformat("SELECT '?', \"?\" FROM t WHERE a = ?") == "SELECT '?', \"?\" FROM t WHERE a = %s"
    assert (
        to_pyformat("SELECT 'it''s ?' WHERE x LIKE 'a%' AND y = ?") == "SELECT 'it''s ?' WHERE x LIKE 'a%%' AND y = %s"
    )
    assert to_pyformat("SELECT 5 % 2") == "SELECT 5 %% 2"


@pytest.mark.unit
def test_a_row_reads_by_name_and_by_position():
    row = PgRow(("a1", 3), {"id": 0, "n": 1})
    assert (row["id"], row[1], row.keys()) == ("a1", 3, ["id", "n"])


@pytest.mark.unit
def test_the_password_of_a_url_is_never_shown():
    assert (
        redacted("postgresql://app:s3cret@db.example:5432/conclave") == "postgresql://app:***@db.example:5432/conclave"
    )
    assert redacted("postgresql://app@db/conclave") == "postgresql://app@db/conclave"


async def test_the_dialect_bridge_on_a_real_connection(postgres_url):
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        row = await store._run(store._row, "SELECT 'a?%' AS quoted, 5 % 3 AS modulo, ? AS given", ("x",))
        assert (row["quoted"], row["modulo"], row["given"], row[2]) == ("a?%", 2, "x", "x")
    finally:
        await store.close()


@pytest.mark.process
async def test_an_unreachable_server_is_a_store_error_without_the_password(postgres):
    store = PostgresStore(f"postgresql://app:s3cret@127.0.0.1:{postgres.port}/no_such_database")
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert "s3cret" not in str(caught.value) and "no_such_database" in str(caught.value)


# ---------------------------------------------------------------------- on a real server


async def open_stores(url: str, count: int) -> list[PostgresStore]:
    stores = [PostgresStore(url, pool_size=1) for _ in range(count)]
    for store in stores:
        await store.open()
    return stores


async def close_all(stores: list[PostgresStore]) -> None:
    for store in stores:
        await store.close()


async def make_host(store: PostgresStore):
    customer = await store.create_customer("Acme", api_key_hash="k")
    return await store.create_host(customer.id, "ann@example.com", "Ann", "hash")


async def test_concurrent_starts_of_two_meetings_by_one_host_leave_exactly_one_live(postgres_url):
    stores = await open_stores(postgres_url, NODES)
    try:
        host = await make_host(stores[0])
        owner = {"host_id": host.id, "customer_id": host.customer_id, "title": "t", "passcode": "1"}
        meetings = [await stores[0].create_meeting(meeting_number=n, **owner) for n in ("11111111111", "22222222222")]
        results = await asyncio.gather(
            *(store.start_live_session(meetings[i % 2].id, host.id, 1) for i, store in enumerate(stores)),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(r, (HostHasLiveMeeting, AlreadyLive)) for r in losers), losers
        live = await stores[-1].list_live_sessions(host_id=host.id)
        assert [s.meeting_id for s in live] == [winners[0].meeting_id]
        assert [m.id for m in await stores[-1].list_meetings(statuses=["live"])] == [winners[0].meeting_id]
    finally:
        await close_all(stores)


async def test_concurrent_sign_ins_refused_leave_exactly_one_open(postgres_url):
    stores = await open_stores(postgres_url, NODES)
    try:
        host = await make_host(stores[0])
        results = await asyncio.gather(
            *(store.open_host_session(host.id, f"s{i}", policy="refuse") for i, store in enumerate(stores)),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(r, HostSessionActive) for r in results if isinstance(r, BaseException))
        with direct_connection(stores[0]) as (conn, _):
            open_ids = [r[0] for r in conn.execute("SELECT id FROM host_session WHERE ended_at IS NULL")]
        assert open_ids == [winners[0][0].id]
    finally:
        await close_all(stores)


async def test_concurrent_sign_ins_replacing_leave_exactly_one_open(postgres_url):
    stores = await open_stores(postgres_url, NODES)
    try:
        host = await make_host(stores[0])
        results = await asyncio.gather(
            *(store.open_host_session(host.id, f"s{i}", policy="replace") for i, store in enumerate(stores))
        )
        # As if one after the other: each replaced what was open before it, the last stays.
        replaced = [old.id for _, olds in results for old in olds]
        assert len(replaced) == NODES - 1 and len(set(replaced)) == NODES - 1
        with direct_connection(stores[0]) as (conn, _):
            open_ids = [r[0] for r in conn.execute("SELECT id FROM host_session WHERE ended_at IS NULL")]
        assert len(open_ids) == 1 and open_ids[0] not in replaced
    finally:
        await close_all(stores)


async def test_a_write_refused_for_a_conflict_runs_again_and_is_counted(postgres_url):
    store = PostgresStore(postgres_url, pool_size=1)
    await store.open()
    calls = []

    def write() -> str:
        calls.append(1)
        store._db.execute("INSERT INTO customer (id, name, created_at) VALUES (?, 'Acme', 1)", (f"c{len(calls)}",))
        if len(calls) == 1:  # what PostgreSQL raises when a concurrent transaction got there first
            raise psycopg.errors.SerializationFailure("could not serialize access")
        return "done"

    try:
        assert await store._run(store._write, write) == "done"
        assert len(calls) == 2 and store.stats() == StoreStats("postgresql", 1)
        # The first run was rolled back: only the second one's row is there.
        assert [c.id for c in await store.list_customers()] == ["c2"]
    finally:
        await store.close()


async def test_a_lost_connection_fails_one_call_and_the_next_connects_again(postgres_url):
    store = PostgresStore(postgres_url, pool_size=1)
    await store.open()
    try:
        customer = await store.create_customer("Acme", api_key_hash="k")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid != pg_backend_pid()"
            ).fetchall()
        assert ended  # the store's connection
        with pytest.raises(StoreError, match="lost"):
            await store.get_customer(customer.id)
        assert (await store.get_customer(customer.id)).name == "Acme"
    finally:
        await store.close()


async def test_nodes_starting_together_on_an_empty_database_migrate_one_after_the_other(postgres):
    """The advisory lock: without it, concurrent CREATE TABLEs of the baseline collide."""
    url = postgres.new_database(empty=True)
    stores = [PostgresStore(url, pool_size=1) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert [await store.schema_version() for store in stores] == [SCHEMA_VERSION] * 4
    finally:
        await close_all(stores)
        postgres.drop_database(url)


async def test_a_newer_schema_is_refused(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (revision_of(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match="newer"):
        await PostgresStore(postgres_url).open()


async def test_nodes_starting_together_on_an_empty_database_make_one_first_host(postgres, tmp_path):
    """control.accounts.bootstrap.first_start on three stores at once: each sees no customer,
    one makes the first host, the others give way (host emails are unique) and leave
    nothing behind."""
    from control.accounts.bootstrap import DEFAULT_HOST_EMAIL, INITIAL_PASSWORD_FILE, first_start

    url = postgres.new_database(empty=True)
    stores = [PostgresStore(url, pool_size=1) for _ in range(3)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        directories = [tmp_path / f"node{n}" for n in range(3)]
        for directory in directories:
            directory.mkdir()
        await asyncio.gather(*(first_start(store, str(d)) for store, d in zip(stores, directories)))
        customers = await stores[0].list_customers()
        assert [c.name for c in customers] == ["Default"]
        hosts = await stores[1].list_hosts(customers[0].id)
        assert [h.email for h in hosts] == [DEFAULT_HOST_EMAIL]
        assert sum((d / INITIAL_PASSWORD_FILE).exists() for d in directories) == 1
    finally:
        await close_all(stores)
        postgres.drop_database(url)
