"""Renegotiation that scales (issue 16, item 2): how many subscribers of one meeting may
be renegotiating at once.

A new publisher in a meeting of 1,000 changes 1,000 subscribe connections. Offering them
all at once sends 1,000 SUBSCRIBE_OFFER_CREATE requests to the meeting's worker in one
burst, then 1,000 answers to apply, while everything else waits behind them. Instead a
subscriber takes a slot to renegotiate (its offer made, sent, its answer applied) and at
most `limit` hold one; the others wait in order, and each of them still gets one offer
for everything that changed while it waited (control.meeting.negotiation).

Pure: no I/O, no time. The negotiations ask (`acquire`) and give back (`release`); what
`release` returns is whose turn it is now.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

# Renegotiations in flight per meeting: enough that a join storm never waits for a slot
# (each holds one for an offer and its answer, a few tens of milliseconds), few enough
# that a new publisher's offers reach the worker in waves.
OFFER_SLOTS = 32


class OfferSlots:
    """At most `limit` holders at once; the others wait their turn, first come first served."""

    __slots__ = ("limit", "holders", "waiting")

    def __init__(self, limit: int = OFFER_SLOTS) -> None:
        if limit < 1:
            raise ValueError(f"limit: {limit}, expected >= 1")
        self.limit = limit
        self.holders: set[Hashable] = set()
        self.waiting: OrderedDict[Hashable, None] = OrderedDict()

    def acquire(self, key: Hashable) -> bool:
        """True: `key` holds a slot now (or held one already). False: it waits (once, in
        order of asking) until a `release` names it."""
        if key in self.holders:
            return True
        if len(self.holders) < self.limit and not self.waiting:
            self.holders.add(key)
            return True
        self.waiting.setdefault(key, None)
        return False

    def release(self, key: Hashable) -> list[Hashable]:
        """`key` is done (or gone, waiting or not): the keys that hold a slot now in its
        place, in order."""
        self.waiting.pop(key, None)
        self.holders.discard(key)
        granted = []
        while self.waiting and len(self.holders) < self.limit:
            turn, _ = self.waiting.popitem(last=False)
            self.holders.add(turn)
            granted.append(turn)
        return granted
