"""Every authenticated endpoint of the OpenAPI document (accounts' and sessions' alike),
tried with no credentials, with another customer's credentials (its admin key and one of
its hosts), and with a participant's join token where a host's is needed: 401/403, never
another customer's data, and nothing changes."""

from __future__ import annotations

import json
from typing import Any

from control.http.openapi import document
from tests.support.accounts_client import Api, make_customer, make_host, make_meeting

# Bodies that would be accepted from the right caller, so a refusal is about who calls.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/customers"): {"name": "Intruder"},
    ("patch", "/customers/{customer_id}"): {"name": "Renamed", "limits": {"max_concurrent_meetings": 99}},
    ("put", "/customers/{customer_id}/webhook"): {"url": "http://127.0.0.1:9/hook"},
    ("post", "/customers/{customer_id}/hosts"): {"email": "eve@evil.example", "name": "Eve", "password": "password123"},
    ("patch", "/hosts/{host_id}"): {"name": "Renamed", "password": "password123"},
    ("patch", "/meetings/{number}"): {"title": "Renamed", "passcode": "hacked123"},
    ("post", "/meetings/{number}/lock"): {"locked": True},
    ("post", "/meetings/{number}/participants/{participant_id}/mute"): {"source": "microphone", "muted": True},
    ("put", "/customers/{customer_id}/storage"): {
        "kind": "s3", "bucket": "evil-bucket", "access_key_id": "AK", "secret_access_key": "SK",
    },
    ("post", "/meetings/{number}/recording"): {"action": "start"},
    ("post", "/meetings/{number}/transcription"): {"action": "start"},
    ("post", "/meetings/{number}/ingests"): {"kind": "rtp", "name": "Intruder camera"},
}
# Operations on the caller's own account (nothing of another customer in the path): the
# other customer's admin or host may use them, for itself, as long as nothing leaks.
OWN_ACCOUNT = {("post", "/meetings"), ("get", "/meetings"), ("get", "/auth/me"), ("post", "/auth/logout")}


def protected_operations() -> list[tuple[str, str, bool]]:
    """(method, path, names another customer's resource) of every operation that needs credentials."""
    operations = []
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or operation.get("security") == []:
                continue
            operations.append((method, path, "{" in path))
    # Destructive ones last, so every other attempt meets the resources intact.
    operations.sort(key=lambda op: (op[0] == "delete", op[1].endswith(("suspend", "/end")), op))
    return operations


async def test_every_endpoint_refuses_the_wrong_caller(conclave_server):
    services = conclave_server.services
    api = Api(conclave_server.base_url)
    op_key = services.secrets.operator_key
    acme, other = await make_customer(api, op_key, "Acme Secret Corp"), await make_customer(api, op_key, "Other")
    ann, eve = await make_host(api, acme, "ann@acme.example"), await make_host(api, other, "eve@other.example")
    meeting = await make_meeting(api, ann, title="Acme board meeting")
    await services.store.append_chat(meeting["id"], "p1", "Bob", "acme secret chat", 1)
    participant = await services.store.add_participant(meeting["id"], name="Pat", role="participant", state="admitted")
    join_token = services.tokens.make_join_token(
        participant_id=participant.id, meeting_id=meeting["id"], live_session_id=None,
        name="Pat", role="participant",
    )
    # A recording (with a file) of another of Acme's meetings: Pat was not in that one.
    other_meeting = await make_meeting(api, ann, title="Acme other meeting")
    recording = await services.store.create_recording(
        meeting_id=other_meeting["id"], customer_id=acme.id, kind="recording", started_by="Host"
    )
    await services.store.update_recording(recording.id, state="stopped")
    recorded = await services.store.add_recording_file(recording.id, key="recordings/acme/mix.ogg", kind="mix", size=3)
    # And one of Acme's recordings deleted already, its files still owed by the storage.
    gone = await services.store.create_recording(
        meeting_id=other_meeting["id"], customer_id=acme.id, kind="recording", started_by="Host"
    )
    deletion = await services.store.retire_recording(gone.id)
    values = {"customer_id": acme.id, "host_id": ann.id, "number": meeting["meeting_number"],
              "participant_id": participant.id, "recording_id": recording.id, "file_id": recorded.id,
              "deletion_id": deletion.id, "ingest_id": "an-ingest-id"}
    secrets_of_acme = [acme.id, ann.id, meeting["id"], meeting["meeting_number"], meeting["passcode"],
                       "Acme Secret Corp", "ann@acme.example", "Acme board meeting", "acme secret chat"]

    callers = {"nobody": None, "other admin": other.api_key, "other host": eve.token, "participant": join_token}
    failures = []
    for method, path, targets_acme in protected_operations():
        url = path.format(**values)
        body = BODIES.get((method, path), {})
        for who, token in callers.items():
            if who == "other host" and (method, path) == ("post", "/auth/logout"):
                continue  # it would sign eve out, which is her right, not a breach
            status, answer = await api.call(method.upper(), url, token=token, json=body)
            text = json.dumps(answer) if not isinstance(answer, str) else answer
            leaked = [s for s in secrets_of_acme if s in text]
            allowed = (401,) if who == "nobody" else (401, 403)
            own = (method, path) in OWN_ACCOUNT and who.startswith("other")
            if leaked or (status not in allowed and not own) or (own and status >= 500):
                failures.append(f"{who}: {method.upper()} {path} -> {status} {text[:200]} leaked={leaked}")
    assert failures == [], "\n".join(failures)

    # Nothing of Acme changed.
    store = services.store
    assert (await store.get_customer(acme.id)).status == "active"
    assert (await store.get_customer(acme.id)).name == "Acme Secret Corp"
    host = await store.get_host(ann.id)
    assert host.status == "active" and host.name == "Host"
    again = await store.get_meeting(meeting["id"])
    assert (again.status, again.title, again.passcode) == ("scheduled", "Acme board meeting", meeting["passcode"])
    assert [m.text for m in await store.list_chat(meeting["id"])] == ["acme secret chat"]
    assert await store.list_ingests(meeting["id"]) == []
    assert (await store.get_participant(participant.id)).state == "admitted"
    assert len(await store.list_hosts(acme.id)) == 1
    assert await store.get_customer_storage(acme.id) is None
    assert [f.id for f in await store.list_recording_files(recording.id)] == [recorded.id]
    assert (await store.get_storage_deletion(deletion.id)).attempts == 0
    assert (await api.ok("GET", "/auth/me", token=ann.token))["host"]["id"] == ann.id
    assert (await api.ok("GET", f"/customers/{acme.id}", token=acme.api_key))["id"] == acme.id
