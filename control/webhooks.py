"""Webhooks: tell a customer's own server what happened, signed, retried, logged.

    sender.emit(customer_id, "meeting.started", {"meeting_number": ...})

`WebhookSender.emit` never blocks and never raises: it schedules the delivery. A delivery POSTs
`{"event", "ts", "data"}` to the customer's `webhook_url` with
`X-Conclave-Signature: sha256=<hex HMAC-SHA256 of the exact body, keyed with the
customer's webhook secret>` (and `X-Conclave-Event-Id`, the same on every retry, so a
receiver can drop duplicates). A 5xx, 408, 429 or a connection error is retried with
exponential backoff (base_delay_s doubling, at most max_delay_s, max_attempts in all);
other 4xx are final. Every attempt is a `webhook_delivery` row.

The URL is the customer's: it may only lead to public addresses (common.netguard; the
operator's `outbound.allowed_networks` excepted), checked when saved and again at every
attempt, on the very address the connection then uses (no redirects are followed). A
delivery row says what went wrong in a fixed word (`timeout`, `address_refused`,
`connection_failed`, ...), never the exception's text (which could carry what an inward
address answered). At most `webhook_max_response_bytes` of an answer are read. Pending
deliveries are capped per customer (`webhook_max_pending_per_customer`) and in all; past
a cap the event is dropped and counted (`dropped`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any

import aiohttp

from common import netguard
from control.clock import iso_time
from control.store.base import Store

log = logging.getLogger(__name__)

EVENTS = (
    "meeting.started",
    "meeting.ended",
    "participant.joined",
    "participant.left",
    "participant.admitted",
    "participant.removed",
)
SIGNATURE_HEADER = "X-Conclave-Signature"
EVENT_ID_HEADER = "X-Conclave-Event-Id"
RETRY_STATUSES = frozenset({408, 429})
SECRET_PREFIX = "whsec_"


ATTEMPT_OUTCOMES = ("delivered", "failed", "gave_up")


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes) -> str:
    """The signature header value of `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (and the tests): constant-time check of the signature header."""
    return hmac.compare_digest(sign(secret, body).encode(), header.encode())


class WebhookSender:
    def __init__(
        self,
        store: Store,
        *,
        max_attempts: int = 6,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        timeout_s: float = 10.0,
        max_pending: int = 1000,
        max_pending_per_customer: int = 100,
        max_response_bytes: int = 65536,
        allowed_networks: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.max_pending_per_customer = max_pending_per_customer
        self.max_response_bytes = max_response_bytes
        self.allowed = netguard.networks(allowed_networks)
        self.dropped = 0  # events not delivered because a cap was reached
        # Delivery attempts by outcome (delivered, failed: retried later, gave_up).
        self.attempts: dict[str, int] = dict.fromkeys(ATTEMPT_OUTCOMES, 0)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[str, int] = {}  # customer id -> deliveries pending
        self._stopped = False

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (2, 3, ...): bounded doubling."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 2))

    def emit(self, customer_id: str, event: str, data: dict[str, Any]) -> None:
        """Schedule `event` for the customer's webhook (if it has one). Never raises: a
        webhook must never break the action that caused it."""
        if self._stopped:
            return
        pending = self._pending.get(customer_id, 0)
        if len(self._tasks) >= self.max_pending or pending >= self.max_pending_per_customer:
            self.dropped += 1
            log.warning("webhook %s for %s dropped: %d deliveries pending (%d of this customer)", event, customer_id,
                        len(self._tasks), pending)  # fmt: skip
            return
        try:
            body = json.dumps({"event": event, "ts": iso_time(time.time()), "data": data}, separators=(",", ":"))
            task = asyncio.get_running_loop().create_task(
                self._deliver(customer_id, event, body), name=f"webhook-{event}"
            )
        except Exception:
            log.exception("cannot schedule webhook %s for %s", event, customer_id)
            return
        self._tasks.add(task)
        self._pending[customer_id] = pending + 1
        task.add_done_callback(lambda done: self._finished(customer_id, done))

    def _finished(self, customer_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        left = self._pending.get(customer_id, 1) - 1
        if left > 0:
            self._pending[customer_id] = left
        else:
            self._pending.pop(customer_id, None)

    async def wait_idle(self, timeout: float) -> None:
        """Wait (bounded) until every scheduled delivery has finished (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def stop(self) -> None:
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            # Every name resolved through the guard, never cached past one connection.
            connector = aiohttp.TCPConnector(resolver=netguard.GuardedResolver(self.allowed), use_dns_cache=False)
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector, trust_env=False)
        return self._session

    async def _deliver(self, customer_id: str, event: str, body: str) -> None:
        event_id = secrets.token_urlsafe(12)
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.delay_before(attempt))
            customer = await self.store.get_customer(customer_id)
            if customer is None or not customer.webhook_url:
                return  # deleted, or its webhook turned off meanwhile
            code, error = await self._post(customer.webhook_url, customer.webhook_secret, event_id, body)
            delivered = code is not None and 200 <= code < 300
            retry = not delivered and (code is None or code >= 500 or code in RETRY_STATUSES)
            last = attempt == self.max_attempts
            status = "delivered" if delivered else ("failed" if retry and not last else "gave_up")
            self.attempts[status] += 1
            try:
                await self.store.record_webhook_delivery(
                    customer_id=customer_id,
                    event=event,
                    payload=body,
                    attempt=attempt,
                    status=status,
                    response_code=code,
                    error=error,
                )
            except Exception:
                log.exception("cannot record webhook delivery for %s", customer_id)
            if status != "failed":
                return

    async def _post(self, url: str, secret: str, event_id: str, body: str) -> tuple[int | None, str]:
        data = body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, data),
            EVENT_ID_HEADER: event_id,
            "User-Agent": "Conclave-Webhooks/1",
        }
        try:
            netguard.check_url(url, self.allowed)  # an IP literal is never given to the resolver
            async with self._http().post(url, data=data, headers=headers, allow_redirects=False) as response:
                await response.content.read(self.max_response_bytes)  # the rest is not read
                return response.status, ""
        except Exception as exc:  # a delivery never breaks; the row says what, in one word
            return None, delivery_error(exc)


def delivery_error(exc: BaseException) -> str:
    """What went wrong with a delivery, as a fixed word: an exception's text may carry
    what some inward address answered, or a secret of the URL."""
    if isinstance(exc, netguard.AddressRefused) or isinstance(exc.__cause__, netguard.AddressRefused):
        return "address_refused"
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, netguard.AddressRefused):
        return "address_refused"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "tls_error"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns_error"
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionError):
        return "connection_failed"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return "bad_response"
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return "invalid_url"
    log.warning("webhook delivery failed: %s", type(exc).__name__)
    return "failed"
