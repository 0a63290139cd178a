"""control.meeting.resumption and the reconnect credential (control.accounts.tokens): the
pure checks with given times, then the service over a real SQLite store and a fake clock
(fake workers): a meeting taken up after a restart keeps its duration limit counted from
its start, people who never come back free their places, a credential is traded for a
resumed join token only while its holder is still admitted to the live session."""

from __future__ import annotations

import dataclasses

import pytest

from control.accounts.tokens import ReconnectClaims, TokenError, Tokens
from control.errors import ApiError
from control.meeting.attendance import PENDING_GRACE_S
from control.meeting.resumption import Resumption, rejoin_refusal
from control.store.base import LiveSession, ParticipantRecord
from tests.control.meeting.test_lifecycle import JOIN_TTL_S, World, world  # noqa: F401  (the fixture)

pytestmark = pytest.mark.unit

SECRET = "x" * 48
NOW = 1_800_000_000
CLAIMS = ReconnectClaims("p1", "m1", "lsn1", "Bob", "participant", NOW, NOW + 900)


def tokens() -> Tokens:
    return Tokens(SECRET, None, JOIN_TTL_S)  # type: ignore[arg-type]  # no store: no revocation checks here


# ------------------------------------------------------------------ the credential


def test_a_credential_is_good_until_it_expires_and_only_for_its_meeting() -> None:
    credential = tokens().make_reconnect_credential(CLAIMS)
    assert tokens().verify_reconnect_credential(credential, "m1", NOW + 899) == CLAIMS
    assert tokens().verify_reconnect_credential(credential, "m1", NOW + 904) == CLAIMS  # the leeway
    with pytest.raises(TokenError) as expired:
        tokens().verify_reconnect_credential(credential, "m1", NOW + 906)
    assert expired.value.code == "token_expired"
    with pytest.raises(TokenError) as other:
        tokens().verify_reconnect_credential(credential, "m2", NOW)
    assert other.value.code == "wrong_meeting"


def test_a_credential_signed_elsewhere_or_changed_or_of_another_kind_is_refused() -> None:
    credential = tokens().make_reconnect_credential(CLAIMS)
    forged = Tokens("y" * 48, None, JOIN_TTL_S).make_reconnect_credential(CLAIMS)  # type: ignore[arg-type]
    head, body, signature = credential.split(".")
    changed = ".".join([head, body[:-2] + ("AA" if body[-2:] != "AA" else "BB"), signature])
    join_token = tokens().make_join_token(participant_id="p1", meeting_id="m1", live_session_id="lsn1", name="Bob",
                                          role="participant", now=NOW)  # fmt: skip
    for bad in (forged, changed, join_token, "", "a.b.c", None, 42):
        with pytest.raises(TokenError) as refused:
            tokens().verify_reconnect_credential(bad, "m1", NOW)
        assert refused.value.code == "invalid_token", bad


def test_the_host_keeps_the_sign_in_that_started_the_meeting() -> None:
    host = dataclasses.replace(CLAIMS, role="host", host_session_id="hs1")
    credential = tokens().make_reconnect_credential(host)
    assert tokens().verify_reconnect_credential(credential, "m1", NOW).host_session_id == "hs1"


# ------------------------------------------------------------------ the rule

LIVE = LiveSession("lsn1", "m1", "h1", "c1", started_at=NOW - 60)


def person(**changes: object) -> ParticipantRecord:
    base = ParticipantRecord(id="p1", meeting_id="m1", live_session_id="lsn1", name="Bob", role="participant",
                             state="admitted", joined_at=NOW - 30)  # fmt: skip
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("who", "live", "refusal"),
    [
        (person(), LIVE, None),
        (person(), None, "meeting_ended"),
        (person(), dataclasses.replace(LIVE, id="lsn2"), "meeting_ended"),  # ended and started again
        (None, LIVE, "invalid_credential"),
        (person(meeting_id="m2"), LIVE, "invalid_credential"),
        (person(role="host"), LIVE, "invalid_credential"),
        (person(state="removed", removed=True), LIVE, "removed"),
        (person(state="denied"), LIVE, "removed"),
        (person(state="left"), LIVE, "not_admitted"),  # left by themselves: they join again
        (person(state="waiting"), LIVE, "not_admitted"),
        (person(live_session_id="lsn0"), LIVE, "not_admitted"),
    ],
)
def test_who_may_come_back(who: ParticipantRecord | None, live: LiveSession | None, refusal: str | None) -> None:
    assert rejoin_refusal(CLAIMS, who, live) == refusal


# ------------------------------------------------------------------ the service


def resumption_of(world: World) -> Resumption:  # noqa: F811
    return Resumption(store=world.store, registry=world.registry, attendance=world.attendance,
                      lifecycle=world.lifecycle, tokens=Tokens(SECRET, world.store, JOIN_TTL_S), clock=world.clock,
                      tasks=world.tasks, ttl_s=900)  # fmt: skip


async def test_a_meeting_taken_up_after_a_restart_ends_at_its_limit_from_its_start(world: World) -> None:  # noqa: F811
    session = await world.store.start_live_session(world.record.id, world.host_id, 1)
    world.clock.now = session.started_at + 20 * 60  # the server was down; 20 of its 30 minutes are gone
    assert await resumption_of(world).resume_left_live() == 1
    meeting = world.registry.get(world.record.id)
    assert meeting is not None and meeting.live_session_id == session.id
    assert meeting.ends_at == pytest.approx(session.started_at + 30 * 60)
    world.clock.advance(9 * 60)
    await world.tasks.wait(1.0)
    assert await world.store.get_live_session(world.record.id) is not None
    world.clock.advance(61)
    await world.tasks.wait(1.0)
    assert await world.store.get_live_session(world.record.id) is None
    assert world.heard[-1] == f"ended {world.record.id} duration_limit"


async def test_who_does_not_come_back_after_a_restart_frees_their_place(world: World) -> None:  # noqa: F811
    session = await world.store.start_live_session(world.record.id, world.host_id, 1)
    world.clock.now = session.started_at + 60
    bob = await world.store.add_participant(world.record.id, name="Bob", role="participant", state="admitted",
                                            live_session_id=session.id)  # fmt: skip
    await resumption_of(world).resume_left_live()
    world.clock.advance(JOIN_TTL_S + PENDING_GRACE_S - 1)
    await world.tasks.wait(1.0)
    assert (await world.store.get_participant(bob.id)).state == "admitted"
    world.clock.advance(2)
    await world.tasks.wait(1.0)
    assert (await world.store.get_participant(bob.id)).state == "left"
    assert await world.store.get_live_session(world.record.id) is not None  # the meeting goes on


async def test_a_credential_is_traded_for_a_resumed_token_while_its_holder_is_in(world: World) -> None:  # noqa: F811
    session = await world.store.start_live_session(world.record.id, world.host_id, 1)
    world.clock.now = session.started_at  # the join token it makes is checked against the real clock
    bob = await world.store.add_participant(world.record.id, name="Bob", role="participant", state="admitted",
                                            live_session_id=session.id)  # fmt: skip
    resumption = resumption_of(world)
    now = int(world.clock.time())
    credential = resumption._tokens.make_reconnect_credential(
        ReconnectClaims(bob.id, world.record.id, session.id, "Bob", "participant", now, now + 900))
    rejoined = await resumption.rejoin(world.record, credential)
    claims = Tokens(SECRET, world.store, JOIN_TTL_S).verify_join_token(rejoined.token, meeting_id=world.record.id)
    assert (claims.participant_id, claims.live_session_id, claims.resumed) == (bob.id, session.id, True)

    world.clock.now += 906  # past its expiry (and the leeway)
    with pytest.raises(ApiError) as expired:
        await resumption.rejoin(world.record, credential)
    assert (expired.value.status, expired.value.code) == (401, "token_expired")
    world.clock.now -= 906

    await world.store.update_participant(bob.id, state="left")
    with pytest.raises(ApiError) as left:
        await resumption.rejoin(world.record, credential)
    assert (left.value.status, left.value.code) == (403, "not_admitted")

    await world.lifecycle.end(world.record.id, "ended_by_host")
    with pytest.raises(ApiError) as ended:
        await resumption.rejoin(world.record, credential)
    assert (ended.value.status, ended.value.code) == (409, "meeting_ended")


class Peer:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, message: dict) -> None:
        self.sent.append(message)

    def close(self, code: int, reason: str) -> None:
        pass


async def test_everyone_admitted_gets_a_credential_then_a_fresh_one_every_third_of_its_life(world: World) -> None:  # noqa: F811
    from control.meeting.model import Participant

    session = await world.store.start_live_session(world.record.id, world.host_id, 1)
    world.clock.now = session.started_at
    resumption = resumption_of(world)
    meeting = world.registry.live(world.record, session)
    peer = Peer()
    grace = Participant("p-grace", "Grace", peer)
    meeting.add_participant(grace)
    resumption.participant_joined(meeting, grace)
    resumption.start_refreshing()
    world.clock.advance(299)
    world.clock.advance(2)  # 300 s: a third of 900
    resumption.stop_refreshing()
    world.clock.advance(3600)
    credentials = [m["credential"] for m in peer.sent if m["type"] == "reconnect_credential"]
    assert len(credentials) == 2
    checked = Tokens(SECRET, world.store, JOIN_TTL_S)
    first = checked.verify_reconnect_credential(credentials[0], world.record.id, world.clock.now - 3600 - 301)
    second = checked.verify_reconnect_credential(credentials[1], world.record.id, world.clock.now - 3600)
    assert (first.participant_id, first.live_session_id, first.role) == ("p-grace", session.id, "participant")
    assert second.expires_at == first.expires_at + 300  # renewed when its timer was due
