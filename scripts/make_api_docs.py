"""Writes docs/api.md, the REST API guide, from the OpenAPI document the server serves at
/api/v1/openapi.json (control.http.openapi.document): one section per caller (operator,
customer, host, participant), each operation with what it needs, its body's fields, its
answers and a curl example. Run after changing the API: python scripts/make_api_docs.py
(tests/control/http/test_api_docs.py fails when the file is behind)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from control.http.openapi import document  # noqa: E402 (after the path is set)

OUTPUT = ROOT / "docs" / "api.md"
METHODS = ("get", "post", "put", "patch", "delete")
CALLERS = {
    "operator": ("The operator", "$OPERATOR_KEY", "the operator key (`auth.operator_key` or `data/operator-key`)"),
    "customer": ("A customer's administrator", "$API_KEY", "the customer's `ck_` API key (operator calls work too)"),
    "host": ("A host", "$SESSION", "the host's `hs_` session token from `POST /auth/login`"),
    "participant": ("Participants and the public", "$TOKEN", "a join token, a link token, or nothing (each says)"),
}
PLACEHOLDERS = {"customer_id": "$CUSTOMER_ID", "host_id": "$HOST_ID", "number": "12345678901",
                "participant_id": "$PARTICIPANT_ID", "recording_id": "$RECORDING_ID", "file_id": "$FILE_ID",
                "token": "$DOWNLOAD_TOKEN", "deletion_id": "$DELETION_ID", "ingest_id": "$INGEST_ID"}  # fmt: skip

HEADER = """# The REST API

Generated from the OpenAPI document the server serves at `/api/v1/openapi.json` by
`scripts/make_api_docs.py`; do not edit by hand. Every path below is under `/api/v1`.
Requests and answers are JSON; every refusal is `{"error": {"code", "message"}}` with a
4xx status (a bad field names itself: `{"code": "invalid_field", "message": "name: ..."}`).
Credentials go in `Authorization: Bearer <credential>`. In the examples, `$BASE` is the
server (`http://127.0.0.1:8080`) and the `$CAPITALS` are what earlier answers gave you.

A first session, as the operator then a host:

```sh
BASE=http://127.0.0.1:8080
OPERATOR_KEY=$(cat data/operator-key)
curl -s -X POST $BASE/api/v1/customers -H "Authorization: Bearer $OPERATOR_KEY" \\
     -H 'Content-Type: application/json' -d '{"name": "Acme"}'            # -> customer.id, api_key
curl -s -X POST $BASE/api/v1/customers/$CUSTOMER_ID/hosts -H "Authorization: Bearer $OPERATOR_KEY" \\
     -H 'Content-Type: application/json' \\
     -d '{"email": "ann@acme.example", "name": "Ann", "password": "a long passphrase"}'
curl -s -X POST $BASE/api/v1/auth/login -H 'Content-Type: application/json' \\
     -d '{"email": "ann@acme.example", "password": "a long passphrase"}'  # -> token (hs_...)
curl -s -X POST $BASE/api/v1/meetings -H "Authorization: Bearer $SESSION" \\
     -H 'Content-Type: application/json' -d '{"title": "Weekly"}'         # -> meeting_number, passcode, join_url
```
"""


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return components[ref.rsplit("/", 1)[1]] if ref else schema


def type_of(schema: dict[str, Any], components: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array":
        return f"list of {type_of(schema.get('items', {}), components)}"
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    return kind


def example_value(schema: dict[str, Any], components: dict[str, Any], name: str) -> Any:
    schema = resolve(schema, components)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "integer":
        return schema.get("minimum", 1)
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return "https://hooks.example.com/conclave" if schema.get("format") == "uri" else f"<{name}>"


def body_schema(operation: dict[str, Any], components: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    return resolve(content["schema"], components) if content else None


def fields_table(schema: dict[str, Any], components: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", ()))
    rows = ["| field | type | |", "|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        rows.append(f"| `{name}` | {type_of(prop, components)} | {'required' if name in required else 'optional'} |")
    return rows if len(rows) > 2 else []


def curl(method: str, path: str, operation: dict[str, Any], tag: str, components: dict[str, Any]) -> str:
    url = path
    for name, value in PLACEHOLDERS.items():
        url = url.replace("{" + name + "}", value)
    # A path parameter added without a placeholder here: $NAME_IN_CAPITALS.
    url = re.sub(r"\{(\w+)\}", lambda m: "$" + m.group(1).upper(), url)
    parts = [f"curl -s -X {method.upper()} $BASE/api/v1{url}"]
    if not operation.get("security") == []:
        parts.append(f'-H "Authorization: Bearer {CALLERS[tag][1]}"')
    schema = body_schema(operation, components)
    if schema is not None:
        required = schema.get("required", ())
        body = {name: example_value(prop, components, name) for name, prop in schema.get("properties", {}).items()
                if name in required} or {}  # fmt: skip
        parts.append(f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'")
    return " \\\n     ".join(parts)


def operation_section(method: str, path: str, operation: dict[str, Any], tag: str, components: dict) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", "", operation.get("summary", ""), ""]
    if operation.get("security") == []:
        lines += ["No credential needed.", ""]
    schema = body_schema(operation, components)
    if schema is not None:
        table = fields_table(schema, components)
        if table:
            lines += ["Body:", "", *table, ""]
    answers = ", ".join(f"`{code}`" for code in operation.get("responses", {}))
    lines += [f"Answers: {answers}.", "", "```sh", curl(method, path, operation, tag, components), "```", ""]
    return lines


def render() -> str:
    spec = document()
    components = spec["components"]["schemas"]
    by_tag: dict[str, list[tuple[str, str, dict]]] = {tag: [] for tag in CALLERS}
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                operation = item[method]
                by_tag.setdefault((operation.get("tags") or ["participant"])[0], []).append((method, path, operation))
    lines = [HEADER]
    for tag, operations in by_tag.items():
        title, _, credential = CALLERS.get(tag, (tag.title(), "$TOKEN", "see each operation"))
        lines += [f"## {title}", "", f"Credential: {credential}.", ""]
        for method, path, operation in operations:
            lines += operation_section(method, path, operation, tag, components)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
