"""Certificates with a chosen end of validity (DTLS renewal tests)."""

from __future__ import annotations

import datetime

from aiortc.rtcdtlstransport import RTCCertificate
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec


def certificate_ending(at: datetime.datetime) -> RTCCertificate:
    """An EC certificate like aiortc's whose validity ends at `at`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "conclave-test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - datetime.timedelta(days=30))
        .not_valid_after(at)
        .sign(key, hashes.SHA256())
    )
    return RTCCertificate(key=key, cert=cert)
