"""What a StreamMunger (sfu/engine/munger.py) remembers of what it sent, for late packets
and NACKs: fixed-size rings, written off the per-packet path (once per frame, once per
drop or switch), searched only when a late packet or a NACK comes."""

from __future__ import annotations


class NumberRuns:
    """Out sequence numbers as runs: from a run's first number on, out = input + base
    (mod 2**16), all in one epoch (one stretch of one layer). A run starts at the first
    number given after a drop (the base moves down by one) or a switch; the last `size`
    runs are kept."""

    __slots__ = ("_start", "_base", "_epoch", "_at", "_mask")

    def __init__(self, size: int = 128) -> None:
        if size & (size - 1):
            raise ValueError(f"size: {size}, not a power of two")
        self._start = [-1] * size
        self._base = [0] * size
        self._epoch = [0] * size
        self._at = 0
        self._mask = size - 1

    def add(self, start: int, base: int, epoch: int) -> None:
        at = self._at = (self._at + 1) & self._mask
        self._start[at] = start
        self._base[at] = base
        self._epoch[at] = epoch

    def find(self, out_seq: int) -> tuple[int, int]:
        """(epoch, input seq) of out_seq: the newest run starting at or before it (the
        caller checks out_seq is not newer than the newest number given); (-1, -1) when
        it is older than every run kept."""
        at = self._at
        for _ in range(self._mask + 1):
            start = self._start[at]
            if start < 0:
                break
            if (out_seq - start) & 0xFFFF < 0x8000:
                return self._epoch[at], (out_seq - self._base[at]) & 0xFFFF
            at = (at - 1) & self._mask
        return -1, -1


class PictureRing:
    """The last `size` frames: a key (epoch << 15 | input PictureID) and the out
    PictureID it got, -1 for a frame that was dropped."""

    __slots__ = ("_keys", "_outs", "_at", "_mask")

    def __init__(self, size: int = 128) -> None:
        if size & (size - 1):
            raise ValueError(f"size: {size}, not a power of two")
        self._keys = [-1] * size
        self._outs = [-1] * size
        self._at = 0
        self._mask = size - 1

    def add(self, key: int, out: int) -> None:
        at = self._at
        self._at = (at + 1) & self._mask
        self._keys[at] = key
        self._outs[at] = out

    def get(self, key: int) -> int:
        """The out PictureID of `key`; -1 when it was dropped or is no longer kept."""
        try:
            return self._outs[self._keys.index(key)]
        except ValueError:
            return -1
