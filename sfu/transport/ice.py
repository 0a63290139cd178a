"""ICE-lite on the worker's shared UDP port (RFC 8445 §2.5, §7.3 as the controlled lite agent).

A lite agent only answers connectivity checks. Each transport owns a local ufrag/pwd;
a binding request names it in USERNAME ("local:remote"), must carry a valid
MESSAGE-INTEGRITY keyed with the local password and a FINGERPRINT (RFC 8445 §7.2.2). A
valid check tells us the peer's address; USE-CANDIDATE (or the first valid check)
selects it, and from then on that address demuxes to the transport.
"""

from __future__ import annotations

from typing import Callable, Protocol

from sfu.engine.stats import Counters
from sfu.wire import stun

Address = tuple[str, int]


class IceEndpoint(Protocol):
    ice_ufrag: str
    ice_pwd_bytes: bytes
    remote_ice_ufrag: str | None

    def on_ice_check(self, addr: Address, use_candidate: bool) -> None: ...


class IceLiteServer:
    def __init__(self, counters: Counters, send: Callable[[bytes, Address], None]) -> None:
        self._counters = counters
        self._send = send
        self._by_ufrag: dict[str, IceEndpoint] = {}

    def register(self, endpoint: IceEndpoint) -> None:
        self._by_ufrag[endpoint.ice_ufrag] = endpoint

    def unregister(self, endpoint: IceEndpoint) -> None:
        if self._by_ufrag.get(endpoint.ice_ufrag) is endpoint:
            del self._by_ufrag[endpoint.ice_ufrag]

    def handle(self, data: bytes, addr: Address) -> None:
        try:
            message = stun.parse(data)
        except ValueError:
            self._counters.drop("malformed_stun")
            return
        if message.method != stun.METHOD_BINDING or message.message_class != stun.CLASS_REQUEST:
            return  # indications (keepalives) and responses need no answer from a lite agent
        self._counters.stun_requests += 1
        endpoint = self._endpoint_for(message)
        if endpoint is None:
            self._counters.drop("stun_auth")
            return
        if message.get(stun.ATTR_FINGERPRINT) is None or not stun.verify_fingerprint(data):
            self._counters.drop("malformed_stun")
            return
        if not stun.verify_message_integrity(data, endpoint.ice_pwd_bytes):
            self._counters.drop("stun_auth")
            self._send(stun.build_binding_error(message.transaction_id, 401, "Unauthorized"), addr)
            return
        self._send(stun.build_binding_success(message.transaction_id, addr, endpoint.ice_pwd_bytes), addr)
        endpoint.on_ice_check(addr, message.use_candidate)

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
