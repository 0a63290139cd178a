"""The notice clock: paces every playing announcer of one worker (sans-I/O).

The worker wires it to one loop timer: after anything that may change the next deadline
(a play, a tick) it (re)arms the timer for `next_due`, and when the timer fires it calls
`tick(now)`. Nothing here sleeps, reads a clock or logs.

Deadlines are absolute (a play's start + 20 ms per frame, kept by each announcer), so a
late timer makes the next wait shorter instead of shifting every later frame: no drift.
A tick a little late sends the overdue frames at once; one much later (a stalled loop)
resumes the pace from then on (the announcer's MAX_CATCH_UP_S): no burst, no frame
skipped.
"""

from __future__ import annotations

from collections.abc import Iterable

from sfu.engine.announcer import Announcer
from sfu.engine.consumer import Consumer


class NoticeClock:
    __slots__ = ("_playing", "plays", "packets_sent")

    def __init__(self) -> None:
        self._playing: set[Announcer] = set()  # announcers with a play running or waiting
        self.plays = 0  # accepted plays (WORKER_STATS counter notice_plays)
        self.packets_sent = 0  # RTP their consumers sent (notice_packets_sent)

    def play(self, announcer: Announcer, frames: list[bytes], consumers: Iterable[Consumer], now: float) -> None:
        """Start `frames` on `announcer` to `consumers` at `now` (ValueError: a bad clip)."""
        announcer.play(frames, consumers, now)
        self.plays += 1
        if announcer.next_due is not None:
            self._playing.add(announcer)

    @property
    def next_due(self) -> float | None:
        """When `tick` has something to do next; None when nothing plays or waits (an
        announcer that closed mid-play plays no more: it is dropped at the next tick)."""
        return min((due for a in self._playing if (due := a.next_due) is not None), default=None)

    def tick(self, now: float) -> list[tuple[Announcer, Exception]]:
        """Send every frame due at `now`. Returns the announcers whose play raised, with
        the exception: each is stopped (a bug must not stop other meetings' notices, nor
        repeat 50 times a second) for the caller to report."""
        failed = []
        for announcer in list(self._playing):
            try:
                self.packets_sent += announcer.tick(now)
            except Exception as exc:
                announcer.stop()
                failed.append((announcer, exc))
            if announcer.next_due is None:
                self._playing.discard(announcer)
        return failed
