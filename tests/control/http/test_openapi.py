"""The OpenAPI document at /api/v1/openapi.json matches the implementation.

1. Every /api/v1 route the app registers is an operation of the document and back.
2. schemathesis generates requests for every operation (as the operator, a bounded number
   of examples each) against a real `conclave serve`: no 5xx, and every answer has a
   documented status, content type and a body that fits its schema.
"""

from __future__ import annotations

import copy
import re

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

from control.app import create_app
from control.http.openapi import document
from tests.support.servers import conclave_test_config

EXAMPLES_PER_OPERATION = 10
# Routes under /api/v1 that are not JSON operations.
NOT_IN_DOCUMENT = {("GET", "/openapi.json"), ("HEAD", "/openapi.json")}


def _template(path: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)


def test_document_lists_exactly_the_registered_routes(tmp_path):
    app = create_app(conclave_test_config(tmp_path))
    registered = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith("/api/v1/") and route.method not in ("HEAD", "*"):
            registered.add((route.method, _template(path[len("/api/v1"):])))
    documented = {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method in item
        if method != "parameters"
    }
    websocket = {(m, p) for m, p in registered if p.endswith("/ws")}
    assert registered - websocket - NOT_IN_DOCUMENT == documented - websocket


def test_document_is_valid_openapi():
    schema = schemathesis.openapi.from_dict(document())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len([m for m in item if m != "parameters"]) for item in document()["paths"].values())


def _real_resources(session: requests.Session, base_url: str, headers: dict[str, str]) -> dict[str, str]:
    def post(path: str, body: dict, token_headers: dict[str, str] = headers) -> dict:
        response = session.post(base_url + path, json=body, headers=token_headers, timeout=10)
        assert response.status_code in (200, 201), response.text
        return response.json()

    customer = post("/customers", {"name": "Schemathesis"})["customer"]
    email = "schemathesis@example.com"
    host = post(f"/customers/{customer['id']}/hosts", {"email": email, "name": "S", "password": "password123"})
    token = post("/auth/login", {"email": email, "password": "password123"})["token"]
    meeting = post("/meetings", {"title": "fuzzed"}, {"Authorization": f"Bearer {token}"})
    return {"customer_id": customer["id"], "host_id": host["id"], "number": meeting["meeting_number"]}


@pytest.mark.timeout(120)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(server_process):
    operator_key = server_process.operator_key
    base_url = server_process.base_url + "/api/v1"
    raw = requests.get(base_url + "/openapi.json", timeout=10).json()
    assert raw == document()
    headers = {"Authorization": f"Bearer {operator_key}"}
    session = requests.Session()
    # Real resources as explicit examples of the path parameters, so that besides random
    # ids (404) every operation is also tried on something that exists.
    with_examples = copy.deepcopy(raw)
    examples = _real_resources(session, base_url, headers)
    for item in with_examples["paths"].values():
        for parameter in item.get("parameters", []):
            if parameter["name"] in examples:
                parameter["example"] = examples[parameter["name"]]
    schema = schemathesis.openapi.from_dict(with_examples)
    selected = [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
    ]
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: schemathesis.Case) -> None:
            response = case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=selected)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        try:
            exercise()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}"[:2000])
    assert failures == [], "\n\n".join(failures)
    # It did exercise the API, successes included, not only refusals.
    assert sum(statuses.values()) >= len(list(schema.get_all_operations())), statuses
    assert any(200 <= status < 300 for status in statuses), statuses
    assert "Traceback" not in server_process.log_text()
