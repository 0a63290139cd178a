"""Baseline: what a Python developer does today, aiortc's `MediaRelay` fan-out.

One server process (pinned like our worker) receives a publisher's audio+video and sends
each of K subscribers `relay.subscribe(track)`: aiortc decodes the publisher's stream once
and encodes it again for every subscriber. One client process (pinned away) holds the
aiortc publisher (generated 640x360 video, a tone) and the K aiortc subscribers, which
count decoded frames. SDP goes over pipes through the coordinator; media stays on
127.0.0.1. The number that matters is the server's whole-process CPU per subscriber.

`compare(k, options)` runs our `fanout` with the same K and this baseline, and reports
CPU per subscriber, ours / theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
from typing import Any

from bench import scenarios
from bench.plainrtp.procfs import cpu_seconds_stat
from bench.report import Report
from bench.runner import RunOptions, plan_cpus, progress, run_plan
from bench.server import rss_bytes

STEP_TIMEOUT_S = 30.0


def _loopback_only() -> None:
    import aioice.ice

    # aioice never gathers 127.0.0.1 by itself; the baseline keeps media on loopback.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


def _pin(cpus: list[int] | None) -> None:
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)


# ------------------------------------------------------------------------ server process


def server_main(conn: Any, cpus: list[int] | None) -> None:
    _pin(cpus)
    _loopback_only()
    asyncio.run(_serve(conn))


async def _serve(conn: Any) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    loop = asyncio.get_running_loop()
    relay = MediaRelay()
    peers: list[RTCPeerConnection] = []
    tracks: list[Any] = []
    got_tracks = asyncio.Event()
    frames_in = {"audio": 0, "video": 0}  # what the relay decodes from the publisher
    counting: list[asyncio.Task[None]] = []

    async def count(track: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                await track.recv()
                frames_in[track.kind] += 1
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        kind = command["cmd"]
        if kind == "publish":
            pc = RTCPeerConnection()
            peers.append(pc)
            expected_tracks = command["tracks"]

            @pc.on("track")
            def on_track(track: Any, expected: int = expected_tracks) -> None:
                tracks.append(track)
                counting.append(asyncio.ensure_future(count(relay.subscribe(track, buffered=False))))
                if len(tracks) == expected:
                    got_tracks.set()

            await pc.setRemoteDescription(RTCSessionDescription(command["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            conn.send({"sdp": pc.localDescription.sdp})
        elif kind == "subscribe":
            await asyncio.wait_for(got_tracks.wait(), STEP_TIMEOUT_S)
            pc = RTCPeerConnection()
            peers.append(pc)
            for track in tracks:
                pc.addTrack(relay.subscribe(track, buffered=False))
            await pc.setLocalDescription(await pc.createOffer())
            conn.send({"sdp": pc.localDescription.sdp, "index": len(peers) - 2})
        elif kind == "answer":
            await peers[command["index"] + 1].setRemoteDescription(RTCSessionDescription(command["sdp"], "answer"))
            conn.send({"ok": True})
        elif kind == "frames":
            conn.send(dict(frames_in))
        else:
            for task in counting:
                task.cancel()
            for pc in peers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pc.close(), 5.0)
            conn.send({"stopped": True})
            return


# ------------------------------------------------------------------------ client process


def clients_main(conn: Any, cpus: list[int] | None, fps: int, width: int, height: int) -> None:
    _pin(cpus)
    _loopback_only()
    asyncio.run(_clients(conn, fps, width, height))


async def _clients(conn: Any, fps: int, width: int, height: int) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    from client.media import GeneratedVideoTrack, ToneAudioTrack

    loop = asyncio.get_running_loop()
    peers: list[RTCPeerConnection] = []
    frames: list[dict[str, int]] = []
    tasks: list[asyncio.Task[None]] = []

    async def count(track: Any, counters: dict[str, int]) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                counters[track.kind] += 1

    while True:
        command = await loop.run_in_executor(None, conn.recv)
        kind = command["cmd"]
        if kind == "publish":
            pc = RTCPeerConnection()
            peers.append(pc)
            pc.addTrack(ToneAudioTrack())
            pc.addTrack(GeneratedVideoTrack(width, height, fps=fps))
            await pc.setLocalDescription(await pc.createOffer())
            conn.send({"sdp": pc.localDescription.sdp, "tracks": 2})
        elif kind == "publish_answer":
            await peers[0].setRemoteDescription(RTCSessionDescription(command["sdp"], "answer"))
            conn.send({"ok": True})
        elif kind == "subscribe":
            pc = RTCPeerConnection()
            peers.append(pc)
            counters = {"audio": 0, "video": 0}
            frames.append(counters)

            @pc.on("track")
            def on_track(track: Any, counters: dict[str, int] = counters) -> None:
                tasks.append(asyncio.ensure_future(count(track, counters)))

            await pc.setRemoteDescription(RTCSessionDescription(command["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            conn.send({"sdp": pc.localDescription.sdp})
        elif kind == "frames":
            conn.send({"frames": [dict(c) for c in frames], "cpu_s": sum(os.times()[:2])})
        else:
            for task in tasks:
                task.cancel()
            for pc in peers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pc.close(), 5.0)
            conn.send({"stopped": True})
            return


# ------------------------------------------------------------------------ coordinator


class _Proc:
    def __init__(self, target: Any, args: tuple) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, *args), daemon=True)
        self.process.start()
        child.close()

    def ask(self, command: dict[str, Any], timeout: float = STEP_TIMEOUT_S) -> dict[str, Any]:
        self.conn.send(command)
        if not self.conn.poll(timeout):
            raise RuntimeError(f"baseline process did not answer {command['cmd']} in {timeout} s")
        return self.conn.recv()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ask({"cmd": "stop"}, 10.0)
        self.process.join(3.0)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.is_alive() and self.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, sig)
                self.process.join(3.0)
        self.conn.close()


def run_mediarelay(subscribers: int, options: RunOptions) -> dict[str, Any]:
    """Measure the MediaRelay server over one window; returns its numbers."""
    server_cpus, client_cpus = plan_cpus(1, options.pin, True)
    media = options.media
    server = _Proc(server_main, (server_cpus,))
    clients = _Proc(clients_main, (client_cpus, media.fps, media.width, media.height))
    try:
        offer = clients.ask({"cmd": "publish"})
        answer = server.ask({"cmd": "publish", "sdp": offer["sdp"], "tracks": offer["tracks"]})
        clients.ask({"cmd": "publish_answer", "sdp": answer["sdp"]})
        for _ in range(subscribers):
            offer = server.ask({"cmd": "subscribe"})
            answer = clients.ask({"cmd": "subscribe", "sdp": offer["sdp"]})
            server.ask({"cmd": "answer", "index": offer["index"], "sdp": answer["sdp"]})
        progress(options, f"mediarelay: {subscribers} subscribers connected, warm-up {options.warmup_s:.0f} s")
        time.sleep(options.warmup_s)
        pid = server.process.pid
        assert pid is not None
        before_frames = clients.ask({"cmd": "frames"})
        before_in = server.ask({"cmd": "frames"})
        cpu_before, started = cpu_seconds_stat(pid), time.monotonic()
        time.sleep(options.duration_s)
        cpu_after, window = cpu_seconds_stat(pid), time.monotonic() - started
        after_frames = clients.ask({"cmd": "frames"})
        after_in = server.ask({"cmd": "frames"})
        video_fps = [
            (a["video"] - b["video"]) / window for a, b in zip(after_frames["frames"], before_frames["frames"])
        ]
        return {
            "video_fps_into_relay": (after_in["video"] - before_in["video"]) / window,
            "server_cpu_cores": (cpu_after - cpu_before) / window,
            "server_rss_mb": rss_bytes(pid) / 2**20,
            "video_fps_per_subscriber": video_fps,
            "client_cpu_cores": (after_frames["cpu_s"] - before_frames["cpu_s"]) / window,
            "window_s": window,
        }
    finally:
        clients.stop()
        server.stop()


def compare(subscribers: int, options: RunOptions, from_k: int = 0) -> Report:
    """Our fanout, then MediaRelay, same K and video; CPU per subscriber, ours / theirs.
    With `from_k` (0 < from_k < K) both also run at from_k subscribers, and the report adds
    the CPU each added subscriber costs (the slope between the two runs)."""
    if from_k and not 0 < from_k < subscribers:
        raise SystemExit("--from-k must be between 0 and K")
    params = {
        "subscribers": subscribers,
        "duration_s": options.duration_s,
        "video": f"{options.media.width}x{options.media.height}@{options.media.fps}",
    }
    report = run_plan("fanout-vs-mediarelay", scenarios.fanout(subscribers), params, options)
    ours_cores = sum(w.cpu_util or 0.0 for w in report.workers)
    theirs = run_mediarelay(subscribers, options)
    ours_per = ours_cores / subscribers
    theirs_per = theirs["server_cpu_cores"] / subscribers
    # MediaRelay falls behind when its CPU is short: it then encodes fewer frames than the
    # publisher sends. Scaled to the full frame rate, its cost per subscriber is higher.
    delivered = sum(theirs["video_fps_per_subscriber"]) / max(1, len(theirs["video_fps_per_subscriber"]))
    if 0 < delivered < 0.9 * options.media.fps:
        theirs_per *= options.media.fps / delivered
        report.notes.append(
            f"MediaRelay delivered {delivered:.1f} of {options.media.fps} fps: its CPU per subscriber is scaled up to the full rate"
        )
    report.extra.update(
        {
            "ours: worker CPU per subscriber (% of a core)": ours_per * 100,
            "MediaRelay: server CPU per subscriber (% of a core)": theirs_per * 100,
            "MediaRelay: video fps in / per subscriber": f"{theirs['video_fps_into_relay']:.1f} / "
            + ", ".join(f"{f:.1f}" for f in theirs["video_fps_per_subscriber"]),
            "MediaRelay: server RSS MB": theirs["server_rss_mb"],
            "CPU per subscriber, ours / MediaRelay": ours_per / theirs_per if theirs_per else float("nan"),
            "MediaRelay uses x times our CPU per subscriber": theirs_per / ours_per if ours_per else float("nan"),
        }
    )
    if theirs["server_cpu_cores"] > 0.9:
        report.notes.append("MediaRelay saturated its core: it delivers fewer frames than sent, its CPU per subscriber is a lower bound")
    report.extra["MediaRelay raw"] = str({k: v for k, v in theirs.items() if k != "video_fps_per_subscriber"})
    if from_k:
        _add_slopes(report, subscribers, from_k, ours_cores, theirs, options)
    return report


def _add_slopes(
    report: Report, subscribers: int, from_k: int, ours_cores: float, theirs: dict[str, Any], options: RunOptions
) -> None:
    """CPU per added subscriber, both sides, from a second pair of runs at `from_k`."""
    small = run_plan("fanout-vs-mediarelay", scenarios.fanout(from_k), {"subscribers": from_k}, options)
    ours_small = sum(w.cpu_util or 0.0 for w in small.workers)
    theirs_small = run_mediarelay(from_k, options)
    added = subscribers - from_k
    ours_slope = (ours_cores - ours_small) / added
    theirs_slope = (theirs["server_cpu_cores"] - theirs_small["server_cpu_cores"]) / added
    full_rate = all(
        f >= 0.9 * options.media.fps
        for run in (theirs, theirs_small)
        for f in run["video_fps_per_subscriber"]
    )
    report.extra.update(
        {
            f"ours: worker CPU at K={from_k} / K={subscribers} (% of a core)": f"{ours_small * 100:.2f} / {ours_cores * 100:.2f}",
            f"MediaRelay: server CPU at K={from_k} / K={subscribers} (% of a core)": (
                f"{theirs_small['server_cpu_cores'] * 100:.2f} / {theirs['server_cpu_cores'] * 100:.2f}"
            ),
            "ours: CPU per added subscriber (% of a core)": ours_slope * 100,
            "MediaRelay: CPU per added subscriber (% of a core)": theirs_slope * 100,
            "MediaRelay uses x times our CPU per added subscriber": (
                theirs_slope / ours_slope if ours_slope > 0 else float("nan")
            ),
        }
    )
    if not full_rate:
        report.notes.append("MediaRelay fell below 90 % of the frame rate in a run: its slope is a lower bound")
