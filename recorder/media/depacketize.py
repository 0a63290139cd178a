"""Rebuild codec frames from in-order RTP packets (the jitter buffer's output).

- VP8 (RFC 7741): a frame starts at S=1 with PID 0 and ends at the marker bit; every
  packet of it carries the same timestamp and consecutive sequence numbers.
- H.264 (RFC 6184, packetization mode 1): single NAL units (§5.6), STAP-A (§5.7.1) and
  FU-A (§5.8) become one Annex B access unit per timestamp, ended by the marker bit.
- Opus (RFC 7587 §4.2): one packet is one frame.

A frame with a hole in it is dropped and counted, never emitted half-built. After a
video frame is lost the depacketizer drops the frames that depend on it until the next
key frame and says so through `needs_keyframe`, so the owner can send a PLI.
"""

from __future__ import annotations

from sfu.wire.codecs import vp8_descriptor
from sfu.wire.rtp import SEQUENCE_MASK

from recorder.media import bitstream
from recorder.media.bitstream import ANNEX_B_START_CODE
from recorder.media.packet import MediaPacket

H264_STAP_A = 24
H264_FU_A = 28
# A frame that grows past this without its marker bit is dropped: a sender can't make the
# recorder hold an endless frame. A 4K key frame is well under 2 MiB.
MAX_FRAME_BYTES = 8 * 1024 * 1024


class Frame:
    """One encoded frame: VP8 frame, H.264 Annex B access unit or Opus packet.

    `timestamp` is the RTP timestamp; `arrival` that of the packet that completed it;
    `duration` is in RTP ticks when the bitstream says (Opus), else None.
    """

    __slots__ = ("data", "timestamp", "keyframe", "arrival", "duration")

    def __init__(
        self, data: bytes, timestamp: int, keyframe: bool, arrival: float = 0.0, duration: int | None = None
    ) -> None:
        self.data = data
        self.timestamp = timestamp
        self.keyframe = keyframe
        self.arrival = arrival
        self.duration = duration

    def __repr__(self) -> str:
        return (
            f"Frame(ts={self.timestamp}, keyframe={self.keyframe}, {len(self.data)} bytes, "
            f"duration={self.duration})"
        )


class DepacketizerStats:
    __slots__ = (
        "packets",
        "frames",
        "keyframes",
        "dropped_frames",
        "skipped_frames",
        "padding",
        "malformed",
        "unsupported",
    )

    def __init__(self) -> None:
        self.packets = 0
        self.frames = 0  # frames emitted
        self.keyframes = 0
        self.dropped_frames = 0  # frames with a hole in them (or whose start was lost)
        self.skipped_frames = 0  # complete frames dropped while waiting for a key frame
        self.padding = 0  # packets without payload, ignored
        self.malformed = 0  # packets whose payload could not be read
        self.unsupported = 0  # packets of a packetization this module does not rebuild

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class _VideoAssembler:
    """What VP8 and H.264 share: one frame under construction, sequence continuity,
    loss accounting and the wait for a key frame after a loss."""

    def __init__(self) -> None:
        self.stats = DepacketizerStats()
        self.needs_keyframe = True  # a recording starts at a key frame
        self.last_drop_reason = ""
        self._last_seq: int | None = None
        self._building = False  # a frame is under construction
        self._timestamp = 0
        self._frame_bytes = 0  # payload bytes of the frame under construction
        self._dropped_timestamp: int | None = None  # the frame being discarded, if any

    def push(self, packet: MediaPacket) -> list[Frame]:
        self.stats.packets += 1
        previous = self._last_seq
        contiguous = previous is None or packet.sequence_number == (previous + 1) & SEQUENCE_MASK
        self._last_seq = packet.sequence_number
        if not contiguous:
            missing = (packet.sequence_number - previous - 1) & SEQUENCE_MASK
            tail_only = self._building and missing == 1 and packet.timestamp != self._timestamp
            if self._building:
                self._drop(self._timestamp, "packets missing inside the frame", self._is_reference())
            if packet.timestamp != self._dropped_timestamp and not tail_only:
                # What went missing may be a whole frame, or this frame's first packets.
                # (One packet missing after an unfinished frame was that frame's last.)
                self._lost_between_frames()
        elif self._building and packet.timestamp != self._timestamp:
            self._drop(self._timestamp, "frame without a marker bit", self._is_reference())
        if not packet.payload:
            self.stats.padding += 1  # RFC 3550 §5.1 padding only (bandwidth probes)
            return []
        if self._building:  # (then this packet has the frame's timestamp)
            self._frame_bytes += len(packet.payload)
            if self._frame_bytes > MAX_FRAME_BYTES:
                self._drop(self._timestamp, f"frame larger than {MAX_FRAME_BYTES} bytes")
                return []
        return self._consume(packet)

    # Subclasses implement _consume (read one packet) and _lost_between_frames.

    def _consume(self, packet: MediaPacket) -> list[Frame]:
        raise NotImplementedError

    def _lost_between_frames(self) -> None:
        self.needs_keyframe = True

    def _is_reference(self) -> bool:
        """Whether later frames may depend on the frame under construction."""
        return True

    def _begin(self, timestamp: int) -> None:
        self._building = True
        self._timestamp = timestamp
        self._frame_bytes = 0

    def _drop(self, timestamp: int, reason: str, reference: bool = True) -> None:
        """Discard the frame at `timestamp` (counted once per frame)."""
        self._building = False
        self._reset_frame()
        if self._dropped_timestamp != timestamp:
            self._dropped_timestamp = timestamp
            self.stats.dropped_frames += 1
            self.last_drop_reason = reason
        if reference:
            self.needs_keyframe = True

    def _reset_frame(self) -> None:
        raise NotImplementedError

    def _finish(self, data: bytes, keyframe: bool, packet: MediaPacket) -> list[Frame]:
        self._building = False
        self._reset_frame()
        if self.needs_keyframe and not keyframe:
            self.stats.skipped_frames += 1
            return []
        self.needs_keyframe = False
        self.stats.frames += 1
        self.stats.keyframes += keyframe
        return [Frame(data, packet.timestamp, keyframe, packet.arrival)]


class Vp8Depacketizer(_VideoAssembler):
    """RFC 7741 §4: payload descriptor, then VP8 payload; frames end at the marker bit."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._non_reference = False

    def _reset_frame(self) -> None:
        self._parts = []

    def _is_reference(self) -> bool:
        return not self._non_reference  # §4.2: N=1, no other frame refers to this one

    def _consume(self, packet: MediaPacket) -> list[Frame]:
        try:
            desc = vp8_descriptor(packet.payload)
        except ValueError:
            self.stats.malformed += 1
            self._drop(packet.timestamp, "malformed VP8 payload descriptor")
            return []
        data = packet.payload[desc.header_size :]
        # §4.3: S=1 with PID 0 is the first packet of a frame.
        if desc.start_of_partition and desc.partition_id == 0:
            if self._building:
                self._drop(self._timestamp, "frame without its last packet", self._is_reference())
            if not data:
                self.stats.malformed += 1
                self._drop(packet.timestamp, "empty VP8 payload")
                return []
            self._begin(packet.timestamp)
            self._non_reference = desc.non_reference
        elif not self._building:
            if self._dropped_timestamp != packet.timestamp:
                self._drop(packet.timestamp, "frame without its first packet")
            return []
        self._parts.append(data)
        if not packet.marker:
            return []
        frame = b"".join(self._parts)
        return self._finish(frame, bitstream.vp8_is_key_frame(frame), packet)


class H264Depacketizer(_VideoAssembler):
    """RFC 6184 packetization mode 1 into Annex B access units. An IDR picture is a key
    frame; the latest SPS and PPS are put in front of any IDR access unit that lacks
    them, so every key frame decodes on its own."""

    def __init__(self) -> None:
        super().__init__()
        self._nals: list[bytes] = []
        self._fragment: bytearray | None = None
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self._head_unknown = False  # packets were lost just before this access unit

    def _reset_frame(self) -> None:
        self._nals = []
        self._fragment = None

    def _lost_between_frames(self) -> None:
        # The missing packets may have been this access unit's first NAL units.
        self._head_unknown = True

    def _consume(self, packet: MediaPacket) -> list[Frame]:
        payload = packet.payload
        if not self._building:
            if self._dropped_timestamp == packet.timestamp:
                return []  # the rest of an access unit already given up on
            self._begin(packet.timestamp)
        try:
            self._read_payload(payload)
        except ValueError as error:
            self._drop(packet.timestamp, str(error))
            return []
        if not packet.marker:
            return []
        if self._fragment is not None:
            self._drop(packet.timestamp, "FU-A without its end fragment")
            return []
        return self._complete(packet)

    def _read_payload(self, payload: bytes) -> None:
        nal_type = payload[0] & 0x1F
        if 1 <= nal_type <= 23:  # §5.6: a single NAL unit
            self._add_nal(payload)
        elif nal_type == H264_STAP_A:  # §5.7.1: 16-bit size, NAL unit, repeated
            pos = 1
            while pos < len(payload):
                if pos + 2 > len(payload):
                    self.stats.malformed += 1
                    raise ValueError("STAP-A: truncated NALU size")
                size = (payload[pos] << 8) | payload[pos + 1]
                pos += 2
                if size == 0 or pos + size > len(payload):
                    self.stats.malformed += 1
                    raise ValueError(f"STAP-A: NALU size {size} overruns the packet")
                self._add_nal(payload[pos : pos + size])
                pos += size
        elif nal_type == H264_FU_A:
            self._read_fragment(payload)
        else:  # STAP-B, MTAP, FU-B (interleaved mode) and reserved types
            self.stats.unsupported += 1
            raise ValueError(f"H264 NAL type {nal_type}: packetization not supported")

    def _read_fragment(self, payload: bytes) -> None:
        """§5.8: FU indicator (F, NRI, type 28), FU header (S, E, R, NAL type)."""
        if len(payload) < 3:
            self.stats.malformed += 1
            raise ValueError("FU-A: shorter than its two header bytes and one payload byte")
        indicator, header = payload[0], payload[1]
        if header & 0x80:
            if self._fragment is not None:
                raise ValueError("FU-A: a new start before the previous end")
            self._fragment = bytearray(((indicator & 0xE0) | (header & 0x1F),))
        elif self._fragment is None:
            raise ValueError("FU-A: continuation without its start fragment")
        self._fragment += payload[2:]
        if header & 0x40:
            nal = bytes(self._fragment)
            self._fragment = None
            self._add_nal(nal)

    def _add_nal(self, nal: bytes) -> None:
        if not self._nals and self._head_unknown:
            self._head_unknown = False
            if not bitstream.h264_starts_picture(nal):
                raise ValueError("access unit without its first NAL units")
        self._nals.append(nal)

    def _complete(self, packet: MediaPacket) -> list[Frame]:
        nals = self._nals
        types = {nal[0] & 0x1F for nal in nals}
        for nal in nals:
            if nal[0] & 0x1F == bitstream.H264_NAL_SPS:
                self._sps = nal
            elif nal[0] & 0x1F == bitstream.H264_NAL_PPS:
                self._pps = nal
        keyframe = bitstream.H264_NAL_IDR in types
        if keyframe and not {bitstream.H264_NAL_SPS, bitstream.H264_NAL_PPS} <= types:
            if self._sps is None or self._pps is None:
                keyframe = False  # undecodable on its own until parameter sets arrive
            else:
                nals = [self._sps, self._pps, *nals]
        if not nals:
            self._building = False
            return []
        data = b"".join(ANNEX_B_START_CODE + nal for nal in nals)
        return self._finish(data, keyframe, packet)


class OpusDepacketizer:
    """RFC 7587 §4.2: each RTP payload is one Opus packet."""

    needs_keyframe = False

    def __init__(self) -> None:
        self.stats = DepacketizerStats()

    def push(self, packet: MediaPacket) -> list[Frame]:
        self.stats.packets += 1
        if not packet.payload:
            self.stats.padding += 1
            return []
        try:
            duration = bitstream.opus_samples(packet.payload)
        except ValueError:
            self.stats.malformed += 1
            return []
        self.stats.frames += 1
        return [Frame(packet.payload, packet.timestamp, True, packet.arrival, duration)]


Depacketizer = Vp8Depacketizer | H264Depacketizer | OpusDepacketizer


def codec_key(codec_name: str) -> str:
    """"VP8", "video/VP8", "h264", "opus" -> "vp8" / "h264" / "opus"."""
    name = codec_name.lower().rpartition("/")[2]
    if name not in ("vp8", "h264", "opus"):
        raise ValueError(f"codec: {codec_name!r} is not one of VP8, H264, opus")
    return name


def depacketizer_for(codec_name: str) -> Depacketizer:
    return {"vp8": Vp8Depacketizer, "h264": H264Depacketizer, "opus": OpusDepacketizer}[codec_key(codec_name)]()
