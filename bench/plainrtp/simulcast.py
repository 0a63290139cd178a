"""The simulcast contender of `python -m bench.plainrtp` ("ours+srtp-simulcast"), and
the same meeting with one stream ("ours+srtp-webrtc"): what the WebRTC transports and
transport-cc cost apart from what simulcast costs.

Conclave's worker (`python -m bench.plainrtp.simworker`: `sfu.worker` with the
subscribers' estimate bounds lifted, see there) with what a browser meeting makes of it:

- one WebRTC publish transport carrying a simulcast producer of three VP8 L1T3 layers
  (rids q, h, f: 320x180, 640x360, 1280x720), negotiated from a Chromium-like offer
  (rid simulcast, no a=ssrc; the SSRCs bound by the RID extension on first sight); its
  packets carry abs-send-time and the transport-wide sequence number (the worker records
  their arrivals and sends transport-cc feedback back, as to a browser);
- `fanout` WebRTC subscribe transports with transport-cc negotiated, one consumer each,
  their tiles (CONSUMER_SET_VIEWPORT) spread over the three layers (subscriber i gets
  layer 2 - i % 3); the worker renumbers the extensions, writes each subscriber's own
  transport-wide sequence number, logs every packet sent for its estimator, and the
  bench's receivers send transport-cc feedback back every FEEDBACK_INTERVAL_S;
- SRTP everywhere, keyed by DTLS (ICE and DTLS done by `bench.peer.Link` on the worker
  handle's private event loop before the load; the links then belong to the bench's
  synchronous generator and receivers; a thread of the bench keeps their ICE consent,
  also while other contenders run).

The stream (`SimulcastSource`): frames of the three layers in turn, 1 / 2 / 5 packets of
1200 bytes (bench/layer_switch.py's layout), TIDs 0, 2, 1, 2 with TL0PICIDX and a 15-bit
PictureID per layer, a keyframe on every layer every KEYFRAME_EVERY frames. With the
layer spread above, each packet in makes `copies_per_packet` packets out on average
(5.625 at fan-out 16), which is what the bench's loss count expects.

With `layers=1` ("ours+srtp-webrtc") the publisher offers one VP8 stream (a=ssrc, no
rids) with the same packets (each a frame of one packet, TIDs and PictureIDs as above)
and every subscriber forwards all of it: `Consumer.forward`, the single-layer path, on
the same WebRTC transports with the same feedback.

Feedback (`Feedback`): the receivers are passive at saturation (the kernel counts what
reaches them, as for the other contenders), so the bench reads only the newest packets
of each socket; a feedback reports every transport-wide number up to the newest seen as
received, their arrivals spread evenly since the last feedback (what a receiver on a
quiet link would report). Stopped: the worker by PID, the links closed.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import threading
import time

from aiortc import RTCCertificate

from bench.peer import Link, ServerTransport, subscribe_answer
from bench.plainrtp.ours import WorkerProcess
from bench.plainrtp.packets import PACKET_SIZE
from sfu import api
from sfu.transport.dtls import certificate_fingerprint
from sfu.transport.srtp import FastSrtp
from sfu.wire import rtcp, sdp, stun

NAME = "ours+srtp-simulcast"
MAX_FEEDBACK_BYTES = 1200  # a transport-cc feedback the receivers send, at most (SRTCP adds its trailer)
WEBRTC_NAME = "ours+srtp-webrtc"
RIDS = ("q", "h", "f")
SIZES = ((320, 180), (640, 360), (1280, 720))
PACKETS_PER_FRAME = (1, 2, 5)
TIDS = (0, 2, 1, 2)
KEYFRAME_EVERY = 256  # frames of each layer (2048 packets)
KEYFRAME_EVERY_ONE_STREAM = 64  # frames of one packet: a subscriber that missed the first starts soon
PAYLOAD_TYPE = 96
# The publisher's extension ids (Chromium's); the worker's subscribe offers use its policy's.
ABS_SEND_TIME_ID, TRANSPORT_CC_ID, MID_ID, RID_ID, RRID_ID = 2, 3, 4, 10, 11
TAGGED_PACKETS = 32  # per layer: the first ones carry MID and RID (Chromium: until an RR)
FEEDBACK_INTERVAL_S = 0.05
MAX_FEEDBACK_PACKETS = 4000
CONSENT_INTERVAL_S = 5.0
SETUP_TIMEOUT_S = 60.0

_HEADER = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_DESCRIPTOR = struct.Struct("!BBHBB")  # X|S, I|L|T, M|PictureID, TL0PICIDX, TID|Y


def subscriber_layer(index: int, layers: int = 3) -> int:
    return 2 - index % 3 if layers == 3 else 0


def copies_per_packet(fanout: int, layers: int = 3) -> float:
    """Packets out per packet in, every subscriber forwarding its layer's every packet."""
    if layers == 1:
        return float(fanout)
    per_layer = [sum(1 for i in range(fanout) if subscriber_layer(i) == layer) for layer in range(3)]
    return sum(n * p for n, p in zip(per_layer, PACKETS_PER_FRAME)) / sum(PACKETS_PER_FRAME)


def publish_offer(link: Link, layers: int = 3, ssrc: int = 0) -> str:
    """A Chromium-like sendonly video offer: three rid layers and no a=ssrc, or one
    stream with its SSRC."""
    media = sdp.MediaDescription(
        "video", "0", 9, "UDP/TLS/RTP/SAVPF", "sendonly", ice_ufrag=link.ice_ufrag, ice_pwd=link.ice_pwd,
        fingerprints=[sdp.Fingerprint(*link.fingerprint)], setup="actpass", rtcp_mux=True, rtcp_rsize=True,
    )  # fmt: skip
    feedback = ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
    media.codecs = [sdp.Codec(PAYLOAD_TYPE, "VP8", 90000, None, "", feedback)]
    media.extmap = {sdp.URI_ABS_SEND_TIME: ABS_SEND_TIME_ID, sdp.URI_TRANSPORT_CC: TRANSPORT_CC_ID,
                    sdp.URI_MID: MID_ID, sdp.URI_RID: RID_ID, sdp.URI_REPAIRED_RID: RRID_ID}
    if layers == 3:
        media.rids = list(RIDS)
        media.simulcast = "send " + ";".join(RIDS)
    else:
        media.ssrcs = [ssrc]
    media.msid = ("bench", "bench-video")
    media.cname = "bench"
    description = sdp.SessionDescription(random.getrandbits(62), 2, ice_lite=False, bundle=["0"], media=[media])
    return sdp.serialize(description)


class SimulcastSource:
    """The publisher's packets, built and protected one at a time (`next_packet`)."""

    def __init__(self, tx: FastSrtp, layers: int = 3) -> None:
        self._tx = tx
        rnd = random.Random(11)
        self.ssrcs = source_ssrcs()
        self._seq = [rnd.getrandbits(16) for _ in range(3)]
        self._ts = [rnd.getrandbits(32) for _ in range(3)]
        self._pid = [rnd.getrandbits(15) for _ in range(3)]
        self._tl0 = [rnd.getrandbits(8) for _ in range(3)]
        self._sent = [0, 0, 0]
        self._tcc = 0
        self._frame = 0
        self._frame_packets = PACKETS_PER_FRAME if layers == 3 else (1,)
        self._keyframe_every = KEYFRAME_EVERY if layers == 3 else KEYFRAME_EVERY_ONE_STREAM
        self._plan = [(layer, k) for layer in range(layers) for k in range(self._frame_packets[layer])]
        self._at = 0
        self.packets = 0

    def next_packet(self, send_time_ns: int) -> bytes:
        layer, k = self._plan[self._at]
        self._at += 1
        if self._at == len(self._plan):
            self._at = 0
            self._frame += 1
        frame = self._frame
        tid = TIDS[frame % 4]
        if k == 0:  # a frame of this layer starts: its numbers move on
            self._pid[layer] = (self._pid[layer] + 1) & 0x7FFF
            self._ts[layer] = (self._ts[layer] + 3000) & 0xFFFFFFFF
            if tid == 0:
                self._tl0[layer] = (self._tl0[layer] + 1) & 0xFF
        self._seq[layer] = seq = (self._seq[layer] + 1) & 0xFFFF
        self._tcc = (self._tcc + 1) & 0xFFFF
        last = k == self._frame_packets[layer] - 1
        abs_time = (send_time_ns * (1 << 18) // 1_000_000_000) & 0xFFFFFF
        elements = bytes(((ABS_SEND_TIME_ID << 4) | 2,)) + abs_time.to_bytes(3, "big")
        elements += bytes(((TRANSPORT_CC_ID << 4) | 1,)) + _U16.pack(self._tcc)
        if self._sent[layer] < TAGGED_PACKETS:
            elements += bytes(((MID_ID << 4), ord("0"), (RID_ID << 4), ord(RIDS[layer])))
        elements += b"\x00" * (-len(elements) % 4)
        extension = b"\xbe\xde" + _U16.pack(len(elements) // 4) + elements
        self._sent[layer] += 1
        keyframe = frame % self._keyframe_every == 0 and tid == 0
        descriptor = _DESCRIPTOR.pack(0x90 if k == 0 else 0x80, 0xE0, 0x8000 | self._pid[layer], self._tl0[layer],
                                      tid << 6 | (0x20 if tid and frame % self._keyframe_every < 4 else 0))
        if k == 0:
            width, height = SIZES[layer]
            vp8 = (b"\x00\x00\x00\x9d\x01\x2a" + width.to_bytes(2, "little") + height.to_bytes(2, "little")
                   if keyframe else b"\x01\x00\x00")
        else:
            vp8 = b""
        header = _HEADER.pack(0x90, (0x80 if last else 0) | PAYLOAD_TYPE, seq, self._ts[layer], self.ssrcs[layer])
        body = header + extension + descriptor + vp8
        packet = body + b"v" * (PACKET_SIZE - len(body))
        self.packets += 1
        return self._tx.protect(packet)


def source_ssrcs() -> list[int]:
    return [0x51A0_0000 + layer for layer in range(3)]


class _Peer:
    """A connected link as the synchronous bench uses it: socket, keys, consent."""

    def __init__(self, link: Link, server: ServerTransport) -> None:
        self.link = link
        self.sock = link.sock
        self.address = server.address
        self.tx = FastSrtp(link.tx)  # type: ignore[arg-type]
        self.username = f"{server.ice_ufrag}:{link.ice_ufrag}"
        self.key = server.ice_pwd.encode()
        self.tiebreaker = random.getrandbits(63)
        self.consent_at = time.monotonic() + CONSENT_INTERVAL_S

    def keep_consent(self, now: float) -> None:
        """A nominated ICE check every CONSENT_INTERVAL_S (RFC 7675; answers not read)."""
        if now >= self.consent_at:
            self.consent_at = now + CONSENT_INTERVAL_S
            self.send(stun.build_binding_request(os.urandom(12), self.username, self.key, priority=0x7E7FFFFF,
                                                 controlling_tiebreaker=self.tiebreaker, use_candidate=True))

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.address)
        except OSError:
            pass  # a full buffer: the next round sends again


class Feedback:
    """The subscribers' transport-cc feedback, driven by the receivers (`saw` with the
    newest packet read from a socket, `tick` when they poll)."""

    def __init__(self, subscribers: list[_Peer], publisher: _Peer) -> None:
        self.subscribers = subscribers
        self.publisher = publisher
        count = len(subscribers)
        self.newest = [-1] * count  # the newest transport-wide number seen
        self.next = [-1] * count  # the first one not reported yet
        self.media_ssrc = [0] * count
        self.reported_us = [0] * count
        self.fb_count = [0] * count
        self.sent = 0
        self.next_at = 0.0

    def saw(self, index: int, packet, size: int) -> None:
        """The newest packet read from subscriber `index`'s socket (RTP in the clear)."""
        if size < 16 or not 127 < packet[0] < 192 or 191 < packet[1] < 224 or not packet[0] & 0x10:
            return  # RTCP, STUN or no extension
        offset = 12 + 4 * (packet[0] & 0x0F)
        if packet[offset] != 0xBE or packet[offset + 1] != 0xDE:
            return
        end = offset + 4 + 4 * (packet[offset + 2] << 8 | packet[offset + 3])
        at = offset + 4
        while at < min(end, size):
            element = packet[at]
            if element == 0:
                at += 1
                continue
            ext_id, length = element >> 4, (element & 0x0F) + 1
            if ext_id == TRANSPORT_CC_ID and length == 2:
                self.newest[index] = packet[at + 1] << 8 | packet[at + 2]
                self.media_ssrc[index] = int.from_bytes(packet[8:12], "big")
                return
            at += 1 + length

    def tick(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + FEEDBACK_INTERVAL_S
        now_us = time.monotonic_ns() // 1000
        for index, peer in enumerate(self.subscribers):
            self._report(index, peer, now_us)

    def _report(self, index: int, peer: _Peer, now_us: int) -> None:
        newest = self.newest[index]
        if newest < 0:
            return
        first = self.next[index]
        if first < 0 or (newest - first) & 0xFFFF >= 0x8000:
            first = newest
        count = ((newest - first) & 0xFFFF) + 1
        if count > MAX_FEEDBACK_PACKETS:
            first = (newest - MAX_FEEDBACK_PACKETS + 1) & 0xFFFF
            count = MAX_FEEDBACK_PACKETS
        since = self.reported_us[index] or now_us - int(FEEDBACK_INTERVAL_S * 1e6)
        while True:
            step = max(1, (now_us - since) // count)
            arrivals: list[int | None] = [since + step * (i + 1) for i in range(count)]
            packet = rtcp.build_transport_feedback(0x0BE7C000 + index, self.media_ssrc[index], first,
                                                   self.fb_count[index], arrivals[0], arrivals)  # type: ignore[arg-type]
            # Receivers that fell behind (a busy machine) report wide gaps: 2-byte deltas
            # can make the packet too long to protect; report the newest half instead.
            if len(packet) <= MAX_FEEDBACK_BYTES or count == 1:
                break
            count //= 2
            first = (newest - count + 1) & 0xFFFF
        self.fb_count[index] = (self.fb_count[index] + 1) & 0xFF
        self.next[index] = (newest + 1) & 0xFFFF
        self.reported_us[index] = now_us
        peer.send(peer.tx.protect_rtcp(packet))
        self.sent += 1


class SimulcastForwarder:
    """The bench's view of the worker running the simulcast meeting (as OursForwarder's)."""

    def __init__(self, cpu: int | None, name: str = NAME, layers: int = 3) -> None:
        if layers not in (1, 3):
            raise ValueError(f"layers: {layers}, expected 1 or 3")
        self.name = name
        self.layers = layers
        # "-python": the same meeting forwarded in Python (sfu.native off), the reference.
        self.worker = WorkerProcess(cpu, 0, module="bench.plainrtp.simworker",
                                    native="off" if name.endswith("-python") else "on")
        self.router_id = "bench-simulcast"
        self.producer_id = ""
        self.publisher: _Peer | None = None
        self.subscribers: list[_Peer] = []
        self.source: SimulcastSource | None = None
        self.feedback: Feedback | None = None
        self.fanout = 0
        self._links: list[Link] = []
        self._stopping = threading.Event()
        self._consent: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        return [self.worker.pid] if self.worker.proc is not None else []

    @property
    def input_ports(self) -> list[int]:
        return [self.worker.port] if self.worker.port else []

    @property
    def input_addr(self) -> tuple[str, int]:
        assert self.publisher is not None
        return self.publisher.address

    @property
    def input_socket(self) -> socket.socket:
        assert self.publisher is not None
        return self.publisher.sock

    def start(self, fanout: int) -> list[socket.socket]:
        """The worker, the meeting and every link connected; returns the subscribers' sockets."""
        self.fanout = fanout
        self.worker.start()
        loop = self.worker.loop
        loop.run_until_complete(asyncio.wait_for(self._setup(fanout), SETUP_TIMEOUT_S))
        assert self.publisher is not None
        for link in self._links:  # from now on the synchronous bench reads and writes them
            if link.reading:
                loop.remove_reader(link.sock.fileno())
                link.reading = False
        self.source = SimulcastSource(self.publisher.tx, self.layers)
        self.feedback = Feedback(self.subscribers, self.publisher)
        self._consent = threading.Thread(target=self._keep_consent, name="ice-consent", daemon=True)
        self._consent.start()
        return [peer.sock for peer in self.subscribers]

    def _keep_consent(self) -> None:
        """Every link's ICE checks, whichever contender the bench is measuring (the worker
        stops sending to a link after 30 s without one)."""
        peers = [self.publisher, *self.subscribers]
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            for peer in peers:
                if peer is not None:
                    peer.keep_consent(now)

    async def _request(self, message) -> object:
        assert self.worker.client is not None
        return await self.worker.client.request(message, timeout=30.0)

    async def _setup(self, fanout: int) -> None:
        certificate = RTCCertificate.generateCertificate()
        fingerprint = certificate_fingerprint(certificate)
        await self._request(api.RouterCreate(router_id=self.router_id))
        await self._request(api.TransportCreate(router_id=self.router_id, transport_id="pub", direction="publish"))
        link = Link(certificate, fingerprint)
        self._links.append(link)
        offer = publish_offer(link, self.layers, source_ssrcs()[0])
        answer = await self._request(api.PublishOffer(transport_id="pub", sdp=offer,
                                                      sources={"0": "camera"}))
        assert isinstance(answer, api.PublishAnswer) and answer.producers, answer
        self.producer_id = answer.producers[0].producer_id
        server = ServerTransport(sdp.parse(answer.sdp))
        await link.connect(server)
        self.publisher = _Peer(link, server)
        for i in range(fanout):
            transport_id = f"sub{i}"
            await self._request(api.TransportCreate(router_id=self.router_id, transport_id=transport_id,
                                                    direction="subscribe"))
            await self._request(api.ConsumerCreate(transport_id=transport_id, consumer_id=f"{transport_id}-c",
                                                   producer_id=self.producer_id))
            offer = await self._request(api.SubscribeOfferCreate(transport_id=transport_id))
            assert isinstance(offer, api.SubscribeOffer)
            parsed = sdp.parse(offer.sdp)
            link = Link(certificate, fingerprint)
            self._links.append(link)
            await self._request(api.SubscribeAnswerSet(
                transport_id=transport_id, sdp=subscribe_answer(parsed, link.ice_ufrag, link.ice_pwd, link.fingerprint)))
            server = ServerTransport(parsed)
            await link.connect(server)
            width, height = SIZES[subscriber_layer(i, self.layers) if self.layers == 3 else 2]
            await self._request(api.ConsumerSetViewport(consumer_id=f"{transport_id}-c", width=width, height=height,
                                                        visible=True))
            self.subscribers.append(_Peer(link, server))

    def stats(self) -> dict:
        stats = self.worker.stats()
        return {"counters": stats.counters, "dropped": {k: v for k, v in stats.dropped.items() if v},
                "gauges": stats.gauges}

    def allocations(self) -> dict:
        """What the worker's allocation gives each subscriber now (its last
        SUBSCRIBER_ALLOCATION), and the counters that tell whether it held still."""
        self.worker.request(api.WorkerGetStats())  # lets the channel's notifications in
        layers = []
        for i in range(self.fanout):
            message = self.worker.latest.get((f"sub{i}", api.SubscriberAllocation.NAME))
            tracks = getattr(message, "tracks", None) or [{}]
            track = tracks[0]
            layers.append((track.get("spatial", -1), track.get("temporal", -1), track.get("paused", ""),
                           getattr(message, "estimate_bps", None)))
        counters = self.worker.stats().counters
        keys = ("allocations", "layer_switches", "transport_feedback_received", "bwe_probes", "packets_sent")
        return {"wanted": [subscriber_layer(i, self.layers) for i in range(self.fanout)], "allocated": layers,
                "counters": {k: counters.get(k, 0) for k in keys},
                "feedbacks_sent_by_bench": self.feedback.sent if self.feedback else 0}

    def stop(self) -> None:
        self._stopping.set()
        if self._consent is not None:
            self._consent.join(5.0)
        loop = self.worker.loop
        if not loop.is_closed():
            for link in self._links:
                try:
                    loop.run_until_complete(asyncio.wait_for(link.close(), 5.0))
                except (TimeoutError, OSError):
                    link.sock.close()
        self.worker.stop()

    def describe(self) -> str:
        stream = "simulcast VP8 L1T3 x 3 layers" if self.layers == 3 else "one VP8 stream"
        spread = " spread over the layers" if self.layers == 3 else ""
        return (f"sfu.worker: WebRTC publish transport, {stream} in; {self.fanout} WebRTC "
                f"subscribe transports (transport-cc, feedback){spread}, "
                f"{copies_per_packet(self.fanout, self.layers):.3f} packets out per packet in")
