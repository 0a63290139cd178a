"""Every error of the REST API as JSON: `{"error": {"code", "message"}}`. An `ApiError`
keeps its status and code; aiohttp's own HTTP errors get a code from their status; an
unexpected exception is a 500 `internal` (logged, never shown to the client)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from control.errors import ApiError

log = logging.getLogger(__name__)


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(code, message), status=status, headers=headers)


# HTTP status -> the code clients see when aiohttp itself produced the error.
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def _code_for_status(status: int) -> str:
    return _STATUS_CODES.get(status, "internal" if status >= 500 else "bad_request")


def _is_api_path(request: web.Request) -> bool:
    return request.path.startswith("/api/")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error of the API as JSON; never leak a traceback to the client."""
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400 or not (_is_api_path(request) or exc.status >= 500):
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return json_error(exc.status, _code_for_status(exc.status), _reason(exc), headers)
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return json_error(500, "internal", "internal server error")


def _reason(exc: web.HTTPException) -> str:
    text = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else ""
    return text or exc.reason or HTTPStatus(exc.status).phrase
