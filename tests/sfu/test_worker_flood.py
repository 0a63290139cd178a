"""A flood of malformed datagrams at a live worker while a meeting's media flows through it.

`conclave_server` (control in this process, a real worker process): alice publishes
audio and video, bob receives them, mallory is a connected participant whose own ICE
path we send raw bytes on. Then 10^5 malformed datagrams (CONCLAVE_FLOOD_DATAGRAMS,
paced at CONCLAVE_FLOOD_RATE per second, 20000 by default: ~5 s, the whole test ~8 s on
the project's machine) go to the worker's port from 127.0.0.1: truncated and garbled STUN, STUN checks for nobody, DTLS/RTP/RTCP bytes from
an address no ICE check selected, bytes of no protocol, oversized datagrams, and from
mallory's address SRTP/SRTCP with bad authentication tags, RTP shorter than its header
and broken DTLS records (tests/support/flood.py). The worker's process must be the same,
every datagram counted under its drop reason (or the kernel's "socket_buffer_full"),
none under "internal_error", and bob must still decode alice's frames afterwards.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.support import flood

pytestmark = pytest.mark.process

COUNT = int(os.environ.get("CONCLAVE_FLOOD_DATAGRAMS", "100000"))
RATE = int(os.environ.get("CONCLAVE_FLOOD_RATE", "20000"))  # datagrams per second


async def test_a_flood_of_malformed_datagrams_is_counted_and_the_meeting_goes_on(conclave_server):
    meeting = await conclave_server.create_meeting()
    alice = conclave_server.bot(meeting, "alice")
    bob = conclave_server.bot(meeting, "bob")
    mallory = conclave_server.bot(meeting, "mallory")
    supervisor = conclave_server.services.workers
    worker = supervisor.workers[0]
    pid = worker.pid
    try:
        await alice.start()
        await bob.start(publish_audio=False, publish_video=False)
        await mallory.start(publish_audio=True, publish_video=False)
        await mallory.publisher.wait_connected()
        await bob.wait_for_frames(alice.participant_id, "camera", count=5, timeout=30)
        ice = mallory.publisher.pc.getSenders()[0].transport.transport  # aiortc RTCIceTransport

        await supervisor.refresh_stats()
        before = dict(worker.dropped())
        frames_before = bob.find_stats(alice.participant_id, "camera").frames
        started = time.monotonic()
        sent = await flood.flood(worker.port, COUNT, ice._send, rate=RATE, deadline_s=max(60.0, COUNT / 1000))
        flood_seconds = time.monotonic() - started
        frames_during = bob.find_stats(alice.participant_id, "camera").frames - frames_before

        # Media still flows: bob decodes new frames from alice.
        await bob.wait_for_frames(alice.participant_id, "camera", count=frames_before + frames_during + 15, timeout=30)
        await supervisor.refresh_stats()
        after = worker.dropped()
        delta = {reason: after.get(reason, 0) - before.get(reason, 0) for reason in set(after) | set(before)}
        kernel = delta.get("socket_buffer_full", 0)
        print(f"\n{sum(sent.values())} datagrams in {flood_seconds:.1f} s; bob decoded {frames_during} frames "
              f"meanwhile; dropped: { {r: d for r, d in sorted(delta.items()) if d} }")  # fmt: skip

        assert worker.pid == pid and worker.restarts == 0, "the worker went down"
        assert frames_during > 0, "bob decoded nothing while the flood lasted"
        assert sum(sent.values()) == COUNT
        assert delta.get("internal_error", 0) == 0, delta
        for reason, count in sent.items():
            # Each kind under its own reason; the kernel may have dropped some of any kind
            # before the worker read them (the count of those is its own reason).
            assert count - kernel <= delta.get(reason, 0) <= count + 10, (reason, count, delta)
        counted = sum(delta.get(reason, 0) for reason in sent) + kernel
        assert counted >= COUNT, (counted, delta)
    finally:
        for bot in (alice, bob, mallory):
            await bot.stop()
