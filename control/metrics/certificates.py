"""When the server's TLS certificates expire, for an alert days ahead: the HTTPS one
(`http.tls_cert` or the self-signed one, `Config.https_certificate`) and the managed
coturn's `turns:` one when it has its own. Each file is parsed again only when its
modification time changes; a file that cannot be read is left out (no sample, so the
alert on its absence or on `conclave_tls_certificate_errors` can say so)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from cryptography import x509
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

EXPIRY = ("conclave_tls_certificate_expiry_timestamp_seconds",
          "When a TLS certificate the server serves expires (unix time), by use")  # fmt: skip
ERRORS = ("conclave_tls_certificate_errors", "TLS certificate files that cannot be read or parsed, by use")


class CertificateCollector(Collector):
    def __init__(self, paths: dict[str, str]) -> None:
        """`paths`: use (https, turn) -> PEM certificate file; empty paths are skipped."""
        self._paths = {use: path for use, path in paths.items() if path}
        self._cache: dict[str, tuple[float, float]] = {}  # path -> (mtime, not after)

    def collect(self) -> Iterator[Metric]:
        expiry = GaugeMetricFamily(*EXPIRY, labels=["use"])
        errors = GaugeMetricFamily(*ERRORS, labels=["use"])
        for use, path in sorted(self._paths.items()):
            not_after = self._not_after(path)
            if not_after is None:
                errors.add_metric([use], 1)
            else:
                expiry.add_metric([use], not_after)
                errors.add_metric([use], 0)
        yield expiry
        yield errors

    def _not_after(self, path: str) -> float | None:
        try:
            mtime = os.stat(path).st_mtime
            cached = self._cache.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            with open(path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
        except (OSError, ValueError):
            return None
        not_after = cert.not_valid_after_utc.timestamp()
        self._cache[path] = (mtime, not_after)
        return not_after
