"""control.metrics.certificates: when the served TLS certificates expire, read from the
files (again only when a file changes), and files that cannot be read counted."""

from __future__ import annotations

import datetime
import os

from cryptography.hazmat.primitives import serialization

from control.metrics.certificates import CertificateCollector
from tests.support.certificates import certificate_ending


def write_pem(path, ends: datetime.datetime) -> float:
    cert = certificate_ending(ends)._cert
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ends.replace(microsecond=0).timestamp()


def samples(collector) -> dict:
    return {(family.name, s.labels["use"]): s.value for family in collector.collect() for s in family.samples}


def test_expiry_per_use_and_errors_for_unreadable_files(tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    https_end = write_pem(tmp_path / "https.pem", now + datetime.timedelta(days=40))
    (tmp_path / "broken.pem").write_text("not a certificate")
    collector = CertificateCollector({"https": str(tmp_path / "https.pem"), "turn": str(tmp_path / "broken.pem"),
                                      "unused": ""})  # fmt: skip
    assert samples(collector) == {
        ("conclave_tls_certificate_expiry_timestamp_seconds", "https"): https_end,
        ("conclave_tls_certificate_errors", "https"): 0,
        ("conclave_tls_certificate_errors", "turn"): 1,
    }
    # Renewed in place (certbot): the next scrape reads the new one.
    renewed = write_pem(tmp_path / "https.pem", now + datetime.timedelta(days=90))
    os.utime(tmp_path / "https.pem", (now.timestamp() + 5, now.timestamp() + 5))
    assert samples(collector)[("conclave_tls_certificate_expiry_timestamp_seconds", "https")] == renewed
