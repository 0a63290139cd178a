"""ICE-lite on the worker's shared UDP port (RFC 8445 §2.5, §7.3 as the controlled lite
agent), with consent freshness (RFC 7675).

A lite agent answers connectivity checks. Each transport owns a local ufrag/pwd; a
binding request names it in USERNAME ("local:remote"), must carry a valid
MESSAGE-INTEGRITY keyed with the local password and a FINGERPRINT (RFC 8445 §7.2.2).
Anything else is dropped without an answer (counted): a 401 would tell a scanner which
ufrags exist and reflect its traffic.

Where a transport sends is decided by `IcePath`, fed events and a time:

- only a *nominated* check (USE-CANDIDATE with ICE-CONTROLLING: the browser is the
  controlling agent) selects an address (RFC 8445 §7.3.1.5); others are answered and
  move nothing;
- before DTLS is up the nominated address is taken at once (nothing can be sent there
  but DTLS, which needs the peer to answer); once media flows, a new address must first
  answer a check of ours (a triggered check, RFC 8445 §7.3.1.4, keyed with the peer's
  password, whose transaction id only the real owner of the address can see), so a
  spoofed source address with the right credentials redirects nothing;
- an ICE-TCP connection (sfu.transport.tcp) is an address like a UDP one, keyed
  (ip, port, "tcp"); when it closes its path is lost at once (`lose`);
- consent (RFC 7675 §5.1): every authenticated check from the selected address, or
  answer to ours from it, renews it for `consent_timeout_s`; when it lapses the
  transport stops sending there (the worker's clockwork looks once a second). A peer
  that comes back is checked again like a new address.

`IceLiteServer` does the STUN: it answers checks, sends the transports' own checks
(`probe`) and routes their answers back by transaction id.
"""

from __future__ import annotations

import os
import random
from typing import Callable, Protocol

from sfu.engine.stats import Counters
from sfu.wire import stun

Address = tuple[str, int]

CONSENT_TIMEOUT_S = 30.0  # RFC 7675 §5.1
PROBE_INTERVAL_S = 0.5  # fewest seconds between two checks of ours to one candidate address
# Our checks' PRIORITY (RFC 8445 §5.1.2.1): a host candidate's type preference, as ours are.
_PROBE_PRIORITY = (126 << 24) | (65535 << 8) | 255

# What IcePath.on_check says to do.
NOTHING = 0
SELECT = 1  # take this address now (if no other transport has it)
PROBE = 2  # check this address first: select it when it answers


class IcePath:
    """The address one transport sends to, and its consent. Pure: no I/O, times passed in."""

    __slots__ = (
        "selected",
        "lapsed",
        "consent_until",
        "consent_timeout_s",
        "candidate",
        "probe_id",
        "probe_sent_at",
    )

    def __init__(self, consent_timeout_s: float = CONSENT_TIMEOUT_S) -> None:
        self.selected: Address | None = None
        self.lapsed: Address | None = None  # the selected address whose consent lapsed
        self.consent_until = 0.0
        self.consent_timeout_s = consent_timeout_s
        self.candidate: Address | None = None  # an address we checked and await an answer from
        self.probe_id: bytes | None = None
        self.probe_sent_at = 0.0

    def on_check(self, addr: Address, nominated: bool, now: float, established: bool) -> int:
        """An authenticated check from `addr` (answered already). `established`: media may
        flow on the selected path (DTLS is up)."""
        if addr == self.selected:
            self.consent_until = now + self.consent_timeout_s
            return NOTHING
        if not nominated and addr != self.lapsed:
            return NOTHING  # (the peer back on the address that lapsed: check it again)
        if not established:
            return SELECT
        if addr == self.candidate and now - self.probe_sent_at < PROBE_INTERVAL_S:
            return NOTHING  # asked it moments ago
        return PROBE

    def select(self, addr: Address, now: float) -> None:
        self.selected = addr
        self.lapsed = None
        self.consent_until = now + self.consent_timeout_s
        if addr == self.candidate:
            self.candidate = self.probe_id = None

    def probing(self, addr: Address, transaction_id: bytes, now: float) -> None:
        self.candidate = addr
        self.probe_id = transaction_id
        self.probe_sent_at = now

    def on_answer(self, addr: Address, transaction_id: bytes, now: float) -> bool:
        """An authenticated answer to a check of ours: True when `addr` is to be selected."""
        if transaction_id == self.probe_id and addr == self.candidate:
            return True
        if addr == self.selected:
            self.consent_until = now + self.consent_timeout_s
        return False

    def lose(self, addr: Address) -> None:
        """The selected path is gone for good (its ICE-TCP connection closed): forgotten,
        not remembered as lapsed (a connection never comes back under the same key)."""
        if addr == self.selected:
            self.selected = None
        if addr == self.candidate:
            self.candidate = self.probe_id = None

    def expire(self, now: float) -> bool:
        """Has the selected address's consent lapsed? It is forgotten if so."""
        if self.selected is not None and now >= self.consent_until:
            self.lapsed, self.selected = self.selected, None
            return True
        return False


class IceEndpoint(Protocol):
    ice_ufrag: str
    ice_pwd_bytes: bytes
    remote_ice_ufrag: str | None
    remote_ice_pwd_bytes: bytes | None
    ice_tiebreaker: int

    def on_ice_check(self, addr: Address, nominated: bool) -> None: ...

    def on_ice_answer(self, addr: Address, transaction_id: bytes) -> None: ...


class IceLiteServer:
    def __init__(self, counters: Counters, send: Callable[[bytes, Address], None]) -> None:
        self._counters = counters
        self._send = send
        self._by_ufrag: dict[str, IceEndpoint] = {}
        # Our own checks awaiting an answer: one per endpoint at most.
        self._probes: dict[bytes, tuple[IceEndpoint, Address]] = {}
        self._probe_of: dict[IceEndpoint, bytes] = {}

    def register(self, endpoint: IceEndpoint) -> None:
        self._by_ufrag[endpoint.ice_ufrag] = endpoint

    def unregister(self, endpoint: IceEndpoint) -> None:
        if self._by_ufrag.get(endpoint.ice_ufrag) is endpoint:
            del self._by_ufrag[endpoint.ice_ufrag]
        self._forget_probe(endpoint)

    def probe(self, endpoint: IceEndpoint, addr: Address) -> bytes | None:
        """Send a check of ours to `addr` for `endpoint` (its earlier one is forgotten);
        the transaction id, or None without the peer's credentials."""
        if endpoint.remote_ice_ufrag is None or endpoint.remote_ice_pwd_bytes is None:
            return None
        self._forget_probe(endpoint)
        transaction_id = os.urandom(stun.TRANSACTION_ID_SIZE)
        request = stun.build_binding_request(
            transaction_id,
            f"{endpoint.remote_ice_ufrag}:{endpoint.ice_ufrag}",  # RFC 8445 §7.2.2: theirs:ours
            endpoint.remote_ice_pwd_bytes,
            _PROBE_PRIORITY,
            controlled_tiebreaker=endpoint.ice_tiebreaker,
        )
        self._probes[transaction_id] = (endpoint, addr)
        self._probe_of[endpoint] = transaction_id
        self._counters.ice_probes_sent += 1
        self._send(request, addr)
        return transaction_id

    def _forget_probe(self, endpoint: IceEndpoint) -> None:
        old = self._probe_of.pop(endpoint, None)
        if old is not None:
            self._probes.pop(old, None)

    def handle(self, data: bytes, addr: Address) -> None:
        try:
            message = stun.parse(data)
        except ValueError:
            self._counters.drop("malformed_stun")
            return
        if message.method != stun.METHOD_BINDING:
            self._counters.drop("stun_unexpected")
            return
        if message.message_class == stun.CLASS_INDICATION:
            return  # a keepalive (RFC 8445 §11): needs nothing
        if message.message_class != stun.CLASS_REQUEST:
            self._on_answer(message, data, addr)
            return
        self._counters.stun_requests += 1
        endpoint = self._endpoint_for(message)
        if endpoint is None:
            self._counters.drop("stun_auth")  # not one of ours: no answer at all
            return
        if message.get(stun.ATTR_FINGERPRINT) is None or not stun.verify_fingerprint(data):
            self._counters.drop("malformed_stun")
            return
        if not stun.verify_message_integrity(data, endpoint.ice_pwd_bytes):
            self._counters.drop("stun_auth")  # RFC 8489 §9.1.3 would say 401; we say nothing
            return
        self._send(stun.build_binding_success(message.transaction_id, addr, endpoint.ice_pwd_bytes), addr)
        nominated = message.use_candidate and message.ice_controlling is not None
        endpoint.on_ice_check(addr, nominated)

    def _on_answer(self, message: stun.StunMessage, data: bytes, addr: Address) -> None:
        """An answer to one of our checks: from the address it went to, keyed with the
        peer's password (RFC 8445 §7.2.5.2), or dropped."""
        pending = self._probes.get(message.transaction_id)
        if pending is None or message.message_class != stun.CLASS_SUCCESS:
            self._counters.drop("stun_unexpected")
            return
        endpoint, sent_to = pending
        key = endpoint.remote_ice_pwd_bytes
        if addr != sent_to or key is None or not stun.verify_message_integrity(data, key):
            self._counters.drop("stun_auth")
            return
        if message.get(stun.ATTR_FINGERPRINT) is not None and not stun.verify_fingerprint(data):
            self._counters.drop("malformed_stun")
            return
        self._forget_probe(endpoint)
        endpoint.on_ice_answer(addr, message.transaction_id)

    def _endpoint_for(self, message: stun.StunMessage) -> IceEndpoint | None:
        username = message.username
        if not username or ":" not in username:
            return None
        local, remote = username.split(":", 1)
        endpoint = self._by_ufrag.get(local)
        if endpoint is None:
            return None
        if endpoint.remote_ice_ufrag is not None and remote != endpoint.remote_ice_ufrag:
            return None
        return endpoint


def new_tiebreaker() -> int:
    """ICE-CONTROLLED's tie-breaker (RFC 8445 §7.1.1): a random 64-bit number."""
    return random.getrandbits(64)
