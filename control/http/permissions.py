"""Who may do what: the role checks of the REST API, in one place.

Roles (docs/control-plane-reference.md): the operator may do everything; a customer admin acts on
their own customer, its hosts and its meetings; a host on their own meetings. Each check
raises `ApiError(403, "forbidden")`. Something that does not exist looks the same as
something that belongs to another customer (403 too) to anyone but the operator, so
nobody learns which ids or meeting numbers exist elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from control.errors import ApiError
from control.store.base import Host, MeetingRecord

if TYPE_CHECKING:
    from control.accounts.service import Actor


def forbidden(message: str = "you may not do this") -> ApiError:
    return ApiError(403, "forbidden", message)


def require_operator(actor: Actor) -> None:
    if not actor.is_operator:
        raise forbidden("only the operator may do this")


def may_admin_customer(actor: Actor, customer_id: str) -> bool:
    return actor.is_operator or (actor.kind == "customer" and actor.customer_id == customer_id)


def require_customer_admin(actor: Actor, customer_id: str) -> None:
    """The operator, or the admin of this customer."""
    if not may_admin_customer(actor, customer_id):
        raise forbidden("only this customer's admin (or the operator) may do this")


def require_host_admin(actor: Actor, host: Host | None) -> Host:
    """The operator, or the admin of the host's customer; 404 only for the operator."""
    if host is None:
        if actor.is_operator:
            raise ApiError(404, "not_found", "no such host")
        raise forbidden("no such host, or not one of yours")
    require_customer_admin(actor, host.customer_id)
    return host


def may_view_meeting(actor: Actor, meeting: MeetingRecord) -> bool:
    """The operator, the admin of the meeting's customer, or its host."""
    if may_admin_customer(actor, meeting.customer_id):
        return True
    return actor.kind == "host" and actor.host_id == meeting.host_id


def require_meeting_access(actor: Actor, meeting: MeetingRecord | None, *, host_only: bool = False) -> MeetingRecord:
    """The meeting, if the actor may see it (or, with host_only, is its host)."""
    allowed = meeting is not None and (
        actor.kind == "host" and actor.host_id == meeting.host_id
        if host_only
        else may_view_meeting(actor, meeting)
    )
    if allowed:
        return meeting
    if meeting is None and actor.is_operator:
        raise ApiError(404, "not_found", "no such meeting")
    raise forbidden("no such meeting, or not one you may manage")
