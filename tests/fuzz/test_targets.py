"""The fuzz targets in the unit tier: a short structure-aware Hypothesis run per parser
(a few hundred inputs each, seconds in all), the seed corpora, the inputs that once
failed (tests/data/fuzz/<target>/), and the test side's SPS writer against the reader.

The long campaign is `python -m tests.fuzz` (tests/fuzz/__main__.py, docs/security-fuzzing.md).
`CONCLAVE_FUZZ_EXAMPLES=N` runs N inputs per target here instead of the default.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.media import bitstream
from tests.fuzz import strategies, targets

EXAMPLES = int(os.environ.get("CONCLAVE_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
PUBLIC = targets.public_targets()


def test_every_parser_of_the_brief_has_a_target():
    covered = {module for name in PUBLIC for module in targets.TARGETS[name].modules}
    assert covered >= {
        "sfu.wire.rtp", "sfu.wire.rtcp", "sfu.wire.stun", "sfu.wire.sdp", "sfu.wire.sdp_syntax", "sfu.wire.codecs",
        "sfu.wire.dtls", "recorder.media.depacketize", "recorder.media.bitstream", "control.meeting.protocol",
        "common.channel", "common.messages",
    }  # fmt: skip


@pytest.mark.parametrize("name", PUBLIC)
@FUZZ
@given(data=st.data())
def test_fuzz(name, data):
    targets.TARGETS[name].run(data.draw(strategies.for_target(name), label="input"))


@pytest.mark.parametrize("name", PUBLIC)
def test_seeds_hold_the_property(name):
    seeds = targets.TARGETS[name].seeds()
    assert seeds
    for seed in seeds:
        assert len(seed) <= targets.TARGETS[name].max_len, "a seed longer than the campaign's inputs"
        targets.TARGETS[name].run(seed)


@pytest.mark.parametrize(
    "name", [name for name in PUBLIC if targets.regression_inputs(name)] or [pytest.param("-", marks=pytest.mark.skip)]
)
def test_inputs_that_once_failed(name):
    for path in targets.regression_inputs(name):
        targets.TARGETS[name].run(path.read_bytes())


def test_the_selftest_target_fails_as_it_should():
    targets.TARGETS["_selftest"].run(b"fine")
    with pytest.raises(RuntimeError):
        targets.TARGETS["_selftest"].run(b"!")


@settings(max_examples=200, deadline=None)
@given(strategies.sps_fields())
def test_sps_writer_and_reader_agree(sps):
    assert bitstream.h264_sps_dimensions(sps.nal()) == sps.dimensions()
