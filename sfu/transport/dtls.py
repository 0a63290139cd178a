"""DTLS-SRTP handshakes through aiortc's RTCDtlsTransport (RFC 5763, RFC 5764).

aiortc is used for what it does well — the OpenSSL handshake, fingerprint check and SRTP
key export — and nothing else. Its DTLS transport expects an RTCIceTransport; `_IceShim`
gives it the three things it touches (`role`, `_recv()`, `_send()`), fed from our shared
UDP socket. Once connected we take its pylibsrtp sessions (`_rx_srtp`, `_tx_srtp`) and do
SRTP on the hot path ourselves, synchronously. These are private aiortc attributes:
aiortc is pinned to one version and tests/sfu/transport/test_dtls.py covers each of them.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Callable

from aiortc.rtcdtlstransport import (
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCDtlsTransport,
)

log = logging.getLogger(__name__)

# DTLS flights are few and small; a peer flooding DTLS records is dropped, not queued.
MAX_QUEUED_RECORDS = 64


class _IceShim:
    """The part of aiortc's RTCIceTransport that RTCDtlsTransport uses."""

    role = "controlled"  # unused: we always set the DTLS role from the SDP

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_QUEUED_RECORDS)
        self._send_datagram = send

    async def _recv(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            raise ConnectionError("transport closed")
        return data

    async def _send(self, data: bytes) -> None:
        self._send_datagram(data)

    def feed(self, data: bytes) -> bool:
        try:
            self._queue.put_nowait(data)
            return True
        except asyncio.QueueFull:
            return False

    def close(self) -> None:
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass


def certificate_fingerprint(certificate: RTCCertificate) -> tuple[str, str]:
    for fingerprint in certificate.getFingerprints():
        if fingerprint.algorithm == "sha-256":
            return fingerprint.algorithm, fingerprint.value
    raise RuntimeError("certificate has no sha-256 fingerprint")


# aiortc's certificates are valid for 30 days. A transport made within this long of its
# certificate's end gets a fresh one, so a worker that runs for months keeps taking joins.
RENEW_BEFORE = datetime.timedelta(days=7)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class DtlsCertificates:
    """The worker's DTLS certificate for new transports, renewed before it expires.

    A transport keeps the certificate it was made with for its whole life (its DTLS
    association and the fingerprint in its SDP are that certificate's); only transports
    made after a renewal use the new one. Renewal is one EC key and one self-signed
    certificate (about a millisecond), done when a transport is made, at most once a
    certificate lifetime."""

    __slots__ = ("_clock", "_generate", "renew_before", "certificate", "renewals")

    def __init__(
        self,
        clock: Callable[[], datetime.datetime] = _utc_now,
        generate: Callable[[], RTCCertificate] = RTCCertificate.generateCertificate,
        renew_before: datetime.timedelta = RENEW_BEFORE,
    ) -> None:
        self._clock = clock
        self._generate = generate
        self.renew_before = renew_before
        self.certificate = generate()
        self.renewals = 0

    def current(self) -> RTCCertificate:
        """The certificate a transport made now should use."""
        if self._clock() >= self.certificate.expires - self.renew_before:
            self.certificate = self._generate()
            self.renewals += 1
        return self.certificate

    @property
    def expires(self) -> datetime.datetime:
        return self.certificate.expires


class DtlsSession:
    """One DTLS association; reports ("connected", rx, tx) or ("failed"/"closed") once each."""

    def __init__(
        self,
        certificate: RTCCertificate,
        send: Callable[[bytes], None],
        on_connected: Callable[[object, object], None],
        on_down: Callable[[str], None],
    ) -> None:
        self._shim = _IceShim(send)
        self._dtls = RTCDtlsTransport(self._shim, [certificate])  # type: ignore[arg-type]
        self._dtls.on("statechange", self._on_statechange)
        self._on_connected = on_connected
        self._on_down = on_down
        self._task: asyncio.Task[None] | None = None
        self._reported = False

    @property
    def started(self) -> bool:
        return self._task is not None

    @property
    def state(self) -> str:
        return self._dtls.state

    def start(self, role: str, fingerprints: list[tuple[str, str]]) -> None:
        """role is OUR role: "server" waits for the ClientHello, "client" sends it."""
        if self._task is not None:
            return
        self._dtls._set_role(role)
        parameters = RTCDtlsParameters(
            fingerprints=[RTCDtlsFingerprint(algorithm=a, value=v) for a, v in fingerprints]
        )
        self._task = asyncio.ensure_future(self._run(parameters))

    async def _run(self, parameters: RTCDtlsParameters) -> None:
        try:
            await self._dtls.start(parameters)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken peer must not leak a traceback per handshake
            log.info("DTLS handshake error: %s", exc)
            self._report_down("failed")

    def feed(self, data: bytes) -> bool:
        return self._shim.feed(data)

    def _on_statechange(self) -> None:
        state = self._dtls.state
        if state == "connected":
            self._on_connected(self._dtls._rx_srtp, self._dtls._tx_srtp)
        elif state in ("failed", "closed"):
            self._report_down(state)

    def _report_down(self, state: str) -> None:
        if not self._reported:
            self._reported = True
            self._on_down(state)

    async def close(self) -> None:
        self._reported = True  # closing on purpose is not news
        if self._dtls.state == "connected":
            try:
                await asyncio.wait_for(self._dtls.stop(), 1.0)
            except Exception:
                pass
        self._shim.close()
        if self._task is not None:
            self._task.cancel()
