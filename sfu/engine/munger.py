"""One continuous stream for one subscriber, made of whichever simulcast layer is forwarded.

A `StreamMunger` rewrites what a subscriber sees of a video track so that switching
between spatial layers (separate SSRCs, each with its own sequence numbers, timestamps,
VP8 PictureIDs and TL0PICIDX) and dropping packets (a temporal layer filtered out,
padding) look like one sender's stream:

- SSRC: always `ssrc`.
- Sequence numbers: contiguous across switches and across packets the SFU drops; a gap
  in the forwarded layer's input (a packet lost upstream) stays a gap, so the subscriber
  NACKs it. The out number of a missing packet is reserved: if it arrives late (reordered,
  or recovered upstream by RTX), it takes that number. Out-of-order packets older than
  the last switch, duplicates and late packets of dropped frames are dropped. A missing
  packet cannot tell which frame it belonged to: its gap is kept even when that frame
  turns out to be one the SFU drops (the subscriber NACKs it in vain, as after a loss),
  and a late packet of a frame lost whole goes out whatever its TID (its numbers showed).
- Timestamps: each layer's own offset; at a switch the first packet of the new layer
  follows the last forwarded frame by the wall time elapsed between them, in RTP clock
  units (at least 1: never backwards).
- VP8 PictureID: one more per forwarded frame; a frame the SFU drops takes no number; a
  frame lost upstream keeps its number (the gap shows). Written in the width of each
  packet's own field (7 or 15 bits); both wrap.
- VP8 TL0PICIDX: continuous across switches (8 bits, wraps). Temporal filtering never
  drops a TL0 frame, so within one layer its offset is constant.
- Temporal layers (VP8 TID): `max_tid` is what goes out, moved towards `target_tid` at
  frame boundaries: down at the next frame, up one layer at a time at a frame of the next
  layer with the layer-sync bit Y (or, when none comes within `sync_wait` seconds, at the
  next frame of that layer).

Which packet starts a layer is the selector's business (sfu/engine/layers.py): it calls
`start` with the first packet of a keyframe; `forward` takes every later packet of that
layer (`layer`) and hands a packet of any other layer to `elsewhere` (the selector's),
so that a settled selector's one call per packet is `forward` itself.

Per packet `forward` does integer arithmetic and a few attribute stores, no allocation
beyond the ints; a frame's first packet does a little more (`_new_frame`: the temporal
decision, PictureID and TL0PICIDX, packed once per frame); switches, gaps, drops and late
packets take the slow paths. Results are left in `out_seq`, `out_ts` and `out_codec`
(the PictureID and TL0PICIDX bytes, what goes between `PacketInfo.middle` and `.tail`):
`packet` joins the packet that goes out, `rewrite` writes them into a copy instead.

Retransmissions: `source(out_seq)` names the layer and input sequence number a NACKed
number was given to (from runs of numbers, one per drop or switch, the last HISTORY
numbers), and `retransmit(info, out_seq)` gives the same out values again (or, for a
number kept for a missing packet, the values it gets now that it is there). Sender
reports: translate only the forwarded layer's (`layer`), with `ts_offset`.

Not rewritten: VP8 KEYIDX (Chromium sends none), header extensions (the consumer's).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from sfu.engine.munger_history import NumberRuns, PictureRing
from sfu.engine.packet_info import PacketInfo, pack_codec

DROP = 0
FORWARD = 1

# The fixed header (RFC 3550 §5.1): V/P/X/CC + M/PT, sequence, timestamp, SSRC.
_HEADER = struct.Struct("!HHII")
_SEQ_TS_SSRC = struct.Struct("!HII")
# How far back a NACKed number is looked up (as many as the producer's packet cache), and
# how many runs of numbers (one more after every drop or switch) are remembered for it.
HISTORY = 1024
RUNS = 128
# Pictures remembered for late packets and retransmissions (4 s at 30 fps).
PICTURES = 128
# Missing packets of one gap whose numbers are reserved for a late arrival; beyond that
# the gap is kept but a late packet is dropped (the producer NACKs only 64 either).
MAX_RESERVED = 64
_MAX_GAPS = 256
_EPOCHS = 8


class StreamMunger:
    """One subscriber's stream of one video track (see the module docstring).

    ssrc and payload_type: the subscriber's; clock_rate: the codec's; first_seq and
    first_ts: the first out sequence number and timestamp (random by default, RFC 3550
    §5.1; a consumer that already sent this track passes its next ones). sync_wait: how
    long a temporal upswitch waits for a layer-sync frame. layer: the spatial layer being
    forwarded (-1 before the first `start`).
    """

    __slots__ = (
        "ssrc",
        "payload_type",
        "elsewhere",
        "clock_rate",
        "target_tid",
        "max_tid",
        "sync_wait",
        "out_seq",
        "out_ts",
        "out_codec",
        "started",
        "layer",
        "_epoch",
        "_epoch_seq",
        "_epoch_pic",
        "_max_in",
        "_seq_base",
        "_ts_offset",
        "_tl0_offset",
        "_frame_ts",
        "_frame_on",
        "_frame_pid",
        "_frame_tl0",
        "_frame_layout",
        "_frame_codec",
        "_sent_ts",
        "_sent_at",
        "_next_pid",
        "_pid_in",
        "_pid_bits",
        "_last_tl0",
        "_up_since",
        "_gaps",
        "_renumbered",
        "_runs",
        "_pictures",
        "_epochs",
    )

    def __init__(
        self,
        ssrc: int,
        payload_type: int,
        clock_rate: int = 90000,
        first_seq: int | None = None,
        first_ts: int | None = None,
    ) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        # What a packet of another layer than `layer` is handed to (the selector's).
        self.elsewhere: Callable[[PacketInfo], int] = _drop
        self.clock_rate = clock_rate
        self.target_tid = 2
        self.max_tid = 2
        self.sync_wait = 0.5
        self.out_seq = 0
        self.out_ts = 0
        self.out_codec = b""
        self.started = False
        self.layer = -1
        self._epoch = 0
        self._epoch_seq = 0
        self._epoch_pic = 0
        # Random starting points, as a fresh sender would pick (RFC 3550 §5.1).
        seq = random.getrandbits(16) if first_seq is None else first_seq & 0xFFFF
        ts = random.getrandbits(32) if first_ts is None else first_ts & 0xFFFFFFFF
        # Until the first start these two hold the first out sequence number and timestamp.
        self._max_in = 0
        self._seq_base = seq
        self._ts_offset = ts
        self._tl0_offset = 0
        self._frame_ts = -1
        self._frame_on = False
        self._frame_pid = -1
        self._frame_tl0 = -1
        self._frame_layout = 0
        self._frame_codec = b""
        self._sent_ts = 0
        self._sent_at = 0.0
        self._next_pid = -1
        self._pid_in = -1
        self._pid_bits = 0
        self._last_tl0 = -1
        self._up_since = -1.0
        self._gaps: dict[int, int] = {}  # (epoch << 16 | input seq) -> reserved out seq
        # The NACK history: a run starts at the first number given after a drop or a
        # switch (_renumbered). The frames' PictureIDs, for late packets and NACKs.
        self._renumbered = True
        self._runs = NumberRuns(RUNS)
        self._pictures = PictureRing(PICTURES)
        self._epochs: list[tuple[int, int, int, int] | None] = [None] * _EPOCHS  # epoch, layer, ts, tl0 offsets

    @property
    def ts_offset(self) -> int:
        """Out timestamp = input timestamp of the forwarded layer + this (mod 2**32)."""
        return self._ts_offset

    def set_target_temporal(self, tid: int) -> None:
        """Forward TIDs up to `tid` from now on (applied at frame boundaries)."""
        tid = min(max(tid, 0), 2)
        if tid > self.target_tid or tid > self.max_tid:
            self._up_since = -1.0  # the wait for a sync frame starts at the next frame
        self.target_tid = tid

    # ------------------------------------------------------------------ hot path

    def forward(self, info: PacketInfo) -> int:
        """A packet of the layer being forwarded: FORWARD with the out values set, or DROP.
        A packet of another layer goes to `elsewhere`."""
        if info.spatial != self.layer:
            return self.elsewhere(info)
        seq = info.seq
        d = (seq - self._max_in) & 0xFFFF
        if d == 0 or d >= 0x8000:
            return self._late(info, d)
        if d != 1:
            self._reserve(seq, d)
        self._max_in = seq
        if info.empty:
            self._seq_base = (self._seq_base - 1) & 0xFFFF  # renumbered away: no gap
            self._renumbered = True
            return DROP
        if info.ts != self._frame_ts:
            self._new_frame(info)
        if not self._frame_on:
            self._seq_base = (self._seq_base - 1) & 0xFFFF
            self._renumbered = True
            return DROP
        out = (seq + self._seq_base) & 0xFFFF
        self.out_seq = out
        self.out_ts = (info.ts + self._ts_offset) & 0xFFFFFFFF
        if info.layout == self._frame_layout:
            self.out_codec = self._frame_codec
        else:
            self.out_codec = pack_codec(info.layout, self._frame_pid, self._frame_tl0)
        if self._renumbered:
            self._new_run(out)
        return FORWARD

    def packet(self, info: PacketInfo) -> bytes:
        """The packet that goes out after a FORWARD: one join of the shared parts."""
        header = _HEADER.pack(info.head | self.payload_type, self.out_seq, self.out_ts, self.ssrc)
        return b"".join((header, info.middle, self.out_codec, info.tail))

    def rewrite(self, buf: bytearray, info: PacketInfo) -> None:
        """The same into `buf`, a copy of the packet `info` was read from (for a caller
        that changes more of it, e.g. header extension ids: they keep their lengths)."""
        buf[1] = (buf[1] & 0x80) | self.payload_type
        _SEQ_TS_SSRC.pack_into(buf, 2, self.out_seq, self.out_ts, self.ssrc)
        buf[info.codec_start : info.codec_end] = self.out_codec

    # ------------------------------------------------------- once per frame

    def _new_frame(self, info: PacketInfo) -> None:
        """The first packet (in order) of a frame: whether it goes out, and its numbers."""
        self._frame_ts = info.ts
        if self.max_tid != self.target_tid:
            self._temporal_step(info)
        on = info.tid <= self.max_tid
        pid = info.picture_id
        if pid >= 0:
            bits = info.layout & 0x1F
            step = 1
            if self._pid_in >= 0 and bits == self._pid_bits:
                mask = 0x7FFF if bits == 15 else 0x7F
                step = (pid - self._pid_in) & mask
                if step == 0 or step > mask >> 1:
                    step = 1  # not forward of the last one: number it as the next
            self._pid_in = pid
            self._pid_bits = bits
            out_pid = self._next_pid
            if step > 1:  # frames lost upstream keep their numbers
                self._reserve_pictures(pid, step, out_pid)
                out_pid = (out_pid + step - 1) & 0x7FFF
            if on:
                self._pictures.add(self._epoch_pic | pid, out_pid)
                self._frame_pid = out_pid
                self._next_pid = (out_pid + 1) & 0x7FFF
            else:
                self._pictures.add(self._epoch_pic | pid, -1)
                self._next_pid = out_pid
        else:
            self._frame_pid = -1
        tl0 = info.tl0
        self._frame_tl0 = (tl0 + self._tl0_offset) & 0xFF if tl0 >= 0 else -1
        if on:
            self._sent_ts = info.ts
            self._sent_at = info.now
            if tl0 >= 0:
                self._last_tl0 = self._frame_tl0
            self._frame_layout = info.layout
            self._frame_codec = pack_codec(info.layout, self._frame_pid, self._frame_tl0)
        self._frame_on = on

    def _temporal_step(self, info: PacketInfo) -> None:
        if self.target_tid < self.max_tid:
            self.max_tid = self.target_tid  # down: at once, from this frame on
            return
        if self._up_since < 0:
            self._up_since = info.now
        # Up one layer at a time, at a frame that depends only on layers already sent.
        if info.tid == self.max_tid + 1 and (info.layer_sync or info.now - self._up_since >= self.sync_wait):
            self.max_tid = info.tid
            self._up_since = info.now

    def continue_from(self, next_seq: int, next_ts: int) -> None:
        """Before the first `start`: the first packet goes out as `next_seq` with
        `next_ts`, continuing a stream another consumer sent on this SSRC (a WHEP player's
        slot taking a new source, sfu.transport.playback)."""
        if not self.started:
            self._seq_base = next_seq & 0xFFFF
            self._ts_offset = next_ts & 0xFFFFFFFF

    # ------------------------------------------------------------ switches

    def start(self, info: PacketInfo) -> int:
        """Forward from this packet on (the first packet of a keyframe of `info.spatial`):
        a new epoch whose numbers follow the last ones sent. Returns `forward(info)`."""
        if self.started:
            next_seq = (self._max_in + self._seq_base + 1) & 0xFFFF
            elapsed = int((info.now - self._sent_at) * self.clock_rate)
            out_ts = (self._sent_ts + self._ts_offset + max(elapsed, 1)) & 0xFFFFFFFF
        else:
            next_seq = self._seq_base
            out_ts = self._ts_offset
            self._next_pid = max(info.picture_id, 0)
            self.started = True
        epoch = self._epoch = (self._epoch + 1) & 0xFFFF
        self._epoch_seq = epoch << 16
        self._epoch_pic = epoch << 15
        self._gaps.clear()
        self.layer = info.spatial
        self._max_in = (info.seq - 1) & 0xFFFF
        self._seq_base = (next_seq - info.seq) & 0xFFFF
        self._ts_offset = (out_ts - info.ts) & 0xFFFFFFFF
        tl0 = info.tl0
        self._tl0_offset = (self._last_tl0 + 1 - tl0) & 0xFF if tl0 >= 0 and self._last_tl0 >= 0 else 0
        self._pid_in = -1
        self._frame_ts = -1
        self.max_tid = self.target_tid  # after a keyframe every layer may follow
        self._up_since = -1.0
        self._epochs[epoch % _EPOCHS] = (epoch, info.spatial, self._ts_offset, self._tl0_offset)
        self._renumbered = True
        return self.forward(info)

    # ------------------------------------------------------ gaps, late packets

    def _reserve(self, seq: int, d: int) -> None:
        """In-order `seq` after d - 1 missing ones: their out numbers stay free for them."""
        gaps = self._gaps
        base = self._seq_base
        if self._renumbered:
            self._new_run((seq - d + 1 + base) & 0xFFFF)
        for back in range(min(d - 1, MAX_RESERVED), 0, -1):
            missing = (seq - back) & 0xFFFF
            gaps[self._epoch_seq | missing] = (missing + base) & 0xFFFF
        while len(gaps) > _MAX_GAPS:
            del gaps[next(iter(gaps))]

    def _reserve_pictures(self, pid: int, step: int, out_pid: int) -> None:
        mask = 0x7FFF if self._pid_bits == 15 else 0x7F
        for k in range(max(1, step - PICTURES // 2), step):
            self._pictures.add(self._epoch_pic | (pid - step + k) & mask, (out_pid + k - 1) & 0x7FFF)

    def _late(self, info: PacketInfo, d: int) -> int:
        """Not newer than the newest: a duplicate, or fills a gap it left (if it may)."""
        if d == 0:
            return DROP
        out = self._gaps.pop(self._epoch_seq | info.seq, -1)
        if out < 0 or info.empty:
            return DROP  # a duplicate, from before the switch, or too old
        if not self._codec_values(info, self._epoch, self._tl0_offset, True):
            return DROP
        self.out_seq = out
        self.out_ts = (info.ts + self._ts_offset) & 0xFFFFFFFF
        return FORWARD

    def _codec_values(self, info: PacketInfo, epoch: int, tl0_offset: int, filter_tid: bool) -> bool:
        """out_codec of a packet of an earlier frame; False: it must not go out."""
        pid = info.picture_id
        if pid >= 0:
            out_pid = self._pictures.get((epoch << 15) | pid)
            if out_pid < 0:
                return False  # a frame dropped here, or forgotten
        else:
            if filter_tid and info.tid > self.max_tid:
                return False
            out_pid = -1
        tl0 = (info.tl0 + tl0_offset) & 0xFF if info.tl0 >= 0 else -1
        self.out_codec = pack_codec(info.layout, out_pid, tl0)
        return True

    # ------------------------------------------------------------ retransmissions

    def _new_run(self, out: int) -> None:
        self._runs.add(out, self._seq_base, self._epoch)
        self._renumbered = False

    def _locate(self, out_seq: int) -> tuple[int, int]:
        """(epoch, input seq) out_seq was given to (sent, or kept for a missing packet);
        (-1, -1) when it was not given or is too old."""
        last = (self._max_in + self._seq_base) & 0xFFFF  # the newest number given
        if not self.started or (last - out_seq) & 0xFFFF >= HISTORY:
            return -1, -1
        return self._runs.find(out_seq)

    def source(self, out_seq: int) -> tuple[int, int] | None:
        """(spatial layer, input sequence number) that out_seq was (or is reserved to be)
        made from; None when it is not remembered."""
        epoch, seq = self._locate(out_seq)
        entry = self._epochs[epoch % _EPOCHS] if epoch >= 0 else None
        if entry is None or entry[0] != epoch:
            return None
        return entry[1], seq

    def retransmit(self, info: PacketInfo, out_seq: int) -> int:
        """A NACK for out_seq, `info` read from the cached packet `source` named: FORWARD
        with the out values it went out with (or, for a number kept for it that it had not
        filled yet, the values it gets now that it arrived), or DROP."""
        epoch, seq = self._locate(out_seq)
        entry = self._epochs[epoch % _EPOCHS] if epoch >= 0 else None
        if entry is None or entry[0] != epoch or entry[1] != info.spatial or seq != info.seq:
            return DROP
        if epoch == self._epoch and (self._epoch_seq | seq) in self._gaps:
            return self.forward(info)  # late: fills its reserved number
        _, _, ts_offset, tl0_offset = entry
        if info.empty or not self._codec_values(info, epoch, tl0_offset, False):
            return DROP
        self.out_seq = out_seq
        self.out_ts = (info.ts + ts_offset) & 0xFFFFFFFF
        return FORWARD


def _drop(info: PacketInfo) -> int:
    return DROP
