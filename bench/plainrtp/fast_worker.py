"""`python -m sfu.worker` with the two WebRTC hot-path changes applied to plain transports.

A bench-only variant ("ours+srtp-fast"). sfu/transport/webrtc.py and udp.py call libsrtp
through `sfu.transport.srtp.FastSrtp` and send with `socket.sendto` on a duplicated
descriptor; sfu/transport/plain.py (another module, not changed here) uses pylibsrtp's
Session and the event loop transport's sendto. This launcher wraps both from outside,
without copying any of plain.py's logic, so the same run measures what the two changes
would give there. Same arguments as sfu.worker.
"""

from __future__ import annotations

import os
import socket
import sys

from sfu.transport import plain
from sfu.transport.srtp import FastSrtp

_plain_srtp_session = plain.srtp_session
_plain_connection_made = plain.PlainTransport.connection_made


def _fast_srtp_session(key: bytes, outbound: bool):
    session = _plain_srtp_session(key, outbound)
    return session if isinstance(session, FastSrtp) else FastSrtp(session)


class _DirectSend:
    """The transport, except that sendto goes through a duplicated descriptor."""

    __slots__ = ("_transport", "_socket")

    def __init__(self, transport) -> None:
        self._transport = transport
        self._socket = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        self._socket.setblocking(False)

    def sendto(self, data: bytes, addr) -> None:
        try:
            self._socket.sendto(data, addr)
        except BlockingIOError:
            self._transport.sendto(data, addr)
        except OSError:
            pass

    def close(self) -> None:
        self._socket.close()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


def _connection_made(self, transport) -> None:
    _plain_connection_made(self, transport)
    self.udp = _DirectSend(self.udp)


if __name__ == "__main__":
    plain.srtp_session = _fast_srtp_session  # type: ignore[assignment]
    plain.PlainTransport.connection_made = _connection_made  # type: ignore[method-assign]
    from sfu.worker import main

    sys.exit(main())
