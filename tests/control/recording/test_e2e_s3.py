"""Recording to a real S3 server (SeaweedFS) that goes away mid-recording, end to end:
control + a real SFU worker + the real recorder process, two bots publishing audio and
video, the customer's storage set through the REST API.

What is checked: while the storage is down the recorder keeps segments in its spool (the
spool metric says so, failed uploads are counted); once it is back every segment lands:
every file row of the recording is in the bucket with its size and SHA-256, nothing else
is, the segment indexes of every track (and the mix) are continuous and meeting.json
lists exactly those files, the spool is empty and the server keeps no local copy, and
every media file decodes with av.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from client.bot import Bot
from tests.support.seaweed import SeaweedServer, require_weed

PREFIX = "acme/"  # the customer's key prefix in the bucket
SEGMENT_SECONDS = 2.0  # short segments: several close (and queue) while the storage is down
RECORD_BEFORE_OUTAGE_S = 4.0
OUTAGE_S = 5.0
RECORD_SECONDS = 12.0  # in all, from the start to the stop
DRAIN_TIMEOUT_S = 45.0  # after the stop: backoff of the spool (it doubles while storage is down)
SEGMENT_NAME = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})\.(?P<ext>webm|mkv|ogg)$")
MEDIA_SUFFIXES = (".webm", ".mkv", ".ogg", ".part", ".data", ".s16")


@pytest.fixture
def seaweed(tmp_path: Path) -> Iterator[SeaweedServer]:
    require_weed()
    with SeaweedServer(tmp_path / "seaweed") as server:
        yield server


async def metrics(server: Any) -> dict[str, float]:
    """The recording metrics from /metrics (the recorder's stats, polled by control)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.base_url}/metrics") as response:
            text = await response.text()
    values = {}
    for line in text.splitlines():
        if line.startswith(("conclave_recording", "conclave_recorder")):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def decode_all(data: bytes, name: str) -> dict[str, int]:
    """Frames per stream kind of a media file (every packet decoded)."""
    counts: dict[str, int] = collections.Counter()
    with av.open(io.BytesIO(data), mode="r") as container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            counts[packet.stream.type] += len(packet.decode())
    assert counts, f"{name}: nothing decoded"
    return counts


async def test_storage_down_mid_recording_loses_nothing(conclave_server_factory, seaweed, tmp_path):
    server = await conclave_server_factory(
        recorder={"segment_seconds": SEGMENT_SECONDS},
        sfu={"stats_interval_s": 0.5},  # the recorder's stats (and so /metrics) twice a second
    )
    host_account = await server.new_host(limits={"max_live_meetings_per_host": 10, "max_concurrent_meetings": 10})
    customer_id = host_account["customer_id"]
    settings = seaweed.settings(prefix=PREFIX)
    stored = await server.call("PUT", f"/customers/{customer_id}/storage", token=server.operator_key,
                               json_body=settings)  # fmt: skip
    assert stored["settings"]["secret_set"] is True and "secret_access_key" not in stored["settings"]
    meeting = await server.create_meeting("S3 outage", host=host_account)
    host = Bot(server.base_url, meeting["meeting_number"], "Host", token=meeting["host_token"])
    guest = server.bot(meeting, "Guest")
    bucket = seaweed.buckets[0]
    client = seaweed.client()
    data_dir = Path(server.services.cfg.data_dir)
    try:
        await host.start()
        await guest.start()
        await host.wait_for_frames(guest.participant_id, "camera", 5, timeout=20)
        await guest.wait_for_frames(host.participant_id, "camera", 5, timeout=20)
        await host.start_recording()
        started = time.monotonic()
        job = server.services.recordings.active(server.services.registry.get(meeting["meeting_id"]))["recording"]
        recording_id = job.recording_id
        recorded_tracks = set(job.tracks)
        assert len(recorded_tracks) == 4  # two cameras, two microphones

        async def some_uploaded() -> bool:
            return bool(await server.services.store.list_recording_files(recording_id))

        await wait_for(some_uploaded, RECORD_BEFORE_OUTAGE_S + 6, "a first segment in the bucket")
        await asyncio.sleep(max(0.0, RECORD_BEFORE_OUTAGE_S - (time.monotonic() - started)))

        # The storage goes away (blocking calls: off the event loop, media keeps flowing).
        before = await metrics(server)
        await asyncio.to_thread(seaweed.stop)
        down_at = time.monotonic()
        rows_when_down = len(await server.services.store.list_recording_files(recording_id))

        async def spooling() -> bool:
            now = await metrics(server)
            failed = now.get("conclave_recording_upload_failures_total", 0) > before.get(
                "conclave_recording_upload_failures_total", 0
            )
            return failed and now.get("conclave_recording_spool_bytes", 0) > 0

        await wait_for(spooling, OUTAGE_S + 10, "segments kept in the spool and failed uploads counted")
        spool = data_dir / "spool"
        assert any(p.suffix == ".data" for p in spool.iterdir()), "the spool directory holds the segments"
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        assert (await metrics(server))["conclave_recording_spool_bytes"] > 0  # still down: still spooled
        await asyncio.to_thread(seaweed.restart)

        await asyncio.sleep(max(0.0, RECORD_SECONDS - (time.monotonic() - started)))
        await host.stop_recording()
        duration = time.monotonic() - started

        # Every file lands: the manifest is uploaded and the spool is empty again.
        async def drained() -> bool:
            rows = await server.services.store.list_recording_files(recording_id)
            pending = [p for p in spool.iterdir()] if spool.is_dir() else []
            return any(r.kind == "manifest" for r in rows) and not pending

        await wait_for(drained, DRAIN_TIMEOUT_S, "every spooled segment uploaded", interval=0.5)
        await server.services.recorder.refresh_stats()
        assert (await metrics(server))["conclave_recording_spool_bytes"] == 0

        listing = await server.call("GET", f"/meetings/{meeting['number']}/recordings", token=meeting["host_session"])
        [recording] = listing["recordings"]
        assert recording["id"] == recording_id and recording["state"] == "stopped"
        files = recording["files"]
        assert len(files) > rows_when_down  # segments queued during the outage landed after it
        key_prefix = f"recordings/{meeting['number']}/{recording_id}/"

        # Every row is in the bucket with its size and SHA-256, and the bucket holds nothing else.
        listed = await asyncio.to_thread(client.list_objects_v2, Bucket=bucket, Prefix=PREFIX + key_prefix)
        assert sorted(o["Key"] for o in listed.get("Contents", [])) == sorted(PREFIX + f["key"] for f in files)
        contents: dict[str, bytes] = {}
        for item in files:
            assert item["key"].startswith(key_prefix), item
            answer = await asyncio.to_thread(client.get_object, Bucket=bucket, Key=PREFIX + item["key"])
            data = answer["Body"].read()
            assert len(data) == item["size"] > 0, item
            assert hashlib.sha256(data).hexdigest() == item["sha256"], item
            contents[item["key"]] = data

        # Nothing lost: per track (and the mix) indexes 0..n-1, timeline without holes,
        # and meeting.json lists exactly the media files that have rows.
        [manifest_row] = [f for f in files if f["kind"] == "manifest"]
        manifest = json.loads(contents[manifest_row["key"]])
        media = [f for f in files if f["kind"] in ("track", "mix")]
        assert {f["kind"] for f in files} == {"track", "mix", "manifest"}
        streams: dict[str, list[tuple[int, dict[str, Any]]]] = collections.defaultdict(list)
        for item in media:
            match = SEGMENT_NAME.match(item["key"][len(key_prefix):])
            assert match is not None, item["key"]
            assert match["stem"].endswith(".a0"), item["key"]  # one attempt: the recorder never restarted
            streams[match["stem"]].append((int(match["index"]), item))
        assert len(streams) == 5  # four tracks and the mix
        assert {f["track_id"] for f in media if f["kind"] == "track"} == recorded_tracks
        for stem, segments in streams.items():
            segments.sort(key=lambda pair: pair[0])
            assert [index for index, _ in segments] == list(range(len(segments))), stem
            assert len(segments) >= 4, (stem, len(segments))  # ~12 s in 2 s segments
            for (_, earlier), (_, later) in zip(segments, segments[1:]):
                # A missing segment would leave a hole of a whole segment. Less than half of
                # one is the senders' own timing: a bot stalled by a loaded machine sends a
                # sender report that moves its clock (recorder.media.timeline resyncs).
                assert abs(later["start"] - earlier["end"]) < SEGMENT_SECONDS / 2, (stem, earlier, later)
            assert segments[-1][1]["end"] - segments[0][1]["start"] > duration - 3.0, (stem, duration)
        listed_in_manifest = [s["key"] for t in manifest["tracks"] for s in t["segments"]]
        listed_in_manifest += [s["key"] for s in manifest["mix"]["segments"]]
        assert sorted(listed_in_manifest) == sorted(f["key"] for f in media)
        sizes = {s["key"]: s["size"] for t in [*manifest["tracks"], manifest["mix"]] for s in t["segments"]}
        assert all(sizes[f["key"]] == f["size"] for f in media)

        # The server's own download (a signed link) streams the same bytes from the bucket.
        first = media[0]
        link = await server.call("GET", f"/recordings/{recording_id}/files/{first['id']}/link",
                                 token=meeting["host_session"])  # fmt: skip
        async with aiohttp.ClientSession() as session:
            async with session.get(server.base_url + link["url"]) as response:
                assert response.status == 200 and await response.read() == contents[first["key"]]

        # The downloaded files decode: video in the tracks' WebM, Opus in the rest.
        for item in media:
            counts = decode_all(contents[item["key"]], item["key"])
            expected = "video" if item["content_type"].startswith("video/") else "audio"
            assert counts.get(expected, 0) > 0, (item["key"], counts)

        # No local copy: the spool is empty and the work directory is gone.
        assert not list(spool.iterdir())
        assert not (data_dir / "recordings" / recording_id).exists()
        files_left = [p for p in data_dir.rglob("*") if p.is_file()]
        assert [p for p in files_left if recording_id in str(p) or p.suffix in MEDIA_SUFFIXES] == []
    finally:
        await asyncio.gather(host.stop(), guest.stop(), return_exceptions=True)
