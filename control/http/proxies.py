"""Who the client is when a reverse proxy stands in front (`http.trusted_proxies`).

Every per-client limit (control.http.limiter, the signaling socket caps) keys on the
client's address. Behind a proxy every request comes from the proxy, so without this
one stranger's wrong passcodes would lock a meeting for everyone. A request whose peer
is a trusted proxy is attributed to the address the proxies recorded in
`X-Forwarded-For`: read from the right (each proxy appends the address it saw), trusted
proxies skipped, the first address that is not one of them is the client. Anything
left of it was written by the client and is ignored (it can claim any address there).
A peer that is not a trusted proxy is the client, whatever its headers say.

Why not aiohttp-remotes: its strict middleware wants exactly one header entry per
configured hop (a client behind its own proxy, which adds an entry, gets a 400 without
our JSON error body), and its filtered one believes the header from any peer (a client
reaching the port directly could claim any address). Pure: `forwarded_client`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import hdrs, web

from control.http.middleware import Handler

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_FORWARDED_ENTRIES = 32  # a longer chain is read only this far from the right


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in proxies)


def forwarded_client(peer: str, forwarded_for: Sequence[str], proxies: Sequence[IPNetwork]) -> str:
    """The client's address: `peer` unless it is a trusted proxy; then the rightmost
    address of the X-Forwarded-For values (in header order) that is not a trusted proxy;
    when every entry is a proxy, or one cannot be read, the last proxy that wrote one."""
    current = _parse(peer)
    if current is None or not _trusted(current, proxies):
        return peer
    entries = [entry for value in forwarded_for for entry in value.split(",")][-MAX_FORWARDED_ENTRIES:]
    for entry in reversed(entries):
        address = _parse(entry)
        if address is None:
            break  # garbled by someone: what the last trusted hop saw is all we know
        current = address
        if not _trusted(address, proxies):
            break
    return str(current)


def trusted_proxy_middleware(proxies: Sequence[IPNetwork]) -> web.middleware:  # type: ignore[valid-type]
    """A middleware that gives each request its client's address as `request.remote`."""

    @web.middleware
    async def attribute_to_client(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.remote or ""
        client = forwarded_client(peer, request.headers.getall(hdrs.X_FORWARDED_FOR, []), proxies)
        if client != peer:
            request = request.clone(remote=client)
        return await handler(request)

    return attribute_to_client
