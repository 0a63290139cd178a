"""What control keeps in memory per participant of a live meeting (issue 16 item 4).

    python -m bench.control_memory [--sizes 100,300,1000] [--speakers 2]

A webinar is built in-process: control's conference and webinar services over fake
workers (tests.support.fake_workers: no process, no socket), a host and `--speakers`
speakers publishing a microphone and a camera each, then N attendees joining one after
another. tracemalloc counts what stays allocated by control's own code (files under
control/) once they are all in: the participants, their subscriptions (one per track),
negotiations, the meeting's bookkeeping. Messages sent to the attendees are dropped on
arrival, as a socket that writes them out would, so what is counted is what control
keeps, not what it sends. Reported: bytes per participant at each N, and the ratio of
the largest N's to the smallest's (1.0: exactly linear in N).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import sys
import tracemalloc
from typing import Any

from config import LimitsConfig
from control.accounts.tokens import Tokens
from control.meeting.conference import Conference
from control.meeting.limits import MeetingLimits
from control.meeting.model import LiveMeeting, MeetingRegistry, Participant
from control.meeting.webinar import Webinar
from control.store.base import LiveSession, MeetingRecord
from control.tasks import BackgroundTasks
from tests.support.clock import FakeClock
from tests.support.fake_workers import FakeWorkers

CONTROL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "control")
HOST_GRANTS = {"publish": True, "subscribe": True, "chat": True, "screen": True, "moderate": True}


class DroppingPeer:
    """A participant's socket that writes everything out at once (keeps nothing)."""

    def __init__(self) -> None:
        self.messages = 0

    def send(self, message: dict[str, Any]) -> None:
        self.messages += 1

    def close(self, code: int, reason: str) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class Measurement:
    participants: int
    bytes_total: int  # kept by control/ for the N attendees
    blocks: int

    @property
    def bytes_per_participant(self) -> float:
        return self.bytes_total / self.participants


def _webinar(capacity: int) -> tuple[Conference, Webinar, LiveMeeting]:
    registry = MeetingRegistry()
    clock = FakeClock()
    conference = Conference(registry=registry, supervisor=FakeWorkers(), tokens=Tokens("x" * 48, None, 600),  # type: ignore[arg-type]
                            clock=clock, tasks=BackgroundTasks())  # fmt: skip
    webinar = Webinar(registry=registry, conference=conference, clock=clock)
    conference.add_listener(webinar)
    record = MeetingRecord(id="memory", meeting_number="12345678901", host_id="h", customer_id="c", title="bench",
                           passcode="123456", attendees_publish=False)  # fmt: skip
    meeting = registry.live(record, LiveSession("ls", "memory", "h", "c", 0.0))
    meeting.limits = MeetingLimits(LimitsConfig(max_participants_per_meeting=capacity), capacity)
    return conference, webinar, meeting


async def _stage(conference: Conference, webinar: Webinar, meeting: LiveMeeting, speakers: int) -> None:
    host = Participant("host", "Host", DroppingPeer(), role="host", grants=dict(HOST_GRANTS))
    await conference.join(meeting, host, [])
    for index in range(speakers):
        speaker = Participant(f"speaker{index}", f"Speaker {index}", DroppingPeer())
        await conference.join(meeting, speaker, [])
        await webinar.promote(meeting, host, speaker.participant_id)
        await conference.publish(meeting, speaker, "offer", {"0": "microphone", "1": "camera"})


async def measure_async(participants: int, speakers: int = 2) -> Measurement:
    conference, webinar, meeting = _webinar(participants + speakers + 1)
    await _stage(conference, webinar, meeting, speakers)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for index in range(participants):
            await conference.join(meeting, Participant(f"a{index}", f"Attendee {index}", DroppingPeer()), [])
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    only_control = [tracemalloc.Filter(True, os.path.join(CONTROL_DIR, "*"))]
    diff = after.filter_traces(only_control).compare_to(before.filter_traces(only_control), "filename")
    assert len(meeting.participants) == participants + speakers + 1
    return Measurement(participants, sum(d.size_diff for d in diff), sum(d.count_diff for d in diff))


def measure(participants: int, speakers: int = 2) -> Measurement:
    return asyncio.run(measure_async(participants, speakers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.control_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,300,1000", help="attendee counts, comma-separated")
    parser.add_argument("--speakers", type=int, default=2)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = [measure(n, args.speakers) for n in sizes]
    print(f"control memory per participant ({args.speakers} speakers publishing 2 tracks each):")
    print(f"{'attendees':>10} {'KiB total':>11} {'bytes/participant':>18} {'blocks/participant':>19}")
    for r in results:
        print(f"{r.participants:>10} {r.bytes_total / 1024:>11.1f} {r.bytes_per_participant:>18.0f} "
              f"{r.blocks / r.participants:>19.1f}")  # fmt: skip
    ratio = results[-1].bytes_per_participant / results[0].bytes_per_participant
    print(f"per-participant ratio {sizes[-1]} / {sizes[0]}: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
