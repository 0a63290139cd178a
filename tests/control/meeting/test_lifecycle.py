"""control.meeting's services over a real SQLite store, fake workers and a fake clock: the
timers of a meeting's life fire when the clock says so, without sleeping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from config import LimitsConfig
from control.accounts.tokens import Tokens
from control.meeting.attendance import PENDING_GRACE_S, Attendance
from control.meeting.chat import Chat
from control.meeting.conference import Conference
from control.meeting.events import MeetingEvents
from control.meeting.lifecycle import Lifecycle
from control.meeting.limits import LimitsPolicy
from control.meeting.model import LiveMeeting, MeetingRegistry
from control.meeting.moderation import Moderation
from control.meeting.webinar import Webinar
from control.store.base import MeetingRecord
from control.store.sqlite import SqliteStore
from control.tasks import BackgroundTasks
from control.webhooks import WebhookSender
from tests.support.clock import FakeClock
from tests.support.fake_workers import FakeWorkers

pytestmark = pytest.mark.unit

JOIN_TTL_S = 600


@dataclass
class World:
    store: SqliteStore
    clock: FakeClock
    tasks: BackgroundTasks
    registry: MeetingRegistry
    attendance: Attendance
    lifecycle: Lifecycle
    record: MeetingRecord
    host_id: str
    heard: list[str]


class Listener:
    def __init__(self, heard: list[str]) -> None:
        self.heard = heard

    def meeting_started(self, record: MeetingRecord, meeting: LiveMeeting) -> None:
        self.heard.append(f"started {record.id}")

    async def meeting_ended(self, meeting: LiveMeeting, reason: str) -> None:
        self.heard.append(f"ended {meeting.meeting_id} {reason}")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SqliteStore(str(tmp_path / "conclave.db"))
    await store.open()
    clock, tasks, registry = FakeClock(), BackgroundTasks(), MeetingRegistry()
    tokens = Tokens("x" * 48, store, JOIN_TTL_S)
    webhooks = WebhookSender(store)
    events = MeetingEvents(webhooks)
    limits = LimitsPolicy(LimitsConfig(max_meeting_minutes=30), 100)
    conference = Conference(registry=registry, supervisor=FakeWorkers(), tokens=tokens, clock=clock, tasks=tasks)  # type: ignore[arg-type]
    chat = Chat(store, clock, 10)
    attendance = Attendance(store=store, registry=registry, conference=conference, chat=chat, tokens=tokens,
                            limits=limits, events=events, clock=clock, tasks=tasks)  # fmt: skip
    webinar = Webinar(registry=registry, conference=conference, clock=clock)
    moderation = Moderation(store=store, registry=registry, conference=conference, attendance=attendance, events=events,
                            webinar=webinar)  # fmt: skip
    lifecycle = Lifecycle(store=store, registry=registry, conference=conference, attendance=attendance,
                          moderation=moderation, tokens=tokens, limits=limits, events=events, clock=clock,
                          tasks=tasks)  # fmt: skip
    heard: list[str] = []
    lifecycle.add_listener(Listener(heard))
    customer = await store.create_customer("Acme", api_key_hash="x")
    host = await store.create_host(customer.id, "ann@acme.example", "Ann", "hash")
    record = await store.create_meeting(
        meeting_number="12345678901", host_id=host.id, customer_id=customer.id, title="Board", passcode="123456"
    )
    try:
        yield World(store, clock, tasks, registry, attendance, lifecycle, record, host.id, heard)
    finally:
        await tasks.drain(1.0)
        await webhooks.stop()
        await store.close()


async def test_the_duration_limit_ends_the_meeting_when_the_clock_reaches_it(world: World) -> None:
    started = await world.lifecycle.start(world.record, world.host_id, "Ann", None)
    assert started.started_now and world.heard == [f"started {world.record.id}"]
    world.clock.advance(29 * 60)
    await world.tasks.wait(1.0)
    assert await world.store.get_live_session(world.record.id) is not None
    world.clock.advance(61)
    await world.tasks.wait(1.0)
    assert await world.store.get_live_session(world.record.id) is None
    assert world.heard[-1] == f"ended {world.record.id} duration_limit"
    audit = await world.store.query_audit(action="meeting.end", target_id=world.record.id)
    assert audit[0].actor_id == "limits" and audit[0].detail["reason"] == "duration_limit"


async def test_a_join_token_nobody_uses_frees_its_place(world: World) -> None:
    started = await world.lifecycle.start(world.record, world.host_id, "Ann", None)
    host = await world.store.get_participant(started.host.id)
    assert host.state == "admitted"
    world.clock.advance(JOIN_TTL_S + PENDING_GRACE_S - 1)
    await world.tasks.wait(1.0)
    assert (await world.store.get_participant(started.host.id)).state == "admitted"
    world.clock.advance(2)
    await world.tasks.wait(1.0)
    assert (await world.store.get_participant(started.host.id)).state == "left"


async def test_ending_cancels_the_timers(world: World) -> None:
    await world.lifecycle.start(world.record, world.host_id, "Ann", None)
    assert world.clock.pending()  # the duration limit and the host's token
    assert await world.lifecycle.end(world.record.id, "ended_by_host")
    world.clock.advance(24 * 3600)
    await world.tasks.wait(1.0)
    assert world.heard == [f"started {world.record.id}", f"ended {world.record.id} ended_by_host"]
    assert await world.store.query_audit(action="meeting.end", target_id=world.record.id) == []
