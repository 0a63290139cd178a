"""Receive statistics of one incoming stream, for receiver reports (RFC 3550 §6.4.1, A.3).

The class lives in sfu.wire.reception (pure arithmetic, shared with the recorder, which may
not import sfu.engine); this name is the same class, so `Producer.on_rtp`'s per-packet
`reception.update(seq)` costs exactly what it did.
"""

from __future__ import annotations

from sfu.wire.reception import ReceptionStats

__all__ = ["ReceptionStats"]
