"""Who may create meetings: the one place that decides it.

The default policy lets everyone create meetings. The hosts/passcodes issue replaces
`MeetingPolicy` (or hands `create_app` a subclass); nothing else in control checks
permissions for meeting creation.
"""

from __future__ import annotations

from aiohttp import web


class MeetingPolicy:
    async def may_create_meeting(self, request: web.Request) -> bool:
        """True when the author of `request` may create a meeting. Default: everyone."""
        return True
