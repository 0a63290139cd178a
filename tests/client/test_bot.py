"""client.bot against the real server (control + SFU worker), everything on 127.0.0.1; the
last tests run the bot's command line (client/botcli.py) and play a media file."""

import asyncio
import os
import signal
import sys

from tests.support.paths import REPO_ROOT


FRAMES = 10  # video frames each way: ~0.7 s of 15 fps
AUDIO_FRAMES = 25  # 0.5 s of 20 ms frames


async def start_bots(server, *names, **start_kwargs):
    meeting = await server.create_meeting()
    bots = [server.bot(meeting, name) for name in names]
    for bot in bots:
        await bot.start(**start_kwargs)
    return meeting, bots


async def stop_bots(bots):
    await asyncio.gather(*(bot.stop() for bot in bots))


async def test_two_bots_receive_each_others_decodable_media(conclave_server):
    _, bots = await start_bots(conclave_server, "alice", "bob")
    alice, bob = bots
    try:
        for receiver, sender in ((alice, bob), (bob, alice)):
            video = await receiver.wait_for_frames(sender.participant_id, "camera", count=FRAMES, timeout=30)
            audio = await receiver.wait_for_frames(sender.participant_id, "microphone", count=AUDIO_FRAMES, timeout=30)
            assert (video.width, video.height) == (640, 360)
            # The frames are the sender's: its frame counter reads back after decoding.
            assert video.counted_frames > 0 and video.last_counter is not None
            assert audio.sample_rate == 48000 and audio.samples > 0
            assert audio.peak > 0  # the tone, not silence
        assert set(alice.participants) == {bob.participant_id}
        assert set(bob.participants) == {alice.participant_id}
    finally:
        await stop_bots(bots)


async def test_chat_reaches_everyone_in_order(conclave_server):
    _, bots = await start_bots(conclave_server, "alice", "bob", publish_audio=False, publish_video=False)
    alice, bob = bots
    try:
        await alice.send_chat("hello")
        await bob.wait_for_chat("hello")
        await bob.send_chat("hi alice")
        for bot in bots:
            await bot.wait_for_chat("hi alice")
        for bot in bots:
            texts = [m["text"] for m in bot.chat]
            assert texts == ["hello", "hi alice"]
            assert [m["seq"] for m in bot.chat] == sorted(m["seq"] for m in bot.chat)
    finally:
        await stop_bots(bots)


async def test_screen_share_on_and_off(conclave_server):
    _, bots = await start_bots(conclave_server, "presenter", "viewer", publish_audio=False)
    presenter, viewer = bots
    try:
        await viewer.wait_for_frames(presenter.participant_id, "camera", count=3, timeout=30)
        await presenter.publish_screen()
        screen = await viewer.wait_for_frames(presenter.participant_id, "screen", count=3, timeout=30)
        assert screen.counted_frames > 0
        await presenter.unpublish_screen()
        await viewer.wait_until(lambda: not screen.active, 10, "screen track to end")
        # The camera keeps flowing after both renegotiations.
        camera = viewer.find_stats(presenter.participant_id, "camera")
        await viewer.wait_for_frames(presenter.participant_id, "camera", count=camera.frames + 5, timeout=30)
    finally:
        await stop_bots(bots)


async def test_late_joiner_receives_existing_publisher(conclave_server):
    meeting, (early,) = await start_bots(conclave_server, "early")
    late = conclave_server.bot(meeting, "late")
    try:
        joined = await late.start(publish_video=False, publish_audio=False)
        assert early.participant_id in {p["participant_id"] for p in joined["participants"]}
        await late.wait_for_frames(early.participant_id, "camera", count=FRAMES, timeout=30)
        await early.wait_until(lambda: late.participant_id in early.participants, 10, "participants_changed: joined")
        await late.stop()
        await early.wait_until(lambda: late.participant_id not in early.participants, 10, "participants_changed: left")
    finally:
        await stop_bots([early, late])


async def test_bot_cli_joins_prints_and_exits(conclave_server):
    meeting, (host,) = await start_bots(conclave_server, "host", publish_audio=False)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client.bot", meeting["join_url"], "--name", "cli", "--duration", "4",
        "--no-audio",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    try:
        await host.wait_until(lambda: any(p["name"] == "cli" for p in host.participants.values()), 30, "cli bot")
        cli_id = next(pid for pid, p in host.participants.items() if p["name"] == "cli")
        await host.wait_for_frames(cli_id, "camera", count=5, timeout=30)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 15)
        await host.stop()
    output = stdout.decode()
    assert process.returncode == 0, stderr.decode()
    assert "joined" in output and "left the meeting" in output
    assert "host/camera" in output


async def test_bots_rejoin_after_the_media_worker_dies(conclave_server_factory):
    server = await conclave_server_factory(sfu={"restart_backoff_s": 0.2})
    worker = server.services.workers.workers[0]
    _, bots = await start_bots(server, "alice", "bob", publish_audio=False)
    alice, bob = bots
    try:
        await alice.wait_for_frames(bob.participant_id, "camera", count=3, timeout=30)
        await alice.send_chat("before the crash")
        await bob.wait_for_chat("before the crash")
        ids = (alice.participant_id, bob.participant_id)
        await bob.wait_for_frames(alice.participant_id, "camera", count=3, timeout=30)
        before = {bot.name: bot.find_stats(None, "camera").frames for bot in bots}

        os.kill(worker.pid, signal.SIGKILL)  # the server answers with `reconnect`
        for bot in bots:
            await bot.wait_until(lambda bot=bot: bot.reconnects == 1, 30, "rejoin")
        assert (alice.participant_id, bob.participant_id) == ids
        # Media flows again on the new worker, counted in the same stats.
        await alice.wait_for_frames(bob.participant_id, "camera", count=before["alice"] + 10, timeout=30)
        await bob.wait_for_frames(alice.participant_id, "camera", count=before["bob"] + 10, timeout=30)
        assert [m["text"] for m in alice.chat] == ["before the crash"]
    finally:
        await stop_bots(bots)


def write_test_file(path, seconds: int = 2) -> None:
    """A small WebM (VP8 + Opus) whose video frames carry the bot frame counter."""
    import fractions

    import av

    from client.media import GeneratedVideoTrack, ToneAudioTrack

    video_source, audio_source = GeneratedVideoTrack(640, 360, fps=15), ToneAudioTrack()
    with av.open(str(path), "w", format="webm") as container:
        video = container.add_stream("libvpx", rate=15)
        video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
        audio = container.add_stream("libopus", rate=48000)
        audio.layout = "mono"
        for index in range(15 * seconds):
            frame = video_source.make_frame(index)
            frame.pts, frame.time_base = index, fractions.Fraction(1, 15)
            container.mux(video.encode(frame))
        for index in range(50 * seconds):
            container.mux(audio.encode(audio_source.make_frame(index)))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


async def test_bot_publishes_a_media_file(conclave_server, tmp_path):
    path = tmp_path / "clip.webm"
    write_test_file(path)
    meeting = await conclave_server.create_meeting()
    player = conclave_server.bot(meeting, "player", video_file=str(path))
    viewer = conclave_server.bot(meeting, "viewer")
    try:
        await player.start()
        await viewer.start(publish_audio=False, publish_video=False)
        video = await viewer.wait_for_frames(player.participant_id, "camera", count=10, timeout=30)
        await viewer.wait_for_frames(player.participant_id, "microphone", count=25, timeout=30)
        assert video.counted_frames > 0  # the file's frames, counter and all
    finally:
        await stop_bots([player, viewer])
