"""A WHIP client made of GStreamer's webrtcbin (RFC 9725), for the ingest tests.

Run by the SYSTEM python3 (it has python3-gi; the venv does not), as a subprocess the test
stops by PID:

    /usr/bin/python3 tests/support/whip_gst.py URL TOKEN

It publishes videotestsrc (VP8) and audiotestsrc (Opus) to URL with `Authorization:
Bearer TOKEN`, and prints one JSON line per event on stdout: {"event": "answered",
"status", "location", "etag", "links"}, {"event": "refused", "status", "body"},
{"event": "ice", "state"}, {"event": "dtls", "state"}. webrtcbin 1.22 offers
`a=setup:actpass` with an RSA certificate, so the server must answer passive. libnice
skips loopback when gathering: 127.0.0.1 is added to its agent by hand.
"""

from __future__ import annotations

import json
import os
import signal
import sys

# This file's folder holds tests/support/http.py, which would shadow the standard library's.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import urllib.error
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC

PIPELINE = (
    "webrtcbin name=send bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 ! "
    "vp8enc deadline=1 keyframe-max-dist=15 ! rtpvp8pay pt=96 mtu=1200 ! "
    "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! send. "
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=111 ! "
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! send."
)


def say(**event: object) -> None:
    print(json.dumps(event), flush=True)


class WhipClient:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.loop = GLib.MainLoop()
        self.posted = False
        self.pipeline = Gst.parse_launch(PIPELINE)
        self.webrtc = self.pipeline.get_by_name("send")
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice_state)
        self.webrtc.connect("notify::connection-state", self.on_connection_state)
        # Kept for the client's life: in 1.22 the binding's reference is the agent's last
        # one once Python drops it (webrtcbin's ICE then breaks).
        self.ice_agent = self.webrtc.get_property("ice-agent")
        self.ice_agent.emit("add-local-ip-address", "127.0.0.1")

    def run(self) -> None:
        for transceiver_index in range(2):
            transceiver = self.webrtc.emit("get-transceiver", transceiver_index)
            if transceiver is not None:
                transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        self.pipeline.set_state(Gst.State.PLAYING)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, self.stop)
        self.loop.run()
        self.pipeline.set_state(Gst.State.NULL)

    def stop(self) -> bool:
        self.loop.quit()
        return False

    def on_negotiation_needed(self, element: Gst.Element) -> None:
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, element, None)
        element.emit("create-offer", None, promise)

    def retry_offer(self) -> bool:
        if not self.posted:
            self.on_negotiation_needed(self.webrtc)
        return False

    def on_offer_created(self, promise: Gst.Promise, element: Gst.Element, _: object) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        if offer is None or offer.sdp is None:
            # Seen now and then when negotiation-needed fires while the pads are linked:
            # the offer is asked for again.
            say(event="retry", message=f"create-offer failed: {reply.to_string() if reply else None}")
            GLib.timeout_add(100, self.retry_offer)
            return
        if self.posted:
            return  # one WHIP session per run
        self.posted = True
        element.emit("set-local-description", offer, Gst.Promise.new())
        GLib.idle_add(self.post, offer.sdp.as_text())

    def post(self, sdp: str) -> bool:
        """An ICE-lite server needs none of our candidates: the offer goes at once."""
        request = urllib.request.Request(self.url, data=sdp.encode(), method="POST", headers={
            "Content-Type": "application/sdp", "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = response.read().decode()
                say(event="answered", status=response.status, location=response.headers.get("Location"),
                    etag=response.headers.get("ETag"), links=response.headers.get_all("Link") or [],
                    answer=answer)
        except urllib.error.HTTPError as exc:
            say(event="refused", status=exc.code, body=exc.read().decode(errors="replace"))
            return False
        _, message = GstSdp.SDPMessage.new_from_text(answer)
        description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        self.webrtc.emit("set-remote-description", description, Gst.Promise.new())
        return False

    def on_ice_state(self, element: Gst.Element, _: object) -> None:
        say(event="ice", state=element.get_property("ice-connection-state").value_nick)

    def on_connection_state(self, element: Gst.Element, _: object) -> None:
        say(event="connection", state=element.get_property("connection-state").value_nick)


def main() -> None:
    Gst.init(None)
    url, token = sys.argv[1], sys.argv[2]
    WhipClient(url, token).run()


if __name__ == "__main__":
    main()
