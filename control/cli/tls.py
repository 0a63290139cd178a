"""HTTPS for `conclave serve`: the certificate, its reload on SIGHUP, the self-signed
mode, the HTTP → HTTPS redirect and HSTS.

One `ssl.SSLContext` serves the listening socket for the process's life; a reload loads
the new chain into that same context, so connections made after it get the new
certificate and connections already open (signaling sockets: meetings) keep theirs.

`http.tls: self-signed` is for a LAN trial without a CA: a certificate for
`http.public_url`'s host (or `http.host`) is made once, kept in `data_dir/tls/`, and made
again when its host changes or it is within RENEW_BEFORE of its end; its SHA-256
fingerprint and SPKI hash are printed so that browsers can be told to trust it
(Chromium: `--ignore-certificate-errors-spki-list=<SPKI>`). No HSTS in that mode: a
browser that had clicked through a self-signed certificate would be locked out by it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common.private_files import write_private_file
from config import Config
from config.schema import SELF_SIGNED_CERT, SELF_SIGNED_KEY

log = logging.getLogger(__name__)

SELF_SIGNED_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=30)
HSTS = "max-age=31536000"  # one year (RFC 6797); no includeSubDomains: not ours to decide


@dataclass(frozen=True)
class CertificateFiles:
    cert: Path
    key: Path
    self_signed: bool


def certificate_files(cfg: Config) -> CertificateFiles | None:
    """Where the HTTPS certificate is (made first in self-signed mode); None: plain HTTP."""
    paths = cfg.https_certificate()
    if paths is None:
        return None
    if cfg.http.tls == "self-signed":
        return ensure_self_signed(Path(paths[0]).parent, certificate_host(cfg))
    return CertificateFiles(Path(paths[0]), Path(paths[1]), self_signed=False)


def certificate_host(cfg: Config) -> str:
    """The name clients open: public_url's host, else the listening host (loopback for
    a wildcard address)."""
    if cfg.http.public_url:
        host = urlsplit(cfg.http.public_url).hostname
        if host:
            return host
    return "127.0.0.1" if cfg.http.host in ("0.0.0.0", "::") else cfg.http.host


# ---------------------------------------------------------------------- self-signed


def ensure_self_signed(directory: Path, host: str, now: datetime.datetime | None = None) -> CertificateFiles:
    """The self-signed certificate for `host` in `directory`, made (again) when missing,
    for another host, or near its end."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    files = CertificateFiles(directory / SELF_SIGNED_CERT, directory / SELF_SIGNED_KEY, self_signed=True)
    if not _still_good(files.cert, host, now):
        key = ec.generate_private_key(ec.SECP256R1())
        write_private_file(files.key, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
        cert = _self_signed_certificate(key, host, now)
        write_private_file(files.cert, cert.public_bytes(serialization.Encoding.PEM))
        log.info("made a self-signed certificate for %s (valid %d days)", host, SELF_SIGNED_DAYS)
    return files


def _still_good(cert_path: Path, host: str, now: datetime.datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE <= now:
        return False
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return _san_for(host) in list(names)


def _san_for(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _self_signed_certificate(key: ec.EllipticCurvePrivateKey, host: str, now: datetime.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san_for(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def fingerprints(cert_path: Path) -> tuple[str, str]:
    """(SHA-256 of the certificate as AA:BB:..., base64 SHA-256 of its SubjectPublicKeyInfo)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)), base64.b64encode(
        hashlib.sha256(spki).digest()
    ).decode("ascii")


# ---------------------------------------------------------------------- serving


class Tls:
    """The listening socket's TLS: one context, reloaded in place."""

    def __init__(self, files: CertificateFiles) -> None:
        self.files = files
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(files.cert, files.key)

    def reload(self) -> bool:
        """Load the certificate files again (SIGHUP). A chain that does not load is
        refused and logged; the one in use stays."""
        try:
            self.context.load_cert_chain(self.files.cert, self.files.key)
        except (OSError, ssl.SSLError) as exc:
            log.error("SIGHUP: the certificate in %s did not load, keeping the current one: %s", self.files.cert, exc)
            return False
        log.info("SIGHUP: reloaded the certificate from %s (SHA-256 %s)", self.files.cert, fingerprints(self.files.cert)[0])
        return True

    def describe(self) -> str:
        sha256, spki = fingerprints(self.files.cert)
        kind = "self-signed certificate" if self.files.self_signed else "certificate"
        return f"{kind} {self.files.cert} SHA-256 fingerprint {sha256} (SPKI sha256 {spki})"


async def add_hsts(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: tell browsers to come back over HTTPS only."""
    response.headers.setdefault("Strict-Transport-Security", HSTS)


def redirect_app(public_url: str, https_port: int) -> web.Application:
    """The redirect port's whole application: every request → the same path over HTTPS,
    at http.public_url when it is https (the name clients should use), else at the host
    the request named, on the HTTPS port."""
    public = urlsplit(public_url)

    async def redirect(request: web.Request) -> web.StreamResponse:
        if public.scheme == "https" and public.netloc:
            origin = f"https://{public.netloc}"
        else:
            host = request.url.host or "localhost"
            if ":" in host:
                host = f"[{host}]"
            origin = f"https://{host}" + ("" if https_port == 443 else f":{https_port}")
        raise web.HTTPPermanentRedirect(origin + str(request.rel_url))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app
