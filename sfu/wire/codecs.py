"""Codec payload descriptors, read without decoding: is this RTP payload the start of a
keyframe (VP8, RFC 7741; H.264, RFC 6184), and the VP8 descriptor fields simulcast
rewriting needs.

Sans-I/O and stdlib only. Every function takes bytes, bytearray or a byte memoryview
and `offset`, where the RTP payload starts in it (rtp.payload_offset). Only ValueError
is raised; the `*_is_keyframe` functions answer False for anything malformed.
"""

from __future__ import annotations

# RFC 6184 §5.4 / §5.7.1 / §5.8 NAL unit types.
H264_NAL_IDR = 5
H264_NAL_SEI = 6
H264_NAL_SPS = 7
H264_NAL_PPS = 8
H264_NAL_STAP_A = 24
H264_NAL_FU_A = 28
_H264_KEY_NALS = (H264_NAL_IDR, H264_NAL_SPS)


class Vp8Descriptor:
    """RFC 7741 §4.2 payload descriptor. Optional fields are None when absent;
    `*_offset` index the buffer that was parsed; header_size counts descriptor bytes."""

    __slots__ = (
        "start_of_partition",
        "partition_id",
        "non_reference",
        "picture_id",
        "picture_id_bits",
        "picture_id_offset",
        "tl0_pic_idx",
        "tl0_pic_idx_offset",
        "tid",
        "layer_sync",
        "key_idx",
        "header_size",
    )

    def __init__(self) -> None:
        self.start_of_partition = False
        self.partition_id = 0
        self.non_reference = False
        self.picture_id: int | None = None
        self.picture_id_bits = 0  # 7 or 15 when picture_id is present
        self.picture_id_offset: int | None = None
        self.tl0_pic_idx: int | None = None
        self.tl0_pic_idx_offset: int | None = None
        self.tid: int | None = None
        self.layer_sync: bool | None = None
        self.key_idx: int | None = None
        self.header_size = 1

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Vp8Descriptor({fields})"


def _check_offset(payload, offset: int) -> None:
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset: {offset!r} is not a non-negative integer")
    if offset >= len(payload):
        raise ValueError(f"VP8 descriptor: empty payload at offset {offset}")


def vp8_descriptor(payload, offset: int = 0) -> Vp8Descriptor:
    """Parse the RFC 7741 §4.2 descriptor at `offset`."""
    _check_offset(payload, offset)
    size = len(payload)
    desc = Vp8Descriptor()
    first = payload[offset]
    # |X|R|N|S|R| PID |
    desc.non_reference = bool(first & 0x20)
    desc.start_of_partition = bool(first & 0x10)
    desc.partition_id = first & 0x07
    pos = offset + 1
    if first & 0x80:
        if pos >= size:
            raise ValueError("VP8 descriptor: truncated extension byte")
        # |I|L|T|K| RSV |
        extension = payload[pos]
        pos += 1
        if extension & 0x80:
            pos = _read_picture_id(payload, pos, desc)
        if extension & 0x40:
            if pos >= size:
                raise ValueError("VP8 descriptor: truncated TL0PICIDX")
            desc.tl0_pic_idx = payload[pos]
            desc.tl0_pic_idx_offset = pos
            pos += 1
        if extension & 0x30:
            if pos >= size:
                raise ValueError("VP8 descriptor: truncated TID/Y/KEYIDX")
            # |TID|Y| KEYIDX  |: one byte present if either T or K is set.
            value = payload[pos]
            if extension & 0x20:
                desc.tid = value >> 6
                desc.layer_sync = bool(value & 0x20)
            if extension & 0x10:
                desc.key_idx = value & 0x1F
            pos += 1
    desc.header_size = pos - offset
    return desc


def _read_picture_id(payload, pos: int, desc: Vp8Descriptor) -> int:
    # |M| PictureID |: M=1 means a 15-bit PictureID spanning two bytes.
    if pos >= len(payload):
        raise ValueError("VP8 descriptor: truncated PictureID")
    desc.picture_id_offset = pos
    if payload[pos] & 0x80:
        if pos + 1 >= len(payload):
            raise ValueError("VP8 descriptor: truncated 15-bit PictureID")
        desc.picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
        desc.picture_id_bits = 15
        return pos + 2
    desc.picture_id = payload[pos]
    desc.picture_id_bits = 7
    return pos + 1


def vp8_rewrite_descriptor(
    buf: bytearray, desc: Vp8Descriptor, picture_id: int | None = None, tl0_pic_idx: int | None = None
) -> None:
    """Overwrite PictureID and/or TL0PICIDX in place, keeping the field widths of
    `desc` (values are taken modulo 2**7 / 2**15 / 2**8). The field must be present."""
    if picture_id is not None:
        if desc.picture_id_offset is None:
            raise ValueError("picture_id: the descriptor has no PictureID field")
        pos = desc.picture_id_offset
        if desc.picture_id_bits == 15:
            picture_id &= 0x7FFF
            buf[pos] = 0x80 | (picture_id >> 8)
            buf[pos + 1] = picture_id & 0xFF
        else:
            buf[pos] = picture_id & 0x7F
        desc.picture_id = picture_id & (0x7FFF if desc.picture_id_bits == 15 else 0x7F)
    if tl0_pic_idx is not None:
        if desc.tl0_pic_idx_offset is None:
            raise ValueError("tl0_pic_idx: the descriptor has no TL0PICIDX field")
        buf[desc.tl0_pic_idx_offset] = tl0_pic_idx & 0xFF
        desc.tl0_pic_idx = tl0_pic_idx & 0xFF


def vp8_is_keyframe(payload, offset: int = 0) -> bool:
    """RFC 7741 §4.3: the first packet of a key frame has S=1, PID=0 and the payload
    header's P bit (inverse key frame flag, bit 0 of the first byte) clear."""
    try:
        desc = vp8_descriptor(payload, offset)
    except ValueError:
        return False
    if not desc.start_of_partition or desc.partition_id != 0:
        return False
    header = offset + desc.header_size
    return header < len(payload) and not payload[header] & 0x01


def h264_is_keyframe(payload, offset: int = 0) -> bool:
    """RFC 6184: an IDR slice (5) or SPS (7) as a single NAL unit (§5.6), inside a
    STAP-A (§5.7.1), or as the start of an FU-A (§5.8)."""
    if not isinstance(offset, int) or offset < 0 or offset >= len(payload):
        return False
    size = len(payload)
    nal_type = payload[offset] & 0x1F
    if nal_type in _H264_KEY_NALS:
        return True
    if nal_type == H264_NAL_STAP_A:
        pos = offset + 1
        while pos + 2 < size:  # 16-bit NALU size, then at least the NAL header
            nalu_size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if nalu_size == 0 or pos + nalu_size > size:
                return False
            if (payload[pos] & 0x1F) in _H264_KEY_NALS:
                return True
            pos += nalu_size
        return False
    if nal_type == H264_NAL_FU_A:
        if offset + 1 >= size:
            return False
        fu_header = payload[offset + 1]  # |S|E|R| Type |
        return bool(fu_header & 0x80) and (fu_header & 0x1F) in _H264_KEY_NALS
    return False


def is_keyframe(codec_name: str, payload, offset: int = 0) -> bool:
    """Dispatch on the codec name ("VP8", "h264", "video/H264"); others: False."""
    name = codec_name.lower().rpartition("/")[2]
    if name == "vp8":
        return vp8_is_keyframe(payload, offset)
    if name == "h264":
        return h264_is_keyframe(payload, offset)
    return False
