"""The few codec bitstream facts a remuxer needs, read without decoding: the picture size
of a VP8 key frame (RFC 6386 §9.1) and of an H.264 sequence parameter set (ITU-T H.264
§7.3.2.1.1), and the duration of an Opus packet (RFC 6716 §3.1).

Pure functions, bytes in, values out; bad input raises ValueError naming the field.
"""

from __future__ import annotations

ANNEX_B_START_CODE = b"\x00\x00\x00\x01"

H264_NAL_SLICE = 1
H264_NAL_IDR = 5
H264_NAL_SEI = 6
H264_NAL_SPS = 7
H264_NAL_PPS = 8
H264_NAL_AUD = 9

# ITU-T H.264 §7.3.2.1.1: profiles whose SPS carries chroma format, bit depths, scaling lists.
_H264_HIGH_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))

VP8_START_CODE = b"\x9d\x01\x2a"
OPUS_SAMPLE_RATE = 48000


def vp8_is_key_frame(frame: bytes) -> bool:
    """RFC 6386 §9.1: bit 0 of the frame tag is the inverse key frame flag."""
    return len(frame) > 0 and not frame[0] & 0x01


def vp8_dimensions(frame: bytes) -> tuple[int, int]:
    """(width, height) of a VP8 key frame (RFC 6386 §9.1: 3-byte frame tag, start code,
    then 14-bit width and height, little-endian, each with a 2-bit scale on top)."""
    if len(frame) < 10:
        raise ValueError(f"VP8 frame: {len(frame)} bytes, a key frame header needs 10")
    if not vp8_is_key_frame(frame):
        raise ValueError("VP8 frame tag: not a key frame, it carries no dimensions")
    if frame[3:6] != VP8_START_CODE:
        raise ValueError(f"VP8 start code: {frame[3:6].hex()}, expected 9d012a")
    width = (frame[6] | frame[7] << 8) & 0x3FFF
    height = (frame[8] | frame[9] << 8) & 0x3FFF
    if width == 0 or height == 0:
        raise ValueError(f"VP8 dimensions: {width}x{height}")
    return width, height


def opus_samples(packet: bytes) -> int:
    """Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716 §3.1)."""
    if not packet:
        raise ValueError("Opus packet: empty, no TOC byte")
    toc = packet[0]
    config = toc >> 3
    if config < 12:  # SILK-only: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config % 4]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config % 2]
    else:  # CELT-only: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config % 4]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:  # §3.2.5: a frame count byte follows
        if len(packet) < 2:
            raise ValueError("Opus packet: code 3 without its frame count byte")
        count = packet[1] & 0x3F
        if count == 0:
            raise ValueError("Opus frame count: 0")
    samples = frame * count
    if samples > 5760:  # §3.2.5: at most 120 ms per packet
        raise ValueError(f"Opus packet duration: {samples} samples exceeds 120 ms")
    return samples


def annex_b_nal_units(data: bytes) -> list[bytes]:
    """Split an Annex B byte stream (3- or 4-byte start codes) into NAL units."""
    units = []
    pos = data.find(b"\x00\x00\x01")
    while pos != -1:
        start = pos + 3
        pos = data.find(b"\x00\x00\x01", start)
        end = len(data) if pos == -1 else pos
        unit = data[start:end]
        if pos != -1 and unit.endswith(b"\x00"):
            unit = unit.rstrip(b"\x00")  # trailing_zero_8bits / the next 4-byte start code
        if unit:
            units.append(unit)
    return units


def h264_nal_type(nal: bytes) -> int:
    if not nal:
        raise ValueError("H264 NAL unit: empty")
    return nal[0] & 0x1F


def h264_starts_picture(nal: bytes) -> bool:
    """True if this NAL can only open an access unit (ITU-T H.264 §7.4.1.2.3): an access
    unit delimiter, SEI or parameter set, or a slice whose first_mb_in_slice is 0 (its
    Exp-Golomb code is the single bit 1)."""
    if len(nal) < 2:
        return False
    nal_type = nal[0] & 0x1F
    if nal_type in (H264_NAL_AUD, H264_NAL_SEI, H264_NAL_SPS, H264_NAL_PPS):
        return True
    return nal_type in (H264_NAL_SLICE, H264_NAL_IDR) and bool(nal[1] & 0x80)


class _BitReader:
    """MSB-first reader over an RBSP (emulation prevention bytes already removed)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise ValueError("H264 SPS: truncated")
        value = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        """ITU-T H.264 §9.1: unsigned Exp-Golomb."""
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("H264 SPS: Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def _rbsp(nal: bytes) -> bytes:
    """ITU-T H.264 §7.4.1: drop each emulation_prevention_three_byte (00 00 03)."""
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _skip_scaling_list(reader: _BitReader, size: int) -> None:
    last, following = 8, 8
    for _ in range(size):
        if following != 0:
            following = (last + reader.se() + 256) % 256
        last = following if following != 0 else last


def h264_sps_dimensions(sps: bytes) -> tuple[int, int]:
    """(width, height) of the picture an SPS NAL unit describes, cropping applied."""
    if h264_nal_type(sps) != H264_NAL_SPS:
        raise ValueError(f"H264 SPS: NAL type {h264_nal_type(sps)}, expected {H264_NAL_SPS}")
    reader = _BitReader(_rbsp(sps[1:]))
    profile_idc = reader.bits(8)
    reader.bits(16)  # constraint flags, level_idc
    reader.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = 0
    if profile_idc in _H264_HIGH_PROFILES:
        chroma_format_idc = reader.ue()
        if chroma_format_idc > 3:
            raise ValueError(f"H264 SPS chroma_format_idc: {chroma_format_idc}")
        if chroma_format_idc == 3:
            separate_colour_plane = reader.bit()
        reader.ue()  # bit_depth_luma_minus8
        reader.ue()  # bit_depth_chroma_minus8
        reader.bit()  # qpprime_y_zero_transform_bypass_flag
        if reader.bit():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format_idc != 3 else 12):
                if reader.bit():
                    _skip_scaling_list(reader, 16 if index < 6 else 64)
    reader.ue()  # log2_max_frame_num_minus4
    pic_order_cnt_type = reader.ue()
    if pic_order_cnt_type == 0:
        reader.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif pic_order_cnt_type == 1:
        reader.bit()  # delta_pic_order_always_zero_flag
        reader.se()  # offset_for_non_ref_pic
        reader.se()  # offset_for_top_to_bottom_field
        cycle = reader.ue()
        if cycle > 255:
            raise ValueError(f"H264 SPS num_ref_frames_in_pic_order_cnt_cycle: {cycle}")
        for _ in range(cycle):
            reader.se()
    elif pic_order_cnt_type != 2:
        raise ValueError(f"H264 SPS pic_order_cnt_type: {pic_order_cnt_type}")
    reader.ue()  # max_num_ref_frames
    reader.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = reader.ue() + 1
    height_map_units = reader.ue() + 1
    frame_mbs_only = reader.bit()
    if not frame_mbs_only:
        reader.bit()  # mb_adaptive_frame_field_flag
    reader.bit()  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if reader.bit():  # frame_cropping_flag
        crop = (reader.ue(), reader.ue(), reader.ue(), reader.ue())
    # §7.4.2.1.1: crop offsets count in chroma sample units (CropUnitX/Y).
    if chroma_format_idc == 0 or separate_colour_plane:
        unit_x, unit_y = 1, 2 - frame_mbs_only
    else:
        sub_width = 1 if chroma_format_idc == 3 else 2
        sub_height = 2 if chroma_format_idc == 1 else 1
        unit_x, unit_y = sub_width, sub_height * (2 - frame_mbs_only)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_map_units * 16 - unit_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise ValueError(f"H264 SPS dimensions: {width}x{height} after cropping")
    return width, height


def h264_access_unit_dimensions(access_unit: bytes) -> tuple[int, int] | None:
    """Picture size from the first SPS of an Annex B access unit, or None without one."""
    for nal in annex_b_nal_units(access_unit):
        if h264_nal_type(nal) == H264_NAL_SPS:
            return h264_sps_dimensions(nal)
    return None
