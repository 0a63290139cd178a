"""Why the server closes a signaling WebSocket: every close code, in one place
(docs/signaling.md, "Closing"). The 1xxx codes are RFC 6455's; 4xxx are Conclave's."""

from __future__ import annotations

NORMAL = 1000  # the client left, or the socket's work is done
GOING_AWAY = 1001  # the server shuts down
POLICY_VIOLATION = 1008  # no join in time, unread messages piling up, no answer to an offer
SERVICE_RESTART = 1012  # the meeting's media server restarted: reconnect (with the token sent)

SESSION_ENDED = 4001  # the host's sign-in ended, or the same participant connected elsewhere
MEETING_ENDED = 4002
REMOVED = 4003
DENIED = 4004
REDIRECTED = 4010  # the meeting runs on another node: connect to the `redirect` message's url

# The close code for a final signaling error: the socket cannot go on with this token.
FOR_FINAL_ERROR = {
    "removed": REMOVED,
    "meeting_ended": MEETING_ENDED,
    "session_ended": SESSION_ENDED,
}
