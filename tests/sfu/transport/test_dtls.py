"""Each private aiortc hook sfu/transport/dtls.py relies on, exercised against the pinned version.

Hooks: RTCDtlsTransport(ice_like, [cert]) duck-typing the ICE transport (`role`,
`_recv`, `_send`), `_set_role`, the "statechange" event, and the pylibsrtp sessions left
in `_rx_srtp` / `_tx_srtp` after the handshake.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.metadata

import pytest
from aiortc.rtcdtlstransport import RTCCertificate
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from OpenSSL import SSL

from sfu.transport.dtls import DtlsCertificates, DtlsSession, certificate_fingerprint
from sfu.wire import rtp
from tests.support.certificates import certificate_ending


def test_aiortc_is_the_pinned_version():
    assert importlib.metadata.version("aiortc") == "1.16.0"


class _Pair:
    """Two DtlsSessions wired back to back through the event loop."""

    def __init__(self) -> None:
        self.connected: dict[str, tuple[object, object]] = {}
        self.down: dict[str, str] = {}
        self.certs = {"a": RTCCertificate.generateCertificate(), "b": RTCCertificate.generateCertificate()}
        self.sessions = {
            name: DtlsSession(
                self.certs[name],
                send=lambda data, peer=("b" if name == "a" else "a"): self._deliver(peer, data),
                on_connected=lambda rx, tx, name=name: self.connected.__setitem__(name, (rx, tx)),
                on_down=lambda state, name=name: self.down.__setitem__(name, state),
            )
            for name in ("a", "b")
        }

    def _deliver(self, peer: str, data: bytes) -> None:
        asyncio.get_running_loop().call_soon(self.sessions[peer].feed, data)


async def _wait(predicate, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_handshake_exports_working_srtp_sessions():
    pair = _Pair()
    fp = {name: [certificate_fingerprint(cert)] for name, cert in pair.certs.items()}
    pair.sessions["a"].start("server", fp["b"])
    pair.sessions["b"].start("client", fp["a"])
    await _wait(lambda: len(pair.connected) == 2)
    a_rx, a_tx = pair.connected["a"]
    b_rx, b_tx = pair.connected["b"]
    packet = rtp.build_packet(96, 1, 1000, 0x1234, payload=b"hello" * 20)
    assert b_rx.unprotect(a_tx.protect(packet)) == packet
    assert a_rx.unprotect(b_tx.protect(packet)) == packet
    for session in pair.sessions.values():
        await session.close()


async def test_fingerprint_mismatch_fails_the_handshake():
    pair = _Pair()
    wrong = [("sha-256", ":".join(["00"] * 32))]
    pair.sessions["a"].start("server", wrong)
    pair.sessions["b"].start("client", [certificate_fingerprint(pair.certs["a"])])
    await _wait(lambda: "a" in pair.down)
    assert pair.down["a"] == "failed"
    assert "a" not in pair.connected
    for session in pair.sessions.values():
        await session.close()


def _rsa_client_context() -> SSL.Context:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "webrtcbin-like")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.use_certificate(cert)
    ctx.use_privatekey(key)
    ctx.set_verify(SSL.VERIFY_PEER, lambda *args: True)
    ctx.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    ctx.cert_pem = cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]
    ctx.cert_obj = cert  # type: ignore[attr-defined]
    return ctx


async def test_server_role_accepts_an_rsa_client():
    """GStreamer's webrtcbin has only RSA certificates; as DTLS server we must still work."""
    ctx = _rsa_client_context()
    client = SSL.Connection(ctx)
    client.set_connect_state()
    connected: list[tuple[object, object]] = []
    down: list[str] = []
    to_client: list[bytes] = []
    server = DtlsSession(
        RTCCertificate.generateCertificate(),
        send=to_client.append,
        on_connected=lambda rx, tx: connected.append((rx, tx)),
        on_down=down.append,
    )
    digest = ctx.cert_obj.fingerprint(hashes.SHA256()).hex().upper()  # type: ignore[attr-defined]
    server.start("server", [("sha-256", ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)))])

    for _ in range(200):
        try:
            client.do_handshake()
        except SSL.WantReadError:
            pass
        while True:
            try:
                data = client.bio_read(4096)
            except SSL.WantReadError:
                break
            server.feed(data)
        await asyncio.sleep(0.01)
        while to_client:
            client.bio_write(to_client.pop(0))
        if connected or down:
            break
    assert not down, down
    assert connected, "no DTLS connection with an RSA client"
    assert client.get_selected_srtp_profile() == b"SRTP_AES128_CM_SHA1_80"
    await server.close()


@pytest.mark.parametrize("role", ["server", "client"])
async def test_set_role_is_honoured(role):
    pair = _Pair()
    other = "client" if role == "server" else "server"
    pair.sessions["a"].start(role, [certificate_fingerprint(pair.certs["b"])])
    pair.sessions["b"].start(other, [certificate_fingerprint(pair.certs["a"])])
    await _wait(lambda: len(pair.connected) == 2)
    assert pair.sessions["a"]._dtls._role == role
    for session in pair.sessions.values():
        await session.close()


# ------------------------------------------------------------- certificate renewal


@pytest.mark.unit
def test_certificates_are_renewed_a_week_before_they_expire():
    now = [datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc)]
    made: list[RTCCertificate] = []

    def generate() -> RTCCertificate:
        made.append(certificate_ending(now[0] + datetime.timedelta(days=30)))
        return made[-1]

    keeper = DtlsCertificates(clock=lambda: now[0], generate=generate)
    first = keeper.current()
    now[0] += datetime.timedelta(days=22, hours=23)
    assert keeper.current() is first and keeper.renewals == 0  # 7 days and an hour left
    now[0] += datetime.timedelta(hours=2)
    second = keeper.current()
    assert second is not first and keeper.renewals == 1 and len(made) == 2
    assert keeper.current() is second and keeper.expires == now[0] + datetime.timedelta(days=30)
