"""Errors of the control plane.

REST: an `ApiError` becomes `{"error": {"code", "message"}}` with its status
(control.http.middleware). Signaling: a `SignalingError` becomes an `{"type": "error",
...}` message and the socket stays open.
"""

from __future__ import annotations


class SignalingError(Exception):
    """A client message that cannot be served; answered with an `error` message."""

    def __init__(self, code: str, message: str, **extra: object) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.extra = extra

    def as_message(self, message_id: object = None) -> dict[str, object]:
        """The `error` message a client gets (with the id of the message it answers)."""
        message: dict[str, object] = {"type": "error", "code": self.code, "message": self.message, **self.extra}
        if message_id is not None:
            message["id"] = message_id
        return message


class ApiError(Exception):
    """A REST request that cannot be served; the middleware renders it as JSON."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
