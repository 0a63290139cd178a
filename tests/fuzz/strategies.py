"""Structure-aware Hypothesis strategies for the fuzz targets (tests/fuzz/targets.py).

Each target's strategy mixes three sources, so the search reaches deep code and not only
the first length check:
- valid inputs built by the module's own serializers from drawn fields (packets,
  compounds, SDP lines, JSON messages), which also feed the round-trip checks;
- those and the seed corpus mutated (`mutated`): bit flips, interesting bytes and 16/32-bit
  values, truncation, insertion, deletion, duplication and splicing, as libFuzzer's
  mutators do, but shrinkable;
- plain random bytes.
"""

from __future__ import annotations

import functools
import json
import typing

from hypothesis import strategies as st

from control.meeting import protocol
from sfu.wire import rtcp, rtp, stun
from tests.fuzz import targets

INTERESTING_BYTES = (0x00, 0x01, 0x02, 0x03, 0x0F, 0x10, 0x1F, 0x20, 0x3F, 0x40, 0x7F, 0x80, 0x81, 0xBE, 0xDE, 0xFE, 0xFF)
INTERESTING_WORDS = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0x3FFF, 0x7FFF, 0x8000, 0xBEDE, 0xFFFE, 0xFFFF)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes], max_ops: int = 6) -> bytes:
    """`base`, then up to `max_ops` byte-level mutations."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.integers(0, 8))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 0 and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and data:
            data[at] = draw(st.sampled_from(INTERESTING_BYTES) | u8)
        elif op == 2 and len(data) >= 2:
            at = min(at, len(data) - 2)
            data[at : at + 2] = draw(st.sampled_from(INTERESTING_WORDS)).to_bytes(2, "big")
        elif op == 3 and len(data) >= 4:
            at = min(at, len(data) - 4)
            data[at : at + 4] = draw(st.sampled_from((0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)) | u32).to_bytes(4, "big")
        elif op == 4:
            del data[draw(st.integers(0, len(data))) :]  # truncate
        elif op == 5:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == 6 and data:
            del data[at : at + draw(st.integers(1, 16))]
        elif op == 7 and data:
            chunk = data[at : at + draw(st.integers(1, 32))]
            where = draw(st.integers(0, len(data)))
            data[where:where] = chunk * draw(st.integers(1, 4))
        elif op == 8:
            other = draw(base)
            cut = draw(st.integers(0, len(other)))
            data[at:] = other[cut:]  # splice
    return bytes(data)


def fuzz_input(structured: st.SearchStrategy[bytes], seeds: list[bytes], max_random: int = 256) -> st.SearchStrategy[bytes]:
    valid = structured | st.sampled_from(seeds)
    return st.one_of(valid, mutated(valid), st.binary(max_size=max_random))


# ----------------------------------------------------------------------------- RTP / RTCP / STUN / DTLS

one_byte_extensions = st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=16), max_size=4)
two_byte_extensions = st.dictionaries(st.integers(1, 255), st.binary(max_size=20), max_size=4)


@st.composite
def rtp_packets(draw: st.DrawFn) -> bytes:
    two_byte = draw(st.booleans())
    return rtp.build_packet(
        draw(st.integers(0, 127)), draw(u16), draw(u32), draw(u32), draw(st.binary(max_size=64)),
        marker=draw(st.booleans()), extensions=draw(two_byte_extensions if two_byte else one_byte_extensions),
        csrcs=draw(st.lists(u32, max_size=4)), padding=draw(st.sampled_from((0, 0, 1, 4, 255))), two_byte=two_byte,
    )  # fmt: skip


def _safe_transport_feedback(*args: typing.Any) -> bytes | None:
    try:
        return rtcp.build_transport_feedback(*args)
    except ValueError:  # a receive delta beyond 16 bits: the builder says so
        return None


report_blocks = st.builds(rtcp.ReportBlock, u32, u8, st.integers(rtcp.CUMULATIVE_LOST_MIN, rtcp.CUMULATIVE_LOST_MAX),
                          u32, u32, u32, u32)  # fmt: skip
rtcp_members = st.one_of(
    st.builds(rtcp.build_sr, u32, st.integers(0, rtcp.NTP_MAX), u32, u32, u32, st.lists(report_blocks, max_size=3)),
    st.builds(rtcp.build_rr, u32, st.lists(report_blocks, max_size=3)),
    st.builds(rtcp.build_sdes, u32, st.text(max_size=40)),
    st.builds(rtcp.build_bye, st.lists(u32, max_size=4), st.none() | st.text(max_size=20)),
    st.builds(rtcp.build_pli, u32, u32),
    st.builds(rtcp.build_fir, u32, u32, u8),
    st.builds(rtcp.build_nack, u32, u32, st.lists(u16, min_size=1, max_size=40)),
    st.builds(rtcp.build_remb, u32, st.integers(0, 10**10), st.lists(u32, max_size=4)),
    st.builds(_safe_transport_feedback, u32, u32, u16, u8, st.integers(0, 2**30),
              st.lists(st.none() | st.integers(0, 10**7), min_size=1, max_size=60)),
    st.builds(lambda pt, count, body: bytes([0x80 | count, pt, 0, len(body) // 4]) + body,
              st.integers(192, 223), st.integers(0, 31), st.binary(max_size=32).map(lambda b: b + bytes(-len(b) % 4))),
)  # fmt: skip


def rtcp_compounds() -> st.SearchStrategy[bytes]:
    return st.lists(rtcp_members.filter(lambda m: m is not None), min_size=1, max_size=4).map(b"".join)


attributes = st.tuples(st.sampled_from((0x0006, 0x0008, 0x0009, 0x0020, 0x0024, 0x0025, 0x8028, 0x8029, 0x802A,
                                        0x8022, 0xC057)) | u16, st.binary(max_size=40))  # fmt: skip


@st.composite
def stun_messages(draw: st.DrawFn) -> bytes:
    transaction = draw(st.binary(min_size=12, max_size=12))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return stun.build_binding_request(
            transaction, draw(st.text(max_size=30)), draw(st.binary(max_size=24)), draw(u32),
            draw(st.none() | st.integers(0, 2**64 - 1)), draw(st.booleans()),
        )  # fmt: skip
    if kind == 1:
        host = draw(st.ip_addresses()).exploded
        return stun.build_binding_success(transaction, (host, draw(u16)), draw(st.binary(max_size=24)))
    if kind == 2:
        return stun.build_binding_error(transaction, draw(st.integers(300, 699)), draw(st.text(max_size=30)))
    # Raw attributes, each padded: framing right, contents anything.
    body = b"".join(
        attr_type.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value + bytes(-len(value) % 4)
        for attr_type, value in draw(st.lists(attributes, max_size=6))
    )
    header = draw(u16.map(lambda t: t & 0x3FFF)).to_bytes(2, "big") + len(body).to_bytes(2, "big")
    return header + b"\x21\x12\xa4\x42" + transaction + body


@st.composite
def dtls_datagrams(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        body = draw(st.binary(max_size=60))
        length = draw(st.just(len(body)) | u16)
        version = draw(st.sampled_from((b"\xfe\xfd", b"\xfe\xff", b"\x03\x03")))
        out += bytes([draw(st.integers(20, 24) | u8)]) + version + bytes(8) + length.to_bytes(2, "big") + body
    return out


# ----------------------------------------------------------------------------- SDP

SDP_PIECES = [token.decode() for token in targets.SDP_TOKENS] + [" ", ":", "/", ";", "\t", "\x00", "\u0661", "é"]


@functools.cache
def _sdp_lines() -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(seed.decode().replace("\r\n", "\n").split("\n")) for seed in targets.seeds_sdp())


@st.composite
def sdp_texts(draw: st.DrawFn) -> bytes:
    """A captured offer or answer, edited line by line and token by token."""
    captures = _sdp_lines()
    lines = list(draw(st.sampled_from(captures)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.integers(0, 5))
        index = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if op == 0 and lines:
            del lines[index]
        elif op == 1 and lines:
            lines.insert(draw(st.integers(0, len(lines))), lines[index])
        elif op == 2:
            lines.insert(index, draw(st.sampled_from(draw(st.sampled_from(captures)))))
        elif op == 3 and lines:
            tokens = lines[index].split(" ")
            tokens[draw(st.integers(0, len(tokens) - 1))] = draw(st.sampled_from(SDP_PIECES) | st.text(max_size=6))
            lines[index] = " ".join(tokens)
        elif op == 4 and lines:
            cut = draw(st.integers(0, len(lines[index])))
            lines[index] = lines[index][:cut] + draw(st.sampled_from(SDP_PIECES) | st.text(max_size=4))
        elif op == 5 and lines:
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
    ending = draw(st.sampled_from(("\r\n", "\n")))
    return ending.join(lines).encode("utf-8", "surrogatepass")


# ----------------------------------------------------------------------------- codecs and bitstream


@st.composite
def vp8_payloads(draw: st.DrawFn) -> bytes:
    first = draw(st.booleans()) << 7 | draw(st.booleans()) << 5 | draw(st.booleans()) << 4 | draw(st.integers(0, 7))
    out = bytearray([first])
    if first & 0x80:
        flags = draw(st.integers(0, 15)) << 4
        out.append(flags)
        if flags & 0x80:
            out += draw(st.sampled_from((b"\x05", b"\x81\x02", b"\xff\xff")))
        if flags & 0x40:
            out.append(draw(u8))
        if flags & 0x30:
            out.append(draw(u8))
    return bytes(out) + draw(st.binary(max_size=12))


@st.composite
def h264_payloads(draw: st.DrawFn) -> bytes:
    nal_type = draw(st.sampled_from((1, 5, 6, 7, 8, 24, 28, 25, 29)) | st.integers(0, 31))
    head = bytes([draw(st.integers(0, 7)) << 5 | nal_type])
    if nal_type == 24:
        nals = draw(st.lists(st.binary(min_size=1, max_size=10), max_size=4))
        return head + b"".join(len(n).to_bytes(2, "big") + n for n in nals)
    if nal_type == 28:
        return head + bytes([draw(u8)]) + draw(st.binary(max_size=10))
    return head + draw(st.binary(max_size=10))


@st.composite
def sps_fields(draw: st.DrawFn) -> targets.Sps:
    profile = draw(st.sampled_from((66, 77, 88, 100, 110, 122, 244, 44)))
    high = profile not in (66, 77, 88)
    chroma = draw(st.integers(0, 3)) if high else 1
    lists: tuple = ()
    if high and draw(st.booleans()):
        lists = tuple(draw(st.none() | st.lists(st.integers(-128, 127), max_size=64).map(tuple))
                      for _ in range(8 if chroma != 3 else 12))  # fmt: skip
    frame_mbs_only = draw(st.integers(0, 1))
    width, height = draw(st.integers(1, 512)), draw(st.integers(1, 300))
    sps = targets.Sps(profile, chroma, draw(st.integers(0, 1)) if chroma == 3 else 0, lists, draw(st.integers(0, 2)),
                      tuple(draw(st.lists(st.integers(-100, 100), max_size=6))), width, height, frame_mbs_only, None)
    if draw(st.booleans()):
        sps.crop = (draw(st.integers(0, 8)), draw(st.integers(0, 8)), draw(st.integers(0, 8)), draw(st.integers(0, 8)))
        if min(sps.dimensions()) <= 0:
            sps.crop = None  # cropped to nothing: the reader refuses it (tested by the target)
    return sps


bitstream_inputs = st.one_of(
    sps_fields().map(lambda sps: sps.nal()),
    st.lists(sps_fields().map(lambda sps: sps.nal()) | st.binary(min_size=1, max_size=8), max_size=3).map(
        lambda units: b"".join(b"\x00\x00\x00\x01" + u for u in units)
    ),
    st.builds(lambda tag, w, h, rest: bytes([tag & 0xFE, 0, 0]) + b"\x9d\x01\x2a" + w.to_bytes(2, "little")
              + h.to_bytes(2, "little") + rest, u8, u16, u16, st.binary(max_size=8)),
    st.builds(lambda toc, rest: bytes([toc]) + rest, u8, st.binary(max_size=3)),
)  # fmt: skip


# ----------------------------------------------------------------------------- recorder: depacketize


@st.composite
def packet_streams(draw: st.DrawFn) -> bytes:
    """A codec byte and RTP packets of a few frames, with drawn losses, reordering and markers."""
    codec = draw(st.integers(0, 2))
    payload = {0: vp8_payloads(), 1: h264_payloads(), 2: st.binary(min_size=1, max_size=8)}[codec]
    seq, ts = draw(u16), draw(u32)
    packets = []
    for _ in range(draw(st.integers(1, 12))):
        seq = (seq + draw(st.sampled_from((1, 1, 1, 0, 2, 30000)))) & 0xFFFF
        ts = (ts + draw(st.sampled_from((0, 0, 3000, 90000)))) & 0xFFFFFFFF
        packets.append(rtp.build_packet(96, seq, ts, 1, draw(payload), marker=draw(st.booleans())))
    if len(packets) > 1 and draw(st.booleans()):
        i, j = draw(st.integers(0, len(packets) - 1)), draw(st.integers(0, len(packets) - 1))
        packets[i], packets[j] = packets[j], packets[i]
    return targets.packet_stream(codec, packets)


# ----------------------------------------------------------------------------- JSON: signaling, channel, messages

lone_surrogates = st.sampled_from(("\ud800", "a\udfffb", "\udbff\udbff", "\U0001f600"))
json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(-(10**400), 10**400)
                | st.floats(allow_nan=True) | st.text(max_size=20) | lone_surrogates)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
deep = st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)


def _dump(value: typing.Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


@st.composite
def signaling_texts(draw: st.DrawFn) -> bytes:
    seeds = [json.loads(seed) for seed in targets.seeds_signaling()]
    message = dict(draw(st.sampled_from(seeds)))
    if draw(st.booleans()):
        message["type"] = draw(st.sampled_from(sorted(protocol.CLIENT_TYPES)) | st.text(max_size=8))
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(("id", "type", "name", "token", "sdp", "tracks", "mid", "source", "text", "muted",
                                    "track_id", "enabled", "action", "hints", "decision")) | st.text(max_size=5))
        if draw(st.integers(0, 4)) == 0:
            message.pop(key, None)
        else:
            message[key] = draw(json_values | lone_surrogates | st.lists(json_values, max_size=20))
    text = _dump(message, draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        text = text[:-1] + "," + draw(deep) + "}"
    return text.encode("utf-8", "surrogatepass")


@st.composite
def envelopes(draw: st.DrawFn) -> dict:
    envelope = json.loads(json.dumps(draw(st.sampled_from(targets.example_envelopes()))))
    data = envelope["data"]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.integers(0, 4))
        fields = sorted(data) or ["x"]
        name = draw(st.sampled_from(fields))
        if op == 0:
            data.pop(name, None)
        elif op == 1:
            data[name] = draw(json_values)
        elif op == 2:
            data[draw(st.text(max_size=6))] = draw(json_values)
        elif op == 3 and isinstance(data.get(name), (list, dict)):
            data[name] = draw(json_values)
        elif op == 4:
            envelope[draw(st.sampled_from(("name", "data", "id")))] = draw(json_values)
    return envelope


@st.composite
def message_texts(draw: st.DrawFn) -> bytes:
    return _dump(draw(envelopes()), draw(st.booleans())).encode("utf-8", "surrogatepass")


@st.composite
def channel_streams(draw: st.DrawFn) -> bytes:
    frames = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 5)) == 0:
            body = draw(deep | st.text(max_size=20)).encode("utf-8", "surrogatepass")
            frames.append(len(body).to_bytes(4, "big") + body)
        else:
            frames.append(targets.channel.encode_frame(draw(envelopes())))
    return bytes([draw(u8)]) + b"".join(frames)


# ----------------------------------------------------------------------------- per target


@functools.cache
def for_target(name: str) -> st.SearchStrategy[bytes]:
    seeds = targets.TARGETS[name].seeds()
    structured: dict[str, st.SearchStrategy[bytes]] = {
        "rtp": rtp_packets(),
        "rtcp": rtcp_compounds(),
        "stun": stun_messages(),
        "dtls": dtls_datagrams(),
        "sdp_syntax": sdp_texts(),
        "sdp": sdp_texts(),
        "codecs": vp8_payloads() | h264_payloads(),
        "bitstream": bitstream_inputs,
        "depacketize": packet_streams(),
        "signaling": signaling_texts(),
        "channel": channel_streams(),
        "messages": message_texts(),
        "_selftest": st.just(b"!") | st.binary(max_size=8),  # found within the first inputs
    }
    return fuzz_input(structured[name], seeds)
