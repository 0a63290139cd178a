"""Webhooks: tell a customer's own server what happened, signed, retried, logged.

    sender.emit(customer_id, "meeting.started", {"meeting_number": ...})

`WebhookSender.emit` never blocks and never raises: it schedules the delivery. A delivery POSTs
`{"event", "ts", "data"}` to the customer's `webhook_url` with
`X-Conclave-Signature: sha256=<hex HMAC-SHA256 of the exact body, keyed with the
customer's webhook secret>` (and `X-Conclave-Event-Id`, the same on every retry, so a
receiver can drop duplicates). A 5xx, 408, 429 or a connection error is retried with
exponential backoff (base_delay_s doubling, at most max_delay_s, max_attempts in all);
other 4xx are final. Every attempt is a `webhook_delivery` row.
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
    ) -> None:
        self.store = store
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (2, 3, ...): bounded doubling."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 2))

    def emit(self, customer_id: str, event: str, data: dict[str, Any]) -> None:
        """Schedule `event` for the customer's webhook (if it has one). Never raises: a
        webhook must never break the action that caused it."""
        if self._stopped:
            return
        if len(self._tasks) >= self.max_pending:
            log.warning("webhook %s for %s dropped: %d deliveries pending", event, customer_id, len(self._tasks))
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
        task.add_done_callback(self._tasks.discard)

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
            self._session = aiohttp.ClientSession(timeout=timeout)
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
            async with self._http().post(url, data=data, headers=headers, allow_redirects=False) as response:
                await response.read()
                return response.status, ""
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
