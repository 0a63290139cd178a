"""A WHEP player made of GStreamer's webrtcbin, driven from python3-gi (Debian 12 has no
whepsrc). Run with the system Python, not the project's virtualenv:

    /usr/bin/python3 -I tests/support/whep_gst_player.py URL TOKEN PCM_PATH

(-I: the script's own directory holds an http.py that would shadow the standard one.)

It offers recvonly Opus audio and VP8 video, POSTs the offer (application/sdp, Bearer
TOKEN), applies the answer, decodes both, and prints one JSON line per second:
{"state", "video_frames", "width", "height", "audio_samples", "resource"}. The decoded
audio goes to PCM_PATH as 48 kHz mono signed 16-bit samples. SIGTERM: DELETE the session
resource, then exit 0. Traffic: 127.0.0.1 only (libnice skips loopback unless told).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO_CAPS = "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000"
AUDIO_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"


class Player:
    def __init__(self, url: str, token: str, pcm_path: str) -> None:
        self.url, self.token = url, token
        self.pcm = open(pcm_path, "wb")
        self.lock = threading.Lock()
        self.video_frames = self.audio_samples = self.width = self.height = 0
        self.resource: str | None = None
        self.state = "starting"
        self.offered = False
        self.pipeline = Gst.Pipeline.new("player")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipeline.add(self.webrtc)
        # Keep the agent's Python wrapper for the player's life: webrtcbin 1.22's getter
        # gives a reference the wrapper drops on collection, which frees the agent.
        self.ice_agent = self.webrtc.get_property("ice-agent")
        self.ice_agent.emit("add-local-ip-address", "127.0.0.1")
        for caps in (AUDIO_CAPS, VIDEO_CAPS):
            direction = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
            self.webrtc.emit("add-transceiver", direction, Gst.Caps.from_string(caps))
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("pad-added", self.on_pad_added)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice_state)

    # -- signaling ---------------------------------------------------------------

    def on_negotiation_needed(self, element: Gst.Element) -> None:
        # webrtcbin asks again while its first offer is out; a WHEP player offers once.
        if self.offered:
            return
        self.offered = True
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, None, None)
        element.emit("create-offer", None, promise)

    def on_offer_created(self, promise: Gst.Promise, *_: object) -> None:
        reply = promise.get_reply()  # owns the offer: kept until it is used
        offer = reply.get_value("offer")
        text = offer.sdp.as_text()
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())
        threading.Thread(target=self.post_offer, args=(text,), daemon=True).start()

    def post_offer(self, offer: str) -> None:
        request = urllib.request.Request(
            self.url, data=offer.encode(), method="POST",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self.token}"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                answer = reply.read().decode()
                self.resource = urllib.parse.urljoin(self.url, reply.headers["Location"])
        except urllib.error.HTTPError as exc:
            self.state = f"refused {exc.code}"
            return
        except urllib.error.URLError as exc:
            self.state = f"unreachable: {exc.reason}"
            return
        GLib.idle_add(self.apply_answer, answer)

    def apply_answer(self, answer: str) -> bool:
        _, message = GstSdp.SDPMessage.new_from_text(answer)
        description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        self.webrtc.emit("set-remote-description", description, Gst.Promise.new())
        self.state = "answered"
        return False

    def on_ice_state(self, element: Gst.Element, _: object) -> None:
        state = element.get_property("ice-connection-state")
        self.state = f"ice-{state.value_nick}"

    def delete(self) -> None:
        if self.resource is None:
            return
        request = urllib.request.Request(self.resource, method="DELETE",
                                         headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except urllib.error.URLError:
            pass

    # -- media -------------------------------------------------------------------

    def on_pad_added(self, _: Gst.Element, pad: Gst.Pad) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self.on_decoded_pad)
        self.pipeline.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def on_decoded_pad(self, _: Gst.Element, pad: Gst.Pad) -> None:
        kind = "video" if pad.get_current_caps().to_string().startswith("video") else "audio"
        if kind == "video":
            chain = "videoconvert ! fakesink name=video sync=false"
        else:
            chain = ("audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! "
                     "fakesink name=audio sync=false")  # fmt: skip
        sink_bin = Gst.parse_bin_from_description(chain, True)
        sink = sink_bin.get_by_name(kind)
        sink.set_property("signal-handoffs", True)
        sink.connect("handoff", self.on_video if kind == "video" else self.on_audio)
        self.pipeline.add(sink_bin)
        sink_bin.sync_state_with_parent()
        pad.link(sink_bin.get_static_pad("sink"))

    def on_video(self, _: Gst.Element, buffer: Gst.Buffer, pad: Gst.Pad) -> None:
        structure = pad.get_current_caps().get_structure(0)
        with self.lock:
            self.video_frames += 1
            self.width, self.height = structure.get_value("width"), structure.get_value("height")

    def on_audio(self, _: Gst.Element, buffer: Gst.Buffer, pad: Gst.Pad) -> None:
        data = buffer.extract_dup(0, buffer.get_size())
        with self.lock:
            self.pcm.write(data)
            self.audio_samples += len(data) // 2

    def report(self) -> bool:
        with self.lock:
            self.pcm.flush()
            line = {"state": self.state, "video_frames": self.video_frames, "width": self.width,
                    "height": self.height, "audio_samples": self.audio_samples, "resource": self.resource}  # fmt: skip
        print(json.dumps(line), flush=True)
        return True


def main() -> int:
    url, token, pcm_path = sys.argv[1:4]
    Gst.init(None)
    player = Player(url, token, pcm_path)
    loop = GLib.MainLoop()

    def stop(*_: object) -> bool:
        player.delete()
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, stop)
    GLib.timeout_add(1000, player.report)
    player.pipeline.set_state(Gst.State.PLAYING)
    try:
        loop.run()
    finally:
        player.pipeline.set_state(Gst.State.NULL)
        player.pcm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
