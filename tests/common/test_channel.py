"""common.channel: the frame decoder (sans-I/O part of the channel) on whole, split and
hostile input. The endpoints are exercised by every worker and recorder test; the fuzz
target "channel" (tests/fuzz) throws arbitrary bytes at the decoder."""

from __future__ import annotations

import pytest

from common.channel import FrameDecoder, encode_frame, parse_message
from common.messages import MessageError

ENVELOPE = {"type": "request", "id": 1, "name": "ROUTER_CREATE", "data": {"router_id": "r"}}


def test_frames_split_anywhere_decode_once():
    stream = encode_frame(ENVELOPE) + encode_frame({**ENVELOPE, "id": 2})
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == [ENVELOPE, {**ENVELOPE, "id": 2}]


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"a":' * 100_000, b"\xff\xfe", b"nope", b"[1, 2]"],
)
def test_bad_bodies_raise_value_error(body):
    # The nested ones were found writing the fuzz target "channel": json.loads raised RecursionError, which
    # the channel's read loop does not catch (it ended the loop with a traceback).
    with pytest.raises(ValueError):
        FrameDecoder().feed(len(body).to_bytes(4, "big") + body)


def test_a_frame_over_the_limit_is_refused_before_it_is_read():
    decoder = FrameDecoder(max_frame=10)
    with pytest.raises(ValueError, match="exceeds"):
        decoder.feed((11).to_bytes(4, "big"))


def test_parse_message_names_what_is_wrong():
    assert parse_message(ENVELOPE).router_id == "r"  # type: ignore[attr-defined]
    with pytest.raises(MessageError, match="no message name"):
        parse_message({"data": {}})
    with pytest.raises(MessageError, match="unknown message name"):
        parse_message({"name": "NOPE"})
