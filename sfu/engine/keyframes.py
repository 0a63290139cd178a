"""When to ask a publisher for a keyframe: a small state machine with an injected clock."""

from __future__ import annotations


class KeyframeRequester:
    """Rate-limits PLIs toward one producer.

    Consumers that start or lose sync all want a keyframe at once; one PLI per interval
    is enough, and a request made while the limit holds is remembered and sent when the
    interval has passed (`poll`), so no consumer waits forever.
    """

    __slots__ = ("_min_interval", "_last_sent", "_pending")

    def __init__(self, min_interval: float) -> None:
        self._min_interval = min_interval
        self._last_sent: float | None = None
        self._pending = False

    def request(self, now: float) -> bool:
        """True when a PLI should be sent now."""
        if self._last_sent is None or now - self._last_sent >= self._min_interval:
            self._last_sent = now
            self._pending = False
            return True
        self._pending = True
        return False

    @property
    def pending(self) -> bool:
        """A request was deferred by the limit and is not sent yet."""
        return self._pending

    def poll(self, now: float) -> bool:
        """True when a deferred request is now due."""
        if self._pending and (self._last_sent is None or now - self._last_sent >= self._min_interval):
            self._last_sent = now
            self._pending = False
            return True
        return False

    def satisfied(self) -> None:
        """A keyframe arrived: drop any deferred request."""
        self._pending = False
