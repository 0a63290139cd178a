"""HTTPS for `conclave serve` (control/cli/tls.py): the self-signed mode, the HTTP → HTTPS
redirect, HSTS, and a certificate reload on SIGHUP that keeps meetings going.

The process tests run the real `conclave serve` and speak TLS to it with the standard
library and aiohttp, trusting exactly the certificate the test expects.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import socket
import ssl
import stat
from pathlib import Path

import aiohttp
import pytest
import yaml
from cryptography import x509

from control.cli.tls import ensure_self_signed, fingerprints
from tests.support.servers import OPERATOR_KEY, SignalingSocket, spawn_serve, stop_serve

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------- unit


@pytest.mark.unit
def test_a_self_signed_certificate_is_made_once_private_and_again_when_it_must(tmp_path):
    now = datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc)
    files = ensure_self_signed(tmp_path / "tls", "192.168.1.20", now)
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600 and files.self_signed
    first = fingerprints(files.cert)
    assert len(first[0].split(":")) == 32 and len(first[1]) == 44  # SHA-256 hex pairs; base64 of 32 bytes
    assert fingerprints(ensure_self_signed(tmp_path / "tls", "192.168.1.20", now).cert) == first  # kept
    later = now + datetime.timedelta(days=340)  # within 30 days of its end
    assert fingerprints(ensure_self_signed(tmp_path / "tls", "192.168.1.20", later).cert) != first
    renamed = ensure_self_signed(tmp_path / "tls", "meet.lan", later)  # another host: a DNS name now
    names = x509.load_pem_x509_certificate(renamed.cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert names.value.get_values_for_type(x509.DNSName) == ["meet.lan"]


# ---------------------------------------------------------------------- process


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(tmp_path: Path, http: dict) -> object:
    config = tmp_path / "conclave.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "http": {"host": "127.0.0.1", "port": 0, **http},
        "sfu": {"workers": 1, "port_base": 0, "listen_ip": "127.0.0.1"},
        "turn": {"mode": "off"},  # no coturn: not what this test is about
        "auth": {"operator_key": OPERATOR_KEY},
        "logging": {"level": "info"},
    }))  # fmt: skip
    return spawn_serve(config, tmp_path / "serve.log")


def _served_certificate(base_url: str) -> tuple[str, str]:
    """The fingerprints of the certificate a new TLS connection is given."""
    host, port = base_url.removeprefix("https://").rsplit(":", 1)
    pem = ssl.get_server_certificate((host, int(port)))
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"served-{os.getpid()}-{port}.pem"
    path.write_text(pem)
    try:
        return fingerprints(path)
    finally:
        path.unlink()


@pytest.mark.process
async def test_self_signed_mode_serves_https_with_the_printed_fingerprint_and_redirects_http(tmp_path):
    redirect_port = _free_port()
    server = _serve(tmp_path, {"tls": "self-signed", "public_url": "https://127.0.0.1", "redirect_port": redirect_port})
    try:
        assert server.base_url.startswith("https://127.0.0.1:")
        cert = tmp_path / "data" / "tls" / "self-signed.crt"
        sha256, spki = fingerprints(cert)
        assert f"SHA-256 fingerprint {sha256} (SPKI sha256 {spki})" in server.log_text()  # also on stdout
        assert _served_certificate(server.base_url) == (sha256, spki)
        trusting = ssl.create_default_context(cafile=cert)  # verifies the chain and the IP SAN
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as session:
            async with session.get(f"{server.base_url}/healthz") as response:
                assert response.status == 200
                # No HSTS for a self-signed certificate: it would lock clicked-through browsers out.
                assert "Strict-Transport-Security" not in response.headers
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{redirect_port}/m/123?x=1", allow_redirects=False) as response:
                assert response.status == 308
                assert response.headers["Location"] == "https://127.0.0.1/m/123?x=1"
    finally:
        stop_serve(server)
    assert "Traceback" not in server.log_text()


@pytest.mark.process
async def test_sighup_reloads_the_certificate_and_keeps_the_meeting(tmp_path):
    first = ensure_self_signed(tmp_path / "first", "127.0.0.1")
    second = ensure_self_signed(tmp_path / "second", "127.0.0.1")
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    server = _serve(tmp_path, {"tls_cert": str(cert), "tls_key": str(key)})
    trusting = ssl.create_default_context(cafile=first.cert)
    trusting.load_verify_locations(cafile=second.cert)
    server.ssl = trusting
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting))
    try:
        assert _served_certificate(server.base_url) == fingerprints(first.cert)
        async with session.get(f"{server.base_url}/healthz") as response:
            assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
        meeting = await server.create_meeting("tls reload")
        url = server.ws_url(meeting["meeting_id"])
        ws = await session.ws_connect(url, autoclose=False)
        signaling = SignalingSocket(ws, url.token_source)
        await signaling.join("ann")

        cert.write_bytes(second.cert.read_bytes())
        key.write_bytes(second.key.read_bytes())
        os.kill(server.pid, signal.SIGHUP)
        for _ in range(50):
            if _served_certificate(server.base_url) == fingerprints(second.cert):
                break
            await asyncio.sleep(0.1)
        assert _served_certificate(server.base_url) == fingerprints(second.cert)

        await signaling.send({"type": "ping"})  # the meeting's socket, opened before: still there
        assert (await signaling.recv_type("pong"))["type"] == "pong"

        key.write_text("not a key")  # a broken reload keeps the certificate in use
        os.kill(server.pid, signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert _served_certificate(server.base_url) == fingerprints(second.cert)
        assert server.process.poll() is None
        await ws.close()
    finally:
        await session.close()
        stop_serve(server)
    log = server.log_text()
    assert "reloaded the certificate" in log and "did not load, keeping the current one" in log
    assert "Traceback" not in log
