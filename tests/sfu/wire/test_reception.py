"""sfu.wire.reception: RFC 3550 reception statistics."""

from __future__ import annotations

from sfu.wire.reception import ReceptionStats


def test_reception_handles_wraparound():
    stats = ReceptionStats()
    for seq in (65534, 65535, 0, 1):
        stats.update(seq)
    assert stats.report_values(0.0)[2] == 65536 + 1
