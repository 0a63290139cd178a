"""The commands a host pastes to send into an RTP ingest (control.meeting.ingest): ffmpeg
and GStreamer, one VP8 and one Opus stream to the same port, each with the SSRC and
payload type its producer expects (docs/plain-rtp.md). Pure: text from values.

ffmpeg reads `input.mp4` (replace it with any file or device ffmpeg can read); the
GStreamer pipeline sends test patterns (replace the two sources). Both packetize at 1200
bytes (the worker drops RTP it could not protect for a WebRTC subscriber) and send a
keyframe every second (they ignore the worker's keyframe requests).
"""

from __future__ import annotations

import base64

SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"


def rtp_commands(ip: str, port: int, video_ssrc: int, audio_ssrc: int, srtp_key_base64: str | None) -> dict[str, str]:
    return {
        "ffmpeg": ffmpeg_command(ip, port, video_ssrc, audio_ssrc, srtp_key_base64),
        "gstreamer": gstreamer_command(ip, port, video_ssrc, audio_ssrc, srtp_key_base64),
    }


def ffmpeg_command(ip: str, port: int, video_ssrc: int, audio_ssrc: int, srtp_key_base64: str | None) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    if srtp_key_base64 is None:
        output = f'-f rtp "rtp://{host}:{port}?rtcpport={port}&pkt_size=1200"'
    else:
        output = (f"-f rtp -srtp_out_suite {SRTP_SUITE} -srtp_out_params {srtp_key_base64} "
                  f'"srtp://{host}:{port}?rtcpport={port}&pkt_size=1200"')  # fmt: skip
    return (
        "ffmpeg -nostdin -re -i input.mp4 \\\n"
        f"  -map 0:v:0 -c:v libvpx -deadline realtime -b:v 1M -g 30 -ssrc {video_ssrc} -payload_type 96 \\\n"
        f"  {output} \\\n"
        f"  -map 0:a:0 -c:a libopus -ar 48000 -ac 2 -ssrc {audio_ssrc} -payload_type 111 \\\n"
        f"  {output}"
    )


def gstreamer_command(ip: str, port: int, video_ssrc: int, audio_ssrc: int, srtp_key_base64: str | None) -> str:
    sink = f"udpsink host={ip} port={port}"
    video_srtp = audio_srtp = ""
    if srtp_key_base64 is not None:
        key = base64.b64decode(srtp_key_base64).hex()
        srtp = ("srtpenc key={key} rtp-cipher=aes-128-icm rtp-auth=hmac-sha1-80 "
                "rtcp-cipher=aes-128-icm rtcp-auth=hmac-sha1-80")  # fmt: skip
        video_srtp = audio_srtp = f"{srtp.format(key=key)} ! "
    return (
        "gst-launch-1.0 -e \\\n"
        "  videotestsrc is-live=true ! video/x-raw,width=640,height=360,framerate=30/1 ! "
        f"vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay pt=96 ssrc={video_ssrc} mtu=1200 ! {video_srtp}{sink} \\\n"
        "  audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! "
        f"opusenc ! rtpopuspay pt=111 ssrc={audio_ssrc} mtu=1200 ! {audio_srtp}{sink}"
    )
