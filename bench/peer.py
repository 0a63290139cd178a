"""A codec-less WebRTC peer for the load generator: ICE, DTLS-SRTP and RTP as a browser
sends them, but no encoder and no decoder.

- `Link`: one peer connection's UDP socket on 127.0.0.1. ICE is one connectivity check
  (STUN binding request with USE-CANDIDATE, sfu.wire.stun) against the server's ICE-lite
  agent, then one every 5 s for the server's consent freshness (RFC 7675); DTLS is
  `sfu.transport.dtls.DtlsSession` in the client role (the same aiortc handshake the
  worker uses); then SRTP with the exported keys.
- `Publisher`: sends cached VP8 (RFC 7741) and Opus frames, paced by the event loop's
  timers, with abs-send-time (its send time) and transport-wide-cc in the header; answers
  PLI with a keyframe at the next frame and NACK by resending the packet.
- `Subscriber`: never decrypts media. The RTP header and its extensions travel in the
  clear under SRTP (RFC 3711 §3.1), so it counts packets per SSRC, checks sequence
  continuity, NACKs gaps (video) and reads abs-send-time against the kernel's receive
  timestamp (SO_TIMESTAMPNS). It decrypts only a video stream's packets up to its first
  keyframe (the join time ends there) and one packet in 1024 (does SRTP authenticate?).
  Packets that arrive before its own DTLS handshake finished are dropped, as a browser
  drops them.
- `publish_offer` / `subscribe_answer`: the SDP a browser would send, built with
  sfu.wire.sdp's model.

Everything runs on the asyncio loop of the client process, readers via `add_reader`.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
import struct
import time
from array import array
from collections.abc import Callable

import pylibsrtp

from bench.media import MediaClip, chunks
from sfu.transport.dtls import DtlsSession
from sfu.wire import codecs, rtcp, rtp, sdp, stun

Address = tuple[str, int]

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export it
TIMESTAMP_CMSG_SPACE = socket.CMSG_SPACE(16)
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
MAX_READS_PER_WAKEUP = 512

AUDIO_PT, VIDEO_PT = 111, 96
ABS_SEND_TIME_ID, TRANSPORT_CC_ID = 2, 3  # the ids the server's policy uses: no rewrite
ABS_SEND_TIME_UNITS = 1 << 18  # 6.18 fixed point seconds, 24 bits (wraps every 64 s)
LATENCY_BUCKETS = 1 << 16  # histogram of latency in abs-send-time units (3.8 us), 250 ms
NACK_HISTORY = 1024
SRTP_SAMPLE_EVERY = 1024
# A check on the selected pair this often keeps the server's ICE consent (RFC 7675: it
# stops sending after 30 s without one), as a browser's do.
CONSENT_CHECK_S = 5.0

# One-byte header extension block (RFC 8285 §4.2): abs-send-time (3 bytes), transport-cc
# (2 bytes), one byte of padding. Written as two 32-bit words after 0xBEDE/length 2.
_HEADER = struct.Struct("!BBHIIHHII")
_ABS_TAG = ((ABS_SEND_TIME_ID << 4) | 2) << 24
_TCC_TAG = ((TRANSPORT_CC_ID << 4) | 1) << 24
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TIMESPEC = struct.Struct("qq")

_ICE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def ice_string(length: int) -> str:
    return "".join(secrets.choice(_ICE_CHARS) for _ in range(length))


def abs_send_time(now: float) -> int:
    return int(now * ABS_SEND_TIME_UNITS) & 0xFFFFFF


class ServerTransport:
    """What the server's SDP says about its side: ICE-lite credentials, fingerprint, address."""

    __slots__ = ("ice_ufrag", "ice_pwd", "fingerprints", "address")

    def __init__(self, description: sdp.SessionDescription) -> None:
        media = next(m for m in description.media if not m.rejected and m.ice_ufrag)
        self.ice_ufrag = media.ice_ufrag or ""
        self.ice_pwd = media.ice_pwd or ""
        self.fingerprints = [(f.algorithm, f.value) for f in media.fingerprints]
        tokens = media.candidates[0].split()
        self.address: Address = (tokens[4], int(tokens[5]))


# ----------------------------------------------------------------------------- SDP


def _local_media(kind: str, mid: str, direction: str, ufrag: str, pwd: str, fingerprint: tuple[str, str]) -> sdp.MediaDescription:
    return sdp.MediaDescription(
        kind, mid, 9, "UDP/TLS/RTP/SAVPF", direction,
        ice_ufrag=ufrag, ice_pwd=pwd, fingerprints=[sdp.Fingerprint(*fingerprint)],
        setup="actpass" if direction == "sendonly" else "active", rtcp_mux=True, rtcp_rsize=True,
    )  # fmt: skip


def publish_offer(
    ufrag: str, pwd: str, fingerprint: tuple[str, str], ssrcs: dict[str, int], cname: str, stream_id: str
) -> tuple[str, list[dict[str, str]]]:
    """A browser-like sendonly offer for the kinds in `ssrcs` ("audio"/"video" -> SSRC)."""
    media = []
    tracks = []
    extmap = {sdp.URI_ABS_SEND_TIME: ABS_SEND_TIME_ID, sdp.URI_TRANSPORT_CC: TRANSPORT_CC_ID}
    for mid, kind in enumerate(k for k in ("audio", "video") if k in ssrcs):
        section = _local_media(kind, str(mid), "sendonly", ufrag, pwd, fingerprint)
        if kind == "audio":
            section.codecs = [sdp.Codec(AUDIO_PT, "opus", 48000, 2, "minptime=10;useinbandfec=1", ("transport-cc",))]
        else:
            feedback = ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
            section.codecs = [sdp.Codec(VIDEO_PT, "VP8", 90000, None, "", feedback)]
        section.extmap = dict(extmap)
        section.ssrcs = [ssrcs[kind]]
        section.cname = cname
        section.msid = (stream_id, f"{stream_id}-{kind}")
        media.append(section)
        tracks.append({"mid": str(mid), "source": "microphone" if kind == "audio" else "camera"})
    description = sdp.SessionDescription(
        random.getrandbits(62), 2, ice_lite=False, bundle=[m.mid for m in media], media=media
    )
    return sdp.serialize(description), tracks


def subscribe_answer(offer: sdp.SessionDescription, ufrag: str, pwd: str, fingerprint: tuple[str, str]) -> str:
    """Accept every sendonly section with its first codec (no RTX), abs-send-time and transport-cc."""
    media = []
    for theirs in offer.media:
        accept = theirs.direction in ("sendonly", "sendrecv") and not theirs.rejected
        section = _local_media(theirs.kind, theirs.mid, "recvonly" if accept else "inactive", ufrag, pwd, fingerprint)
        primary = theirs.codecs[0]
        section.codecs = [sdp.Codec(primary.payload_type, primary.name, primary.clock_rate, primary.channels, primary.fmtp, primary.rtcp_fb)]
        section.extmap = {
            uri: ext_id
            for uri, ext_id in theirs.extmap.items()
            if uri in (sdp.URI_ABS_SEND_TIME, sdp.URI_TRANSPORT_CC)
        }
        media.append(section)
    description = sdp.SessionDescription(
        random.getrandbits(62), offer.session_version, ice_lite=False, bundle=[m.mid for m in media], media=media
    )
    return sdp.serialize(description)


# ----------------------------------------------------------------------------- link


class Link:
    """One UDP socket: ICE check, DTLS handshake, then SRTP packets to/from the server."""

    def __init__(self, certificate, fingerprint: tuple[str, str], timestamps: bool = False) -> None:
        self.certificate = certificate
        self.fingerprint = fingerprint
        self.ice_ufrag = ice_string(8)
        self.ice_pwd = ice_string(24)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            self.sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        self.timestamps = timestamps
        if timestamps:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.server: Address | None = None
        self.rx: pylibsrtp.Session | None = None
        self.tx: pylibsrtp.Session | None = None
        self.dtls: DtlsSession | None = None
        self.connected = asyncio.Event()
        self.connected_at: float | None = None  # wall clock (as the kernel's receive stamps)
        self.failed: str | None = None
        self.on_rtp: Callable[[bytes, float], None] = lambda data, ts: None
        self.on_rtcp: Callable[[bytes], None] = lambda data: None
        self.send_errors = 0
        self._stun_waiters: dict[bytes, asyncio.Future[None]] = {}
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)
        self.reading = True
        self.closed = False
        self._consent_task: asyncio.Task[None] | None = None

    async def connect(self, server: ServerTransport, timeout: float = 10.0) -> None:
        """ICE check (retransmitted every 100 ms), then the DTLS handshake as client."""
        self.server = server.address
        username = f"{server.ice_ufrag}:{self.ice_ufrag}"
        key = server.ice_pwd.encode()
        deadline = self._loop.time() + timeout
        while True:
            txid = os.urandom(12)
            waiter = self._loop.create_future()
            self._stun_waiters[txid] = waiter
            request = stun.build_binding_request(
                txid, username, key, priority=0x7E7FFFFF, controlling_tiebreaker=random.getrandbits(63), use_candidate=True
            )
            self.send_raw(request)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), 0.1)
                break
            except TimeoutError:
                if self._loop.time() > deadline:
                    raise TimeoutError("no answer to the ICE check") from None
            finally:
                self._stun_waiters.pop(txid, None)
        self._consent_task = asyncio.ensure_future(self._keep_consent(username, key))
        self.dtls = DtlsSession(self.certificate, self.send_raw, self._on_dtls_connected, self._on_dtls_down)
        self.dtls.start("client", server.fingerprints)
        try:
            await asyncio.wait_for(self.connected.wait(), max(0.1, deadline - self._loop.time()))
        except TimeoutError:
            raise TimeoutError(f"DTLS did not connect ({self.failed or self.dtls.state})") from None

    async def _keep_consent(self, username: str, key: bytes) -> None:
        """A nominated check every CONSENT_CHECK_S (answers are not awaited)."""
        tiebreaker = random.getrandbits(63)
        while not self.closed:
            await asyncio.sleep(CONSENT_CHECK_S)
            self.send_raw(
                stun.build_binding_request(
                    os.urandom(12), username, key, priority=0x7E7FFFFF, controlling_tiebreaker=tiebreaker,
                    use_candidate=True,
                )
            )  # fmt: skip

    def _on_dtls_connected(self, rx: object, tx: object) -> None:
        self.rx, self.tx = rx, tx  # type: ignore[assignment]
        if self.connected_at is None:
            self.connected_at = time.time()
        self.connected.set()

    def _on_dtls_down(self, state: str) -> None:
        self.failed = state
        self.rx = self.tx = None

    def send_raw(self, data: bytes) -> None:
        if self.server is None or self.closed:
            return
        try:
            self.sock.sendto(data, self.server)
        except (BlockingIOError, OSError):
            self.send_errors += 1

    def send_rtcp(self, packet: bytes) -> None:
        if self.tx is not None:
            self.send_raw(self.tx.protect_rtcp(packet))

    def _readable(self) -> None:
        sock = self.sock
        timestamps = self.timestamps
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                if timestamps:
                    data, ancillary, _, _ = sock.recvmsg(2048, TIMESTAMP_CMSG_SPACE)
                    if ancillary:
                        seconds, nanoseconds = _TIMESPEC.unpack(ancillary[0][2])
                        arrival = seconds + nanoseconds * 1e-9
                    else:
                        arrival = time.time()
                else:
                    data = sock.recv(2048)
                    arrival = 0.0
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ICMP errors (server gone) surface here; the run notices elsewhere
            if not data:
                continue
            first = data[0]
            if 127 < first < 192 and len(data) >= 12:
                if 191 < data[1] < 224:
                    self.on_rtcp(data)
                else:
                    self.on_rtp(data, arrival)
            elif first < 4:
                self._on_stun(data)
            elif 19 < first < 64 and self.dtls is not None:
                self.dtls.feed(data)

    def _on_stun(self, data: bytes) -> None:
        try:
            message = stun.parse(data)
        except ValueError:
            return
        waiter = self._stun_waiters.get(message.transaction_id)
        if waiter is not None and not waiter.done() and message.message_class == stun.CLASS_SUCCESS:
            waiter.set_result(None)

    def stop_reading(self) -> None:
        """Leave the socket unread with the smallest buffer: the kernel counts what arrives
        as drops (/proc/net/udp), which costs the generator nothing per packet."""
        if not self.closed and self.reading:
            self.reading = False
            self._loop.remove_reader(self.sock.fileno())
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._consent_task is not None:
            self._consent_task.cancel()
        if self.reading:
            self._loop.remove_reader(self.sock.fileno())
        if self.dtls is not None:
            await self.dtls.close()
        self.sock.close()


# ----------------------------------------------------------------------------- publisher


class _OutStream:
    __slots__ = ("kind", "ssrc", "pt", "seq", "ts_step", "index", "sent", "bytes", "history", "picture_id", "key_wanted", "keyframes", "timer")

    def __init__(self, kind: str, ssrc: int, pt: int, ts_step: int) -> None:
        self.kind = kind
        self.ssrc = ssrc
        self.pt = pt
        self.seq = random.getrandbits(16)
        self.ts_step = ts_step
        self.index = 0
        self.sent = 0
        self.bytes = 0
        self.history: list[bytes | None] = [None] * NACK_HISTORY
        self.picture_id = random.getrandbits(15)
        self.key_wanted = True  # a stream starts with a keyframe
        self.keyframes = 0
        self.timer: asyncio.TimerHandle | None = None


class Publisher:
    """Sends a MediaClip on a connected Link at its real frame rate until stopped."""

    def __init__(self, link: Link, clip: MediaClip, ssrcs: dict[str, int]) -> None:
        self.link = link
        self.clip = clip
        self.streams: dict[int, _OutStream] = {}
        fps = clip.params.fps
        if "audio" in ssrcs:
            self.streams[ssrcs["audio"]] = _OutStream("audio", ssrcs["audio"], AUDIO_PT, 960)
        if "video" in ssrcs:
            self.streams[ssrcs["video"]] = _OutStream("video", ssrcs["video"], VIDEO_PT, 90000 // fps)
        self.video_chunks = [chunks(frame) for frame in clip.video_delta]
        self.key_chunks = [chunks(frame) for frame in clip.video_key]
        self.tcc_seq = random.getrandbits(16)
        self.rtp_ts0 = random.getrandbits(32)
        self.plis = 0
        self.nacks = 0
        self.retransmitted = 0
        self.running = False
        link.on_rtcp = self._on_rtcp
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        self.running = True
        now = self._loop.time()
        for stream in self.streams.values():
            period = 0.02 if stream.kind == "audio" else 1.0 / self.clip.params.fps
            # A random phase: many publishers in one process do not all burst at once.
            self._schedule(stream, now + random.random() * period, period)

    def stop(self) -> None:
        self.running = False
        for stream in self.streams.values():
            if stream.timer is not None:
                stream.timer.cancel()

    def _schedule(self, stream: _OutStream, due: float, period: float) -> None:
        stream.timer = self._loop.call_at(due, self._tick, stream, due, period)

    def _tick(self, stream: _OutStream, due: float, period: float) -> None:
        if not self.running or self.link.tx is None:
            return
        now = self._loop.time()
        if now - due > 1.0:
            due = now  # the process stalled: do not burst a second of frames to catch up
        if stream.kind == "audio":
            frames = self.clip.audio
            self._send(stream, frames[stream.index % len(frames)], stream.index == 0)
        else:
            self._send_video_frame(stream)
        stream.index += 1
        self._schedule(stream, due + period, period)

    def _send_video_frame(self, stream: _OutStream) -> None:
        index = stream.index % len(self.video_chunks)
        if stream.key_wanted or index == 0:
            stream.key_wanted = False
            stream.keyframes += 1
            parts = self.key_chunks[index]
        else:
            parts = self.video_chunks[index]
        stream.picture_id = (stream.picture_id + 1) & 0x7FFF
        pid_high = 0x80 | (stream.picture_id >> 8)
        pid_low = stream.picture_id & 0xFF
        last = len(parts) - 1
        for i, part in enumerate(parts):
            # RFC 7741 §4.2: X=1, S=1 on the first packet of the frame, PID 0; I=1, M=1.
            descriptor = bytes((0x90 if i == 0 else 0x80, 0x80, pid_high, pid_low))
            self._send(stream, descriptor + part, i == last)

    def _send(self, stream: _OutStream, payload: bytes, marker: bool) -> None:
        stream.seq = seq = (stream.seq + 1) & 0xFFFF
        self.tcc_seq = (self.tcc_seq + 1) & 0xFFFF
        ts = (self.rtp_ts0 + stream.index * stream.ts_step) & 0xFFFFFFFF
        header = _HEADER.pack(
            0x90, (0x80 if marker else 0) | stream.pt, seq, ts, stream.ssrc,
            0xBEDE, 2, _ABS_TAG | abs_send_time(time.time()), _TCC_TAG | (self.tcc_seq << 8),
        )  # fmt: skip
        protected = self.link.tx.protect(header + payload)  # type: ignore[union-attr]
        stream.history[seq % NACK_HISTORY] = protected
        stream.sent += 1
        stream.bytes += len(protected)
        self.link.send_raw(protected)

    def _on_rtcp(self, data: bytes) -> None:
        rx = self.link.rx
        if rx is None:
            return
        try:
            packets = rtcp.parse_compound(rx.unprotect_rtcp(data))
        except (pylibsrtp.Error, ValueError):
            return
        for packet in packets:
            if isinstance(packet, (rtcp.Pli, rtcp.Fir)):
                ssrcs = [packet.media_ssrc] if isinstance(packet, rtcp.Pli) else [s for s, _ in packet.entries]
                for ssrc in ssrcs:
                    stream = self.streams.get(ssrc)
                    if stream is not None and stream.kind == "video":
                        self.plis += 1
                        stream.key_wanted = True
            elif isinstance(packet, rtcp.Nack):
                stream = self.streams.get(packet.media_ssrc)
                if stream is None:
                    continue
                for seq in packet.lost:
                    self.nacks += 1
                    protected = stream.history[seq % NACK_HISTORY]
                    if protected is not None and _U16.unpack_from(protected, 2)[0] == seq:
                        self.retransmitted += 1
                        self.link.send_raw(protected)  # same index, same bytes (RFC 4585 §6.2.1)

    def counters(self) -> dict[str, int]:
        return {
            "packets_sent": sum(s.sent for s in self.streams.values()),
            "bytes_sent": sum(s.bytes for s in self.streams.values()),
            "keyframes_sent": sum(s.keyframes for s in self.streams.values()),
            "pli_received": self.plis,
            "nack_received": self.nacks,
            "retransmitted": self.retransmitted,
            "send_errors": self.link.send_errors,
        }


# ----------------------------------------------------------------------------- subscriber


class _InStream:
    """Sequence continuity of one received SSRC (RFC 3550 A.1 style extended numbers)."""

    __slots__ = ("ssrc", "kind", "base", "highest", "received", "duplicates", "gaps", "recovered", "seen", "first_arrival", "keyframe_at")

    def __init__(self, ssrc: int, kind: str, seq: int, arrival: float) -> None:
        self.ssrc = ssrc
        self.kind = kind
        self.base = seq
        self.highest = seq
        self.received = 1
        self.duplicates = 0
        self.gaps = 0
        self.recovered = 0
        self.seen = bytearray(65536)
        self.seen[seq] = 1
        self.first_arrival = arrival
        self.keyframe_at: float | None = None  # video: arrival of the first keyframe packet

    def update(self, seq: int) -> int:
        """Count `seq`; returns how many numbers it skipped (0 in order, -1 late/duplicate)."""
        delta = (seq - self.highest) & 0xFFFF
        seen = self.seen
        if 0 < delta < 0x8000:
            if delta > 1:
                self.gaps += 1
                for missing in range(self.highest + 1, self.highest + delta):
                    seen[missing & 0xFFFF] = 0
            self.highest += delta
            seen[seq] = 1
            self.received += 1
            return delta - 1
        if seen[seq]:
            self.duplicates += 1
        else:
            seen[seq] = 1
            self.received += 1
            self.recovered += 1
        return -1

    @property
    def expected(self) -> int:
        return self.highest - self.base + 1


class Subscriber:
    """Counts what arrives on a subscribe Link without decrypting it."""

    def __init__(
        self, link: Link, kinds: dict[int, str], join_started: float, passive: bool = False, passive_after: int = 0
    ) -> None:
        self.link = link
        # Stop reading (Link.stop_reading) once the first keyframe is in, or once
        # `passive_after` streams have started (the join storm's light participants).
        self.passive = passive
        self.passive_after = passive_after
        self.kinds = kinds  # SSRC -> "audio" | "video", from the server's offers
        self.join_started = join_started
        self.streams: dict[int, _InStream] = {}
        self.latency = array("Q", bytes(8 * LATENCY_BUCKETS))
        self.unknown_ssrc = 0
        self.first_video_at: float | None = None  # arrival of the first keyframe packet
        self.not_keyframe_starts = 0
        self.before_dtls = 0
        self.plis_sent = 0
        self.last_pli_at = 0.0
        self.srtp_checked = 0
        self.srtp_failed = 0
        self.nacks_sent = 0
        self.rtcp_received = 0
        self.rtcp_ssrc = random.getrandbits(32) or 1
        link.on_rtp = self._on_rtp
        link.on_rtcp = self._on_rtcp

    def _on_rtcp(self, data: bytes) -> None:
        self.rtcp_received += 1

    def _on_rtp(self, data: bytes, arrival: float) -> None:
        if self.link.rx is None:
            # Our side of DTLS has not finished yet: like a browser, we cannot decrypt it.
            self.before_dtls += 1
            return
        ssrc = _U32.unpack_from(data, 8)[0]
        seq = _U16.unpack_from(data, 2)[0]
        stream = self.streams.get(ssrc)
        if stream is None:
            stream = self._first_packet(ssrc, seq, arrival, data)
            if stream is None:
                return
        else:
            skipped = stream.update(seq)
            if skipped > 0 and stream.kind == "video" and skipped <= 16:
                self._nack(ssrc, seq, skipped)
            elif skipped == 0 and stream.received % SRTP_SAMPLE_EVERY == 0 and (stream.keyframe_at or stream.kind != "video"):
                self._check_srtp(data)  # (a video stream waiting for its keyframe decrypts below)
        if stream.keyframe_at is None and stream.kind == "video":
            self._wait_for_keyframe(stream, data, arrival)
        # abs-send-time is the first element of a one-byte extension block (our publishers).
        if data[0] & 0x1F == 0x10 and data[16] == 0x22:
            sent = _U32.unpack_from(data, 16)[0] & 0xFFFFFF
            units = (int(arrival * ABS_SEND_TIME_UNITS) - sent) & 0xFFFFFF
            self.latency[units if units < LATENCY_BUCKETS else LATENCY_BUCKETS - 1] += 1

    def _first_packet(self, ssrc: int, seq: int, arrival: float, data: bytes) -> _InStream | None:
        kind = self.kinds.get(ssrc)
        if kind is None:
            self.unknown_ssrc += 1
            return None
        stream = self.streams[ssrc] = _InStream(ssrc, kind, seq, arrival)
        if kind != "video":
            # Decrypt the first packet of every stream (video does until its keyframe):
            # libsrtp takes its rollover counter from the first packet it sees, and a
            # stream whose sequence wrapped before our first sample would not authenticate.
            self._check_srtp(data)
            self._stop_when_all_started()
        return stream

    def _stop_when_all_started(self) -> None:
        if self.passive and self.passive_after and self.media_started_at(self.passive_after) is not None:
            asyncio.get_running_loop().call_soon(self.link.stop_reading)

    def _wait_for_keyframe(self, stream: _InStream, data: bytes, arrival: float) -> None:
        """Until a video stream's first keyframe: decrypt and look (the SFU should start
        every stream with one); otherwise ask for one as a browser would (PLI, 1/s)."""
        plain = self._check_srtp(data)
        if plain is not None and codecs.vp8_is_keyframe(plain, rtp.payload_offset(plain)):
            stream.keyframe_at = arrival
            if self.first_video_at is None:
                self.first_video_at = arrival
                if self.passive and not self.passive_after:
                    asyncio.get_running_loop().call_soon(self.link.stop_reading)
            self._stop_when_all_started()
            return
        if stream.received == 1:
            self.not_keyframe_starts += 1
        if arrival - self.last_pli_at >= 1.0:
            self.last_pli_at = arrival
            self.plis_sent += 1
            self.link.send_rtcp(rtcp.build_pli(self.rtcp_ssrc, stream.ssrc))

    def _check_srtp(self, data: bytes) -> bytes | None:
        rx = self.link.rx
        if rx is None:
            return None
        self.srtp_checked += 1
        try:
            return rx.unprotect(data)
        except (pylibsrtp.Error, ValueError):
            self.srtp_failed += 1
            return None

    def _nack(self, ssrc: int, seq: int, skipped: int) -> None:
        lost = [(seq - i) & 0xFFFF for i in range(skipped, 0, -1)]
        self.nacks_sent += 1
        self.link.send_rtcp(rtcp.build_nack(self.rtcp_ssrc, ssrc, lost))

    def media_started_at(self, streams: int) -> float | None:
        """When `streams` streams had started (audio: its first packet; video: its first
        keyframe), on the arrival clock (time.time()); None before."""
        starts = sorted(
            s.first_arrival if s.kind != "video" else s.keyframe_at
            for s in self.streams.values()
            if s.kind != "video" or s.keyframe_at is not None
        )
        return starts[streams - 1] if streams >= 1 and len(starts) >= streams else None

    @property
    def join_time(self) -> float | None:
        return None if self.first_video_at is None else self.first_video_at - self.join_started

    @property
    def keyframe_wait(self) -> float | None:
        """The part of join_time after our DTLS was up: the SFU's keyframe request, the
        publisher's answer and its forwarding (the rest is signaling, ICE and DTLS)."""
        connected = self.link.connected_at
        return None if self.first_video_at is None or connected is None else self.first_video_at - connected

    def counters(self) -> dict[str, int]:
        streams = self.streams.values()
        return {
            "packets_received": sum(s.received for s in streams),
            "packets_expected": sum(s.expected for s in streams),
            "duplicates": sum(s.duplicates for s in streams),
            "gaps": sum(s.gaps for s in streams),
            "recovered": sum(s.recovered for s in streams),
            "streams": len(self.streams),
            "unknown_ssrc": self.unknown_ssrc,
            "not_keyframe_starts": self.not_keyframe_starts,
            "before_dtls": self.before_dtls,
            "plis_sent": self.plis_sent,
            "srtp_checked": self.srtp_checked,
            "srtp_failed": self.srtp_failed,
            "nacks_sent": self.nacks_sent,
            "rtcp_received": self.rtcp_received,
        }
