"""Renegotiation of one subscriber's connection: never two offers outstanding.

A subscriber's receive side changes when tracks come and go. `request()` asks for an
offer: made now when nothing is outstanding, else remembered (`dirty`) and made once the
answer to the outstanding one arrives. A client that never answers is closed after
`answer_timeout_s` (1008): it would otherwise hold its tracks back forever.

States: idle → creating (SUBSCRIBE_OFFER_CREATE on the worker) → awaiting_answer (the
offer was sent) → idle (SUBSCRIBE_ANSWER_SET). With the meeting's `OfferSlots` a
subscriber first takes a slot (idle → queued while the meeting has as many renegotiating
as it allows) and gives it back when idle again: a new publisher's offers go out in
waves, each subscriber's one offer covering whatever changed while it waited. The worker
is reached through the injected `request`, time through the injected clock, so tests
drive it without a network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from common.channel import ChannelError
from common.messages import Message
from control.clock import Clock, Timer
from control.errors import SignalingError
from control.meeting import closecodes
from control.meeting.model import Participant
from control.meeting.offer_slots import OfferSlots
from sfu import api

log = logging.getLogger(__name__)

Request = Callable[[Message], Awaitable[Message]]

def media_error(exc: ChannelError, what: str) -> SignalingError:
    """A worker error as the client sees it: code `media_error`, the worker's code as reason."""
    return SignalingError("media_error", f"{what} failed: {exc.message}", reason=exc.code)


class Negotiation:
    """Serializes renegotiation of one subscriber's connection: never two offers outstanding."""

    __slots__ = ("_participant", "_request", "_clock", "_answer_timeout_s", "state", "dirty", "_task", "offered",
                 "_deadline", "_slots")  # fmt: skip

    IDLE, QUEUED, CREATING, AWAITING_ANSWER = "idle", "queued", "creating", "awaiting_answer"

    def __init__(
        self, participant: Participant, request: Request, clock: Clock, answer_timeout_s: float,
        slots: OfferSlots | None = None,
    ) -> None:  # fmt: skip
        self._participant = participant
        self._slots = slots  # the meeting's renegotiations in flight (None: no limit)
        self._request = request  # a request to the meeting's worker
        self._clock = clock
        self._answer_timeout_s = answer_timeout_s
        self.state = self.IDLE
        self.dirty = False
        self._task: asyncio.Task[None] | None = None
        self.offered = False  # an offer was sent at least once
        self._deadline: Timer | None = None  # for the answer to the offer out

    def request(self) -> None:
        """Something changed in what this subscriber receives: offer it (now or after the answer)."""
        if self._participant.closed or self.state == self.QUEUED:
            return  # queued: the offer made at its turn has this change too
        if self.state != self.IDLE:
            self.dirty = True
            return
        if self._slots is not None and not self._slots.acquire(self):
            self.state = self.QUEUED
            return
        self._start()

    def _start(self) -> None:
        self.state = self.CREATING
        self.dirty = False
        self._task = asyncio.create_task(self._offer(), name=f"offer-{self._participant.participant_id}")

    def _turn(self) -> None:
        """The meeting's slots give this subscriber its turn."""
        if self.state == self.QUEUED and not self._participant.closed:
            self._start()
        else:
            self._release()

    def _release(self) -> None:
        if self._slots is not None:
            for negotiation in self._slots.release(self):
                assert isinstance(negotiation, Negotiation)
                negotiation._turn()

    async def _offer(self) -> None:
        participant = self._participant
        transport_id = participant.subscribe_transport_id
        try:
            if transport_id is None:
                raise ChannelError("no_transport", "subscribe transport is gone")
            offer = await self._request(api.SubscribeOfferCreate(transport_id=transport_id))
        except ChannelError as exc:
            self.state = self.IDLE
            self._release()
            if not participant.closed:
                log.warning("subscribe offer for %s failed: %s", participant.participant_id, exc)
                participant.send(media_error(exc, "subscribe offer").as_message())
            return
        if participant.closed:
            return
        assert isinstance(offer, api.SubscribeOffer)
        participant.forget_subscriptions({info.consumer_id for info in offer.consumers})
        if not offer.consumers:
            self._settle()
            return
        self.state = self.AWAITING_ANSWER
        self.offered = True
        participant.send({"type": "offer", "sdp": offer.sdp, "tracks": [self._describe(c) for c in offer.consumers]})
        # Every later change waits for this answer: a client that never gives it would
        # hold this subscriber's tracks back forever. It is dropped (and may reconnect).
        self._deadline = self._clock.call_later(self._answer_timeout_s, self._no_answer)

    def _no_answer(self) -> None:
        self._deadline = None
        if self.state == self.AWAITING_ANSWER and not self._participant.closed:
            log.warning("participant %s did not answer an offer: closing its socket", self._participant.participant_id)
            self._participant.peer.close(closecodes.POLICY_VIOLATION, "no answer to the offer")

    def _describe(self, info: api.ConsumerInfo) -> dict[str, Any]:
        consumer = self._participant.consumers.get(info.consumer_id)
        track = consumer.track if consumer else None
        return {
            "mid": info.mid,
            "track_id": track.track_id if track else info.producer_id,
            "participant_id": track.participant_id if track else None,
            "source": track.source if track else None,
            "kind": info.kind,
            "active": info.active,
        }

    async def on_answer(self, sdp: str) -> None:
        if self.state != self.AWAITING_ANSWER:
            raise SignalingError("unexpected_answer", "there is no offer waiting for an answer")
        transport_id = self._participant.subscribe_transport_id
        try:
            if transport_id is None:
                raise ChannelError("no_transport", "subscribe transport is gone")
            await self._request(api.SubscribeAnswerSet(transport_id=transport_id, sdp=sdp))
        except ChannelError as exc:
            raise media_error(exc, "answer") from None
        finally:
            self._settle()

    def _settle(self) -> None:
        self._stop_deadline()
        self.state = self.IDLE
        self._release()  # others' turn first: a change meanwhile queues behind them
        if self.dirty:
            self.request()

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def cancel(self) -> None:
        self._stop_deadline()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.state = self.IDLE
        self._release()

    def ensure_offered(self) -> None:
        """An offer unless one was made (or is being made): e.g. for a server track alone,
        whose m-line is in every offer but is not worth one by itself until it plays."""
        if not self.offered and self.state == self.IDLE:
            self.request()
