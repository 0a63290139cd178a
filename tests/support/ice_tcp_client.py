"""A subscriber that reaches a worker over ICE-TCP, made by hand (no browser, no aiortc
peer): what a client whose UDP is blocked does, step by step, so a test can then make it
misbehave (stop reading, send bad framing).

- connect to the worker's passive TCP candidate; every packet is an RFC 4571 frame
  (sfu.wire.framing);
- one nominated ICE check (sfu.wire.stun, USE-CANDIDATE, ICE-CONTROLLING) with the
  server's credentials from its SDP;
- DTLS as client: `sfu.transport.dtls.DtlsSession` (the same aiortc handshake the worker
  uses), then SRTP keys;
- media is counted per SSRC from the clear RTP header (RFC 3711 §3.1), not decrypted.

`subscribe_answer` is the SDP such a client answers: every sendonly m-line accepted, its
first codec, no transport-cc and no REMB (the worker then never limits what it sends for
bandwidth: the tests want a steady stream).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
from collections import Counter

from aiortc.rtcdtlstransport import RTCCertificate

from sfu.transport.dtls import DtlsSession, certificate_fingerprint
from sfu.wire import sdp, stun
from sfu.wire.framing import Deframer, frame

_ICE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _ice_string(length: int) -> str:
    return "".join(secrets.choice(_ICE_CHARS) for _ in range(length))


def tcp_candidates(description: sdp.SessionDescription) -> list[tuple[str, int]]:
    """The (ip, port) of every passive TCP candidate of the transport's m-line."""
    media = next(m for m in description.media if not m.rejected and m.ice_ufrag)
    found = []
    for candidate in media.candidates:
        tokens = candidate.split()
        if tokens[2].lower() == "tcp" and "passive" in tokens[8:]:
            found.append((tokens[4], int(tokens[5])))
    return found


class IceTcpSubscriber(asyncio.Protocol):
    def __init__(self) -> None:
        self.certificate = RTCCertificate.generateCertificate()
        self.fingerprint = certificate_fingerprint(self.certificate)
        self.ice_ufrag = _ice_string(8)
        self.ice_pwd = _ice_string(24)
        self.deframer = Deframer()
        self.tcp: asyncio.Transport | None = None
        self.dtls: DtlsSession | None = None
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.checked: asyncio.Future[None] | None = None
        self.rtp: Counter[int] = Counter()  # RTP packets received by SSRC
        self.frames = 0

    # ------------------------------------------------------------ SDP

    def subscribe_answer(self, offer_text: str) -> str:
        offer = sdp.parse(offer_text)
        media = []
        for theirs in offer.media:
            accept = theirs.direction in ("sendonly", "sendrecv") and not theirs.rejected
            primary = theirs.codecs[0]
            feedback = tuple(f for f in primary.rtcp_fb if f in ("nack", "nack pli", "ccm fir"))
            media.append(sdp.MediaDescription(
                theirs.kind, theirs.mid, 9, "UDP/TLS/RTP/SAVPF", "recvonly" if accept else "inactive",
                ice_ufrag=self.ice_ufrag, ice_pwd=self.ice_pwd, fingerprints=[sdp.Fingerprint(*self.fingerprint)],
                setup="active", rtcp_mux=True, rtcp_rsize=True,
                codecs=[sdp.Codec(primary.payload_type, primary.name, primary.clock_rate, primary.channels,
                                  primary.fmtp, feedback)],
            ))  # fmt: skip
        description = sdp.SessionDescription(
            random.getrandbits(62), offer.session_version, ice_lite=False, bundle=[m.mid for m in media], media=media
        )
        return sdp.serialize(description)

    # ------------------------------------------------------------ connecting

    async def connect(self, offer_text: str, timeout: float = 10.0, receive_buffer: int = 0) -> None:
        """TCP to the offer's first passive candidate, the ICE check, the DTLS handshake.
        `receive_buffer`: the socket's SO_RCVBUF, set before connecting (the window it
        advertises follows it), 0: the kernel's default."""
        offer = sdp.parse(offer_text)
        host, port = tcp_candidates(offer)[0]
        media = next(m for m in offer.media if not m.rejected and m.ice_ufrag)
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        except BaseException:
            sock.close()
            raise
        await loop.create_connection(lambda: self, sock=sock)
        self.checked = loop.create_future()
        username = f"{media.ice_ufrag}:{self.ice_ufrag}"
        check = stun.build_binding_request(
            os.urandom(12), username, (media.ice_pwd or "").encode(), priority=0x5A7FFFFF,
            controlling_tiebreaker=random.getrandbits(63), use_candidate=True,
        )  # fmt: skip
        self.send(check)  # TCP does not lose it: no retransmission (RFC 6544 §7.1)
        await asyncio.wait_for(self.checked, timeout)
        self.dtls = DtlsSession(self.certificate, self.send, self._on_dtls_connected, self._on_dtls_down)
        self.dtls.start("client", [(f.algorithm, f.value) for f in media.fingerprints])
        await asyncio.wait_for(self.connected.wait(), timeout)

    def send(self, packet: bytes) -> None:
        if self.tcp is not None and not self.tcp.is_closing():
            self.tcp.write(frame(packet))

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are, unframed: for framing the worker must refuse."""
        assert self.tcp is not None
        self.tcp.write(data)

    def stop_reading(self) -> None:
        """Take nothing more from the socket: the kernel's buffers fill, then the worker's."""
        assert self.tcp is not None
        self.tcp.pause_reading()

    async def close(self) -> None:
        if self.dtls is not None:
            await self.dtls.close()
        if self.tcp is not None:
            self.tcp.abort()

    def _on_dtls_connected(self, rx: object, tx: object) -> None:
        self.connected.set()

    def _on_dtls_down(self, state: str) -> None:
        pass

    # ------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tcp = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        for packet in self.deframer.feed(data):
            self.frames += 1
            first = packet[0]
            if first < 4:
                message = stun.parse(packet)
                if message.message_class == stun.CLASS_SUCCESS and self.checked and not self.checked.done():
                    self.checked.set_result(None)
            elif 19 < first < 64 and self.dtls is not None:
                self.dtls.feed(packet)
            elif 127 < first < 192 and len(packet) >= 12 and not 191 < packet[1] < 224:
                self.rtp[int.from_bytes(packet[8:12], "big")] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.tcp = None
        self.closed.set()
