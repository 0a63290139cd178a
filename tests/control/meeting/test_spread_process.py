"""A meeting spread over two real workers (control.meeting.spread, sfu/transport/pipe.py),
end to end on 127.0.0.1: with sfu.spread_after_participants 1, a publishing bot sits on
the meeting's home worker and the subscribers after it on the other one; they decode its
video and audio through the pipe; a subscriber's PLI on the other worker crosses the pipe
to the publisher, and a late subscriber there starts from a keyframe asked for through
it; pipe packets show on /metrics; ending the meeting closes the routers and pipes of
both workers."""

from __future__ import annotations

import asyncio

import pytest

from control.processes.workers import WorkerHandle

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


async def worker_stats(server) -> list[WorkerHandle]:
    workers = server.services.workers
    await workers.refresh_stats()
    return workers.workers


async def wait_counter(server, index: int, key: str, above: int, timeout: float = 10.0) -> int:
    for _ in range(int(timeout / 0.2)):
        value = (await worker_stats(server))[index].counters().get(key, 0)
        if value > above:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"worker {index}: {key} stayed at {above}")


async def send_pli(bot) -> int:
    """The bot's subscribe connection asks for a keyframe of the video it receives (what
    aiortc does on a decoding error), through aiortc's own RTCP sender. Returns how many."""
    sent = 0
    for transceiver in bot.subscriber.pc.getTransceivers():
        receiver = transceiver.receiver
        if transceiver.kind != "video":
            continue
        for ssrc in list(receiver._RTCRtpReceiver__active_ssrc):
            await receiver._send_rtcp_pli(ssrc)
            sent += 1
    return sent


async def test_subscribers_on_another_worker_receive_a_piped_publisher(conclave_server_factory):
    server = await conclave_server_factory(sfu={"workers": 2, "spread_after_participants": 1})
    meeting = await server.create_meeting()
    publisher = server.bot(meeting, "pub")
    first = server.bot(meeting, "first")
    late = server.bot(meeting, "late")
    try:
        await publisher.start()
        await first.start(publish_audio=False, publish_video=False)
        live = server.services.registry.get(meeting["meeting_id"])
        home = live.placement.worker_index
        other = 1 - home
        spread = server.services.conference.spread
        assert spread.worker_of(live, live.participants[first.participant_id])[0] == other
        assert spread.worker_of(live, live.participants[publisher.participant_id]) is None  # at home
        assert set(live.spread_workers) == {other}

        await first.wait_for_frames(publisher.participant_id, "camera", count=10, timeout=30)
        await first.wait_for_frames(publisher.participant_id, "microphone", count=25, timeout=30)
        await wait_counter(server, home, "pipe_packets_sent", 0)
        await wait_counter(server, other, "pipe_packets_received", 0)

        # An explicit PLI from the subscriber on the other worker reaches the publisher.
        await asyncio.sleep(0.6)  # past the keyframe-request interval of the first frames
        workers = await worker_stats(server)
        before = {key: workers[i].counters().get(key, 0) for i, key in ((home, "pli_sent"), (other, "pli_received"))}
        assert await send_pli(first) >= 1
        await wait_counter(server, other, "pli_received", before["pli_received"])
        await wait_counter(server, home, "pli_sent", before["pli_sent"])

        # A late subscriber there starts at a keyframe asked for through the pipe.
        keyframes = (await worker_stats(server))[other].counters().get("keyframes_forwarded", 0)
        await late.start(publish_audio=False, publish_video=False)
        assert spread.worker_of(live, live.participants[late.participant_id])[0] == other
        await late.wait_for_frames(publisher.participant_id, "camera", count=5, timeout=30)
        await wait_counter(server, other, "keyframes_forwarded", keyframes)

        scrape = server.services.metrics.render().decode()
        assert f'conclave_sfu_pipe_packets_sent_total{{worker="{home}"}}' in scrape
        sent = [
            line
            for line in scrape.splitlines()
            if line.startswith(f'conclave_sfu_pipe_packets_sent_total{{worker="{home}"}}')
        ]
        assert float(sent[0].split()[-1]) > 0
        assert (await worker_stats(server))[home].gauge("pipe_transports") == 1

        await server.call("POST", f"/meetings/{meeting['number']}/end", token=meeting["host_session"])
        for _ in range(50):
            workers = await worker_stats(server)
            if all(w.gauge("routers") == 0 and w.gauge("pipe_transports") == 0 for w in workers):
                break
            await asyncio.sleep(0.2)
        assert [(w.gauge("routers"), w.gauge("pipe_transports")) for w in workers] == [(0, 0), (0, 0)]
        assert live.spread_workers == {}
    finally:
        await asyncio.gather(publisher.stop(), first.stop(), late.stop())


async def test_when_the_other_worker_dies_its_subscribers_come_back_with_media(conclave_server_factory):
    server = await conclave_server_factory(sfu={"workers": 2, "spread_after_participants": 1})
    meeting = await server.create_meeting()
    publisher = server.bot(meeting, "pub")
    watcher = server.bot(meeting, "watcher")
    try:
        await publisher.start()
        await watcher.start(publish_audio=False, publish_video=False)
        live = server.services.registry.get(meeting["meeting_id"])
        other = 1 - live.placement.worker_index
        await watcher.wait_for_frames(publisher.participant_id, "camera", count=5, timeout=30)
        handle = server.services.workers.workers[other]
        handle.process.kill()  # this test's server's own worker, by its PID
        for _ in range(100):
            if watcher.reconnects:
                break
            await asyncio.sleep(0.1)
        assert watcher.reconnects == 1 and publisher.reconnects == 0  # only who sat there
        stats = watcher.find_stats(publisher.participant_id, "camera")
        seen = stats.frames if stats is not None else 0
        await watcher.wait_for_frames(publisher.participant_id, "camera", count=seen + 5, timeout=30)
        assert watcher.participant_id in live.participants and live.placement is not None
    finally:
        await asyncio.gather(publisher.stop(), watcher.stop())
