"""REST of recording (control/http/recordings.py, control/http/transcripts.py) over a real
server: customer storage settings (write-only secret, never logged, validated), recordings
with files, signed download links (work, expire, forged ones refused), deletion from a
local storage directory and from a real S3 server (SeaweedFS), the transcript and its
page (host and participants only), the consent ledger and operator content removal.
Recording rows are made through the store, as the live side (control.recording.service) does."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
import jwt
import pytest

from control.accounts.tokens import DOWNLOAD_TTL_S
from control.recording.events import recording_payload
from tests.support.seaweed import SECRET_ACCESS_KEY, SeaweedServer, require_weed

SECRET = "sk-very-secret-value-4b1d9e"
TRANSCRIPT = {
    "version": 1,
    "disclaimer": "Transcripts may be incomplete or inaccurate.",
    "meta": {},
    "speakers": ["Ann", "Bo"],
    "segments": [
        {"start": 0.5, "end": 2.0, "speaker": "Ann", "text": "Hello <script>alert(1)</script> everyone"},
        {"start": 65.0, "end": 67.5, "speaker": "Bo", "text": "Budget approved"},
    ],
}


async def raw_get(url: str, *, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers or {}, allow_redirects=False) as response:
            return response.status, await response.read(), response.headers


def error_code(body: Any) -> str:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    return body["error"]["code"]


async def local_storage(server: Any, customer_id: str, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    await server.call(
        "PUT", f"/customers/{customer_id}/storage", token=server.operator_key,
        json_body={"kind": "local", "root": str(root)},
    )  # fmt: skip


async def recorded(
    server: Any, meeting: dict[str, Any], root: Path | None, files: dict[str, bytes], *, kind: str = "recording",
    state: str = "stopped",
) -> tuple[Any, list[Any]]:  # fmt: skip
    """A recording of the meeting's live session with `files` (key suffix -> bytes) under
    its key prefix: written into the local storage `root` (if given) and recorded."""
    store = server.services.store
    recording = await store.create_recording(
        meeting_id=meeting["meeting_id"], customer_id=meeting["customer_id"], kind=kind, started_by="Host 1",
        live_session_id=meeting.get("live_session_id"),
    )  # fmt: skip
    prefix = f"recordings/{meeting['number']}/{recording.id}/"
    await store.update_recording(recording.id, key_prefix=prefix, **({} if state == "active" else {"state": state}))
    rows = []
    for name, data in files.items():
        key = prefix + name
        if root is not None:
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        file_kind = "transcript" if name.startswith("transcript") else "track"
        content_type = "application/json" if name.endswith(".json") else "audio/ogg"
        rows.append(
            await store.add_recording_file(
                recording.id, key=key, kind=file_kind, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                content_type=content_type, start=0.0, end=10.0,
            )  # fmt: skip
        )
    return await store.get_recording(recording.id), rows


# ---------------------------------------------------------------------- storage settings


async def test_storage_secret_is_write_only_and_never_logged(conclave_server, caplog):
    caplog.set_level(logging.DEBUG)
    server = conclave_server
    created = await server.new_customer(name="Storage Inc")
    customer_id, admin_key = created["customer"]["id"], created["api_key"]
    path = f"/customers/{customer_id}/storage"
    assert await server.call("GET", path, token=admin_key) == {"configured": False, "settings": None}

    s3 = {"kind": "s3", "endpoint_url": "https://s3.example.com", "region": "eu-west-1", "bucket": "acme-rec",
          "prefix": "/conclave/", "access_key_id": "AKIA1", "secret_access_key": SECRET}  # fmt: skip
    answers = [await server.call("PUT", path, token=admin_key, json_body=s3)]
    expected = {"kind": "s3", "endpoint_url": "https://s3.example.com", "region": "eu-west-1", "bucket": "acme-rec",
                "prefix": "conclave/", "access_key_id": "AKIA1", "secret_set": True}  # fmt: skip
    assert answers[0] == {"configured": True, "settings": expected}
    answers.append(await server.call("GET", path, token=admin_key))
    assert answers[1] == answers[0]
    # Same access key: the secret may be left out and is kept.
    moved = {k: v for k, v in s3.items() if k != "secret_access_key"} | {"bucket": "acme-rec-2"}
    answers.append(await server.call("PUT", path, token=admin_key, json_body=moved))
    assert answers[2]["settings"]["bucket"] == "acme-rec-2" and answers[2]["settings"]["secret_set"] is True
    stored = await server.services.store.get_customer_storage(customer_id)
    assert stored["secret_access_key"] == SECRET
    # Another access key needs its secret; a secret in the wrong field is not echoed.
    status, body, _ = await server.api("PUT", path, token=admin_key, json_body=moved | {"access_key_id": "AKIA2"})
    assert (status, error_code(body)) == (400, "invalid_field") and "secret_access_key" in body["error"]["message"]
    answers.append(body)
    status, body, _ = await server.api("PUT", path, token=admin_key, json_body=s3 | {"secret": SECRET})
    assert (status, error_code(body)) == (400, "invalid_field")
    assert body["error"]["message"].startswith("storage.secret")
    answers.append(body)
    with_password = s3 | {"endpoint_url": f"https://u:{SECRET}@h"}
    status, body, _ = await server.api("PUT", path, token=admin_key, json_body=with_password)
    assert (status, error_code(body)) == (400, "invalid_field")
    answers.append(body)

    everything = json.dumps(answers) + "\n".join(r.getMessage() for r in caplog.records)
    everything += json.dumps([e.detail for e in await server.services.store.query_audit(target_id=customer_id)])
    assert SECRET not in everything
    assert (await server.services.store.query_audit(action="customer.storage_set"))[0].detail["bucket"] == "acme-rec-2"


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "storage.kind"),
        ({"kind": "ftp"}, "storage.kind"),
        ({"kind": "local", "root": "relative/dir"}, "storage.root"),
        ({"kind": "local"}, "storage.root"),
        ({"kind": "local", "root": "/srv/x", "colour": "red"}, "storage.colour"),
        ({"kind": "s3", "bucket": "bkt", "access_key_id": "a"}, "storage.secret_access_key"),
        ({"kind": "s3", "bucket": "bkt", "access_key_id": "a", "secret_access_key": "s", "endpoint_url": "ftp://h"},
         "storage.endpoint_url"),
        ({"kind": "s3", "bucket": "bkt", "access_key_id": "a", "secret_access_key": "s", "prefix": "a/../b"},
         "storage.prefix"),
        ({"kind": "s3", "bucket": "bkt", "access_key_id": "a", "secret_access_key": "s", "part_size": 1},
         "storage.part_size"),
        ({"kind": "s3", "bucket": "bkt", "access_key_id": 5, "secret_access_key": "s"}, "storage.access_key_id"),
    ],
)
async def test_storage_validation_names_the_field(conclave_server, body, field):
    server = conclave_server
    customer_id = (await server.new_customer())["customer"]["id"]
    status, answer, _ = await server.api("PUT", f"/customers/{customer_id}/storage", token=server.operator_key,
                                         json_body=body)  # fmt: skip
    assert (status, error_code(answer)) == (400, "invalid_field")
    assert answer["error"]["message"].startswith(field + ":"), answer
    assert await server.services.store.get_customer_storage(customer_id) is None


async def test_storage_who_may_set_it(conclave_server, tmp_path):
    server = conclave_server
    acme, other = await server.new_customer(name="Acme"), await server.new_customer(name="Other")
    path = f"/customers/{acme['customer']['id']}/storage"
    local = {"kind": "local", "root": str(tmp_path / "store")}
    s3 = {"kind": "s3", "bucket": "bkt", "access_key_id": "a", "secret_access_key": "s"}
    # A directory of the server is the operator's to choose, not a customer's.
    status, body, _ = await server.api("PUT", path, token=acme["api_key"], json_body=local)
    assert (status, error_code(body)) == (403, "forbidden")
    status, body, _ = await server.api("PUT", path, token=other["api_key"], json_body=s3)
    assert (status, error_code(body)) == (403, "forbidden")
    status, body, _ = await server.api("PUT", path, token=None, json_body=s3)
    assert status == 401
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {server.operator_key}", "Content-Type": "application/json"}
        async with session.put(f"{server.base_url}/api/v1{path}", data=b"{not json", headers=headers) as response:
            assert (response.status, error_code(await response.json())) == (400, "bad_json")
    assert (await server.call("PUT", path, token=server.operator_key, json_body=local))["settings"] == {
        "kind": "local", "root": str(tmp_path / "store"), "secret_set": False}  # fmt: skip
    await server.call("DELETE", path, token=acme["api_key"], expect=204)
    assert await server.call("GET", path, token=acme["api_key"]) == {"configured": False, "settings": None}


# ---------------------------------------------------------------------- recordings and downloads


async def test_recordings_list_and_download_links(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting("Board")
    root = tmp_path / "customer-store"
    await local_storage(server, meeting["customer_id"], root)
    audio = bytes(range(256)) * 4000  # ~1 MB: streamed in several chunks
    recording, (track, mix) = await recorded(server, meeting, root, {"ann-0.ogg": audio, "mix.ogg": b"mixed"})

    listed = await server.call("GET", f"/meetings/{meeting['number']}/recordings", token=meeting["host_session"])
    assert listed["meeting_number"] == meeting["meeting_number"]
    [item] = listed["recordings"]
    assert (item["id"], item["state"], item["kind"]) == (recording.id, "stopped", "recording")
    assert item["transcript_url"] is None
    assert [(f["id"], f["size"]) for f in item["files"]] == [(track.id, len(audio)), (mix.id, 5)]
    # The host's join token (in the meeting) works too, and the customer's admin.
    assert (await server.call("GET", f"/meetings/{meeting['number']}/recordings", token=meeting["host_token"]))[
        "recordings"][0]["id"] == recording.id  # fmt: skip

    before = time.time()
    link = await server.call("GET", f"/recordings/{recording.id}/files/{track.id}/link", token=meeting["host_session"])
    assert link["url"].startswith("/api/v1/download/")
    expires = time.mktime(time.strptime(link["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before + DOWNLOAD_TTL_S - 2 <= expires <= time.time() + DOWNLOAD_TTL_S + 1
    status, data, headers = await raw_get(server.base_url + link["url"])  # no other credential: the link is it
    assert (status, data) == (200, audio)
    assert headers["Content-Type"] == "audio/ogg"
    assert headers["Content-Disposition"] == 'attachment; filename="ann-0.ogg"'
    assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"

    services = server.services
    token = link["url"].rsplit("/", 1)[1]
    expired = services.tokens.make_download_token(recording, track, now=time.time() - DOWNLOAD_TTL_S - 60)
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, "another-secret-of-32-bytes-at-least", algorithm="HS256")
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    # A join token is signed with the same secret but for another audience.
    for bad in (expired, forged, tampered, meeting["host_token"], "not-a-token"):
        status, data, _ = await raw_get(f"{server.base_url}/api/v1/download/{bad}")
        assert (status, error_code(json.loads(data))) == (403, "forbidden"), bad

    # Someone else: another customer's host, a participant.
    stranger = await server.new_host()
    guest = await server.join(meeting, "Guest")
    for who in (stranger["token"], guest["token"]):
        status, body, _ = await server.api("GET", f"/recordings/{recording.id}/files/{track.id}/link", token=who)
        assert status in (401, 403), body
        status, body, _ = await server.api("GET", f"/meetings/{meeting['number']}/recordings", token=who)
        assert status in (401, 403) and recording.id not in json.dumps(body), body
    missing = f"/recordings/{recording.id}/files/nope/link"
    status, body, _ = await server.api("GET", missing, token=meeting["host_session"])
    assert (status, error_code(body)) == (404, "not_found")

    # The file vanished from the storage; then its row: 404 either way.
    (root / track.key).unlink()
    status, data, _ = await raw_get(server.base_url + link["url"])
    assert (status, error_code(json.loads(data))) == (404, "not_found")


async def test_download_never_reads_outside_the_storage_directory(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    root = tmp_path / "store"
    await local_storage(server, meeting["customer_id"], root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("server secret")
    recording, _ = await recorded(server, meeting, root, {})
    (root / "link").symlink_to(outside, target_is_directory=True)
    store = server.services.store
    for key in ("link/secret.txt", "../outside/secret.txt", "/etc/passwd"):
        item = await store.add_recording_file(recording.id, key=key, kind="track")
        path = f"/recordings/{recording.id}/files/{item.id}/link"
        link = await server.call("GET", path, token=meeting["host_session"])
        status, data, _ = await raw_get(server.base_url + link["url"])
        assert status == 404 and b"server secret" not in data, key
    await server.call("DELETE", f"/recordings/{recording.id}", token=meeting["host_session"], expect=204)
    assert (outside / "secret.txt").read_text() == "server secret"


async def test_delete_removes_files_from_the_storage_then_rows(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    root = tmp_path / "store"
    await local_storage(server, meeting["customer_id"], root)
    keep, _ = await recorded(server, meeting, root, {"a.ogg": b"keep"})
    recording, files = await recorded(server, meeting, root, {"a.ogg": b"1", "sub/b.ogg": b"2"})
    # An upload that finished after its row could be written: under the prefix, not in the store.
    (root / recording.key_prefix / "late.ogg").write_bytes(b"late")
    active, _ = await recorded(server, meeting, root, {"c.ogg": b"3"}, state="active")
    status, body, _ = await server.api("DELETE", f"/recordings/{active.id}", token=meeting["host_session"])
    assert (status, error_code(body)) == (409, "recording_active")

    stranger = await server.new_host()
    status, _, _ = await server.api("DELETE", f"/recordings/{recording.id}", token=stranger["token"])
    assert status == 403
    await server.call("DELETE", f"/recordings/{recording.id}", token=meeting["host_session"], expect=204)
    assert not (root / recording.key_prefix).exists()
    assert (root / keep.key_prefix / "a.ogg").read_bytes() == b"keep"
    store = server.services.store
    assert await store.get_recording(recording.id) is None
    assert [await store.get_recording_file(f.id) for f in files] == [None, None]
    entries = await store.query_audit(action="recording.delete")
    assert (entries[0].target_id, entries[0].detail["files"]) == (recording.id, 2)
    status, _, _ = await server.api("DELETE", f"/recordings/{recording.id}", token=meeting["host_session"])
    assert status == 403  # gone: looks like anyone else's
    status, _, _ = await server.api("DELETE", f"/recordings/{recording.id}", token=server.operator_key)
    assert status == 404


async def test_operator_content_removal_takes_recordings_and_transcripts(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    root = tmp_path / "store"
    await local_storage(server, meeting["customer_id"], root)
    first, _ = await recorded(server, meeting, root, {"a.ogg": b"1"})
    second, _ = await recorded(server, meeting, root, {"transcript.json": json.dumps(TRANSCRIPT).encode()},
                               kind="transcription", state="active")  # fmt: skip
    content = f"/meetings/{meeting['number']}/content"
    status, body, _ = await server.api("DELETE", content, token=meeting["host_session"])
    assert status == 403
    answer = await server.call("DELETE", f"/meetings/{meeting['number']}/content", token=server.operator_key)
    assert answer["removed"] == {"chat_messages": 0, "recordings": 2, "files": 2, "participants": 0,
                                 "consent_entries": 0, "webhook_deliveries": 0}  # fmt: skip
    assert answer["storage_pending"] == []
    assert await server.services.store.list_recordings(meeting["meeting_id"]) == []
    assert not (root / first.key_prefix).exists() and not (root / second.key_prefix).exists()


async def test_deleting_a_meeting_takes_its_recordings(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    other = await server.create_meeting()
    root = tmp_path / "store"
    await local_storage(server, meeting["customer_id"], root)
    gone, _ = await recorded(server, meeting, root, {"a.ogg": b"1"})
    kept, _ = await recorded(server, other, root, {"b.ogg": b"2"})
    await server.call("DELETE", f"/meetings/{meeting['number']}", token=meeting["host_session"], expect=204)
    assert await server.services.store.list_recordings(meeting["meeting_id"]) == []
    assert not (root / gone.key_prefix).exists()
    assert (root / kept.key_prefix / "b.ogg").read_bytes() == b"2"


# ---------------------------------------------------------------------- transcripts


async def test_transcript_only_for_the_host_and_participants(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting("Weekly <sync>")
    root = tmp_path / "store"
    await local_storage(server, meeting["customer_id"], root)
    bo = await server.join(meeting, "Bo")
    files = {"transcript.json": json.dumps(TRANSCRIPT).encode(), "transcript.vtt": b"WEBVTT"}
    recording, _ = await recorded(server, meeting, root, files, kind="transcription")
    api_path = f"/recordings/{recording.id}/transcript"
    page = f"{server.base_url}/t/{recording.id}"

    elsewhere = await server.create_meeting("Elsewhere")
    outsider = await server.join(elsewhere, "Eve")
    admin_key = (await server.new_customer())["api_key"]
    refusals = {
        None: 401,
        outsider["token"]: 403,  # a participant of another meeting
        admin_key: 403,  # another customer's admin
        server.operator_key: 403,  # not the host, not a participant
        (await server.new_host())["token"]: 403,
        "hs_unknown": 403,
    }
    for token, expected in refusals.items():
        status, body, _ = await server.api("GET", api_path, token=token)
        assert status == expected and "Budget" not in json.dumps(body), (token, body)
        status, data, _ = await raw_get(page + (f"?token={token}" if token else ""))
        assert status == 403 and b"Budget" not in data, token

    for token in (meeting["host_session"], meeting["host_token"], bo["token"]):
        body = await server.call("GET", api_path, token=token)
        assert body["disclaimer"] == "Transcripts may be incomplete or inaccurate."
        assert [s["text"] for s in body["segments"]] == [TRANSCRIPT["segments"][0]["text"], "Budget approved"]
        assert body["speakers"] == ["Ann", "Bo"] and body["meeting_number"] == meeting["meeting_number"]

    # A URL never carries a join token or a sign-in: the page wants a transcript link.
    for token in (bo["token"], meeting["host_session"]):
        status, data, _ = await raw_get(f"{page}?token={token}")
        assert status == 403 and b"Budget" not in data
    link = await server.call("GET", f"{api_path}/link", token=bo["token"])
    assert link["url"].startswith(f"/t/{recording.id}?t=") and bo["token"] not in link["url"]
    status, data, headers = await raw_get(server.base_url + link["url"])
    text = data.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Transcripts may be incomplete or inaccurate." in text and "Budget approved" in text
    assert "<script>" not in text and "&lt;script&gt;" in text and "Weekly &lt;sync&gt;" in text
    assert "0:01:05" in text  # Bo's line at 65 s
    assert "script-src" not in headers["Content-Security-Policy"] and headers["Referrer-Policy"] == "no-referrer"
    status, data, _ = await raw_get(page, headers={"Authorization": f"Bearer {meeting['host_session']}"})
    assert status == 200 and b"Budget approved" in data

    # Removed by the host: the token no longer opens it.
    await server.call("POST", f"/meetings/{meeting['number']}/participants/{bo['participant_id']}/remove",
                      token=meeting["host_session"])  # fmt: skip
    status, _, _ = await server.api("GET", api_path, token=bo["token"])
    assert status == 403
    # A link of another recording, or an expired one, opens nothing.
    tokens = server.services.tokens
    other = tokens.make_transcript_token("another-recording", 3600)
    expired = tokens.make_transcript_token(recording.id, 10, now=time.time() - 60)
    for t in (other, expired, meeting["host_session"]):
        status, data, _ = await raw_get(f"{page}?t={t}")
        assert status == 403 and b"Budget" not in data


async def test_transcript_files_are_not_for_the_admin_or_the_operator(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    root = tmp_path / "store"
    await local_storage(server, meeting["customer_id"], root)
    files = {"transcript.json": json.dumps(TRANSCRIPT).encode(), "track.ogg": b"x"}
    recording, rows = await recorded(server, meeting, root, files, kind="transcription")
    transcript = next(r for r in rows if r.kind == "transcript")
    track = next(r for r in rows if r.kind != "transcript")
    admin_key = (await server.call("POST", f"/customers/{meeting['customer_id']}/api-key",
                                   token=server.operator_key))["api_key"]  # fmt: skip
    for token in (admin_key, server.operator_key):
        status, body, _ = await server.api("GET", f"/recordings/{recording.id}/files/{transcript.id}/link", token=token)
        assert (status, error_code(body)) == (403, "forbidden")
        status, body, _ = await server.api("GET", f"/recordings/{recording.id}/transcript", token=token)
        assert status == 403 and "Budget" not in json.dumps(body)
        await server.call("GET", f"/recordings/{recording.id}/files/{track.id}/link", token=token)  # media: theirs
    link = await server.call("GET", f"/recordings/{recording.id}/files/{transcript.id}/link",
                             token=meeting["host_session"])  # fmt: skip
    assert (await raw_get(server.base_url + link["url"]))[0] == 200


async def test_an_expired_join_token_does_not_open_a_transcript(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    root = tmp_path / "store"
    await local_storage(server, meeting["customer_id"], root)
    bo = await server.join(meeting, "Bo")
    recording, _ = await recorded(server, meeting, root, {"transcript.json": json.dumps(TRANSCRIPT).encode()})
    tokens = server.services.tokens
    old = tokens.make_join_token(participant_id=bo["participant_id"], meeting_id=meeting["meeting_id"],
                                 live_session_id=meeting["live_session_id"], name="Bo", role="participant",
                                 now=time.time() - tokens.join_ttl_s - 60)  # fmt: skip
    for path in (f"/recordings/{recording.id}/transcript", f"/recordings/{recording.id}/transcript/link"):
        assert (await server.api("GET", path, token=old))[0] == 403


async def test_a_participant_needs_to_have_been_there(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting(waiting_room=True)
    root = tmp_path / "store"
    await local_storage(server, meeting["customer_id"], root)
    recording, _ = await recorded(server, meeting, root, {"transcript.json": json.dumps(TRANSCRIPT).encode()})
    waiting = await server.join(meeting, "Wes")
    assert waiting["status"] == "waiting_room"
    status, _, _ = await server.api("GET", f"/recordings/{recording.id}/transcript", token=waiting["token"])
    assert status == 403
    # On the ledger (notified while it ran, and left): that is enough.
    await server.services.store.add_consent(
        meeting_id=meeting["meeting_id"], participant_id=waiting["participant_id"], name="Wes",
        live_session_id=meeting["live_session_id"], recording_id=recording.id, decision="left",
    )  # fmt: skip
    assert (await server.call("GET", f"/recordings/{recording.id}/transcript", token=waiting["token"]))["segments"]


async def test_transcript_not_ready(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    await local_storage(server, meeting["customer_id"], tmp_path / "store")
    recording, _ = await recorded(server, meeting, tmp_path / "store", {"a.ogg": b"1"}, state="active")
    status, body, _ = await server.api("GET", f"/recordings/{recording.id}/transcript", token=meeting["host_session"])
    assert (status, error_code(body)) == (404, "not_ready")
    status, data, _ = await raw_get(f"{server.base_url}/t/{recording.id}", headers={"Authorization": f"Bearer {meeting['host_token']}"})
    assert status == 200 and b"not ready yet" in data and b"incomplete or inaccurate" in data


# ---------------------------------------------------------------------- consent, start/stop


async def test_consent_ledger(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting()
    store = server.services.store
    entry = await store.add_consent(
        meeting_id=meeting["meeting_id"], participant_id="p1", name="Bo", live_session_id=meeting["live_session_id"],
        channels=["banner", "audio", "event"],
    )  # fmt: skip
    await store.update_consent(entry.id, decision="continued")
    path = f"/meetings/{meeting['number']}/consent"
    for token in (meeting["host_session"], meeting["host_token"], server.operator_key):
        ledger = await server.call("GET", path, token=token)
        [item] = ledger["entries"]
        assert (item["participant_id"], item["decision"]) == ("p1", "continued")
        assert item["channels"] == ["banner", "audio", "event"]
        assert item["decided_at"] is not None
    assert (await server.call("GET", path + "?live_session_id=other", token=meeting["host_session"]))["entries"] == []
    guest = await server.join(meeting, "Guest")
    for token in (guest["token"], (await server.new_host())["token"]):
        status, body, _ = await server.api("GET", path, token=token)
        assert status == 403 and "Bo" not in json.dumps(body)


async def test_start_stop_refuse_the_wrong_caller(conclave_server):
    server = conclave_server
    meeting = await server.create_meeting()
    guest = await server.join(meeting, "Guest")
    for what in ("recording", "transcription"):
        path = f"/meetings/{meeting['number']}/{what}"
        for token in (guest["token"], server.operator_key, (await server.new_host())["token"]):
            status, body, _ = await server.api("POST", path, token=token, json_body={"action": "start"})
            assert (status, error_code(body)) == (403, "forbidden"), (what, token)
        status, body, _ = await server.api("POST", path, token=meeting["host_session"], json_body={"action": "go"})
        assert (status, error_code(body)) == (400, "invalid_field")
    assert await server.services.store.list_recordings(meeting["meeting_id"]) == []


# ---------------------------------------------------------------------- webhooks and metrics


def test_recording_webhook_payloads():
    started = recording_payload(
        "recording.started", meeting_id="m1", meeting_number="12345678901", recording_id="r1", kind="recording",
        started_by="Ann", started_at=0.0,
    )  # fmt: skip
    assert list(started)[:3] == ["meeting_id", "meeting_number", "recording_id"]
    assert started["meeting_number"] == "123-4567-8901" and started["started_at"] == "1970-01-01T00:00:00.000Z"
    ready = recording_payload("transcript.ready", meeting_id="m1", meeting_number="123-4567-8901", recording_id="r1",
                              keys=["t.json"])  # fmt: skip
    assert ready["transcript_url"] == "/t/r1"
    with pytest.raises(ValueError):
        recording_payload("recording.paused", meeting_id="m1", meeting_number="1", recording_id="r1")
    with pytest.raises(ValueError):
        recording_payload("recording.failed", meeting_id="m1", meeting_number="1", reason="storage")


async def test_recorder_metrics_are_exported_and_stay_monotonic(conclave_server):
    server = conclave_server
    metrics = server.services.metrics

    async def scrape() -> dict[str, float]:
        status, body, _ = await raw_get(server.base_url + "/metrics")
        assert status == 200
        values = {}
        for line in body.decode().splitlines():
            if line.startswith(("conclave_recording", "conclave_recorder", "conclave_transcription")):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    before = await scrape()
    assert before["conclave_recordings_active"] == 0 and before["conclave_recorder_restarts_total"] == 0
    metrics.recorder.update({
        "gauges": {"active_recordings": 2, "spool_bytes": 4096, "lag_seconds": 0.25,
                   "transcription_backlog_seconds": 30},
        "counters": {"bytes_written": 1000, "segments_flushed": 4, "upload_attempts": 5, "upload_failures": 1},
    })  # fmt: skip
    values = await scrape()
    assert values["conclave_recordings_active"] == 2 and values["conclave_recording_spool_bytes"] == 4096
    assert values["conclave_recording_lag_seconds"] == 0.25 and values["conclave_transcription_backlog_seconds"] == 30
    assert values["conclave_recording_bytes_written_total"] == 1000
    assert values["conclave_recording_upload_failures_total"] == 1
    # A new recorder process counts from 0 again; the exported counters do not go down.
    metrics.recorder.recorder_restarted()
    metrics.recorder.update({"counters": {"bytes_written": 10, "segments_flushed": 1}, "gauges": {}})
    values = await scrape()
    assert values["conclave_recorder_restarts_total"] == 1 and values["conclave_recordings_active"] == 0
    assert values["conclave_recording_bytes_written_total"] == 1010
    assert values["conclave_recording_segments_flushed_total"] == 5
    # ... also when the restart was not reported.
    metrics.recorder.update({"counters": {"bytes_written": 3}, "gauges": {}})
    assert (await scrape())["conclave_recording_bytes_written_total"] == 1013
    # Drops by reason, one labelled counter.
    metrics.recorder.update({"counters": {"packets_unknown_peer": 2, "packets_malformed": 1}, "gauges": {}})
    values = await scrape()
    assert values['conclave_recorder_packets_dropped_total{reason="unknown_peer"}'] == 2
    assert values['conclave_recorder_packets_dropped_total{reason="malformed"}'] == 1
    assert values['conclave_recorder_packets_dropped_total{reason="unknown_ssrc"}'] == 0


# ---------------------------------------------------------------------- S3


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    require_weed()
    with SeaweedServer(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


async def test_s3_download_and_delete(conclave_server, seaweed):
    server = conclave_server
    meeting = await server.create_meeting()
    customer = await server.services.store.get_customer(meeting["customer_id"])
    settings = seaweed.settings(prefix="acme/")
    await server.call("PUT", f"/customers/{customer.id}/storage", token=server.operator_key, json_body=settings)
    recording, (track, transcript) = await recorded(
        server, meeting, None, {"ann-0.ogg": b"x" * 300_000, "transcript.json": json.dumps(TRANSCRIPT).encode()}
    )
    client = seaweed.client()
    for item, data in ((track, b"x" * 300_000), (transcript, json.dumps(TRANSCRIPT).encode())):
        client.put_object(Bucket=seaweed.buckets[0], Key="acme/" + item.key, Body=data)
    client.put_object(Bucket=seaweed.buckets[0], Key=f"acme/{recording.key_prefix}late.ogg", Body=b"late")
    client.put_object(Bucket=seaweed.buckets[0], Key="acme/recordings/other.ogg", Body=b"other")

    link = await server.call("GET", f"/recordings/{recording.id}/files/{track.id}/link", token=meeting["host_session"])
    status, data, headers = await raw_get(server.base_url + link["url"])
    assert (status, data, headers["Content-Length"]) == (200, b"x" * 300_000, "300000")
    body = await server.call("GET", f"/recordings/{recording.id}/transcript", token=meeting["host_token"])
    assert body["segments"][1]["text"] == "Budget approved"

    await server.call("DELETE", f"/recordings/{recording.id}", token=meeting["host_session"], expect=204)
    listed = client.list_objects_v2(Bucket=seaweed.buckets[0], Prefix="acme/")
    assert [o["Key"] for o in listed.get("Contents", [])] == ["acme/recordings/other.ogg"]
    assert await server.services.store.get_recording(recording.id) is None


async def test_s3_storage_unreachable_rows_go_anyway_and_the_files_are_pending(conclave_server, caplog):
    server = conclave_server
    meeting = await server.create_meeting()
    caplog.set_level(logging.DEBUG)
    settings = {"kind": "s3", "endpoint_url": "http://127.0.0.1:9", "bucket": "bkt", "access_key_id": "a",
                "secret_access_key": SECRET_ACCESS_KEY}  # fmt: skip
    await server.call("PUT", f"/customers/{meeting['customer_id']}/storage", token=server.operator_key,
                      json_body=settings)  # fmt: skip
    recording, (item,) = await recorded(server, meeting, None, {"a.ogg": b"1"})
    link = await server.call("GET", f"/recordings/{recording.id}/files/{item.id}/link", token=meeting["host_session"])
    status, data, _ = await raw_get(server.base_url + link["url"])
    assert (status, error_code(json.loads(data))) == (502, "storage_unavailable")
    # The deletion happens here at once; the storage's part is reported apart (202).
    status, body, _ = await server.api("DELETE", f"/recordings/{recording.id}", token=meeting["host_session"])
    assert status == 202 and body["recording_id"] == recording.id
    [pending] = body["storage_pending"]
    assert (pending["recording_id"], pending["state"], pending["files"], pending["attempts"]) == (
        recording.id, "pending", 1, 1)  # fmt: skip
    store = server.services.store
    assert await store.get_recording(recording.id) is None
    # Content removal too: the chat goes whatever the storage says.
    other, _ = await recorded(server, meeting, None, {"b.ogg": b"2"})
    await store.append_chat(meeting["meeting_id"], "p1", "Bo", "hello", 1)
    content = f"/meetings/{meeting['number']}/content"
    answer = await server.call("DELETE", content, token=server.operator_key)
    assert answer["removed"]["chat_messages"] == 1 and answer["removed"]["recordings"] == 1
    assert [p["recording_id"] for p in answer["storage_pending"]] == [other.id]
    assert await store.list_chat(meeting["meeting_id"]) == []
    # The operator sees what is pending and can retry (still down: still pending).
    listed = await server.call("GET", "/storage-deletions", token=server.operator_key)
    assert [d["recording_id"] for d in listed["deletions"]] == [recording.id, other.id]
    status, _, _ = await server.api("GET", "/storage-deletions", token=meeting["host_session"])
    assert status == 403
    retried = await server.call("POST", f"/storage-deletions/{pending['id']}/retry", token=server.operator_key)
    assert (retried["state"], retried["attempts"]) == ("pending", 2) and retried["last_error"]
    # The storage will never come back: the operator gives up on one; it is gone with its settings.
    await server.call("DELETE", f"/storage-deletions/{pending['id']}", token=server.operator_key, expect=204)
    assert await store.get_storage_deletion(pending["id"]) is None
    status, _, _ = await server.api("DELETE", f"/storage-deletions/{pending['id']}", token=server.operator_key)
    assert status == 404
    status, _, _ = await server.api("DELETE", f"/storage-deletions/{answer['storage_pending'][0]['id']}",
                                    token=meeting["host_session"])  # fmt: skip
    assert status == 403
    everything = json.dumps([body, answer, listed, retried])
    assert SECRET_ACCESS_KEY not in everything and "secret" not in everything
    assert SECRET_ACCESS_KEY not in "\n".join(r.getMessage() for r in caplog.records)


async def test_start_and_stop_through_rest(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    path = f"/meetings/{meeting['number']}/recording"
    status, body, _ = await server.api("POST", path, token=meeting["host_session"], json_body={"action": "start"})
    assert (status, error_code(body)) == (409, "storage_not_configured")
    await local_storage(server, meeting["customer_id"], tmp_path / "store")
    started = await server.call("POST", path, token=meeting["host_session"], json_body={"action": "start"})
    assert started == {"meeting_number": meeting["meeting_number"], "recording": True, "transcription": False}
    [recording] = (await server.call("GET", f"/meetings/{meeting['number']}/recordings", token=meeting["host_token"]))[
        "recordings"]  # fmt: skip
    assert recording["state"] == "active" and recording["kind"] == "recording"
    stopped = await server.call("POST", path, token=meeting["host_token"], json_body={"action": "stop"})
    assert stopped == {"meeting_number": meeting["meeting_number"], "recording": False, "transcription": False}


async def test_transcription_hints_through_rest(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    await local_storage(server, meeting["customer_id"], tmp_path / "store")
    path = f"/meetings/{meeting['number']}/transcription"
    for bad, field in (({"action": "start", "hints": "Ann"}, "hints"), ({"action": "start", "hints": [""]}, "hints[0]")):
        status, body, _ = await server.api("POST", path, token=meeting["host_session"], json_body=bad)
        assert (status, error_code(body)) == (400, "invalid_field") and body["error"]["message"].startswith(field)
    hints = ["Conclave", "Ann Example"]
    started = await server.call("POST", path, token=meeting["host_session"], json_body={"action": "start", "hints": hints})
    assert started["transcription"] is True
    job = server.services.recordings.active(server.services.registry.get(meeting["meeting_id"]))["transcription"]
    assert job.hints == hints  # what the engine gets
    await server.call("POST", path, token=meeting["host_session"], json_body={"action": "stop"})


# ---------------------------------------------------------------------- SSRF through S3 (issue 10)


async def test_an_s3_endpoint_on_this_server_is_refused_when_saved(conclave_server_factory):
    """The attack: control's own API as a customer's S3 endpoint, fetched by control and
    streamed back through a download link. Refused at save time by default."""
    server = await conclave_server_factory(outbound={"allowed_networks": ()})
    host = await server.new_host()
    created = await server.call("POST", f"/customers/{host['customer_id']}/api-key", token=server.operator_key)
    for endpoint in (f"{server.base_url}/api/v1", "http://2130706433:8080", "http://169.254.169.254",
                     "http://[::1]:8080", "http://localhost:8080"):  # fmt: skip
        settings = {"kind": "s3", "endpoint_url": endpoint, "bucket": "bkt", "access_key_id": "a",
                    "secret_access_key": SECRET_ACCESS_KEY}  # fmt: skip
        status, body, _ = await server.api("PUT", f"/customers/{host['customer_id']}/storage",
                                           token=created["api_key"], json_body=settings)  # fmt: skip
        assert (status, error_code(body)) == (400, "invalid_field")
        assert body["error"]["message"].startswith("storage.endpoint_url: ")
        assert SECRET_ACCESS_KEY not in json.dumps(body)


async def test_an_inward_s3_endpoint_is_refused_at_use_time(conclave_server_factory):
    """Settings stored before the rule, or a name whose DNS changed: a download link is
    answered 502 and nothing reaches the inward address."""
    server = await conclave_server_factory(outbound={"allowed_networks": ()})
    seen: list[str] = []

    async def inward(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="secret of the inside")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", inward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        meeting = await server.create_meeting()
        for endpoint in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
            await server.services.store.set_customer_storage(meeting["customer_id"], {
                "kind": "s3", "endpoint_url": endpoint, "bucket": "bkt", "access_key_id": "a",
                "secret_access_key": SECRET_ACCESS_KEY})  # fmt: skip
            recording, (item,) = await recorded(server, meeting, None, {"a.ogg": b"1"})
            link = await server.call("GET", f"/recordings/{recording.id}/files/{item.id}/link",
                                     token=meeting["host_session"])  # fmt: skip
            status, data, _ = await raw_get(server.base_url + link["url"])
            assert (status, error_code(json.loads(data))) == (502, "storage_unavailable")
        assert seen == []
    finally:
        await runner.cleanup()


async def test_recording_no_longer_allowed_stops_at_once(conclave_server, tmp_path):
    """The operator's `recording_allowed: false` acts on the live meeting, not only on the next start."""
    server = conclave_server
    meeting = await server.create_meeting()
    await local_storage(server, meeting["customer_id"], tmp_path / "store")
    path = f"/meetings/{meeting['number']}/recording"
    await server.call("POST", path, token=meeting["host_session"], json_body={"action": "start"})
    await server.call("PATCH", f"/customers/{meeting['customer_id']}", token=server.operator_key,
                      json_body={"limits": {"recording_allowed": False}})  # fmt: skip
    [recording] = (await server.call("GET", f"/meetings/{meeting['number']}/recordings",
                                     token=meeting["host_session"]))["recordings"]  # fmt: skip
    assert recording["state"] == "stopped"
    status, body, _ = await server.api("POST", path, token=meeting["host_session"], json_body={"action": "start"})
    assert (status, error_code(body)) == (403, "recording_not_allowed")
