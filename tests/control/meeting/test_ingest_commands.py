"""The commands an RTP ingest hands its host (control.meeting.ingest_commands): what each
stream must carry to be recognised by its producer. The ffmpeg command itself is run
verbatim in tests/control/http/test_ingest.py."""

from __future__ import annotations

import base64
import shlex

import pytest

from control.meeting import ingest, ingest_commands

pytestmark = pytest.mark.timeout(10)
KEY = base64.b64encode(bytes(range(30))).decode()


def outputs(command: str) -> list[list[str]]:
    """The ffmpeg command's per-stream arguments, split at each -map."""
    words = shlex.split(command.replace("\\\n", " "))
    starts = [i for i, word in enumerate(words) if word == "-map"]
    return [words[a:b] for a, b in zip(starts, [*starts[1:], len(words)])]


def value(words: list[str], option: str) -> str:
    return words[words.index(option) + 1]


def test_ffmpeg_sends_each_stream_with_its_ssrc_and_payload_type_to_the_port():
    video, audio = outputs(ingest_commands.ffmpeg_command("192.0.2.7", 40000, 11, 22, None))
    assert (value(video, "-map"), value(video, "-c:v"), value(video, "-ssrc"), value(video, "-payload_type")) == (
        "0:v:0", "libvpx", "11", "96")
    assert (value(audio, "-map"), value(audio, "-c:a"), value(audio, "-ssrc"), value(audio, "-payload_type")) == (
        "0:a:0", "libopus", "22", "111")
    for words in (video, audio):
        assert words[-1] == "rtp://192.0.2.7:40000?rtcpport=40000&pkt_size=1200"


def test_ffmpeg_with_srtp_gives_the_key_to_both_streams():
    for words in outputs(ingest_commands.ffmpeg_command("192.0.2.7", 40000, 11, 22, KEY)):
        assert value(words, "-srtp_out_suite") == "AES_CM_128_HMAC_SHA1_80"
        assert value(words, "-srtp_out_params") == KEY
        assert words[-1].startswith("srtp://192.0.2.7:40000?")


def test_an_ipv6_address_is_bracketed_in_ffmpeg_urls():
    command = ingest_commands.ffmpeg_command("2001:db8::1", 40000, 1, 2, None)
    assert "rtp://[2001:db8::1]:40000?" in command


def test_gstreamer_pays_each_stream_with_its_ssrc_and_the_srtp_key_in_hex():
    plain = ingest_commands.gstreamer_command("192.0.2.7", 40000, 11, 22, None)
    assert "rtpvp8pay pt=96 ssrc=11 mtu=1200" in plain and "rtpopuspay pt=111 ssrc=22 mtu=1200" in plain
    assert plain.count("udpsink host=192.0.2.7 port=40000") == 2 and "srtpenc" not in plain
    secure = ingest_commands.gstreamer_command("192.0.2.7", 40000, 11, 22, KEY)
    assert secure.count(f"srtpenc key={bytes(range(30)).hex()} ") == 2


def test_ingest_ssrcs_fit_ffmpegs_signed_option():
    assert all(0 < ingest._ssrc() < 2**31 for _ in range(1000))
