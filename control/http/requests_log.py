"""Request ids and the access log.

Every HTTP request gets an id: the caller's `X-Request-Id` when it is a sane one (a proxy's
or a load balancer's), else a new one. It is bound to the request's task
(common.logs.bind), so every line logged while serving it carries `request_id`, and it is
sent back in the response's `X-Request-Id` (WebSocket upgrades too).

The access log (logger `aiohttp.access`, at debug unless `logging.levels` says otherwise)
has one line per request: method, path without the query string (join links, signaling
URLs and download links carry tokens there), status, size, time, request id.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from common import logs

HEADER = "X-Request-Id"
REQUEST_ID = web.RequestKey("request_id", str)
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_id_of(request: web.Request) -> str:
    given = request.headers.get(HEADER, "")
    return given if _SANE.match(given) else secrets.token_hex(8)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request_id_of(request)
    request[REQUEST_ID] = request_id
    token = logs.bind(request_id=request_id)
    try:
        return await handler(request)
    finally:
        logs.unbind(token)


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the id in the response headers (before they are sent)."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers[HEADER] = request_id


class AccessLogger(AbstractAccessLogger):
    """One line per request, never its query string."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        request_id = request.get(REQUEST_ID, "-")
        self.logger.info(
            "%s %s %s %sB %.1fms", request.method, request.path, response.status, response.body_length, time * 1000,
            extra={"conclave_context": {"request_id": request_id}},  # the middleware's binding ended already
        )  # fmt: skip
