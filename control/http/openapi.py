"""The OpenAPI 3 document of `/api/v1`, served at `/api/v1/openapi.json`.

Written by hand next to the handlers it describes and checked two ways: a test compares
its operations with the routes the app registers, and schemathesis calls the real server
with generated requests and checks every response against it. When a handler changes its
answer, change it here in the same commit.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from config import LimitsConfig
from control.meeting import numbers

Schema = dict[str, Any]

ID = {"type": "string", "minLength": 1}
TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _obj(properties: dict[str, Schema], required: list[str] | None = None, *, closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    if closed:
        schema["additionalProperties"] = False
    return schema


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(key: str, item: str) -> Schema:
    return _obj({key: {"type": "array", "items": _ref(item)}})


# Limits that are words (config rule `one_of`); the rule does not list its choices.
LIMIT_CHOICES = {"consent_policy": ["notify", "require"]}


def _limit_schema(partial: bool, nullable: bool) -> Schema:
    properties: dict[str, Schema] = {}
    for name, rule in LimitsConfig.rules().items():
        if rule.kind is bool:
            item: Schema = {"type": "boolean"}
        elif rule.kind is str:
            item = {"enum": LIMIT_CHOICES[name]}
        else:
            item = {"type": "integer", "minimum": 1}
        if nullable:
            item = {"oneOf": [item, {"type": "null"}]}
        properties[name] = item
    return _obj(properties, [] if partial else None)


# Storage settings as shown (StorageSettings) and as sent (StoragePut, which adds the secret).
STORAGE_FIELDS: dict[str, Schema] = {
    "kind": {"enum": ["local", "s3"]},
    "root": {"type": "string"},
    "endpoint_url": {"type": "string"},
    "region": {"type": "string"},
    "bucket": {"type": "string"},
    "prefix": {"type": "string"},
    "access_key_id": {"type": "string"},
    "addressing_style": {"enum": ["path", "virtual", "auto"]},
}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj({"error": _obj({"code": {"type": "string"}, "message": {"type": "string"}})}),
    "Limits": _limit_schema(partial=False, nullable=False),
    "LimitOverrides": _limit_schema(partial=True, nullable=False),
    "LimitChanges": _limit_schema(partial=True, nullable=True),
    "Customer": _obj(
        {
            "id": ID,
            "name": {"type": "string"},
            "status": {"enum": ["active", "suspended"]},
            "limits": _ref("Limits"),
            "limit_overrides": _ref("LimitOverrides"),
            "webhook_url": {"type": "string"},
            "created_at": TIME,
        }
    ),
    "Host": _obj(
        {
            "id": ID,
            "customer_id": ID,
            "email": {"type": "string"},
            "name": {"type": "string"},
            "status": {"enum": ["active", "suspended"]},
            "created_at": TIME,
        }
    ),
    "Meeting": _obj(
        {
            "id": ID,
            "meeting_number": {"type": "string", "pattern": numbers.DISPLAY_PATTERN},
            "title": {"type": "string"},
            "passcode": {"type": "string"},
            "join_url": {"type": "string"},
            "start_time": NULLABLE_TIME,
            "duration_minutes": {"type": ["integer", "null"]},
            "waiting_room": {"type": "boolean"},
            "status": {"enum": ["scheduled", "live", "ended"]},
            "locked": {"type": "boolean"},
            # null: the default (25, or the customer's limits.max_last_n when lower)
            "last_n": {"type": ["integer", "null"], "minimum": 1},
            # false: a webinar (participants join receive-only until the host promotes them)
            "attendees_publish": {"type": "boolean"},
            "host_id": ID,
            "customer_id": ID,
            "created_at": TIME,
        }
    ),
    "AuditEntry": _obj(
        {
            "id": ID,
            "ts": TIME,
            "actor_kind": {"type": "string"},
            "actor_id": {"type": "string"},
            "action": {"type": "string"},
            "target_kind": {"type": "string"},
            "target_id": {"type": "string"},
            "detail": {"type": "object"},
            "source_ip": {"type": "string"},
        }
    ),
    "StorageSettings": _obj(
        {
            **STORAGE_FIELDS,
            "multipart_threshold": {"type": "integer"},
            "part_size": {"type": "integer"},
            "verify_by_reading_back": {"type": "boolean"},
            "secret_set": {"type": "boolean"},
        },
        ["kind", "secret_set"],
    ),
    "RecordingFile": _obj(
        {
            "id": ID,
            "key": {"type": "string"},
            "kind": {"type": "string"},
            "track_id": {"type": "string"},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string"},
            "content_type": {"type": "string"},
            "start": {"type": ["number", "null"]},
            "end": {"type": ["number", "null"]},
            "uploaded_at": TIME,
        }
    ),
    "Recording": _obj(
        {
            "id": ID,
            "meeting_id": ID,
            "live_session_id": {"type": ["string", "null"]},
            "kind": {"enum": ["recording", "transcription"]},
            "state": {"enum": ["active", "stopped", "failed"]},
            "started_at": TIME,
            "stopped_at": NULLABLE_TIME,
            "started_by": {"type": "string"},
            "error": {"type": "string"},
            "transcript_url": {"type": ["string", "null"]},
            "files": {"type": "array", "items": _ref("RecordingFile")},
        }
    ),
    "ConsentEntry": _obj(
        {
            "id": ID,
            "participant_id": {"type": "string"},
            "name": {"type": "string"},
            "live_session_id": {"type": ["string", "null"]},
            "recording_id": {"type": ["string", "null"]},
            "notified_at": TIME,
            "channels": {"type": "array", "items": {"type": "string"}},
            "decision": {"enum": ["pending", "continued", "left"]},
            "decided_at": NULLABLE_TIME,
        }
    ),
    "StorageDeletion": _obj(
        {
            "id": ID,
            "recording_id": ID,
            "meeting_id": ID,
            "customer_id": ID,
            "state": {"enum": ["pending", "done"]},
            "files": {"type": "integer", "minimum": 0},
            "attempts": {"type": "integer", "minimum": 0},
            "last_error": {"type": "string"},
            "created_at": TIME,
            "updated_at": TIME,
        }
    ),
    "WebhookDelivery": _obj(
        {
            "id": ID,
            "event": {"type": "string"},
            "payload": {"type": "string"},
            "attempt": {"type": "integer", "minimum": 1},
            "status": {"enum": ["delivered", "failed", "gave_up"]},
            "response_code": {"type": ["integer", "null"]},
            "error": {"type": "string"},
            "ts": TIME,
        }
    ),
}

# Request bodies. Open (additional properties are ignored by the server) but typed.
NAME = {"type": "string", "minLength": 1, "maxLength": 200}
PASSCODE = {"type": "string", "pattern": "^[A-Za-z0-9]{6,32}$"}
MEETING_FIELDS: dict[str, Schema] = {
    "title": {"type": "string", "maxLength": 200},
    "start_time": TIME,
    "duration_minutes": {"type": "integer", "minimum": 1},
    "passcode": PASSCODE,
    "waiting_room": {"type": "boolean"},
    # How many participants' video each subscriber receives at once; at most the
    # customer's limits.max_last_n (else 400 invalid_field).
    "last_n": {"type": "integer", "minimum": 1},
    # false: a webinar; participants join as receive-only attendees (true by default).
    "attendees_publish": {"type": "boolean"},
}
HOST_FIELDS: dict[str, Schema] = {
    "email": {"type": "string", "format": "email", "maxLength": 254},
    "name": NAME,
    "password": {"type": "string", "minLength": 8, "maxLength": 1024},
}
BODIES: dict[str, Schema] = {
    "CustomerCreate": _obj(
        {"name": NAME, "limits": _ref("LimitOverrides"), "webhook_url": {"type": "string", "format": "uri"}},
        ["name"],
        closed=False,
    ),
    "CustomerPatch": _obj({"name": NAME, "limits": _ref("LimitChanges")}, [], closed=False),
    "HostCreate": _obj(HOST_FIELDS, closed=False),
    "HostPatch": _obj(HOST_FIELDS, [], closed=False),
    "Webhook": _obj({"url": {"type": "string"}}, closed=False),
    "Login": _obj({"email": {"type": "string"}, "password": {"type": "string"}}, closed=False),
    "StoragePut": _obj(
        {**STORAGE_FIELDS, "secret_access_key": {"type": "string"}},
        ["kind"],
        closed=False,
    ),
    "RecordingAction": _obj({"action": {"enum": ["start", "stop"]}}, ["action"], closed=False),
    "TranscriptionAction": _obj({"action": {"enum": ["start", "stop"]},
                                 "hints": {"type": "array", "maxItems": 50, "items": {"type": "string"}}},
                                ["action"], closed=False),
    "MeetingCreate": _obj(MEETING_FIELDS, [], closed=False),
    "MeetingPatch": _obj(MEETING_FIELDS, [], closed=False),
}


def _json(schema: Schema) -> Schema:
    return {"content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str,
    ok: tuple[int, Schema | None],
    *,
    body: str | Schema | None = None,
    public: bool = False,
    query: list[Schema] | None = None,
    tag: str = "",
    also: dict[int, tuple[str, Schema]] | None = None,
) -> Schema:
    status, schema = ok
    responses: dict[str, Schema] = {str(status): {"description": "OK", **(_json(schema) if schema else {})}}
    for other, (description, other_schema) in (also or {}).items():
        responses[str(other)] = {"description": description, **_json(other_schema)}
    responses["4XX"] = {"description": "Refused: {error: {code, message}}", **_json(_ref("Error"))}
    operation: Schema = {"summary": summary, "responses": responses}
    if tag:
        operation["tags"] = [tag]
    if body is not None:
        schema = _ref(body) if isinstance(body, str) else body
        operation["requestBody"] = {"required": False, **_json(schema)}
    if public:
        operation["security"] = []
    if query:
        operation["parameters"] = query
    return operation


def _path_param(name: str, pattern: str | None = None) -> Schema:
    schema: Schema = {"type": "string", "minLength": 1}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema}


LIMIT_QUERY = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})
CUSTOMER_OUT = _ref("Customer")
HOST_OUT = _ref("Host")
MEETING_OUT = _ref("Meeting")
OBJECT = {"type": "object"}  # answers of control.http.sessions are described by name below
STORAGE_PENDING = {"type": "array", "items": _ref("StorageDeletion")}
# A deletion done here whose files a storage still holds (retried; GET /storage-deletions).
ACCEPTED = "Deleted here; the storage could not delete the files yet (retried)"


def _pending(**fields: Schema) -> dict[int, tuple[str, Schema]]:
    return {202: (ACCEPTED, _obj({**fields, "storage_pending": STORAGE_PENDING}, ["storage_pending"]))}


def _account_paths() -> dict[str, Schema]:
    cust, host = "/customers/{customer_id}", "/hosts/{host_id}"
    return {
        "/customers": {
            "post": _operation(
                "Create a customer (operator); returns its admin API key once",
                (201, _obj({"customer": CUSTOMER_OUT, "api_key": {"type": "string"},
                            "webhook_secret": {"type": "string"}}, ["customer", "api_key"])),
                body="CustomerCreate", tag="operator",
            ),
            "get": _operation("List customers (operator)", (200, _list_of("customers", "Customer")), tag="operator"),
        },
        cust: {
            "get": _operation("A customer (operator, or its admin)", (200, CUSTOMER_OUT), tag="customer"),
            "patch": _operation("Rename, change limits (operator); a null limit removes the override",
                                (200, CUSTOMER_OUT), body="CustomerPatch", tag="operator"),
            "delete": _operation("Delete a customer and everything it has; live meetings end (operator)",
                                 (204, None), tag="operator", also=_pending()),
        },
        f"{cust}/suspend": {"post": _operation("Suspend: its live meetings end, its hosts are signed out",
                                               (200, CUSTOMER_OUT), tag="operator")},
        f"{cust}/unsuspend": {"post": _operation("Unsuspend", (200, CUSTOMER_OUT), tag="operator")},
        f"{cust}/api-key": {"post": _operation("Replace the admin API key; the new one is shown once",
                                               (200, _obj({"api_key": {"type": "string"}})), tag="operator")},
        f"{cust}/webhook": {"put": _operation(
            "Set the webhook URL (\"\" turns it off); returns a new signing secret once",
            (200, _obj({"url": {"type": "string"}, "secret": {"type": ["string", "null"]}})),
            body="Webhook", tag="customer")},
        f"{cust}/webhook/deliveries": {"get": _operation(
            "Webhook delivery attempts, newest first", (200, _list_of("deliveries", "WebhookDelivery")),
            query=[LIMIT_QUERY], tag="customer")},
        f"{cust}/hosts": {
            "post": _operation("Create a host", (201, HOST_OUT), body="HostCreate", tag="customer"),
            "get": _operation("The customer's hosts", (200, _list_of("hosts", "Host")), tag="customer"),
        },
        f"{cust}/meetings": {"get": _operation("The customer's meetings", (200, _list_of("meetings", "Meeting")),
                                               tag="customer")},
        host: {
            "get": _operation("A host", (200, HOST_OUT), tag="customer"),
            "patch": _operation("Change name, email or password (a new password signs the host out)",
                                (200, HOST_OUT), body="HostPatch", tag="customer"),
            "delete": _operation("Delete a host and its meetings with their content; a live one ends",
                                 (204, None), tag="customer", also=_pending()),
        },
        f"{host}/suspend": {"post": _operation("Suspend: the live meeting ends, the host is signed out",
                                               (200, HOST_OUT), tag="customer")},
        f"{host}/unsuspend": {"post": _operation("Unsuspend", (200, HOST_OUT), tag="customer")},
        "/auth/login": {"post": _operation(
            "Host sign-in; one live sign-in per host (auth.host_login_policy)",
            (200, _obj({"token": {"type": "string"}, "host": HOST_OUT})), body="Login", public=True, tag="host")},
        "/auth/logout": {"post": _operation("End this sign-in", (204, None), tag="host")},
        "/auth/me": {"get": _operation("The signed-in host, their customer and limits", (200, _obj({
            "host": HOST_OUT, "customer": _obj({"id": ID, "name": {"type": "string"}}), "limits": _ref("Limits")})),
            tag="host")},
        "/cluster": {"get": _operation(
            "The living nodes of the cluster as this node sees them (operator; 409 not_clustered on a single node)",
            (200, _obj({"node_id": {"type": "string"}, "draining": {"type": "boolean"},
                        "nodes": {"type": "array", "items": NODE}})), tag="operator")},  # fmt: skip
        "/cluster/drain": {"post": _operation(
            "Drain this node: no new meeting; after timeout_s its meetings move to other nodes (operator)",
            (202, _obj({"node_id": {"type": "string"}, "draining": {"type": "boolean"}, "started": {"type": "boolean"}})),
            body=_obj({"timeout_s": {"type": "number", "minimum": 0, "maximum": 86400}}, []), tag="operator")},
        "/audit": {"get": _operation("Audit log, newest first (operator)", (200, _list_of("entries", "AuditEntry")),
                                     query=[_query("actor_kind", {"type": "string"}),
                                            _query("action", {"type": "string"}),
                                            _query("target_id", {"type": "string"}),
                                            _query("since", {"type": "string"}),
                                            LIMIT_QUERY],
                                     tag="operator")},
    }


def _meeting_paths() -> dict[str, Schema]:
    mtg = "/meetings/{number}"
    return {
        "/meetings": {
            "post": _operation("Schedule a meeting (host)", (201, MEETING_OUT), body="MeetingCreate", tag="host"),
            "get": _operation(
                "Meetings: a host's own, a customer's (admin), all (operator)",
                (200, _list_of("meetings", "Meeting")),
                query=[_query("status", {"enum": ["scheduled", "live", "ended"]}),
                       _query("customer_id", {"type": "string"}), _query("host_id", {"type": "string"})],
                tag="host",
            ),
        },
        mtg: {
            "get": _operation("A meeting (its host, its customer's admin, the operator)", (200, MEETING_OUT),
                              tag="host"),
            "patch": _operation("Change a meeting (its host)", (200, MEETING_OUT), body="MeetingPatch", tag="host"),
            "delete": _operation("Delete a meeting and its content; a live one ends", (204, None), tag="host",
                                 also=_pending(meeting_number={"type": "string"})),
        },
        f"{mtg}/content": {"delete": _operation(
            "Remove the meeting's content: recordings and transcripts, chat, consent ledger, webhook "
            "deliveries, participants but those of its open live session (operator)",
            (200, _obj({"meeting_number": {"type": "string"},
                        "removed": _obj({name: {"type": "integer", "minimum": 0} for name in (
                            "chat_messages", "recordings", "files", "participants", "consent_entries",
                            "webhook_deliveries")}),
                        "storage_pending": STORAGE_PENDING})),
            tag="operator")},
    }


# Operations of control.http.sessions (the sessions side), kept here so there is one
# document; their answers are those of that module (docs/control-plane-reference.md).
PARTICIPANT = _obj(
    {
        "participant_id": ID,
        "name": {"type": "string"},
        "role": {"enum": ["host", "participant"]},
        "state": {"enum": ["waiting", "admitted", "denied", "removed", "left"]},
        "connected": {"type": "boolean"},
        "joined_at": {"type": "number"},
        "muted": _obj({"microphone": {"type": "boolean"}, "camera": {"type": "boolean"}}, [], closed=False),
        "muted_by_host": {"type": "array", "items": {"type": "string"}},
        # docs/signaling.md, "Webinars" (connected admitted ones)
        "stage_role": {"enum": ["host", "participant", "speaker", "attendee"]},
        "hand_raised": {"type": "boolean"},
        # docs/signaling.md, "Connection quality": the last measures (admitted ones, once measured).
        "connection_quality": _obj(
            {
                "quality": {"enum": ["excellent", "good", "poor", None]},
                "score": {"type": "number"},
                "freeze_ratio": {"type": "number"},
                **{direction: _obj({
                    "loss_ratio": {"type": "number"},
                    "jitter_ms": {"type": "number"},
                    "rtt_ms": {"type": ["number", "null"]},
                    "bandwidth_bps": {"type": ["integer", "null"]},
                }, ["loss_ratio", "jitter_ms", "rtt_ms", "bandwidth_bps"]) for direction in ("publish", "subscribe")},
            },
            ["quality", "score", "freeze_ratio"],
        ),
    },
    ["participant_id", "name", "role", "state", "connected", "joined_at"],
)
DISPLAY_NUMBER = {"type": "string", "pattern": numbers.DISPLAY_PATTERN}
# A node of the cluster (control.cluster.placement.NodeLoad).
NODE = _obj({
    "node_id": {"type": "string"}, "public_url": {"type": "string"}, "draining": {"type": "boolean"},
    "cpu": {"type": "number"}, "participants": {"type": "integer"}, "meetings": {"type": "integer"},
    "packets_per_s": {"type": "number"},
})  # fmt: skip


def _session_paths() -> dict[str, Schema]:
    mtg, pid = "/meetings/{number}", "/meetings/{number}/participants/{participant_id}"
    participant_ops = {
        f"{pid}/{action}": {"post": _operation(f"{action.capitalize()} a participant (the meeting's host)",
                                                (200, _ref("Participant")), tag="host")}
        for action in ("admit", "deny", "remove")
    }
    participant_ops.update({
        f"{pid}/{action}": {"post": _operation(
            f"{action.capitalize()} a participant of a webinar ({what}; the meeting's host); 409 not_a_webinar, "
            "cannot_demote_host or not_connected", (200, _ref("Participant")), tag="host")}
        for action, what in (("promote", "an attendee becomes a speaker"),
                             ("demote", "a speaker becomes an attendee: their tracks stop for everyone"))
    })  # fmt: skip
    return {
        f"{mtg}/start": {"post": _operation(
            "Start the meeting (its host); 409 host_has_live_meeting names the live one",
            (200, _obj({"meeting_number": DISPLAY_NUMBER, "live_session_id": ID, "participant_id": ID,
                        "host_token": {"type": "string"}, "ws_url": {"type": "string"},
                        "status": {"enum": ["live"]}, "started": {"type": "boolean"}})), tag="host")},
        f"{mtg}/end": {"post": _operation("End the meeting for everyone",
                                          (200, _obj({"meeting_number": DISPLAY_NUMBER, "status": {"enum": ["ended"]}})),
                                          tag="host")},
        f"{mtg}/lock": {"post": _operation(
            "Lock or unlock the live meeting", (200, _obj({"meeting_number": DISPLAY_NUMBER, "locked": {"type": "boolean"}})),
            body=_obj({"locked": {"type": "boolean"}}, [], closed=False), tag="host")},
        f"{mtg}/participants": {"get": _operation(
            "Waiting and admitted participants (the meeting's host)",
            (200, _obj({"meeting_number": DISPLAY_NUMBER, "status": {"enum": ["live", "waiting_for_host"]},
                        "waiting": {"type": "array", "items": _ref("Participant")},
                        "admitted": {"type": "array", "items": _ref("Participant")}})), tag="host")},
        f"{mtg}/admit-all": {"post": _operation(
            "Admit everyone waiting", (200, _obj({"admitted": {"type": "array", "items": _ref("Participant")}})),
            tag="host")},
        **participant_ops,
        f"{pid}/mute": {"post": _operation(
            "Mute (or unmute) a participant's microphone or camera server-side", (200, _ref("Participant")),
            body=_obj({"source": {"enum": ["microphone", "camera"]}, "muted": {"type": "boolean"}}, ["source"],
                      closed=False), tag="host")},
        f"{mtg}/join": {"post": _operation(
            "Join with the passcode or a link token and a display name (no account); 429 with Retry-After "
            "past the attempt limits",
            (200, _obj({"token": {"type": "string"}, "participant_id": ID, "ws_url": {"type": "string"},
                        "meeting": _obj({"title": {"type": "string"}, "meeting_number": DISPLAY_NUMBER}),
                        "status": {"enum": ["waiting_for_host", "waiting_room", "admitted"]},
                        "may_publish": {"type": "boolean"}})),
            body=_obj({"name": {"type": "string"}, "passcode": {"type": "string"}, "link_token": {"type": "string"},
                       "token": {"type": "string"}}, ["name"], closed=False),
            public=True, tag="participant")},
        f"{mtg}/rejoin": {"post": _operation(
            "Come back after a lost connection (a server restart, a lost node) with the reconnect credential "
            "the socket gave: a join token that lets you in as yourself, without the waiting room",
            (200, _obj({"token": {"type": "string"}, "participant_id": ID, "ws_url": {"type": "string"},
                        "status": {"enum": ["admitted"]}, "role": {"enum": ["host", "participant"]},
                        "meeting": _obj({"title": {"type": "string"}, "meeting_number": DISPLAY_NUMBER})})),
            body=_obj({"credential": {"type": "string"}}, ["credential"], closed=False),
            public=True, tag="participant")},
        f"{mtg}/public": {"get": _operation(
            "Title and status for the join page, to holders of a link token (?t=)",
            (200, _obj({"meeting_number": DISPLAY_NUMBER, "title": {"type": "string"},
                        "status": {"enum": ["live", "waiting_for_host"]},
                        "attendees_publish": {"type": "boolean"}})),
            query=[_query("t", {"type": "string"})], public=True, tag="participant")},
    }


STORAGE_OUT = _obj({"configured": {"type": "boolean"},
                    "settings": {"oneOf": [_ref("StorageSettings"), {"type": "null"}]}})
ACTIVE_OUT = _obj({"meeting_number": DISPLAY_NUMBER, "recording": {"type": "boolean"},
                   "transcription": {"type": "boolean"}})


def _recording_paths() -> dict[str, Schema]:
    """control.http.recordings and control.http.transcripts (docs/control-plane-reference.md, Recording)."""
    mtg, rec = "/meetings/{number}", "/recordings/{recording_id}"
    return {
        "/customers/{customer_id}/storage": {
            "put": _operation("Set where the customer's recordings go (local: operator only); the secret is "
                              "write-only", (200, STORAGE_OUT), body="StoragePut", tag="customer"),
            "get": _operation("The customer's storage settings, without the secret", (200, STORAGE_OUT),
                              tag="customer"),
            "delete": _operation("Forget the storage settings (recording is refused until set again)", (204, None),
                                 tag="customer"),
        },
        f"{mtg}/recording": {"post": _operation(
            "Start or stop recording (the meeting's host)", (200, ACTIVE_OUT), body="RecordingAction", tag="host")},
        f"{mtg}/transcription": {"post": _operation(
            "Start or stop transcription (the host; participants where allowed), with vocabulary hints",
            (200, ACTIVE_OUT), body="TranscriptionAction", tag="host")},
        f"{mtg}/recordings": {"get": _operation(
            "The meeting's recordings with their files (host, customer admin)",
            (200, _obj({"meeting_number": DISPLAY_NUMBER,
                        "recordings": {"type": "array", "items": _ref("Recording")}})), tag="host")},
        f"{mtg}/consent": {"get": _operation(
            "The meeting's consent ledger (host, customer admin, operator)",
            (200, _obj({"meeting_number": DISPLAY_NUMBER,
                        "entries": {"type": "array", "items": _ref("ConsentEntry")}})),
            query=[_query("live_session_id", {"type": "string"})], tag="host")},
        rec: {
            "get": _operation("A recording with its files (host, customer admin)", (200, _ref("Recording")),
                              tag="host"),
            "delete": _operation("Delete a recording: its record, and its files in the storage it was written to",
                                 (204, None), tag="host", also=_pending(recording_id=ID)),
        },
        f"{rec}/files/{{file_id}}/link": {"get": _operation(
            "A download link for one file, valid 5 minutes",
            (200, _obj({"url": {"type": "string"}, "expires_at": TIME})), tag="host")},
        f"{rec}/transcript": {"get": _operation(
            "The transcript (the meeting's host and participants: host sign-in or join token)",
            (200, _obj({"recording_id": ID, "meeting_number": DISPLAY_NUMBER, "title": {"type": "string"},
                        "started_at": TIME, "disclaimer": {"type": "string"},
                        "speakers": {"type": "array", "items": {"type": "string"}},
                        "segments": {"type": "array", "items": _obj({
                            "start": {"type": "number"}, "end": {"type": "number"},
                            "speaker": {"type": "string"}, "text": {"type": "string"}})}})),
            tag="participant")},
        f"{rec}/transcript/link": {"get": _operation(
            "A link to the transcript page (/t/<id>?t=...) for its readers, valid auth.transcript_link_ttl_s",
            (200, _obj({"url": {"type": "string"}, "expires_at": TIME})), tag="participant")},
        "/storage-deletions": {"get": _operation(
            "Deleted recordings whose files a storage still holds (pending) or that went (done) (operator)",
            (200, _list_of("deletions", "StorageDeletion")),
            query=[_query("state", {"enum": ["pending", "done"]}), _query("customer_id", {"type": "string"})],
            tag="operator")},
        "/storage-deletions/{deletion_id}": {"delete": _operation(
            "Give up on deleting a deleted recording's files: the record and the storage settings it kept "
            "go (operator)", (204, None), tag="operator")},
        "/storage-deletions/{deletion_id}/retry": {"post": _operation(
            "Try deleting a deleted recording's files from its storage again, now (operator)",
            (200, _ref("StorageDeletion")), tag="operator")},
        "/download/{token}": {"get": _operation(
            "Download a file with a link from .../link (the link is the credential); 403 when it is "
            "invalid or expired", (200, None), public=True, tag="participant")},
    }


INGEST = _obj(
    {
        "id": ID,
        "kind": {"enum": ["whip", "rtp"]},
        "name": {"type": "string"},
        "state": {"enum": ["active", "revoked", "ended"]},
        "end_reason": {"type": ["string", "null"]},
        "created_at": TIME,
        "expires_at": TIME,
        "ended_at": NULLABLE_TIME,
        "connected": {"type": "boolean"},
        "participant_id": {"type": ["string", "null"]},
        # consent policy `require` while recording: its media waits for .../continue
        "media_held": {"type": "boolean"},
        "whip_url": {"type": "string"},  # whip: where the encoder POSTs its offer (RFC 9725)
        "rtp": _obj({"ip": {"type": "string"}, "port": {"type": "integer"}, "video_ssrc": {"type": "integer"},
                     "audio_ssrc": {"type": "integer"}, "srtp": {"type": "boolean"}}, []),
        "token": {"type": "string"},  # whip, at creation only: the encoder's bearer token
        "srtp_key": {"type": ["string", "null"]},  # rtp, at creation only
        "commands": _obj({"ffmpeg": {"type": "string"}, "gstreamer": {"type": "string"}}),
    },
    ["id", "kind", "name", "state", "end_reason", "created_at", "expires_at", "ended_at", "connected",
     "participant_id", "media_held"],
)


def _ingest_paths() -> dict[str, Schema]:
    """control.http.ingest (docs/ingest.md); the WHIP endpoint itself (/whip/{number}) is
    outside /api/v1 and speaks SDP, not JSON."""
    ingests = "/meetings/{number}/ingests"
    return {
        ingests: {
            "post": _operation(
                "Bring a stream into the live meeting (its host, customer admin, operator): kind whip answers "
                "the WHIP URL and its bearer token, kind rtp the address, SSRCs, SRTP key and commands (once)",
                (201, _ref("Ingest")),
                body=_obj({"kind": {"enum": ["whip", "rtp"]}, "name": {"type": "string"},
                           "srtp": {"type": "boolean"}}, ["kind", "name"], closed=False), tag="host"),
            "get": _operation("The meeting's ingests", (200, _list_of("ingests", "Ingest")), tag="host"),
        },
        f"{ingests}/{{ingest_id}}": {"delete": _operation(
            "Revoke an ingest: its token stops working, its stream leaves the meeting", (200, _ref("Ingest")),
            tag="host")},
        f"{ingests}/{{ingest_id}}/continue": {"post": _operation(
            "Consent to the recording for the ingest (consent policy require): its media goes",
            (200, _ref("Ingest")), tag="host")},
    }


PATH_PARAMS = ("customer_id", "host_id", "number", "participant_id", "recording_id", "file_id", "token",
               "deletion_id", "ingest_id", "token_id")


VIEWER_TOKEN = {"id": ID, "label": {"type": "string"}, "created_at": TIME, "expires_at": TIME,
                "revoked_at": NULLABLE_TIME}
VIEWERS = {"type": {"enum": ["viewers"]}, "count": {"type": "integer", "minimum": 0},
           "viewers": {"type": "array", "items": _obj({"viewer_id": ID, "label": {"type": "string"}})}}


def _viewer_paths() -> dict[str, Schema]:
    """control.http.whep, the host's side (the player's, /whep/{number}, is WHEP, not this API)."""
    mtg = "/meetings/{number}"
    return {
        f"{mtg}/viewer-tokens": {
            "post": _operation("Issue a WHEP viewer token with a label (shown once)",
                               (201, _obj({**VIEWER_TOKEN, "token": {"type": "string"}, "whep_url": {"type": "string"}})),
                               body=_obj({"label": NAME, "ttl_s": {"type": "integer", "minimum": 60}}, ["label"],
                                         closed=False), tag="host"),  # fmt: skip
            "get": _operation("The meeting's viewer tokens (not the tokens themselves)",
                              (200, _obj({"viewer_tokens": {"type": "array", "items": _obj(VIEWER_TOKEN)}})), tag="host"),
        },
        f"{mtg}/viewer-tokens/{{token_id}}": {"delete": _operation(
            "Revoke a viewer token: its viewers are ended",
            (200, _obj({**VIEWER_TOKEN, "viewers_ended": {"type": "integer", "minimum": 0}})), tag="host")},
        f"{mtg}/viewers": {"get": _operation("Who watches over WHEP now, and whose camera they are shown",
                                             (200, _obj({**VIEWERS, "featured": {"type": ["string", "null"]}})),
                                             tag="host")},  # fmt: skip
        f"{mtg}/viewers/featured": {"put": _operation(
            "Whose camera viewers see when nobody shares a screen (null: the active speaker)",
            (200, _obj({"featured": {"type": ["string", "null"]}})),
            body=_obj({"participant_id": {"type": ["string", "null"]}}, [], closed=False), tag="host")},
    }


def document() -> Schema:
    paths = {**_account_paths(), **_meeting_paths(), **_session_paths(), **_recording_paths(), **_ingest_paths(),
             **_viewer_paths()}
    for path, item in paths.items():
        params = [_path_param(name, numbers.PATTERN if name == "number" else None)
                  for name in PATH_PARAMS if "{" + name + "}" in path]
        if params:
            item["parameters"] = params
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Conclave control plane",
            "version": "1",
            "description": "Accounts, meetings, sessions and recordings. Errors are {error: {code, message}}. "
            "Authorization: Bearer <operator key | ck_ customer admin key | hs_ host session | join JWT>.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**SCHEMAS, "Participant": PARTICIPANT, "Ingest": INGEST, **BODIES},
        },
        "paths": paths,
    }


def register(router: web.UrlDispatcher) -> None:
    served = document()

    async def openapi_handler(request: web.Request) -> web.Response:
        return web.json_response(served)

    router.add_get("/api/v1/openapi.json", openapi_handler)
