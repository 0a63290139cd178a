"""control.webhooks, to a real aiohttp receiver on 127.0.0.1: signed body, retry after a 500
with backoff, every attempt in the delivery log, final answers not retried."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from control import webhooks
from tests.support.accounts_client import Api, assert_error, make_customer


class Receiver:
    """Answers with the next status of `statuses` (the last one repeats), records requests."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((body, dict(request.headers)))
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        if 200 <= status < 300:
            self.arrived.set()
        return web.Response(status=status, text="ok" if status < 300 else "nope")


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[[list[int]], "asyncio.Future[Receiver]"]]:
    runners: list[web.AppRunner] = []

    async def start(statuses: list[int]) -> Receiver:
        hook = Receiver(statuses)
        app = web.Application()
        app.router.add_post("/hook", hook.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        hook.url = f"http://{host}:{port}/hook"
        return hook

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


def test_signature_and_backoff_are_bounded():
    body = b'{"event":"x"}'
    signature = webhooks.sign("whsec_abc", body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert webhooks.verify("whsec_abc", body, signature)
    assert not webhooks.verify("whsec_abd", body, signature)
    sender = webhooks.WebhookSender(store=None, base_delay_s=1.0, max_delay_s=30.0)  # type: ignore[arg-type]
    assert [sender.delay_before(n) for n in range(2, 9)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


async def test_signed_delivery_retried_after_a_500(conclave_server, receiver):
    services = conclave_server.services
    services.webhooks.base_delay_s = 0.05
    hook = await receiver([500, 200])
    api = Api(conclave_server.base_url)
    acme = await make_customer(api, services.secrets.operator_key)
    configured = await api.ok("PUT", f"/customers/{acme.id}/webhook", token=acme.api_key, json={"url": hook.url})
    secret = configured["secret"]
    assert configured["url"] == hook.url and secret.startswith("whsec_")

    services.webhooks.emit(acme.id, "meeting.started", {"meeting_number": "123-4567-8901"})
    await asyncio.wait_for(hook.arrived.wait(), 10)
    await services.webhooks.wait_idle(5)

    assert len(hook.requests) == 2
    (first_body, first_headers), (body, headers) = hook.requests
    assert first_body == body  # the same event, byte for byte
    assert headers["X-Conclave-Event-Id"] == first_headers["X-Conclave-Event-Id"]
    assert webhooks.verify(secret, body, headers["X-Conclave-Signature"])
    event = json.loads(body)
    assert event["event"] == "meeting.started" and event["data"] == {"meeting_number": "123-4567-8901"}
    assert event["ts"].endswith("Z")

    log = await api.ok("GET", f"/customers/{acme.id}/webhook/deliveries", token=acme.api_key)
    attempts = [(d["attempt"], d["status"], d["response_code"]) for d in log["deliveries"]]
    assert attempts == [(2, "delivered", 200), (1, "failed", 500)]
    assert log["deliveries"][0]["payload"] == body.decode()


async def test_final_refusal_and_unreachable_receiver(conclave_server, receiver):
    services = conclave_server.services
    services.webhooks.base_delay_s = 0.01
    services.webhooks.max_attempts = 3
    api = Api(conclave_server.base_url)
    acme = await make_customer(api, services.secrets.operator_key)
    hook = await receiver([400])
    await api.ok("PUT", f"/customers/{acme.id}/webhook", token=acme.api_key, json={"url": hook.url})
    services.webhooks.emit(acme.id, "participant.joined", {})
    await services.webhooks.wait_idle(5)
    assert len(hook.requests) == 1  # a 4xx is the receiver's final word
    [delivery] = (await api.ok("GET", f"/customers/{acme.id}/webhook/deliveries", token=acme.api_key))["deliveries"]
    assert (delivery["status"], delivery["response_code"]) == ("gave_up", 400)

    # Nothing listens on the discard port: every attempt fails, up to max_attempts.
    await api.ok("PUT", f"/customers/{acme.id}/webhook", token=acme.api_key, json={"url": "http://127.0.0.1:9/hook"})
    services.webhooks.emit(acme.id, "participant.left", {})
    await services.webhooks.wait_idle(10)
    log = (await api.ok("GET", f"/customers/{acme.id}/webhook/deliveries", token=acme.api_key))["deliveries"]
    unreachable = [d for d in log if d["event"] == "participant.left"]
    assert [d["status"] for d in unreachable] == ["gave_up", "failed", "failed"]
    assert all(d["response_code"] is None and d["error"] for d in unreachable)
    # What an SRE's alert on the failure rate reads (deploy/prometheus/alerts.yml).
    text = services.metrics.render().decode()
    for outcome, count in (("delivered", 0), ("failed", 2), ("gave_up", 2)):
        assert f'conclave_webhook_delivery_attempts_total{{outcome="{outcome}"}} {float(count)}' in text


async def test_webhook_settings(conclave_server):
    services = conclave_server.services
    api = Api(conclave_server.base_url)
    acme = await make_customer(api, services.secrets.operator_key)
    for bad in ({}, {"url": "ftp://example.com"}, {"url": 5}):
        status, body = await api.call("PUT", f"/customers/{acme.id}/webhook", token=acme.api_key, json=bad)
        assert_error(status, body, 400, "invalid_field")
    off = await api.ok("PUT", f"/customers/{acme.id}/webhook", token=acme.api_key, json={"url": ""})
    assert off == {"url": "", "secret": None}
    services.webhooks.emit(acme.id, "meeting.ended", {})  # no URL: nothing is sent or logged
    await services.webhooks.wait_idle(5)
    assert (await api.ok("GET", f"/customers/{acme.id}/webhook/deliveries", token=acme.api_key))["deliveries"] == []
    services.webhooks.emit("no-such-customer", "meeting.ended", {})  # never raises
    await services.webhooks.wait_idle(5)


async def test_meeting_events_reach_the_customer(conclave_server, receiver):
    """What the sessions side emits through `WebhookSender.emit` arrives signed at the customer's URL."""
    services = conclave_server.services
    hook = await receiver([200])
    host = await conclave_server.new_host()
    reply = await conclave_server.call(
        "PUT", f"/customers/{host['customer_id']}/webhook", token=conclave_server.operator_key,
        json_body={"url": hook.url},
    )
    meeting = await conclave_server.create_meeting(host=host)
    await asyncio.wait_for(hook.arrived.wait(), 10)
    await conclave_server.call("POST", f"/meetings/{meeting['number']}/end", token=meeting["host_session"])
    await services.webhooks.wait_idle(5)
    events = {}
    for body, headers in hook.requests:
        assert webhooks.verify(reply["secret"], body, headers["X-Conclave-Signature"])
        event = json.loads(body)
        events[event["event"]] = event["data"]
    assert events["meeting.started"]["meeting_number"] == meeting["meeting_number"]
    assert events["meeting.ended"]["meeting_number"] == meeting["meeting_number"]


# ---------------------------------------------------------------------- SSRF (issue 10)

INWARD_URLS = [
    "http://127.0.0.1:8080/api/v1",
    "http://2130706433:8080/",
    "http://0x7f.1:8080/",
    "http://[::ffff:127.0.0.1]:8080/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5/hook",
    "http://localhost:8080/",
    "http://customer@127.0.0.1/",
]


async def test_the_default_refuses_inward_webhook_urls_at_save_time(conclave_server_factory, receiver):
    """Without an operator allow-list (the default), a webhook URL that leads to this server,
    its neighbours or the cloud's metadata is a 400 naming the field: the test suite's own
    loopback receivers are only reachable because its fixtures allow 127.0.0.0/8."""
    server = await conclave_server_factory(outbound={"allowed_networks": ()})
    api = Api(server.base_url)
    acme = await make_customer(api, server.services.secrets.operator_key)
    hook = await receiver([200])
    for url in [*INWARD_URLS, hook.url]:
        status, body = await api.call("PUT", f"/customers/{acme.id}/webhook", token=acme.api_key, json={"url": url})
        assert_error(status, body, 400, "invalid_field")
        assert body["error"]["message"].startswith("url: "), body
    status, body = await api.call("POST", "/customers", token=server.services.secrets.operator_key,
                                  json={"name": "x", "webhook_url": "http://127.0.0.1:9/"})  # fmt: skip
    assert_error(status, body, 400, "invalid_field")
    assert body["error"]["message"].startswith("webhook_url: ")


async def test_an_inward_webhook_url_is_refused_at_use_time_too(conclave_server_factory, receiver):
    """DNS may change after the check (or the row was written before this rule): every
    attempt is checked again, on the address the connection uses, and the log says why in
    one word, never an exception's text."""
    server = await conclave_server_factory(outbound={"allowed_networks": ()})
    services = server.services
    services.webhooks.base_delay_s = 0.01
    services.webhooks.max_attempts = 2
    api = Api(server.base_url)
    acme = await make_customer(api, services.secrets.operator_key)
    hook = await receiver([200])
    for url in (hook.url, hook.url.replace("127.0.0.1", "localhost")):
        await services.store.update_customer(acme.id, webhook_url=url, webhook_secret=webhooks.new_secret())
        services.webhooks.emit(acme.id, "meeting.started", {"url": url})
        await services.webhooks.wait_idle(5)
    assert hook.requests == []
    deliveries = (await api.ok("GET", f"/customers/{acme.id}/webhook/deliveries", token=acme.api_key))["deliveries"]
    assert len(deliveries) == 4 and {d["error"] for d in deliveries} == {"address_refused"}


async def test_delivery_errors_are_words_not_exception_text(conclave_server):
    services = conclave_server.services
    services.webhooks.base_delay_s = 0.01
    services.webhooks.max_attempts = 1
    api = Api(conclave_server.base_url)
    acme = await make_customer(api, services.secrets.operator_key)
    await api.ok("PUT", f"/customers/{acme.id}/webhook", token=acme.api_key, json={"url": "http://127.0.0.1:9/hook"})
    services.webhooks.emit(acme.id, "participant.left", {})
    await services.webhooks.wait_idle(10)
    [delivery] = (await api.ok("GET", f"/customers/{acme.id}/webhook/deliveries", token=acme.api_key))["deliveries"]
    assert delivery["error"] == "connection_failed"


async def test_pending_deliveries_are_capped_per_customer():
    """A customer whose receiver hangs holds at most its share of pending deliveries; the
    others' events still go out."""

    class Store:
        def __init__(self) -> None:
            self.customers = {}

        async def get_customer(self, customer_id):
            return self.customers.get(customer_id)

        async def record_webhook_delivery(self, **row):
            pass

    sender = webhooks.WebhookSender(Store(), max_pending_per_customer=3, max_pending=10)  # type: ignore[arg-type]
    gate = asyncio.Event()

    async def hanging(*args):
        await gate.wait()

    sender._deliver = hanging  # noqa: SLF001 - the receiver hangs
    for _ in range(5):
        sender.emit("slow", "meeting.started", {})
    sender.emit("other", "meeting.started", {})
    assert sender.dropped == 2 and len(sender._tasks) == 4  # noqa: SLF001
    gate.set()
    await sender.wait_idle(5)
    sender.emit("slow", "meeting.started", {})  # its share is free again
    assert sender.dropped == 2
    await sender.stop()


async def test_only_the_start_of_a_long_answer_is_read(conclave_server):
    services = conclave_server.services
    served = {}

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        served["bytes"] = 0
        try:
            for _ in range(64):  # 64 MiB offered
                await response.write(b"x" * 1024 * 1024)
                served["bytes"] += 1024 * 1024
        except (ConnectionError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_post("/hook", huge)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        api = Api(conclave_server.base_url)
        acme = await make_customer(api, services.secrets.operator_key)
        await api.ok("PUT", f"/customers/{acme.id}/webhook", token=acme.api_key,
                     json={"url": f"http://{host}:{port}/hook"})  # fmt: skip
        services.webhooks.emit(acme.id, "meeting.started", {})
        await services.webhooks.wait_idle(10)
        [delivery] = (await api.ok("GET", f"/customers/{acme.id}/webhook/deliveries", token=acme.api_key))["deliveries"]
        assert delivery["status"] == "delivered"
        assert served.get("bytes", 0) < 32 * 1024 * 1024  # the connection was dropped, not drained
    finally:
        await runner.cleanup()
