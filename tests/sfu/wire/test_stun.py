"""sfu.wire.stun: RFC 5769 test vectors, captured Chromium messages, aioice cross-checks, fuzz.

wire_chromium_stun_request.bin is a Chromium ICE connectivity check sent to an aiortc
peer whose ICE password was CHROMIUM_REQUEST_KEY; wire_chromium_stun_success.bin is
Chromium's answer to aioice's check, signed with Chromium's password.
"""

from __future__ import annotations

import struct

import pytest
from aioice import stun as aioice_stun
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfu.wire import stun
from tests.support.paths import DATA_DIR

DATA = DATA_DIR
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CHROMIUM_REQUEST_KEY = b"xVc9XVD4i1D72uxO7Db2gN"
CHROMIUM_SUCCESS_KEY = b"gJiBmeABuAlfb150ixHCELy4"

# RFC 5769 §2: short-term credential test vectors.
RFC5769_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
RFC5769_TRANSACTION_ID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "802200105354554e207465737420636c69656e74"  # SOFTWARE "STUN test client"
    "002400046e0001ff"  # PRIORITY
    "80290008932ff9b151263b36"  # ICE-CONTROLLED
    "000600096576746a3a68367659202020"  # USERNAME "evtj:h6vY", padded with spaces
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf"
)
RFC5769_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96"
)
RFC5769_IPV6_RESPONSE = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"
    "80280004c8fb0b4c"
)
TID = bytes(range(12))


def sample(name: str) -> bytes:
    return (DATA / f"wire_chromium_{name}.bin").read_bytes()


def aioice_parse(data: bytes, key: bytes) -> aioice_stun.Message:
    """aioice's parser, which also checks FINGERPRINT, plus its MESSAGE-INTEGRITY check."""
    message = aioice_stun.parse_message(data)
    assert message.check_message_integrity(key)
    return message


def test_message_type_interleaves_method_and_class():
    assert stun.message_type(stun.METHOD_BINDING, stun.CLASS_REQUEST) == 0x0001
    assert stun.message_type(stun.METHOD_BINDING, stun.CLASS_INDICATION) == 0x0011
    assert stun.message_type(stun.METHOD_BINDING, stun.CLASS_SUCCESS) == 0x0101
    assert stun.message_type(stun.METHOD_BINDING, stun.CLASS_ERROR) == 0x0111
    for method in (0x001, 0x003, 0x00A, 0xFFF):
        for message_class in range(4):
            assert stun.split_message_type(stun.message_type(method, message_class)) == (method, message_class)


# --- RFC 5769 vectors ----------------------------------------------------------------------


def test_rfc5769_request():
    message = stun.parse(RFC5769_REQUEST)
    assert (message.method, message.message_class) == (stun.METHOD_BINDING, stun.CLASS_REQUEST)
    assert message.transaction_id == RFC5769_TRANSACTION_ID
    assert message.get(stun.ATTR_SOFTWARE) == b"STUN test client"
    assert message.username == "evtj:h6vY"
    assert message.priority == 0x6E0001FF
    assert message.ice_controlled == 0x932FF9B151263B36 and message.ice_controlling is None
    assert not message.use_candidate
    assert stun.verify_message_integrity(RFC5769_REQUEST, RFC5769_PASSWORD)
    assert not stun.verify_message_integrity(RFC5769_REQUEST, b"VOkJxbRl1RmTxUk/WvJxBr")
    assert stun.verify_fingerprint(RFC5769_REQUEST)


@pytest.mark.parametrize(
    ("data", "address"),
    [
        (RFC5769_IPV4_RESPONSE, ("192.0.2.1", 32853)),
        (RFC5769_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
    ],
)
def test_rfc5769_responses(data, address):
    message = stun.parse(data)
    assert message.message_class == stun.CLASS_SUCCESS
    assert message.xor_mapped_address == address
    assert stun.verify_message_integrity(data, RFC5769_PASSWORD)
    assert stun.verify_fingerprint(data)


# --- captured Chromium messages ------------------------------------------------------------


def test_chromium_connectivity_check():
    data = sample("stun_request")
    assert stun.is_stun(data)
    message = stun.parse(data)
    assert (message.method, message.message_class) == (stun.METHOD_BINDING, stun.CLASS_REQUEST)
    assert message.username == "Jbv0:qavl"  # our ufrag : Chromium's ufrag
    assert message.use_candidate and message.ice_controlling is not None and message.ice_controlled is None
    assert message.priority is not None and message.priority >> 24 in range(1, 127)
    assert [t for t, _ in message.attributes] == [
        stun.ATTR_USERNAME,
        stun.ATTR_GOOG_NETWORK_INFO,
        stun.ATTR_ICE_CONTROLLING,
        stun.ATTR_USE_CANDIDATE,
        stun.ATTR_PRIORITY,
        stun.ATTR_MESSAGE_INTEGRITY,
        stun.ATTR_FINGERPRINT,
    ]
    assert stun.verify_message_integrity(data, CHROMIUM_REQUEST_KEY)
    assert not stun.verify_message_integrity(data, CHROMIUM_SUCCESS_KEY)
    assert stun.verify_fingerprint(data)
    theirs = aioice_parse(data, CHROMIUM_REQUEST_KEY)
    assert theirs.attributes["USERNAME"] == message.username
    assert theirs.attributes["PRIORITY"] == message.priority
    assert theirs.attributes["ICE-CONTROLLING"] == message.ice_controlling


def test_chromium_binding_success():
    data = sample("stun_success")
    message = stun.parse(data)
    assert message.message_class == stun.CLASS_SUCCESS
    assert message.xor_mapped_address == aioice_stun.parse_message(data).attributes["XOR-MAPPED-ADDRESS"]
    assert stun.verify_message_integrity(data, CHROMIUM_SUCCESS_KEY)
    assert stun.verify_fingerprint(data)


def test_tampering_is_detected():
    data = bytearray(sample("stun_request"))
    data[25] ^= 0x01  # inside USERNAME
    assert not stun.verify_message_integrity(bytes(data), CHROMIUM_REQUEST_KEY)
    assert not stun.verify_fingerprint(bytes(data))
    assert not stun.verify_message_integrity(sample("stun_request")[:-8], b"")  # no MI-valid length


def test_attribute_after_message_integrity_invalidates_it():
    data = stun.build_binding_request(TID, "a:b", b"key", 1, controlling_tiebreaker=1)
    without_fingerprint = data[:-8]
    # Append SOFTWARE after MESSAGE-INTEGRITY and fix up the length field.
    forged = bytearray(without_fingerprint + struct.pack("!HH", stun.ATTR_SOFTWARE, 4) + b"evil")
    struct.pack_into("!H", forged, 2, len(forged) - 20)
    assert not stun.verify_message_integrity(bytes(forged), b"key")
    # Without the FINGERPRINT the integrity alone still verifies.
    fixed = bytearray(without_fingerprint)
    struct.pack_into("!H", fixed, 2, len(fixed) - 20)
    assert stun.verify_message_integrity(bytes(fixed), b"key")
    assert not stun.verify_fingerprint(bytes(fixed))


def test_fingerprint_must_be_last():
    data = stun.build_binding_error(TID, 400, "Bad Request")
    moved = bytearray(data + struct.pack("!HH", stun.ATTR_SOFTWARE, 0))
    struct.pack_into("!H", moved, 2, len(moved) - 20)
    assert stun.parse(bytes(moved)).get(stun.ATTR_FINGERPRINT) is not None
    assert not stun.verify_fingerprint(bytes(moved))


def test_message_without_integrity_or_fingerprint():
    data = bytes.fromhex("000100002112a442") + TID
    message = stun.parse(data)
    assert message.attributes == [] and message.username is None and message.priority is None
    assert not stun.verify_message_integrity(data, b"k") and not stun.verify_fingerprint(data)


# --- builders, checked by aioice --------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8::42", "2001:db8::42"),
        ("::ffff:192.0.2.9", "192.0.2.9"),  # dual-stack socket view of an IPv4 peer
    ],
)
def test_binding_success_is_accepted_by_aioice(host, expected):
    data = stun.build_binding_success(TID, (host, 54321), b"password")
    theirs = aioice_parse(data, b"password")
    assert theirs.message_method == aioice_stun.Method.BINDING
    assert theirs.message_class == aioice_stun.Class.RESPONSE
    assert theirs.transaction_id == TID
    assert theirs.attributes["XOR-MAPPED-ADDRESS"] == (expected, 54321)
    assert list(theirs.attributes)[-2:] == ["MESSAGE-INTEGRITY", "FINGERPRINT"]
    message = stun.parse(data)
    assert message.xor_mapped_address == (expected, 54321)
    assert stun.verify_message_integrity(data, b"password") and stun.verify_fingerprint(data)


def test_binding_success_matches_aioice_bytes():
    theirs = aioice_stun.Message(
        message_method=aioice_stun.Method.BINDING, message_class=aioice_stun.Class.RESPONSE, transaction_id=TID
    )
    theirs.attributes["XOR-MAPPED-ADDRESS"] = ("192.0.2.7", 54321)
    theirs.add_message_integrity(b"password")
    theirs.add_fingerprint()
    assert stun.build_binding_success(TID, ("192.0.2.7", 54321), b"password") == bytes(theirs)


def test_binding_error():
    data = stun.build_binding_error(TID, 487, "Role Conflict", b"pw")
    theirs = aioice_parse(data, b"pw")
    assert theirs.message_class == aioice_stun.Class.ERROR
    assert theirs.attributes["ERROR-CODE"] == (487, "Role Conflict")
    message = stun.parse(data)
    assert message.message_class == stun.CLASS_ERROR
    assert message.error_code == (487, "Role Conflict")
    unsigned = stun.build_binding_error(TID, 401, "Unauthorized")
    assert [t for t, _ in stun.parse(unsigned).attributes] == [stun.ATTR_ERROR_CODE, stun.ATTR_FINGERPRINT]
    assert stun.verify_fingerprint(unsigned) and not stun.verify_message_integrity(unsigned, b"pw")
    assert aioice_stun.parse_message(unsigned).attributes["ERROR-CODE"] == (401, "Unauthorized")


def test_binding_request_matches_aioice():
    data = stun.build_binding_request(
        TID, "remote:local", b"secret", 0x6E7F1EFF, controlling_tiebreaker=99, use_candidate=True
    )
    theirs = aioice_parse(data, b"secret")
    assert theirs.message_class == aioice_stun.Class.REQUEST
    assert theirs.attributes["USERNAME"] == "remote:local"
    assert theirs.attributes["PRIORITY"] == 0x6E7F1EFF
    assert theirs.attributes["ICE-CONTROLLING"] == 99
    assert "USE-CANDIDATE" in theirs.attributes
    reference = aioice_stun.Message(
        message_method=aioice_stun.Method.BINDING, message_class=aioice_stun.Class.REQUEST, transaction_id=TID
    )
    reference.attributes["USERNAME"] = "remote:local"
    reference.attributes["PRIORITY"] = 0x6E7F1EFF
    reference.attributes["ICE-CONTROLLING"] = 99
    reference.attributes["USE-CANDIDATE"] = None
    reference.add_message_integrity(b"secret")
    reference.add_fingerprint()
    assert data == bytes(reference)
    controlled = stun.parse(stun.build_binding_request(TID, "a:b", b"k", 5, controlled_tiebreaker=7))
    assert controlled.ice_controlled == 7 and controlled.ice_controlling is None and not controlled.use_candidate


def test_aioice_request_parses_and_verifies():
    request = aioice_stun.Message(
        message_method=aioice_stun.Method.BINDING, message_class=aioice_stun.Class.REQUEST, transaction_id=TID
    )
    request.attributes["USERNAME"] = "ours:theirs"
    request.attributes["PRIORITY"] = 1853824767
    request.attributes["ICE-CONTROLLED"] = 0xFFFFFFFFFFFFFFFF
    request.add_message_integrity(b"pwd")
    request.add_fingerprint()
    data = bytes(request)
    message = stun.parse(data)
    assert (message.username, message.priority, message.ice_controlled) == ("ours:theirs", 1853824767, 2**64 - 1)
    assert stun.verify_message_integrity(data, b"pwd") and stun.verify_fingerprint(data)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: stun.build_binding_success(b"short", ("1.2.3.4", 1), b"k"), "transaction_id"),
        (lambda: stun.build_binding_success(TID, ("not-an-ip", 1), b"k"), "not-an-ip"),
        (lambda: stun.build_binding_success(TID, ("1.2.3.4", 70000), b"k"), "port"),
        (lambda: stun.build_binding_error(TID, 200, "OK"), "code"),
        (lambda: stun.build_binding_error(TID, 400, "x" * 128), "reason"),
        (lambda: stun.build_binding_request(TID, "u" * 514, b"k", 1), "username"),
        (lambda: stun.build_binding_request(TID, "u", b"k", 1 << 32), "priority"),
        (lambda: stun.build_binding_request(TID, "u", b"k", 1, 1 << 64), "tiebreaker"),
        (lambda: stun.build_binding_request(TID, "u", b"k", 1, 1, controlled_tiebreaker=2), "controlled"),
    ],
)
def test_builders_reject_bad_arguments(call, field):
    with pytest.raises(ValueError, match=field):
        call()


# --- parse errors ---------------------------------------------------------------------------


def _message(body: bytes, length: int | None = None, type_field: int = 1, cookie: int = stun.MAGIC_COOKIE) -> bytes:
    return struct.pack("!HHI", type_field, len(body) if length is None else length, cookie) + TID + body


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x00\x01\x00\x00", "STUN header"),
        (_message(b"", type_field=0xC001), "message type"),
        (_message(b"", cookie=0x2112A443), "magic cookie"),
        (_message(b"\0\0\0\0\0\0", length=6), "not a multiple of 4"),
        (_message(b"", length=4), "header says 4"),
        (_message(struct.pack("!HH", 0x8022, 9) + b"abcd"), "0x8022: length 9"),
        (_message(struct.pack("!HH", stun.ATTR_PRIORITY, 2) + b"\0\0\0\0"), "0x0024: length 2, expected 4"),
        (_message(struct.pack("!HH", stun.ATTR_USE_CANDIDATE, 4) + b"\0\0\0\0"), "0x0025"),
        (_message(struct.pack("!HH", stun.ATTR_MESSAGE_INTEGRITY, 4) + b"\0\0\0\0"), "0x0008"),
        (_message(struct.pack("!HH", stun.ATTR_ERROR_CODE, 2) + b"\0\0\0\0"), "ERROR-CODE"),
        (_message(struct.pack("!HH", stun.ATTR_XOR_MAPPED_ADDRESS, 8) + b"\0\x03\0\0\0\0\0\0"), "family"),
        (_message(struct.pack("!HH", stun.ATTR_XOR_MAPPED_ADDRESS, 20) + b"\0\x01" + bytes(18)), "length 20"),
    ],
)
def test_parse_errors_name_the_field(data, field):
    with pytest.raises(ValueError, match=field):
        stun.parse(data)
    assert not stun.verify_fingerprint(data)
    assert not stun.verify_message_integrity(data, b"k")


def test_is_stun_classifies_first_bytes():
    assert stun.is_stun(RFC5769_REQUEST) and stun.is_stun(sample("stun_success"))
    assert not stun.is_stun(sample("vp8_key"))  # RTP: first byte 0x80
    assert not stun.is_stun(bytes.fromhex("16fefd") + bytes(30))  # DTLS record
    assert not stun.is_stun(RFC5769_REQUEST[:19])
    assert not stun.is_stun(_message(b"", cookie=1))


# --- fuzz: only ValueError ever escapes -------------------------------------------------------

stun_like = st.one_of(
    st.binary(max_size=120),
    st.builds(
        lambda attrs, type_field: _message(attrs[: len(attrs) - len(attrs) % 4], type_field=type_field & 0x3FFF),
        st.binary(max_size=100),
        st.integers(0, 0xFFFF),
    ),
    st.builds(
        lambda pairs: _message(
            b"".join(struct.pack("!HH", t, len(v)) + v + bytes(-len(v) % 4) for t, v in pairs)
        ),
        st.lists(
            st.tuples(
                st.sampled_from(
                    [0x0006, 0x0008, 0x0009, 0x0020, 0x0024, 0x0025, 0x8028, 0x8029, 0x802A, 0xC057, 0x7777]
                ),
                st.binary(max_size=24),
            ),
            max_size=6,
        ),
    ),
)


@FUZZ
@given(stun_like)
def test_fuzz_parse_raises_only_value_error(data):
    try:
        message = stun.parse(data)
    except ValueError:
        pass
    else:
        # The typed accessors never raise on a message parse() accepted.
        message.username, message.priority, message.use_candidate  # noqa: B018
        message.ice_controlling, message.ice_controlled, message.error_code  # noqa: B018
        message.xor_mapped_address, repr(message)  # noqa: B018
        assert stun.is_stun(data)
    assert stun.verify_message_integrity(data, b"key") in (True, False)
    assert stun.verify_fingerprint(data) in (True, False)
    stun.is_stun(memoryview(data))
