"""The fuzz targets: one per parser, each a function of any bytes that raises only when the
parser breaks its contract.

A target's `run(data)`:
- calls the parser's entry points on `data` and accepts a value or the module's
  documented error (ValueError, SignalingError, MessageError); anything else escapes and
  is a failure;
- checks what parsed: a round trip through the module's own serializer where one exists
  (parse(serialize(parse(x))) == parse(x)), the fast readers agreeing with the full
  parse, values in their documented ranges;
- raises `PropertyFailed` (an AssertionError) when a check fails.
Time and memory per input are bounded by the engine that runs the target (tests/fuzz/
__main__.py), not here.

`seeds()` is the starting corpus: captures from tests/data and packets built by the
serializers. `tokens` become a libFuzzer dictionary. Stdlib and the parsers only: the
atheris child imports this module inside its instrumentation block.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import recorder.api  # noqa: F401  (registers the recorder's messages)
import sfu.api  # noqa: F401  (registers the worker's messages)
from common import channel, messages
from control.errors import SignalingError
from control.meeting import protocol
from recorder.media import bitstream, depacketize
from recorder.media.packet import MediaPacket
from sfu.wire import codecs, dtls, rtcp, rtp, sdp, sdp_syntax, stun

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
REGRESSIONS_DIR = DATA_DIR / "fuzz"  # inputs that once failed, one folder per target


class PropertyFailed(AssertionError):
    """A parser returned, but what it returned breaks its contract."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise PropertyFailed(what)


@dataclass(frozen=True)
class Target:
    name: str
    modules: tuple[str, ...]  # what it fuzzes (and what atheris instruments)
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    max_len: int  # longest input worth trying (libFuzzer -max_len)
    tokens: tuple[bytes, ...] = ()  # libFuzzer dictionary entries
    doc: str = ""
    hidden: bool = False  # not part of "all" (the harness's own self-test)


def _capture(name: str) -> bytes:
    return (DATA_DIR / name).read_bytes()


def _captures(*names: str) -> list[bytes]:
    return [_capture(name) for name in names]


def _attempt(function: Callable[..., Any], *args: Any) -> Any:
    """The function's value, or None when it raised ValueError."""
    try:
        return function(*args)
    except ValueError:
        return None


# ----------------------------------------------------------------------------- RTP

IDENTITY_TABLE = bytes(range(256))
SWAP_1_2 = bytes((0, 2, 1, *range(3, 256)))
RTP_CAPTURES = (
    "wire_chromium_vp8_key.bin", "wire_chromium_vp8_delta.bin", "wire_chromium_vp8_continuation.bin",
    "wire_chromium_vp8_l1t3_key.bin", "wire_chromium_vp8_l1t3_tid2.bin", "wire_chromium_opus.bin",
    "wire_chromium_h264_stap_a.bin", "wire_chromium_h264_fu_a_idr.bin", "wire_chromium_h264_fu_a_end.bin",
    "wire_chromium_rtx_probe.bin",
)  # fmt: skip


def run_rtp(data: bytes) -> None:
    header = _attempt(rtp.parse_header, data)
    offset = _attempt(rtp.payload_offset, data)
    _attempt(rtp.extension_block, data)
    for ext_id in (1, 2, 3, 14, 15, 255):
        # audio_level refuses what find_extension refuses and reads the element it finds.
        try:
            where = rtp.find_extension(data, ext_id)
        except ValueError:
            refused = _attempt(rtp.audio_level, data, ext_id) is None
            check(refused, f"audio_level({ext_id}) took what find_extension refused")
            continue
        expected = data[where[0]] & 0x7F if where is not None and where[1] else -1
        level = _attempt(rtp.audio_level, data, ext_id)
        check(level == expected, f"audio_level({ext_id}): {level}, find_extension says {expected}")
    check(isinstance(rtp.is_rtcp(data), bool), "is_rtcp: not a bool")
    buffer = bytearray(data)
    _attempt(rtp.rewrite_extension_ids, buffer, IDENTITY_TABLE)
    check(buffer == data, "rewrite_extension_ids with the identity table changed the packet")
    if header is None:
        return
    size = len(data)
    check(offset == header.header_length, f"payload_offset {offset} != parse_header {header.header_length}")
    check(rtp.RTP_HEADER_SIZE <= header.header_length <= header.payload_end <= size, f"bad bounds {header!r}")
    for ext_id, value in header.extensions.items():
        where = rtp.find_extension(data, ext_id)
        check(where is not None and data[where[0] : where[0] + where[1]] == value, f"find_extension({ext_id})")
    # Swapping two ids twice restores the packet (on ValueError nothing was written).
    try:
        rtp.rewrite_extension_ids(buffer, SWAP_1_2)
        rtp.rewrite_extension_ids(buffer, SWAP_1_2)
    except ValueError:
        pass
    check(buffer == data, "swapping extension ids 1 and 2 twice changed the packet")
    # Round trip through build_packet.
    payload = data[header.header_length : header.payload_end]
    profile = header.extension_profile
    two_byte = profile is not None and profile & rtp.PROFILE_TWO_BYTE_MASK == rtp.PROFILE_TWO_BYTE
    rebuilt = rtp.build_packet(
        header.payload_type, header.sequence_number, header.timestamp, header.ssrc, payload,
        marker=header.marker, extensions=header.extensions, csrcs=header.csrcs,
        padding=size - header.payload_end, two_byte=two_byte,
    )  # fmt: skip
    again = rtp.parse_header(rebuilt)
    for name in ("payload_type", "sequence_number", "timestamp", "ssrc", "marker", "csrcs", "extensions"):
        check(getattr(again, name) == getattr(header, name), f"build_packet round trip: {name}")
    check(rebuilt[again.header_length : again.payload_end] == payload, "build_packet round trip: payload")
    # RFC 4588: unwrap(wrap(p)) is p without its padding.
    wrapped = rtp.wrap_rtx(data, 97, 0x1234ABCD, 7)
    back = rtp.unwrap_rtx(wrapped, header.payload_type, header.ssrc)
    expected = bytearray(data[: header.header_length])
    expected[0] &= 0xDF
    check(back == bytes(expected) + payload, "unwrap_rtx(wrap_rtx(p)) != p")
    check(MediaPacket.parse(data, 0.0).payload == payload, "MediaPacket payload differs from parse_header's")


def seeds_rtp() -> list[bytes]:
    rng = random.Random(1)
    built = [
        rtp.build_packet(96, 1, 2, 3, b"\x90\x80\x01\x10" + bytes(20), marker=True,
                         extensions={1: b"\x01", 2: b"abc", 3: b"\x00\x01"}),
        rtp.build_packet(111, 0xFFFF, 0xFFFFFFFF, 1, b"\xf8" + bytes(40), extensions={10: b"0"}, two_byte=True),
        rtp.build_packet(100, 5, 6, 7, b"x" * 30, csrcs=(1, 2, 3), padding=4),
        rtp.build_packet(97, 9, 9, 9, b"\x00\x05" + bytes(10), extensions={200: b"", 14: bytes(16)}),
    ]  # fmt: skip
    for _ in range(8):
        extensions = {rng.randint(1, 14): bytes(rng.randint(1, 16)) for _ in range(rng.randint(0, 4))}
        built.append(rtp.build_packet(rng.randint(0, 127), rng.getrandbits(16), rng.getrandbits(32), rng.getrandbits(32),
                                      bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 60))),
                                      marker=rng.random() < 0.5, extensions=extensions,
                                      csrcs=[rng.getrandbits(32) for _ in range(rng.randint(0, 3))],
                                      padding=rng.choice((0, 0, 1, 4))))  # fmt: skip
    return _captures(*RTP_CAPTURES) + built


# ----------------------------------------------------------------------------- RTCP

RTCP_CAPTURES = ("wire_chromium_rr_nack.bin", "wire_chromium_sr_sdes.bin", "wire_chromium_twcc.bin",
                 "wire_chromium_twcc_loss.bin")  # fmt: skip


def _rebuild_rtcp(packet: rtcp.RtcpPacket) -> bytes | None:
    """The member rebuilt with the module's own builder, where one says the same."""
    if isinstance(packet, rtcp.SenderReport):
        return rtcp.build_sr(packet.ssrc, packet.ntp_timestamp, packet.rtp_timestamp, packet.packet_count,
                             packet.octet_count, packet.reports)  # fmt: skip
    if isinstance(packet, rtcp.ReceiverReport):
        return rtcp.build_rr(packet.ssrc, packet.reports)
    if isinstance(packet, rtcp.SourceDescription):
        if len(packet.chunks) == 1 and set(packet.chunks[0][1]) == {rtcp.SDES_CNAME}:
            ssrc, items = packet.chunks[0]
            try:
                return rtcp.build_sdes(ssrc, items[rtcp.SDES_CNAME].decode("utf-8"))
            except UnicodeDecodeError:
                return None
        return None
    if isinstance(packet, rtcp.Bye):
        if packet.reason is not None and len(packet.reason.encode("utf-8")) > 255:
            return None  # U+FFFD for bad bytes is longer than the byte it replaced
        return rtcp.build_bye(packet.ssrcs, packet.reason)
    if isinstance(packet, rtcp.Pli):
        return rtcp.build_pli(packet.sender_ssrc, packet.media_ssrc)
    if isinstance(packet, rtcp.Fir):
        if len(packet.entries) != 1:
            return None
        return rtcp.build_fir(packet.sender_ssrc, *packet.entries[0])
    if isinstance(packet, rtcp.Remb):
        return rtcp.build_remb(packet.sender_ssrc, packet.bitrate, packet.ssrcs)
    if isinstance(packet, rtcp.TransportFeedback):
        return rtcp.build_transport_feedback(packet.sender_ssrc, packet.media_ssrc, packet.base_sequence,
                                             packet.fb_count, packet.reference_time * rtcp.TWCC_REFERENCE_US,
                                             packet.arrivals)  # fmt: skip
    if isinstance(packet, rtcp.UnknownRtcp):
        return packet.raw
    return None  # Nack: compared as a set below


def run_rtcp(data: bytes) -> None:
    packets = _attempt(rtcp.parse_compound, data)
    if packets is None:
        return
    check(len(packets) >= 1, "parse_compound returned no member")
    for packet in packets:
        if isinstance(packet, rtcp.Nack):
            again = rtcp.parse_compound(rtcp.build_nack(packet.sender_ssrc, packet.media_ssrc, packet.lost))
            check(len(again) == 1 and set(again[0].lost) == set(packet.lost), f"NACK round trip: {packet!r}")
            continue
        if isinstance(packet, rtcp.TransportFeedback):
            check(len(packet.arrivals) == packet.status_count, "transport-cc: arrivals != status count")
        rebuilt = _rebuild_rtcp(packet)
        if rebuilt is not None:
            again = rtcp.parse_compound(rebuilt)
            check(again == [packet], f"round trip: {packet!r} became {again!r}")


def seeds_rtcp() -> list[bytes]:
    report = rtcp.ReportBlock(1, 2, -3, 4, 5, 6, 7)
    built = [
        rtcp.build_sr(1, 2**63, 3, 4, 5, [report]) + rtcp.build_sdes(1, "cname"),
        rtcp.build_rr(9, [report, report]),
        rtcp.build_bye([1, 2], "bye"),
        rtcp.build_pli(1, 2) + rtcp.build_fir(1, 2, 3),
        rtcp.build_nack(1, 2, [65534, 65535, 0, 1, 40]),
        rtcp.build_remb(1, 2_500_000, [1, 2]),
        rtcp.build_transport_feedback(1, 2, 65530, 3, 64000 * 77, [100, None, 5_000_000, 4_999_000] + [None] * 20),
        bytes([0x81, 204, 0, 2]) + b"\x00\x00\x00\x01name",  # APP
    ]
    return _captures(*RTCP_CAPTURES) + built


# ----------------------------------------------------------------------------- STUN

STUN_KEY = b"conclaveIceLitePassword0"


def run_stun(data: bytes) -> None:
    integrity = stun.verify_message_integrity(data, STUN_KEY)
    fingerprint = stun.verify_fingerprint(data)
    check(isinstance(integrity, bool) and isinstance(fingerprint, bool), "verify_*: not a bool")
    message = _attempt(stun.parse, data)
    if message is None:
        return
    check(stun.is_stun(data), "parse accepted what is_stun refuses")
    check(stun.split_message_type(stun.message_type(message.method, message.message_class))
          == (message.method, message.message_class), "message type round trip")  # fmt: skip
    repr(message)
    username = message.username
    priority = message.priority
    controlling, controlled = message.ice_controlling, message.ice_controlled
    error = message.error_code
    address = message.xor_mapped_address  # parse validated it: no ValueError here
    transaction = message.transaction_id
    if username is not None and priority is not None and len(username.encode()) <= stun.MAX_USERNAME_BYTES:
        if controlling is not None:
            controlled = None
        built = stun.build_binding_request(transaction, username, STUN_KEY, priority, controlling,
                                           message.use_candidate, controlled)  # fmt: skip
        again = stun.parse(built)
        check((again.username, again.priority, again.use_candidate, again.ice_controlling, again.ice_controlled)
              == (username, priority, message.use_candidate, controlling, controlled), "binding request round trip")
        check(stun.verify_message_integrity(built, STUN_KEY) and stun.verify_fingerprint(built), "our own check fails")
    if address is not None:
        built = stun.build_binding_success(transaction, address, STUN_KEY)
        host, port = stun.parse(built).xor_mapped_address  # type: ignore[misc]
        check(port == address[1] and _same_host(host, address[0]), "XOR-MAPPED-ADDRESS round trip")
    if error is not None and 300 <= error[0] <= 699 and len(error[1]) <= stun.MAX_REASON_CHARS:
        check(stun.parse(stun.build_binding_error(transaction, *error)).error_code == error, "ERROR-CODE round trip")


def _same_host(built: str, parsed: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(parsed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # the builder sends a mapped address as IPv4
    return ipaddress.ip_address(built) == address


def seeds_stun() -> list[bytes]:
    tid = bytes(range(12))
    return _captures("wire_chromium_stun_request.bin", "wire_chromium_stun_success.bin") + [
        stun.build_binding_request(tid, "sfuL:peer", STUN_KEY, 0x6E7F00FF, controlling_tiebreaker=2**63, use_candidate=True),
        stun.build_binding_request(tid, "a:b", b"other", 1, controlled_tiebreaker=5),
        stun.build_binding_success(tid, ("127.0.0.1", 5000), STUN_KEY),
        stun.build_binding_success(tid, ("2001:db8::1", 65535), STUN_KEY),
        stun.build_binding_error(tid, 487, "Role Conflict", STUN_KEY),
        stun.build_binding_error(tid, 401, "Unauthorized"),
    ]


# ----------------------------------------------------------------------------- DTLS


def run_dtls(data: bytes) -> None:
    valid = dtls.is_valid(data)
    check(valid == _records_ok(data), "is_valid disagrees with check_records")
    if valid:
        offset = 0
        while offset < len(data):
            check(data[offset] in dtls.CONTENT_TYPES, "accepted an unknown content type")
            offset += dtls.RECORD_HEADER_LENGTH + int.from_bytes(data[offset + 11 : offset + 13], "big")
        check(offset == len(data), "records do not end with the datagram")


def _records_ok(data: bytes) -> bool:
    try:
        dtls.check_records(data)
    except ValueError:
        return False
    return True


def seeds_dtls() -> list[bytes]:
    def record(content_type: int, body: bytes, version: bytes = b"\xfe\xfd") -> bytes:
        return bytes([content_type]) + version + bytes(8) + len(body).to_bytes(2, "big") + body

    client_hello = record(22, b"\x01\x00\x00\x2c" + bytes(44), b"\xfe\xff")
    return [client_hello, record(20, b"\x01") + record(22, bytes(40)), record(23, bytes(100)), record(21, b"\x02\x28")]


# ----------------------------------------------------------------------------- SDP

SDP_CAPTURES = tuple(sorted(path.name for path in DATA_DIR.glob("*.sdp")))
SDP_TOKENS = (
    b"v=0", b"o=- 1 2 IN IP4 0.0.0.0", b"m=audio 9 UDP/TLS/RTP/SAVPF 111", b"m=video 9 UDP/TLS/RTP/SAVPF 96 97",
    b"m=application 9 UDP/DTLS/SCTP webrtc-datachannel", b"a=mid:", b"a=rtpmap:", b"a=fmtp:", b"a=rtcp-fb:*",
    b"a=ssrc:", b"a=ssrc-group:FID ", b"a=extmap:", b"a=group:BUNDLE ", b"a=setup:actpass", b"a=setup:passive",
    b"a=rid:", b"a=simulcast:send ", b"a=candidate:", b"a=fingerprint:sha-256 ", b"a=msid:", b"a=ice-ufrag:",
    b"a=ice-pwd:", b"a=ice-lite", b"a=rtcp-mux", b"a=bundle-only", b"a=inactive", b"a=recvonly", b"a=sendonly",
    b"apt=", b"rtx/90000", b"VP8/90000", b"H264/90000", b"opus/48000/2", b"packetization-mode=1",
    b"profile-level-id=", b"\r\n", b"4294967295", b"99999999999999999999999",
)  # fmt: skip


def run_sdp_syntax(data: bytes) -> None:
    description = _attempt(sdp_syntax.parse, data)
    if description is None:
        return
    text = _attempt(sdp_syntax.serialize, description)
    if text is None:
        return  # a model serialize refuses (e.g. a section without formats): it says so
    again = sdp_syntax.parse(text)
    check(again == description, "parse(serialize(d)) != d")
    check(sdp_syntax.serialize(again) == text, "serialize is not stable")


LOCAL = sdp.LocalTransport("sfuL", "conclaveIceLitePassword0", [sdp.Fingerprint("sha-256", "AB:CD:EF:01")],
                           [("127.0.0.1", 40000)])  # fmt: skip
POLICIES = (sdp.default_codec_policy(), dataclasses.replace(sdp.default_codec_policy(), accept_simulcast=True))


@functools.cache
def _subscribe_offer() -> sdp.SessionDescription:
    return sdp.parse(_capture("subscribe_offer.sdp"))


def run_sdp(data: bytes) -> None:
    offer = _attempt(sdp.parse, data)
    if offer is None:
        return
    _attempt(sdp.remote_transport, offer)
    for policy in POLICIES:
        result = _attempt(sdp.answer_publish, offer, LOCAL, policy)
        if result is None:
            continue
        answer, tracks, remote = result
        check([m.mid for m in answer.media] == [m.mid for m in offer.media], "answer sections != offer sections")
        check(answer.ice_lite and remote.dtls_role in ("server", "client"), "answer is not ICE-lite")
        check({t.mid for t in tracks} <= {m.mid for m in offer.media}, "a track names a mid the offer lacks")
        check(sdp.parse(sdp.serialize(answer)) == answer, "answer round trip")
    _attempt(sdp.read_subscribe_answer, offer, _subscribe_offer())


def seeds_sdp() -> list[bytes]:
    return _captures(*SDP_CAPTURES)


# ----------------------------------------------------------------------------- codec descriptors


def run_codecs(data: bytes) -> None:
    offsets = {0, 1, 4, 12}
    if data:
        offsets.add(data[0] % 16)
    for offset in sorted(offsets):
        key = codecs.vp8_is_keyframe(data, offset)
        h264 = codecs.h264_is_keyframe(data, offset)
        check(isinstance(key, bool) and isinstance(h264, bool), "is_keyframe: not a bool")
        check(codecs.is_keyframe("video/VP8", data, offset) == key, "is_keyframe(VP8) != vp8_is_keyframe")
        check(codecs.is_keyframe("H264", data, offset) == h264, "is_keyframe(H264) != h264_is_keyframe")
        check(codecs.is_keyframe("opus", data, offset) is False, "opus has key frames")
        desc = _attempt(codecs.vp8_descriptor, data, offset)
        if desc is None:
            check(not key, "a key frame without a descriptor")
            continue
        check(1 <= desc.header_size and offset + desc.header_size <= len(data), f"descriptor size {desc!r}")
        check(0 <= desc.partition_id <= 7, "partition id")
        if desc.picture_id is not None:
            check(desc.picture_id < (1 << desc.picture_id_bits) and desc.picture_id_bits in (7, 15), "picture id")
        check(desc.tid is None or 0 <= desc.tid <= 3, "tid")
        check(desc.key_idx is None or 0 <= desc.key_idx <= 31, "key idx")
        if desc.picture_id is None and desc.tl0_pic_idx is None:
            continue
        # Writing the same values back changes nothing; new ones read back.
        buffer = bytearray(data)
        codecs.vp8_rewrite_descriptor(buffer, codecs.vp8_descriptor(data, offset), desc.picture_id, desc.tl0_pic_idx)
        check(buffer == data, "rewriting the same PictureID/TL0PICIDX changed the payload")
        new_pid = None if desc.picture_id is None else desc.picture_id + 1
        new_tl0 = None if desc.tl0_pic_idx is None else desc.tl0_pic_idx + 1
        codecs.vp8_rewrite_descriptor(buffer, codecs.vp8_descriptor(data, offset), new_pid, new_tl0)
        again = codecs.vp8_descriptor(buffer, offset)
        if new_pid is not None:
            check(again.picture_id == new_pid % (1 << desc.picture_id_bits), "PictureID rewrite")
        if new_tl0 is not None:
            check(again.tl0_pic_idx == new_tl0 % 256, "TL0PICIDX rewrite")
        check(again.header_size == desc.header_size, "rewrite changed the descriptor size")


def seeds_codecs() -> list[bytes]:
    payloads = [packet[rtp.payload_offset(packet) :][:64] for packet in _captures(*RTP_CAPTURES)]
    return payloads + [b"\x90\x80\x80\x01\x10\x02\x00\x9d\x01\x2a", b"\x90\xe0\x81\x02\x05\xa0\x00", b"\x67\x42",
                       b"\x78\x00\x02\x67\x42\x00\x02\x68\xce", b"\x7c\x85\x88"]  # fmt: skip


# ----------------------------------------------------------------------------- recorder: bitstream


class BitWriter:
    """MSB-first bit writer with Exp-Golomb codes: the test side's SPS serializer."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def bit(self, value: int) -> None:
        self.bits.append(value & 1)

    def uint(self, value: int, count: int) -> None:
        for shift in range(count - 1, -1, -1):
            self.bit(value >> shift)

    def ue(self, value: int) -> None:
        code = value + 1
        length = code.bit_length()
        self.uint(0, length - 1)
        self.uint(code, length)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        bits = self.bits + [1]  # rbsp_stop_one_bit, then zeros to the byte
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def _write_scaling_list(writer: BitWriter, deltas: tuple[int, ...], size: int) -> None:
    """§7.3.2.1.1.1: delta_scale while nextScale is not 0 (then the list repeats)."""
    last = following = 8
    for index in range(size):
        if following != 0:
            delta = deltas[index] if index < len(deltas) else 0
            writer.se(delta)
            following = (last + delta + 256) % 256
        last = following if following != 0 else last


def emulation_prevent(rbsp: bytes) -> bytes:
    """ITU-T H.264 §7.4.1: 00 00 followed by 00..03 gets a 03 in between."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


@dataclass
class Sps:
    """The fields of an SPS that decide the picture size (and a few that must be skipped)."""

    profile_idc: int = 66
    chroma_format_idc: int = 1
    separate_colour_plane: int = 0
    scaling_lists: tuple[tuple[int, ...] | None, ...] = ()
    poc_type: int = 0
    poc_cycle: tuple[int, ...] = ()
    width_mbs: int = 40
    height_map_units: int = 23
    frame_mbs_only: int = 1
    crop: tuple[int, int, int, int] | None = None

    def nal(self) -> bytes:
        writer = BitWriter()
        writer.uint(self.profile_idc, 8)
        writer.uint(0, 8)  # constraint flags
        writer.uint(31, 8)  # level_idc
        writer.ue(0)  # seq_parameter_set_id
        if self.profile_idc in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
            writer.ue(self.chroma_format_idc)
            if self.chroma_format_idc == 3:
                writer.bit(self.separate_colour_plane)
            writer.ue(0)
            writer.ue(0)
            writer.bit(0)
            writer.bit(1 if self.scaling_lists else 0)
            if self.scaling_lists:
                for index in range(8 if self.chroma_format_idc != 3 else 12):
                    deltas = self.scaling_lists[index] if index < len(self.scaling_lists) else None
                    writer.bit(deltas is not None)
                    if deltas is not None:
                        _write_scaling_list(writer, deltas, 16 if index < 6 else 64)
        writer.ue(0)  # log2_max_frame_num_minus4
        writer.ue(self.poc_type)
        if self.poc_type == 0:
            writer.ue(0)
        elif self.poc_type == 1:
            writer.bit(0)
            writer.se(-1)
            writer.se(2)
            writer.ue(len(self.poc_cycle))
            for offset in self.poc_cycle:
                writer.se(offset)
        writer.ue(1)  # max_num_ref_frames
        writer.bit(0)
        writer.ue(self.width_mbs - 1)
        writer.ue(self.height_map_units - 1)
        writer.bit(self.frame_mbs_only)
        if not self.frame_mbs_only:
            writer.bit(0)
        writer.bit(1)  # direct_8x8_inference_flag
        writer.bit(self.crop is not None)
        for value in self.crop or ():
            writer.ue(value)
        writer.bit(0)  # vui_parameters_present_flag
        return b"\x67" + emulation_prevent(writer.rbsp())

    def dimensions(self) -> tuple[int, int]:
        """What §7.4.2.1.1 says the picture size is (the reader's expected answer)."""
        chroma = self.chroma_format_idc if self.profile_idc in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138,
                                                                139, 134, 135) else 1  # fmt: skip
        if chroma == 0 or (chroma == 3 and self.separate_colour_plane):
            unit_x, unit_y = 1, 2 - self.frame_mbs_only
        else:
            unit_x = 1 if chroma == 3 else 2
            unit_y = (2 if chroma == 1 else 1) * (2 - self.frame_mbs_only)
        left, right, top, bottom = self.crop or (0, 0, 0, 0)
        width = self.width_mbs * 16 - unit_x * (left + right)
        height = (2 - self.frame_mbs_only) * self.height_map_units * 16 - unit_y * (top + bottom)
        return width, height


def run_bitstream(data: bytes) -> None:
    dimensions = _attempt(bitstream.vp8_dimensions, data)
    if dimensions is not None:
        check(bitstream.vp8_is_key_frame(data), "dimensions of a frame that is not a key frame")
        check(all(1 <= d <= 0x3FFF for d in dimensions), f"VP8 dimensions {dimensions}")
    samples = _attempt(bitstream.opus_samples, data)
    check(samples is None or (120 <= samples <= 5760 and samples % 120 == 0), f"Opus samples {samples}")
    size = _attempt(bitstream.h264_sps_dimensions, data)
    check(size is None or (size[0] > 0 and size[1] > 0), f"SPS dimensions {size}")
    _attempt(bitstream.h264_access_unit_dimensions, data)
    _attempt(bitstream.h264_nal_type, data)
    check(isinstance(bitstream.h264_starts_picture(data), bool), "h264_starts_picture: not a bool")
    units = bitstream.annex_b_nal_units(data)
    check(all(unit and b"\x00\x00\x01" not in unit for unit in units), "a NAL unit holds a start code")
    if units and all(unit[-1] != 0 for unit in units):
        stream = b"".join(bitstream.ANNEX_B_START_CODE + unit for unit in units)
        check(bitstream.annex_b_nal_units(stream) == units, "Annex B split/join round trip")


def seeds_bitstream() -> list[bytes]:
    rng = random.Random(2)
    seeds = [
        b"\x10\x02\x00\x9d\x01\x2a\x80\x02\x68\x01" + bytes(10),  # VP8 key frame, 640x360
        b"\xf8\xff\xfe", b"\x03\x05", b"\x7b\x01",  # Opus TOCs
    ]  # fmt: skip
    for _ in range(12):
        sps = random_sps(rng)
        seeds.append(sps.nal())
        seeds.append(b"\x00\x00\x00\x01" + sps.nal() + b"\x00\x00\x01\x68\xce\x3c\x80\x00\x00\x01\x65\x88\x84")
    return seeds


def random_sps(rng: random.Random) -> Sps:
    profile = rng.choice((66, 77, 100, 110, 122, 244))
    chroma = rng.choice((0, 1, 2, 3)) if profile != 66 and profile != 77 else 1
    lists = tuple(tuple(rng.randint(-8, 8) for _ in range(rng.choice((0, 16)))) if rng.random() < 0.3 else None
                  for _ in range(8 if chroma != 3 else 12)) if rng.random() < 0.3 else ()  # fmt: skip
    frame_mbs_only = rng.choice((0, 1))
    sps = Sps(profile, chroma, rng.choice((0, 1)) if chroma == 3 else 0, lists, rng.choice((0, 1, 2)),
              tuple(rng.randint(-5, 5) for _ in range(rng.randint(0, 4))), rng.randint(1, 240), rng.randint(1, 135),
              frame_mbs_only, None)  # fmt: skip
    if rng.random() < 0.5:
        sps.crop = (rng.randint(0, 3), rng.randint(0, 3), rng.randint(0, 2), rng.randint(0, 2))
    return sps


# ----------------------------------------------------------------------------- recorder: depacketize


def run_depacketize(data: bytes) -> None:
    """data: one byte choosing the codec, then RTP packets each prefixed by a 16-bit length."""
    if not data:
        return
    codec = ("vp8", "h264", "opus")[data[0] % 3]
    depacketizer = depacketize.depacketizer_for(codec)
    pos = 1
    pushed = emitted = 0
    while pos + 2 <= len(data):
        length = int.from_bytes(data[pos : pos + 2], "big")
        raw = data[pos + 2 : pos + 2 + length]
        pos += 2 + length
        packet = _attempt(MediaPacket.parse, raw, pos / 1000)
        if packet is None:
            continue
        frames = depacketizer.push(packet)
        pushed += 1
        for frame in frames:
            emitted += 1
            check(isinstance(frame.data, bytes) and frame.data, "an empty frame")
            check(frame.timestamp == packet.timestamp, "a frame completed by a packet of another timestamp")
            check(len(frame.data) <= depacketize.MAX_FRAME_BYTES + 4096, "a frame over the size limit")
            if codec == "vp8":
                check(frame.keyframe == bitstream.vp8_is_key_frame(frame.data), "VP8 key frame flag")
            elif codec == "h264":
                check(frame.data.startswith(bitstream.ANNEX_B_START_CODE), "H.264 access unit without a start code")
                units = bitstream.annex_b_nal_units(frame.data)
                check(not frame.keyframe or any(u[0] & 0x1F == bitstream.H264_NAL_IDR for u in units), "IDR flag")
            else:
                check(frame.duration == bitstream.opus_samples(frame.data), "Opus duration")
    stats = depacketizer.stats
    check(stats.packets == pushed and stats.frames == emitted, f"stats {stats.as_dict()} != {pushed}/{emitted}")


def packet_stream(codec_index: int, packets: list[bytes]) -> bytes:
    return bytes([codec_index]) + b"".join(len(p).to_bytes(2, "big") + p for p in packets)


def seeds_depacketize() -> list[bytes]:
    vp8 = _captures("wire_chromium_vp8_key.bin", "wire_chromium_vp8_continuation.bin", "wire_chromium_vp8_delta.bin")
    h264 = _captures("wire_chromium_h264_stap_a.bin", "wire_chromium_h264_fu_a_idr.bin", "wire_chromium_h264_fu_a_end.bin")
    opus = _captures("wire_chromium_opus.bin")
    seeds = [packet_stream(0, vp8), packet_stream(1, h264), packet_stream(2, opus * 3)]
    # Frames packetized by hand: sequence numbers and timestamps that follow on.
    sps = Sps().nal()
    nals = [sps, b"\x68\xce\x3c\x80", b"\x65" + bytes(range(1, 200))]
    stap = b"\x78" + b"".join(len(n).to_bytes(2, "big") + n for n in nals[:2])
    fu = [b"\x7c\x85" + nals[2][1:100], b"\x7c\x05" + nals[2][100:150], b"\x7c\x45" + nals[2][150:]]
    h264_packets = [rtp.build_packet(102, i, 9000, 5, payload, marker=i == 3) for i, payload in enumerate([stap, *fu])]
    vp8_packets = [
        rtp.build_packet(96, 10, 3000, 6, b"\x90\x80\x81\x01\x10\x02\x00\x9d\x01\x2a\x40\x01\xf0\x00"),
        rtp.build_packet(96, 11, 3000, 6, b"\x80\x80\x81\x01" + bytes(50), marker=True),
        rtp.build_packet(96, 12, 6000, 6, b"\x90\x80\x81\x02\x11\x02\x00", marker=True),
    ]
    seeds += [packet_stream(1, h264_packets), packet_stream(0, vp8_packets)]
    return seeds


# ----------------------------------------------------------------------------- signaling JSON

SIGNALING_LIMITS = protocol.Limits(chat_max_chars=500)
SIGNALING_ERRORS = frozenset(("bad_json", "bad_message", "unknown_type", "invalid_field"))


def _strings_are_unicode(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_strings_are_unicode(k) and _strings_are_unicode(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_strings_are_unicode(v) for v in value)
    return True


def run_signaling(data: bytes) -> None:
    # A WebSocket text frame is valid UTF-8; the JSON inside may still escape anything.
    text = data.decode("utf-8", "replace")
    try:
        message = protocol.parse_client_message(text, SIGNALING_LIMITS)
    except SignalingError as exc:
        check(exc.code in SIGNALING_ERRORS and isinstance(exc.message, str), f"unexpected error code {exc.code}")
        return
    check(message.type in protocol.CLIENT_TYPES, f"type {message.type!r}")
    check(message.id is None or (isinstance(message.id, (int, str)) and not isinstance(message.id, bool)), "id")
    check(isinstance(message.fields, dict) and _strings_are_unicode(message.fields), f"fields {message.fields!r}")


def seeds_signaling() -> list[bytes]:
    offer = _capture("chromium_publish_offer.sdp").decode()
    messages_ = [
        {"type": "join", "id": 1, "name": "Ann", "token": "a.b.c"},
        {"type": "publish", "id": 2, "sdp": offer, "tracks": [{"mid": "0", "source": "microphone"},
                                                               {"mid": "1", "source": "camera"}]},
        {"type": "answer", "sdp": "v=0\r\n"},
        {"type": "ice", "candidate": {"candidate": "x", "sdpMid": "0"}},
        {"type": "mute", "source": "camera", "muted": True},
        {"type": "chat", "id": "c1", "text": "hello \U0001f600"},
        {"type": "subscribe", "track_id": "t", "enabled": False},
        {"type": "leave"}, {"type": "ping", "id": 9007199254740992},
        {"type": "recording", "action": "start"},
        {"type": "transcription", "action": "start", "hints": ["Conclave", "SFU"]},
        {"type": "consent", "decision": "continue"},
    ]  # fmt: skip
    return [json.dumps(m).encode() for m in messages_] + [json.dumps(m, ensure_ascii=False).encode() for m in messages_[:6]]


# ----------------------------------------------------------------------------- channel and messages


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # slow (it compiles each annotation): once per class


def conforms(value: Any, hint: Any) -> bool:
    """Whether a loaded value has the type its field declares (what from_dict promises)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, origin) and all(conforms(v, args[0] if args else Any) for v in value)
    if origin is dict:
        key, item = args or (str, Any)
        return isinstance(value, dict) and all(conforms(k, key) and conforms(v, item) for k, v in value.items())
    if dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        return isinstance(value, hint) and all(
            conforms(getattr(value, f.name), hints[f.name]) for f in dataclasses.fields(hint)
        )
    if hint is float:
        return isinstance(value, float)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def check_message(message: messages.Message) -> None:
    hints = _hints(type(message))
    for item in dataclasses.fields(message):
        value = getattr(message, item.name)
        check(conforms(value, hints[item.name]), f"{message.NAME}.{item.name} = {value!r} is not {hints[item.name]}")
    dumped = message.to_dict()
    again = type(message).from_dict(json.loads(json.dumps(dumped)))
    check(json.dumps(again.to_dict(), sort_keys=True) == json.dumps(dumped, sort_keys=True), "to_dict/from_dict")


def run_channel(data: bytes) -> None:
    """data: one byte choosing the chunk size, then the byte stream of a channel."""
    if not data:
        return
    chunk = 1 + data[0] % 97
    decoder = channel.FrameDecoder(max_frame=1 << 16)
    envelopes: list[dict[str, Any]] = []
    try:
        for start in range(1, len(data), chunk):
            envelopes += decoder.feed(data[start : start + chunk])
    except ValueError:
        pass
    for envelope in envelopes:
        check(isinstance(envelope, dict), "an envelope that is not an object")
        try:
            text = json.dumps(envelope, sort_keys=True)
            frame = channel.encode_frame(envelope)
        except RecursionError:
            continue  # nested as deep as json.loads allows: too deep to write back from here
        again = channel.FrameDecoder(max_frame=1 << 16).feed(frame)
        check(len(again) == 1 and json.dumps(again[0], sort_keys=True) == text, "encode_frame round trip")
        try:
            message = channel.parse_message(envelope)
        except messages.MessageError:
            continue
        check_message(message)


def run_messages(data: bytes) -> None:
    """data: the JSON text of one envelope, {"name": ..., "data": {...}}."""
    try:
        envelope = json.loads(data)
    except (ValueError, RecursionError):
        return  # json's business, not ours (the channel's own guard is in run_channel)
    if not isinstance(envelope, dict):
        return
    try:
        message = channel.parse_message(envelope)
    except messages.MessageError as exc:
        check(bool(str(exc)), "MessageError without a message")
        return
    check_message(message)


def example_value(hint: Any, depth: int = 0) -> Any:
    """A valid value for a field type: what a message looks like when all is well."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return example_value(next(a for a in args if a is not type(None)), depth)
    if origin in (list, tuple):
        return [example_value(args[0], depth + 1)] if args else []
    if origin is dict:
        return {"key": example_value(args[1], depth + 1)} if args else {}
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return {f.name: example_value(hints[f.name], depth + 1) for f in dataclasses.fields(hint)}
    return {str: "x", int: 7, float: 1.5, bool: True}.get(hint, {"any": [1, "two"]})


def example_envelopes() -> list[dict[str, Any]]:
    envelopes = []
    for name, cls in sorted(messages._REGISTRY.items()):
        hints = typing.get_type_hints(cls)
        data = {f.name: example_value(hints[f.name]) for f in dataclasses.fields(cls)}
        envelopes.append({"type": "request", "id": len(envelopes), "name": name, "data": data})
    return envelopes


def seeds_channel() -> list[bytes]:
    frames = [channel.encode_frame(envelope) for envelope in example_envelopes()]
    return [bytes([7]) + b"".join(frames[:10]), bytes([0]) + b"".join(frames[10:])] + [bytes([96]) + f for f in frames[:8]]


def seeds_messages() -> list[bytes]:
    return [json.dumps(envelope).encode() for envelope in example_envelopes()]


def message_tokens() -> tuple[bytes, ...]:
    names = {name.encode() for name in messages._REGISTRY}
    fields = {f'"{f.name}"'.encode() for cls in messages._REGISTRY.values() for f in dataclasses.fields(cls)}
    return tuple(sorted(names | fields)) + (b'"name"', b'"data"', b'"type"', b'"request"', b"null", b"true", b"1e999",
                                            b"[[[[", b'"\\ud800"', b"-0.0", b"NaN")  # fmt: skip


# ----------------------------------------------------------------------------- the harness's self-test


def run_selftest(data: bytes) -> None:
    """Fails on purpose on any input starting with "!": proves failures are caught and saved."""
    if data[:1] == b"!":
        raise RuntimeError("selftest: the input starts with '!'")


# ----------------------------------------------------------------------------- the registry

JSON_TOKENS = (b'"type"', b'"id"', b'"name"', b'"sdp"', b'"tracks"', b'"mid"', b'"source"', b'"text"',
               b'"muted"', b'"track_id"', b'"enabled"', b'"action"', b'"hints"', b'"decision"', b'"token"',
               b'"camera"', b'"microphone"', b'"\\ud800"', b'"\\udfff"', b"[[[[[[", b"null", b"true", b"1e999")  # fmt: skip

TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("rtp", ("sfu.wire.rtp", "recorder.media.packet"), run_rtp, seeds_rtp, 1500,
               (b"\xbe\xde", b"\x10\x00", b"\x80\x60", b"\x90"), "RTP header, extensions, RTX"),
        Target("rtcp", ("sfu.wire.rtcp",), run_rtcp, seeds_rtcp, 1500,
               (b"\x80\xc8", b"\x81\xcd", b"\x8f\xcd", b"\x81\xce", b"\x84\xce", b"\x8f\xce", b"REMB"),
               "compound RTCP, feedback, REMB, transport-cc"),
        Target("stun", ("sfu.wire.stun",), run_stun, seeds_stun, 1500,
               (b"\x21\x12\xa4\x42", b"\x00\x06", b"\x00\x08", b"\x80\x28", b"\x00\x20", b"\x00\x25"),
               "STUN messages and ICE attributes"),
        Target("dtls", ("sfu.wire.dtls",), run_dtls, seeds_dtls, 1500, (b"\xfe\xfd", b"\xfe\xff"),
               "DTLS record framing"),
        Target("sdp_syntax", ("sfu.wire.sdp_syntax",), run_sdp_syntax, seeds_sdp, 65536, SDP_TOKENS,
               "SDP parse/serialize"),
        Target("sdp", ("sfu.wire.sdp", "sfu.wire.sdp_syntax"), run_sdp, seeds_sdp, 65536, SDP_TOKENS,
               "SDP offer/answer: answer_publish, read_subscribe_answer"),
        Target("codecs", ("sfu.wire.codecs",), run_codecs, seeds_codecs, 256, (b"\x90\x80", b"\x7c\x85", b"\x78"),
               "VP8/H.264 payload descriptors"),
        Target("bitstream", ("recorder.media.bitstream",), run_bitstream, seeds_bitstream, 4096,
               (b"\x00\x00\x00\x01", b"\x00\x00\x03", b"\x9d\x01\x2a", b"\x67\x64", b"\x67\x42"),
               "VP8 key frame header, H.264 SPS, Annex B, Opus TOC"),
        Target("depacketize", ("recorder.media.depacketize", "recorder.media.packet"), run_depacketize,
               seeds_depacketize, 16384, (b"\x90\x80", b"\x7c\x85", b"\x7c\x45", b"\x78"),
               "the recorder's VP8/H.264/Opus depacketizers"),
        Target("signaling", ("control.meeting.protocol",), run_signaling, seeds_signaling, 65536, JSON_TOKENS,
               "signaling JSON (parse_client_message)"),
        Target("channel", ("common.channel", "common.messages"), run_channel, seeds_channel, 65536,
               message_tokens(), "channel frames (FrameDecoder) and the messages in them"),
        Target("messages", ("common.messages",), run_messages, seeds_messages, 16384, message_tokens(),
               "message decoding (Message.from_dict) of every registered message"),
        Target("_selftest", ("tests.fuzz.targets",), run_selftest, lambda: [b"ok"], 64, (), "fails on purpose",
               hidden=True),
    )
}


def public_targets() -> list[str]:
    return [name for name, target in TARGETS.items() if not target.hidden]


def regression_inputs(name: str) -> list[Path]:
    folder = REGRESSIONS_DIR / name
    return sorted(path for path in folder.iterdir() if path.is_file()) if folder.is_dir() else []

