"""This node's load as the registry publishes it, from what control already has: its live
meetings and participants, and the SFU workers' CPU seconds and packets sent (rates over
the last two samples). Pure: it is given the time and the workers' readings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkerReading:
    index: int
    cpu_seconds: float  # the process's CPU time so far
    packets_sent: int  # its packets sent so far (across restarts: never goes back)


class LoadMeter:
    """The busiest worker's CPU share and the node's packets/s between two updates."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, WorkerReading]] = {}
        self.cpu = 0.0
        self.packets_per_s = 0.0

    def update(self, now: float, readings: Iterable[WorkerReading]) -> None:
        busiest, packets, seen = 0.0, 0.0, {}
        for reading in readings:
            seen[reading.index] = (now, reading)
            previous = self._last.get(reading.index)
            if previous is None or now <= previous[0]:
                continue
            elapsed = now - previous[0]
            cpu = reading.cpu_seconds - previous[1].cpu_seconds
            if cpu >= 0:  # a restarted worker's CPU time starts again from 0: no rate this once
                busiest = max(busiest, min(cpu / elapsed, 1.0))
            packets += max(reading.packets_sent - previous[1].packets_sent, 0) / elapsed
        self._last = seen
        self.cpu, self.packets_per_s = busiest, packets
