"""One RTP packet of a simulcast video track as the layer decisions read it: once per
incoming packet, for every subscriber (sfu/engine/layers.py, sfu/engine/munger.py).

Sans-I/O; no allocation per packet beyond the two slices every subscriber shares.
"""

from __future__ import annotations

import struct

from sfu.wire import codecs

MAX_LAYERS = 3
# PacketInfo.layout: the PictureID's width (0, 7 or 15 bits) | LAYOUT_TL0 with a TL0PICIDX.
LAYOUT_TL0 = 0x20

_SEQ_TS = struct.Struct("!HI")
_PID15_TL0 = struct.Struct("!HB")
_PID15 = struct.Struct("!H")


class PacketInfo:
    """What layer decisions need of one RTP packet, read once for every subscriber.

    spatial: the simulcast layer (0..2, from the SSRC; the caller knows); now: arrival
    time; seq, ts: RTP header fields; empty: nothing to forward (padding only, or a
    payload that cannot be read: a malformed VP8 descriptor); keyframe: the first packet
    of a keyframe (VP8: S=1, PID=0, P=0; H.264: an IDR or SPS NAL unit). VP8 descriptor
    fields are -1 when absent: tid, picture_id, tl0; layer_sync is the Y bit.

    The packet in parts every subscriber shares: `head`, its first two bytes with the
    payload type cleared; `middle`, from byte 12 (CSRCs, header extensions, the
    descriptor's first bytes) to `codec_start`; `tail`, from `codec_end` (the rest of the
    descriptor, the payload, padding). Between the two lie the PictureID and TL0PICIDX
    (`layout`: their widths, 0 when there are none), the only bytes after the fixed header
    a subscriber's copy differs in.

    `arrivals[layer]`: when the producer's last packet of each layer arrived (all of them
    the time of the first packet, at first): what the selectors judge stopped layers by.
    """

    __slots__ = (
        "codec",
        "arrivals",
        "spatial",
        "now",
        "seq",
        "ts",
        "head",
        "middle",
        "tail",
        "codec_start",
        "codec_end",
        "layout",
        "empty",
        "keyframe",
        "tid",
        "layer_sync",
        "picture_id",
        "tl0",
    )

    def __init__(self, codec_name: str) -> None:
        name = codec_name.lower().rpartition("/")[2]
        self.codec = 1 if name == "vp8" else 2 if name == "h264" else 0
        self.arrivals: list[float] = []
        self.spatial = 0
        self.now = 0.0
        self.seq = 0
        self.ts = 0
        self.head = 0
        self.middle = b""
        self.tail = b""
        self.codec_start = self.codec_end = 12
        self.layout = 0
        self.empty = True
        self.keyframe = False
        self.tid = -1
        self.layer_sync = False
        self.picture_id = -1
        self.tl0 = -1

    @property
    def picture_id_bits(self) -> int:
        """7 or 15 with a PictureID, else 0."""
        return self.layout & 0x1F

    @property
    def tl0_offset(self) -> int:
        """Where TL0PICIDX is in the packet (with one: tl0 >= 0)."""
        return self.codec_end - 1

    def read(self, packet, spatial: int, now: float) -> bool:
        """Read `packet` (bytes of one RTP packet of layer `spatial`). False when even its
        fixed header is missing (give it to no selector); a packet whose payload cannot be
        read is `empty`: the selector drops it without leaving a gap. The descriptor
        fields are meaningful only when not empty.

        Once per packet in for every subscriber: written as one function with locals and
        one store per field (the VP8 descriptor's parse inlined), which halves its cost."""
        end = len(packet)
        if end < 12 or not 0 <= spatial < MAX_LAYERS:
            return False
        arrivals = self.arrivals
        if not arrivals:
            arrivals += [now] * MAX_LAYERS  # every layer counts as flowing, at first
        arrivals[spatial] = now
        self.spatial = spatial
        self.now = now
        self.seq, self.ts = _SEQ_TS.unpack_from(packet, 2)
        first = packet[0]
        self.head = first << 8 | packet[1] & 0x80
        self.keyframe = False
        self.empty = True
        # rtp.payload_offset's arithmetic, inlined: CSRCs, then the extension's length.
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:
            if offset + 4 > end:
                return True
            offset += 4 + 4 * (packet[offset + 2] << 8 | packet[offset + 3])
        if first & 0x20:
            padding = packet[-1]  # RFC 3550 §5.1: the last octet counts the padding, itself included
            if padding == 0:
                return True  # malformed (a count of 0 cannot include itself): nothing to forward
            end -= padding
        if end <= offset:
            return True
        if self.codec != 1:
            self.empty = False
            if self.codec == 2:
                self.keyframe = codecs.h264_is_keyframe(packet, offset)
            self._whole(packet)
            return True
        # The RFC 7741 §4.2 descriptor at `offset`: the parse of
        # sfu.wire.codecs.vp8_descriptor (test_munger.py checks they agree) without
        # making an object per packet.
        descriptor = packet[offset]  # |X|R|N|S|R| PID |
        pos = offset + 1
        layout = 0
        tid = picture_id = tl0 = -1
        sync = False
        codec_start = 0
        if descriptor & 0x80:
            if pos >= end:
                return self._unreadable(packet)
            extension = packet[pos]  # |I|L|T|K| RSV |
            pos += 1
            if extension & 0x80:  # |M| PictureID |, 15 bits with M
                if pos >= end:
                    return self._unreadable(packet)
                codec_start = pos
                if packet[pos] & 0x80:
                    if pos + 1 >= end:
                        return self._unreadable(packet)
                    picture_id = (packet[pos] & 0x7F) << 8 | packet[pos + 1]
                    layout = 15
                    pos += 2
                else:
                    picture_id = packet[pos]
                    layout = 7
                    pos += 1
            if extension & 0x40:
                if pos >= end:
                    return self._unreadable(packet)
                tl0 = packet[pos]
                if not layout:
                    codec_start = pos
                layout |= LAYOUT_TL0
                pos += 1
            # PictureID and TL0PICIDX lie next to each other: the bytes a subscriber's differ in.
            codec_end = pos
            if extension & 0x30:  # |TID|Y| KEYIDX |
                if pos >= end:
                    return self._unreadable(packet)
                if extension & 0x20:
                    tid = packet[pos] >> 6
                    sync = bool(packet[pos] & 0x20)
                pos += 1
        if pos >= end:
            return self._unreadable(packet)  # a descriptor and no VP8 data
        self.empty = False
        # RFC 7741 §4.3: a keyframe starts with S=1, PID=0 and the payload header's P bit clear.
        self.keyframe = descriptor & 0x17 == 0x10 and not packet[pos] & 0x01
        self.tid = tid
        self.layer_sync = sync
        self.picture_id = picture_id
        self.tl0 = tl0
        if not layout:
            self._whole(packet)  # neither PictureID nor TL0PICIDX: nothing to rewrite in it
            return True
        self.layout = layout
        self.codec_start = codec_start
        self.codec_end = codec_end
        self.middle = packet[12:codec_start]
        self.tail = packet[codec_end:]
        return True

    def _unreadable(self, packet) -> bool:
        """A VP8 packet whose descriptor cannot be read: `empty`, the packet whole in `middle`."""
        self._whole(packet)
        return True

    def _whole(self, packet) -> None:
        self.layout = 0
        self.middle = packet[12:]
        self.tail = b""
        self.codec_start = self.codec_end = len(packet)


def pack_codec(layout: int, picture_id: int, tl0: int) -> bytes:
    """The PictureID (M bit set for 15 bits) and TL0PICIDX bytes of a descriptor of this
    `layout` (PacketInfo.layout)."""
    bits = layout & 0x1F
    if layout & LAYOUT_TL0:
        if bits == 15:
            return _PID15_TL0.pack(0x8000 | picture_id & 0x7FFF, tl0 & 0xFF)
        if bits == 7:
            return bytes((picture_id & 0x7F, tl0 & 0xFF))
        return bytes((tl0 & 0xFF,))
    if bits == 15:
        return _PID15.pack(0x8000 | picture_id & 0x7FFF)
    if bits == 7:
        return bytes((picture_id & 0x7F,))
    return b""
