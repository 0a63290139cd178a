"""common.messages: from_dict checks every field against its declared type and raises
MessageError naming it; to_dict/from_dict round-trip. The fuzz target "messages"
(tests/fuzz) does this for every registered message."""

from __future__ import annotations

import pytest

import recorder.api  # noqa: F401  (registers the recorder's messages)
import sfu.api  # noqa: F401  (registers the worker's messages)
from common.messages import MessageError, message_class

START = {
    "recording_id": "rec",
    "meeting_id": "m",
    "meeting_number": "123",
    "title": "t",
    "customer_id": "c",
    "storage": {"kind": "local", "root": "/tmp"},
    "key_prefix": "k/",
    "started_at": 1700000000.5,
}


def test_round_trip():
    start = message_class("RECORDING_START").from_dict(START)
    assert message_class("RECORDING_START").from_dict(start.to_dict()) == start
    assert message_class("RECORDING_START").from_dict({**START, "started_at": 17}).started_at == 17.0


@pytest.mark.parametrize("value", ["1700000000", None, True, [], {}, 10**400])
def test_a_float_field_takes_only_a_number(value):
    # Found writing the fuzz target "messages": a float field took any value (a string went straight through to
    # the recorder), and an integer too large for a float raised OverflowError.
    with pytest.raises(MessageError, match="started_at"):
        message_class("RECORDING_START").from_dict({**START, "started_at": value})
    with pytest.raises(MessageError, match="gauges"):
        message_class("WORKER_STATS").from_dict({"gauges": {"x": value}})
