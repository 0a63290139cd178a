"""sfu.wire.rtp: hand-built headers, captured Chromium packets, aiortc cross-checks, fuzz.

The tests/data/wire_chromium_*.bin packets were captured (decrypted, at aiortc's
`RTCDtlsTransport._handle_rtp_data`) from Chromium 14x publishing to an aiortc peer on
this machine: audio-level = id 1, abs-send-time = id 2, mid = id 4 as negotiated.
"""

from __future__ import annotations

import pytest
from aiortc import rtp as aiortc_rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu.wire import rtp
from tests.support.paths import DATA_DIR

DATA = DATA_DIR
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sample(name: str) -> bytes:
    return (DATA / f"wire_chromium_{name}.bin").read_bytes()


def aiortc_map(ids: dict[str, int]) -> aiortc_rtp.HeaderExtensionsMap:
    extensions_map = aiortc_rtp.HeaderExtensionsMap()
    extensions_map.configure(
        RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in ids.items()])
    )
    return extensions_map


# --- hand-built bytes ------------------------------------------------------------------

MINIMAL = bytes.fromhex("80e0 1234 0000abcd 11223344") + b"payload"

# V=2 P=1 X=1 CC=2, M=0 PT=96, two CSRCs, one-byte block of 3 words:
#   id 1 len 1 "\xaa", a padding byte, id 2 len 3 "\x01\x02\x03", id 3 len 2 "\x10\x20",
#   two padding bytes; then payload "hi" and 3 bytes of RTP padding.
ONE_BYTE = bytes.fromhex(
    "b260 0001 00000002 00000003"
    "0000000a 0000000b"
    "bede 0003 10aa 00 22010203 311020 0000"
    "6869 000003"
)

# Two-byte form (appbits 0x5): id 20 len 0, a padding byte, id 7 len 2, id 200 len 3.
TWO_BYTE = bytes.fromhex("9060 0002 00000002 00000003 1005 0003 1400 00 07 02 abcd c8 03 010203") + b"x"


def test_minimal_header_fields():
    header = rtp.parse_header(MINIMAL)
    assert (header.version, header.padding, header.extension, header.marker) == (2, False, False, True)
    fields = (header.payload_type, header.sequence_number, header.timestamp, header.ssrc)
    assert fields == (96, 0x1234, 0xABCD, 0x11223344)
    assert header.csrcs == () and header.extension_profile is None and header.extensions == {}
    assert (header.header_length, header.payload_end, header.payload_size) == (12, len(MINIMAL), 7)
    assert rtp.payload_offset(MINIMAL) == 12
    assert rtp.extension_block(MINIMAL) is None
    assert rtp.find_extension(MINIMAL, 1) is None


def test_one_byte_extensions_csrcs_and_padding():
    header = rtp.parse_header(ONE_BYTE)
    assert header.padding and header.extension and not header.marker
    assert header.csrcs == (10, 11)
    assert header.extension_profile == rtp.PROFILE_ONE_BYTE
    assert header.extensions == {1: b"\xaa", 2: b"\x01\x02\x03", 3: b"\x10\x20"}
    assert header.header_length == 12 + 8 + 4 + 12
    assert ONE_BYTE[header.header_length : header.payload_end] == b"hi"
    assert rtp.payload_offset(ONE_BYTE) == header.header_length
    assert rtp.extension_block(ONE_BYTE) == (0xBEDE, 24, 36)
    assert rtp.find_extension(ONE_BYTE, 2) == (28, 3)
    assert rtp.find_extension(ONE_BYTE, 3) == (32, 2)
    assert rtp.find_extension(ONE_BYTE, 4) is None


def test_two_byte_extensions_allow_empty_values_and_large_ids():
    header = rtp.parse_header(TWO_BYTE)
    assert header.extension_profile == 0x1005
    assert header.extensions == {20: b"", 7: b"\xab\xcd", 200: b"\x01\x02\x03"}
    assert rtp.find_extension(TWO_BYTE, 200) == (25, 3)
    assert rtp.find_extension(TWO_BYTE, 20) == (18, 0)
    assert TWO_BYTE[header.header_length :] == b"x"


def test_one_byte_id_15_stops_parsing():
    packet = bytes.fromhex("9060 0001 00000002 00000003 bede 0002 1011 f0 2122 000000")
    header = rtp.parse_header(packet)
    assert header.extensions == {1: b"\x11"}
    assert rtp.find_extension(packet, 2) is None


def test_unknown_profile_has_no_elements():
    packet = bytes.fromhex("9060 0001 00000002 00000003 1234 0001 deadbeef") + b"p"
    header = rtp.parse_header(packet)
    assert header.extension_profile == 0x1234 and header.extensions == {}
    assert rtp.find_extension(packet, 13) is None
    assert rtp.payload_offset(packet) == 20


def test_first_duplicate_element_wins():
    packet = bytes.fromhex("9060 0001 00000002 00000003 bede 0001 1001 1002")
    assert rtp.parse_header(packet).extensions == {1: b"\x01"}
    assert rtp.find_extension(packet, 1) == (17, 1)


@pytest.mark.parametrize(
    ("packet", "field"),
    [
        (MINIMAL[:11], "RTP header"),
        (bytes([0x40]) + MINIMAL[1:], "RTP version"),
        (bytes.fromhex("82600001000000020000000300000001"), "CSRC count"),
        (bytes.fromhex("906000010000000200000003bede"), "extension header"),
        (bytes.fromhex("906000010000000200000003bede000210aa"), "extension length"),
        (bytes.fromhex("906000010000000200000003bede000113aa0000"), "element 1"),
        (bytes.fromhex("90600001000000020000000310000001 0705aaaa"), "element 7"),
        (bytes.fromhex("906000010000000200000003100000010000 00 09"), "element 9"),
        (bytes.fromhex("a0600001000000020000000361626300"), "padding count"),
        (bytes.fromhex("a0600001000000020000000361626305"), "padding count"),
        (bytes.fromhex("a06000010000000200000003"), "padding count"),
    ],
)
def test_parse_header_errors_name_the_field(packet, field):
    with pytest.raises(ValueError, match=field):
        rtp.parse_header(packet)


def test_fast_paths_reject_truncation_without_parsing_elements():
    with pytest.raises(ValueError, match="RTP header"):
        rtp.payload_offset(b"\x80" * 5)
    with pytest.raises(ValueError, match="extension header"):
        rtp.payload_offset(bytes.fromhex("906000010000000200000003be"))
    with pytest.raises(ValueError, match="header length"):
        rtp.payload_offset(bytes.fromhex("906000010000000200000003bede0004"))
    with pytest.raises(ValueError, match="extension length"):
        rtp.extension_block(bytes.fromhex("906000010000000200000003bede0004"))
    # A malformed element before the one sought is an error; after it is not looked at.
    bad_tail = bytes.fromhex("906000010000000200000003bede0001 1001 2f00")
    assert rtp.find_extension(bad_tail, 1) == (17, 1)
    with pytest.raises(ValueError, match="element 2"):
        rtp.find_extension(bad_tail, 3)


def test_is_rtcp_demultiplexes_on_the_second_byte():
    assert rtp.is_rtcp(sample("sr_sdes"))
    assert rtp.is_rtcp(bytes([0x80, 223]))
    assert not rtp.is_rtcp(bytes([0x80, 191]))
    assert not rtp.is_rtcp(bytes([0x80, 224]))
    assert not rtp.is_rtcp(sample("vp8_key"))
    assert not rtp.is_rtcp(b"\x80")


# --- extension id rewriting ----------------------------------------------------------


def test_rewrite_extension_ids_one_byte_keeps_padding_and_length():
    table = bytearray(range(16))
    table[1], table[2], table[3] = 5, 14, 1
    buf = bytearray(ONE_BYTE)
    rtp.rewrite_extension_ids(buf, bytes(table))
    assert len(buf) == len(ONE_BYTE)
    assert rtp.parse_header(buf).extensions == {5: b"\xaa", 14: b"\x01\x02\x03", 1: b"\x10\x20"}
    changed = [i for i in range(len(buf)) if buf[i] != ONE_BYTE[i]]
    assert changed == [24, 27, 31]  # only the id nibbles of the three elements
    assert buf[26] == 0 and buf[34:36] == b"\0\0"


def test_rewrite_extension_ids_hides_unnegotiated_elements():
    # Publisher: mid=4, abs-send-time=2, audio-level=1. Subscriber negotiated mid as 9 only.
    table = bytearray(range(256))
    for i in range(1, 15):
        table[i] = 14
    table[4] = 9
    packet = bytearray(sample("opus"))
    rtp.rewrite_extension_ids(packet, bytes(table))
    header = rtp.parse_header(packet)
    assert set(header.extensions) == {9, 14}
    assert header.extensions[9] == rtp.parse_header(sample("opus")).extensions[4]


def test_rewrite_extension_ids_stops_at_id_15():
    packet = bytearray.fromhex("9060 0001 00000002 00000003 bede 0002 1011 f0 2122 000000")
    rtp.rewrite_extension_ids(packet, bytes([0, 3] + [7] * 14))
    assert packet.hex() == bytes.fromhex("9060 0001 00000002 00000003 bede 0002 3011 f0 2122 000000").hex()


def test_rewrite_extension_ids_two_byte():
    buf = bytearray(TWO_BYTE)
    table = bytearray(range(256))
    table[20], table[7], table[200] = 21, 70, 1
    rtp.rewrite_extension_ids(buf, bytes(table))
    assert rtp.parse_header(buf).extensions == {21: b"", 70: b"\xab\xcd", 1: b"\x01\x02\x03"}


def test_rewrite_extension_ids_refuses_without_touching_the_buffer():
    table = bytearray(range(256))
    table[3] = 15  # would stop the receiver's parse
    buf = bytearray(ONE_BYTE)
    with pytest.raises(ValueError, match="id 3 -> 15"):
        rtp.rewrite_extension_ids(buf, bytes(table))
    assert buf == ONE_BYTE
    table[3] = 0  # would read as padding
    with pytest.raises(ValueError, match="id 3 -> 0"):
        rtp.rewrite_extension_ids(buf, bytes(table))
    with pytest.raises(ValueError, match="-> 0"):
        rtp.rewrite_extension_ids(bytearray(TWO_BYTE), bytes(256))
    with pytest.raises(ValueError, match="no entry for id 20"):
        rtp.rewrite_extension_ids(bytearray(TWO_BYTE), bytes(range(16)))
    with pytest.raises(ValueError, match="16 or 256"):
        rtp.rewrite_extension_ids(bytearray(ONE_BYTE), bytes(17))
    with pytest.raises(ValueError, match="writable"):
        rtp.rewrite_extension_ids(ONE_BYTE, bytes(range(16)))
    # A truncated element after valid ones: nothing is written.
    broken = bytearray.fromhex("906000010000000200000003bede0001 1001 2f00")
    before = bytes(broken)
    with pytest.raises(ValueError, match="element 2"):
        rtp.rewrite_extension_ids(broken, bytes([0] + [5] * 15))
    assert broken == before


def test_rewrite_without_extension_is_a_no_op():
    buf = bytearray(MINIMAL)
    rtp.rewrite_extension_ids(buf, bytes(256))
    assert buf == MINIMAL


# --- building ------------------------------------------------------------------------


def test_build_packet_hand_checked_bytes():
    packet = rtp.build_packet(96, 0x1234, 0xABCD, 0x11223344, b"payload", marker=True)
    assert packet == MINIMAL
    packet = rtp.build_packet(
        96, 1, 2, 3, b"hi", extensions={1: b"\xaa", 2: b"\x01\x02\x03"}, csrcs=(10, 11), padding=3
    )
    assert packet == bytes.fromhex(
        "b260 0001 00000002 00000003 0000000a 0000000b bede 0002 10aa 22010203 0000 6869 000003"
    )


def test_build_packet_chooses_two_byte_form_when_needed():
    for extensions, two_byte in (({15: b"a"}, False), ({1: b""}, False), ({1: b"x" * 17}, False), ({1: b"a"}, True)):
        packet = rtp.build_packet(96, 1, 2, 3, extensions=extensions, two_byte=two_byte)
        header = rtp.parse_header(packet)
        assert header.extension_profile == rtp.PROFILE_TWO_BYTE
        assert header.extensions == extensions


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"payload_type": 128}, "payload_type"),
        ({"sequence_number": 65536}, "sequence_number"),
        ({"timestamp": -1}, "timestamp"),
        ({"ssrc": 1 << 32}, "ssrc"),
        ({"padding": 256}, "padding"),
        ({"csrcs": range(16)}, "csrcs"),
        ({"extensions": {0: b"a"}}, "extension id"),
        ({"extensions": {256: b"a"}}, "extension id"),
        ({"extensions": {3: b"a" * 256}}, "extension 3"),
    ],
)
def test_build_packet_rejects_out_of_range_fields(kwargs, field):
    args = {"payload_type": 96, "sequence_number": 1, "timestamp": 2, "ssrc": 3} | kwargs
    with pytest.raises(ValueError, match=field):
        rtp.build_packet(**args)


extension_maps = st.one_of(
    st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=16), max_size=6),
    st.dictionaries(st.integers(1, 255), st.binary(max_size=40), max_size=6),
)


@FUZZ
@given(
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    extensions=extension_maps,
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    padding=st.integers(0, 255),
    two_byte=st.booleans(),
)
def test_build_then_parse_round_trip(
    payload_type, sequence_number, timestamp, ssrc, payload, marker, extensions, csrcs, padding, two_byte
):
    packet = rtp.build_packet(
        payload_type, sequence_number, timestamp, ssrc, payload, marker, extensions, csrcs, padding, two_byte
    )
    header = rtp.parse_header(packet)
    assert (header.payload_type, header.sequence_number, header.timestamp, header.ssrc) == (
        payload_type,
        sequence_number,
        timestamp,
        ssrc,
    )
    assert header.marker == marker and header.csrcs == tuple(csrcs)
    assert header.extensions == extensions
    assert packet[header.header_length : header.payload_end] == payload
    assert header.padding == bool(padding) and len(packet) - header.payload_end == padding
    assert rtp.payload_offset(packet) == header.header_length
    for ext_id, value in extensions.items():
        offset, length = rtp.find_extension(packet, ext_id)
        assert packet[offset : offset + length] == value


@FUZZ
@given(extensions=extension_maps, permutation=st.permutations(range(1, 15)))
def test_rewrite_with_a_permutation_then_its_inverse_restores_the_packet(extensions, permutation):
    packet = rtp.build_packet(96, 1, 2, 3, b"data", extensions=extensions)
    forward = bytearray(range(256))
    inverse = bytearray(range(256))
    for old, new in zip(range(1, 15), permutation):
        forward[old], inverse[new] = new, old
    buf = bytearray(packet)
    rtp.rewrite_extension_ids(buf, bytes(forward))
    assert len(buf) == len(packet)
    renamed = rtp.parse_header(buf).extensions
    assert renamed == {forward[i]: v for i, v in extensions.items()}
    rtp.rewrite_extension_ids(buf, bytes(inverse))
    assert buf == packet


# --- captured packets and aiortc cross-checks ----------------------------------------

CHROMIUM_IDS = {rtp.URI_AUDIO_LEVEL: 1, rtp.URI_ABS_SEND_TIME: 2, rtp.URI_MID: 4}


@pytest.mark.parametrize(
    "name", ["opus", "vp8_key", "vp8_continuation", "vp8_delta", "rtx_probe", "h264_stap_a", "h264_fu_a_idr"]
)
def test_captured_packets_match_aiortc(name):
    data = sample(name)
    ours = rtp.parse_header(data)
    theirs = aiortc_rtp.RtpPacket.parse(data, aiortc_map(CHROMIUM_IDS))
    assert (ours.payload_type, ours.sequence_number, ours.timestamp, ours.ssrc) == (
        theirs.payload_type,
        theirs.sequence_number,
        theirs.timestamp,
        theirs.ssrc,
    )
    assert ours.marker == bool(theirs.marker) and list(ours.csrcs) == theirs.csrc
    assert data[ours.header_length : ours.payload_end] == theirs.payload
    assert len(data) - ours.payload_end == theirs.padding_size
    assert ours.extensions[4] == theirs.extensions.mid.encode()
    if 2 in ours.extensions:
        assert int.from_bytes(ours.extensions[2], "big") == theirs.extensions.abs_send_time
    assert rtp.payload_offset(data) == ours.header_length


def test_captured_opus_audio_level_and_mid():
    data = sample("opus")
    header = rtp.parse_header(data)
    assert header.payload_type == 111 and header.extension_profile == rtp.PROFILE_ONE_BYTE
    offset, length = rtp.find_extension(data, 1)
    assert length == 1
    level = aiortc_rtp.RtpPacket.parse(data, aiortc_map(CHROMIUM_IDS)).extensions.audio_level
    assert (bool(data[offset] & 0x80), data[offset] & 0x7F) == level
    offset, length = rtp.find_extension(data, 4)
    assert data[offset : offset + length] == b"0"


def test_captured_rtx_probe_is_padding_only():
    data = sample("rtx_probe")
    header = rtp.parse_header(data)
    assert header.payload_type == 97 and header.padding
    assert header.payload_size == 0 and len(data) - header.payload_end == 255
    with pytest.raises(ValueError, match="RTX payload"):
        rtp.unwrap_rtx(data, 96, 1234)


def test_aiortc_serialized_packets_parse_identically():
    ids = {rtp.URI_MID: 3, rtp.URI_ABS_SEND_TIME: 5, rtp.URI_TRANSPORT_CC: 7, rtp.URI_AUDIO_LEVEL: 1}
    packet = aiortc_rtp.RtpPacket(payload_type=100, marker=1, sequence_number=65535, timestamp=0xFFFFFFFF, ssrc=7)
    packet.csrc = [1, 2, 3]
    packet.payload = b"\x01\x02\x03"
    packet.padding_size = 9
    packet.extensions.mid = "video1"
    packet.extensions.abs_send_time = 0x123456
    packet.extensions.transport_sequence_number = 0xBEEF
    packet.extensions.audio_level = (True, 42)
    data = packet.serialize(aiortc_map(ids))
    header = rtp.parse_header(data)
    assert header.csrcs == (1, 2, 3) and header.marker and header.sequence_number == 65535
    assert header.extensions == {3: b"video1", 5: b"\x12\x34\x56", 7: b"\xbe\xef", 1: bytes([0x80 | 42])}
    assert data[header.header_length : header.payload_end] == b"\x01\x02\x03"
    assert len(data) - header.payload_end == 9


@FUZZ
@given(
    payload=st.binary(max_size=50),
    sequence_number=st.integers(0, 0xFFFF),
    mid=st.text("abcdefgh0123456789", min_size=1, max_size=16),
    tcc=st.integers(0, 0xFFFF),
)
def test_our_packets_parse_identically_in_aiortc(payload, sequence_number, mid, tcc):
    ids = {rtp.URI_MID: 3, rtp.URI_TRANSPORT_CC: 7}
    extensions = {3: mid.encode(), 7: tcc.to_bytes(2, "big")}
    data = rtp.build_packet(96, sequence_number, 99, 5, payload, extensions=extensions)
    theirs = aiortc_rtp.RtpPacket.parse(data, aiortc_map(ids))
    assert theirs.payload == payload and theirs.sequence_number == sequence_number
    assert theirs.extensions.mid == mid and theirs.extensions.transport_sequence_number == tcc


# --- RTX (RFC 4588) ------------------------------------------------------------------


def test_wrap_rtx_hand_checked():
    original = rtp.build_packet(96, 0x0102, 1000, 0xAAAA, b"media", marker=True, extensions={4: b"0"}, padding=4)
    wrapped = rtp.wrap_rtx(original, 97, 0xBBBB, 7)
    header = rtp.parse_header(wrapped)
    assert (header.payload_type, header.sequence_number, header.ssrc, header.timestamp) == (97, 7, 0xBBBB, 1000)
    assert header.marker and not header.padding and header.extensions == {4: b"0"}
    assert wrapped[header.header_length :] == b"\x01\x02media"
    restored = rtp.unwrap_rtx(wrapped, 96, 0xAAAA)
    assert restored == rtp.build_packet(96, 0x0102, 1000, 0xAAAA, b"media", marker=True, extensions={4: b"0"})


@FUZZ
@given(
    payload=st.binary(max_size=64),
    sequence_number=st.integers(0, 0xFFFF),
    rtx_sequence_number=st.integers(0, 0xFFFF),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=3),
)
def test_rtx_matches_aiortc(payload, sequence_number, rtx_sequence_number, marker, csrcs):
    original = rtp.build_packet(96, sequence_number, 1234, 0xAAAA, payload, marker, csrcs=csrcs)
    ours = rtp.wrap_rtx(original, 97, 0xBBBB, rtx_sequence_number)
    theirs = aiortc_rtp.wrap_rtx(aiortc_rtp.RtpPacket.parse(original), 97, rtx_sequence_number, 0xBBBB)
    assert ours == theirs.serialize()
    assert rtp.unwrap_rtx(ours, 96, 0xAAAA) == original
    assert aiortc_rtp.unwrap_rtx(aiortc_rtp.RtpPacket.parse(ours), 96, 0xAAAA).serialize() == original


def test_rtx_rejects_bad_arguments():
    packet = rtp.build_packet(96, 1, 2, 3, b"x")
    with pytest.raises(ValueError, match="rtx_payload_type"):
        rtp.wrap_rtx(packet, 200, 1, 1)
    with pytest.raises(ValueError, match="rtx_sequence_number"):
        rtp.wrap_rtx(packet, 97, 1, 70000)
    with pytest.raises(ValueError, match="RTX payload"):
        rtp.unwrap_rtx(packet, 96, 3)
    with pytest.raises(ValueError, match="original_ssrc"):
        rtp.unwrap_rtx(packet, 96, -1)


# --- sequence arithmetic ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "diff", "newer"),
    [
        (1, 0, 1, True),
        (0, 1, -1, False),
        (5, 5, 0, False),
        (0, 65535, 1, True),
        (65535, 0, -1, False),
        (10, 65530, 16, True),
        (0x7FFF, 0, 0x7FFF, True),
        (0x8000, 0, -0x8000, False),
        (0, 0x8000, -0x8000, False),
    ],
)
def test_sequence_arithmetic(a, b, diff, newer):
    assert rtp.seq_diff(a, b) == diff
    assert rtp.seq_newer(a, b) is newer


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_sequence_arithmetic_properties(a, b):
    diff = rtp.seq_diff(a, b)
    assert -0x8000 <= diff < 0x8000
    assert (b + diff) & 0xFFFF == a
    assert rtp.seq_newer(a, b) == (diff > 0)
    assert not (rtp.seq_newer(a, b) and rtp.seq_newer(b, a))


def test_timestamp_diff_wraps():
    assert rtp.timestamp_diff(5, 0xFFFFFFFF) == 6
    assert rtp.timestamp_diff(0xFFFFFFFF, 5) == -6


# --- fuzz: only ValueError ever escapes ----------------------------------------------

rtp_like = st.one_of(
    st.binary(max_size=80),
    # Keep version 2 and the X bit often, so the element walkers get exercised.
    st.tuples(st.integers(0, 255), st.binary(max_size=80)).map(lambda t: bytes([0x80 | (t[0] & 0x3F)]) + t[1]),
    st.tuples(st.integers(0, 15), st.sampled_from([b"\xbe\xde", b"\x10\x00", b"\x10\x0f"]), st.binary(max_size=40)).map(
        lambda t: bytes([0x90 | (t[0] & 0x21)]) + b"\x60" + bytes(10) + t[1] + t[2]
    ),
)


def _only_value_error(call, *args):
    try:
        return call(*args)
    except ValueError:
        return None


@FUZZ
@given(rtp_like, st.integers(0, 255))
def test_fuzz_readers_raise_only_value_error(data, ext_id):
    header = _only_value_error(rtp.parse_header, data)
    offset = _only_value_error(rtp.payload_offset, data)
    if header is not None:
        assert offset == header.header_length
        assert header.header_length <= header.payload_end <= len(data)
    _only_value_error(rtp.extension_block, data)
    found = _only_value_error(rtp.find_extension, data, ext_id)
    if found:
        assert found[0] + found[1] <= len(data)
    _only_value_error(rtp.unwrap_rtx, data, 96, 1)
    _only_value_error(rtp.wrap_rtx, data, 97, 2, 3)
    _only_value_error(rtp.find_extension, memoryview(data), ext_id)
    rtp.is_rtcp(data)


@FUZZ
@given(rtp_like, st.binary(min_size=256, max_size=256))
def test_fuzz_rewrite_stays_in_bounds(data, table):
    buf = bytearray(data)
    try:
        rtp.rewrite_extension_ids(buf, table)
    except ValueError:
        assert buf == data
    assert len(buf) == len(data)
    # Only id bytes may change, so the header length never does.
    if _only_value_error(rtp.payload_offset, data) is not None:
        assert rtp.payload_offset(buf) == rtp.payload_offset(data)


def test_audio_level_reads_rfc_6464_levels_without_the_v_bit():
    # Chromium's audio: abs-send-time (2), transport-wide seq (3), audio level (1), mid (4).
    chromium_like = rtp.build_packet(
        111, 7, 960, 0x1234, payload=b"opus",
        extensions={2: b"\x01\x02\x03", 3: b"\x00\x09", 1: bytes([0x80 | 23]), 4: b"0"},
    )  # fmt: skip
    assert rtp.audio_level(chromium_like, 1) == 23  # V bit set: dropped
    assert rtp.audio_level(chromium_like, 5) == -1
    assert rtp.audio_level(MINIMAL, 1) == -1  # no extension at all
    assert rtp.audio_level(ONE_BYTE, 1) == 0xAA & 0x7F
    two_byte = rtp.build_packet(111, 7, 960, 0x1234, payload=b"o", extensions={20: b"", 1: b"\x7f"}, two_byte=True)
    assert rtp.audio_level(two_byte, 1) == 127
    assert rtp.audio_level(two_byte, 20) == -1  # an empty value carries no level
    stopped = bytes.fromhex("9060 0001 00000002 00000003 bede 0002 1011 f0 2122 000000")
    assert rtp.audio_level(stopped, 1) == 0x11 and rtp.audio_level(stopped, 2) == -1
    unknown = bytes.fromhex("9060 0001 00000002 00000003 1234 0001 deadbeef") + b"p"
    assert rtp.audio_level(unknown, 13) == -1


def test_audio_level_rejects_what_find_extension_rejects():
    bad_tail = bytes.fromhex("906000010000000200000003bede0001 1001 2f00")
    assert rtp.audio_level(bad_tail, 1) == 1
    with pytest.raises(ValueError, match="element 2"):
        rtp.audio_level(bad_tail, 3)
    for packet, field in [
        (b"\x90" * 5, "RTP header"),
        (bytes.fromhex("906000010000000200000003be"), "extension header"),
        (bytes.fromhex("906000010000000200000003bede0004"), "extension length"),
        (bytes.fromhex("906000010000000200000003bede000113aa0000"), "element 1"),
    ]:
        with pytest.raises(ValueError, match=field):
            rtp.audio_level(packet, 9)
