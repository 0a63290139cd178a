"""Where the server may send a request that a customer chose: webhook URLs, S3 endpoints.

A customer must not make the server fetch from itself or its neighbours (SSRF): the
server's own API on loopback, the cloud's metadata service (169.254.169.254), a private
network, another customer's on-premises storage. So every such host is resolved and each
address checked (`check_address`): loopback, private, link-local, shared (CGN),
multicast, reserved, unspecified, documentation and every other non-global address is
refused, also when written in decimal (2130706433), hex (0x7f.1), short (127.1), or
hidden in an IPv6 form (IPv4-mapped ::ffff:127.0.0.1, 6to4 2002:7f00::, NAT64
64:ff9b::7f00:1, Teredo). Resolution is what decides (the system's resolver reads those
forms as the address they mean), and the connection then goes to exactly the address that
was checked (`resolve_checked`, used by the HTTP clients' resolvers): a DNS answer that
changes between the check and the connection (rebinding) cannot slip through. The
operator may allow networks anyway (config `outbound.allowed_networks`: on-premises
storage, an internal receiver). Pure except `resolve_checked` (the event loop's resolver)
and `GuardedResolver` (the same, as aiohttp's resolver: webhooks, the S3 client).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class AddressRefused(OSError):
    """A host or address the server will not connect to; the message says why (it names
    the host, never a secret). An OSError, so HTTP clients treat it as a connection that
    could not be made."""


def networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parsed allow-list entries (config has checked them)."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64 or address in NAT64_LOCAL:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(int(address))
    return None


def check_address(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> None:
    """Raise AddressRefused unless `address` is a public (global unicast) address or in
    one of the `allowed` networks."""
    if any(address.version == network.version and address in network for network in allowed):
        return
    inner = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if inner is not None:
        check_address(inner, allowed)
        if address.ipv4_mapped is not None:
            return
    if address.is_multicast or not address.is_global:
        raise AddressRefused(f"{address} is not a public address")


def check_url(url: str, allowed: Sequence[IPNetwork] = ()) -> tuple[str, int]:
    """The host and port of an http(s) URL without credentials in it (AddressRefused
    otherwise); an IP literal is checked at once, a name only when resolved."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused("must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise AddressRefused("must not contain a user name or password")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AddressRefused("has an invalid port") from None
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, allowed)
    return host, port


async def resolve_checked(
    host: str, port: int, allowed: Sequence[IPNetwork] = (), family: int = socket.AF_UNSPEC
) -> list[tuple[int, str]]:
    """Every address `host` resolves to, as (family, address), when all of them may be
    used; AddressRefused when any may not (a name that also points inward is refused
    whole: which address a client picks is not ours to choose), or nothing resolves."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"{host!r} does not resolve") from exc
    found: list[tuple[int, str]] = []
    for info_family, _, _, _, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]
        check_address(ipaddress.ip_address(text), allowed)
        if (info_family, text) not in found:
            found.append((info_family, text))
    if not found:
        raise AddressRefused(f"{host!r} does not resolve")
    return found


async def check_url_resolves(url: str, allowed: Sequence[IPNetwork] = (), *, unresolvable_ok: bool = False) -> None:
    """`check_url`, then every address of its host checked (AddressRefused). With
    `unresolvable_ok` a name that does not resolve (yet) passes: it is checked again at
    every connection anyway."""
    host, port = check_url(url, allowed)
    loop = asyncio.get_running_loop()
    if unresolvable_ok:
        try:
            await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return
    await resolve_checked(host, port, allowed)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for connections to customers' hosts: only checked addresses
    come out, so the client connects to the very address that was checked."""

    def __init__(self, allowed: Sequence[IPNetwork] = ()) -> None:
        self._allowed = tuple(allowed)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await resolve_checked(host, port, self._allowed, family)
        return [
            ResolveResult(hostname=host, host=address, port=port, family=found_family, proto=0,
                          flags=socket.AI_NUMERICHOST)  # fmt: skip
            for found_family, address in found
        ]

    async def close(self) -> None:
        return None
