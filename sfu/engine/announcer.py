"""The announcer: a server-side audio producer that plays short clips into a meeting.

Control makes one per meeting, on a direct transport of the meeting's router
(DIRECT_TRANSPORT_CREATE, then DIRECT_PRODUCER_CREATE; source "announcement"). No peer
sends to it: its packets come from a clip of Opus packets (20 ms each) that control sends
with NOTICE_PLAY, e.g. "This meeting is being recorded." Subscribers consume it like any
audio track, so the notice travels in-band, through the normal `Consumer.forward` path
(rewrite + the sink's SRTP), to browsers, bots and plain-RTP receivers alike.

Sans-I/O: `play` records what is to be sent, `tick(now)` sends whatever is due at `now`
and `next_due` says when to call it again. The worker's `NoticeClock`
(notice_clock.py) paces every announcer; nothing here sleeps or reads a clock, and
nothing here runs per forwarded publisher packet.

Sequence numbers and timestamps (RFC 3550 §5.1) are per consumer: each consumer has its
own line that continues across plays (no sequence gap, timestamps that advance with the
time between plays), because a subscriber may be in a different play than its
neighbour. A consumer is in at most one play at a time; a new play for it replaces the
old one from the next packet on. The first packet of a play carries the marker bit (the
start of a talkspurt, RFC 3551 §4.1), which tells the receiver's jitter buffer that the
silence before it was not loss. A consumer that cannot receive yet waits for its play
(`MAX_WAIT_S`) so that a joiner hears the whole notice, not its tail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sfu.engine.consumer import Consumer
from sfu.engine.producer import NO_LISTENER, Producer, ProducerListener, ProducerParams, RtcpSink
from sfu.engine.stats import Counters

SOURCE = "announcement"
CLOCK_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz: the only packetization a clip may have
FRAME_SECONDS = FRAME_SAMPLES / CLOCK_RATE
# A clip is a notice, not a programme: one minute at most keeps a NOTICE_PLAY small.
MAX_FRAMES = 3000
# RTP header (12) + payload must stay within what SRTP can protect (see plain.py's
# MAX_FORWARDABLE_RTP, 1356); an Opus packet of 20 ms is far below this anyway.
MAX_PAYLOAD = 1344
# Timers fire a little early on some loops (uvloop rounds to milliseconds): a frame due
# within this margin is sent now rather than after another loop round trip.
EARLY_TOLERANCE_S = 0.002
# A tick this late or later (the loop stalled) does not send the backlog as a burst: the
# play resumes at its normal pace from now, its audio intact, just later.
MAX_CATCH_UP_S = 3 * FRAME_SECONDS
# A consumer that cannot receive yet when its play starts (a joiner whose subscriber has
# not answered the offer, or whose DTLS is not up) gets the clip from its first frame
# once it can, if that happens within this long; meanwhile it is looked at this often.
MAX_WAIT_S = 10.0
WAIT_POLL_S = 0.05

_MARKER = 0x0080  # in `head`: the first two header bytes without the payload type
_VERSION_2 = 0x8000


def opus_samples(packet: bytes) -> int:
    """Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716 §3.1)."""
    if not packet:
        raise ValueError("opus packet: empty")
    toc = packet[0]
    config = toc >> 3
    if config < 12:  # SILK-only: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config & 1]
    else:  # CELT-only: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config & 3]
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:  # code 3: the frame count is in the next byte (§3.2.5)
        if len(packet) < 2 or not packet[1] & 0x3F:
            raise ValueError("opus packet: code 3 without a frame count")
        count = packet[1] & 0x3F
    return frame * count


def check_clip(frames: list[bytes]) -> None:
    """ValueError (naming the frame) unless `frames` is a playable clip of 20 ms packets."""
    if not frames:
        raise ValueError("frames: empty")
    if len(frames) > MAX_FRAMES:
        raise ValueError(f"frames: {len(frames)} packets, at most {MAX_FRAMES} (60 s)")
    for index, frame in enumerate(frames):
        if not 0 < len(frame) <= MAX_PAYLOAD:
            raise ValueError(f"frames[{index}]: {len(frame)} bytes, expected 1..{MAX_PAYLOAD}")
        samples = opus_samples(frame)
        if samples != FRAME_SAMPLES:
            raise ValueError(f"frames[{index}]: {samples / 48:g} ms of Opus, expected 20 ms")


class _Line:
    """One consumer's RTP line in the announcer's own numbering (the consumer adds its
    offsets on top), and the play it is in."""

    __slots__ = ("consumer", "seq", "ts", "last_due", "play", "fresh", "waiting_for", "wait_until")

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.seq = 0
        self.ts = 0
        self.last_due: float | None = None  # when its last packet was due: None before any
        self.play: _Play | None = None
        self.fresh = True  # the next packet is its first in `play`
        # The clip it will play once its consumer can receive (and until when to wait).
        self.waiting_for: list[bytes] | None = None
        self.wait_until = 0.0


class _Play:
    __slots__ = ("frames", "start", "index", "lines")

    def __init__(self, frames: list[bytes], start: float, lines: list[_Line]) -> None:
        self.frames = frames
        self.start = start  # when frame 0 is due; frame i is due FRAME_SECONDS * i later
        self.index = 0  # the next frame to send
        self.lines = lines

    @property
    def due(self) -> float:
        return self.start + self.index * FRAME_SECONDS


class Announcer(Producer):
    """A Producer fed by clips, not by a peer: consumers attach to it as to any audio
    producer. `sink` and `listener` are its direct transport: RTCP it would send goes
    nowhere (it never NACKs, being fed whole, and never asks for keyframes, being audio)."""

    __slots__ = ("_lines", "_plays", "_waiting", "_poll_at")

    def __init__(
        self,
        producer_id: str,
        payload_type: int,
        counters: Counters,
        clock: Callable[[], float],
        sink: RtcpSink,
        *,
        mid: str = "",
        source: str = SOURCE,
        listener: ProducerListener = NO_LISTENER,
    ) -> None:
        params = ProducerParams(
            producer_id=producer_id,
            kind="audio",
            source=source,
            mid=mid,
            codec_name="opus",
            clock_rate=CLOCK_RATE,
            payload_type=payload_type,
            ssrc=None,  # nothing arrives for it, and with no SSRC it never sends a PLI
            extmap={},
            channels=2,
            cname="announcer",
        )
        # A one-slot cache that is never filled: NACKs for the announcer are answered as
        # missed (counted by the consumer); the clip is not worth a retransmission path.
        # Its own stream id (msid): announcers do not group with one another.
        super().__init__(params, sink, counters, clock, stream_id=producer_id, cache_size=1, listener=listener)
        self._lines: dict[Consumer, _Line] = {}
        self._plays: list[_Play] = []
        self._waiting: list[_Line] = []  # lines whose consumer cannot receive yet
        self._poll_at: float | None = None  # when to look at them again

    # ------------------------------------------------------------------ playing

    def play(self, frames: list[bytes], consumers: Iterable[Consumer], now: float) -> int:
        """Start playing `frames` (checked with `check_clip`) to `consumers` at `now`.

        Consumers already in a play leave it; those that cannot receive yet wait for it.
        Returns how many consumers the play has.
        """
        check_clip(frames)
        frames = list(frames)
        chosen: dict[Consumer, _Line] = {}
        for consumer in consumers:
            if consumer.closed or consumer.producer is not self or consumer in chosen:
                continue
            line = self._lines.get(consumer)
            if line is None:
                line = self._lines[consumer] = _Line(consumer)
            chosen[consumer] = line
        play = _Play(frames, now, [])
        for line in chosen.values():
            line.play = None  # leaves its old play, which skips lines that are not its own
            line.waiting_for = None
            if line.consumer.can_send():
                line.play = play
                line.fresh = True
                play.lines.append(line)
            else:
                self._wait(line, frames, now)
        if play.lines:
            self._plays.append(play)
        self._prune()
        return len(chosen)

    def _wait(self, line: _Line, frames: list[bytes], now: float) -> None:
        line.waiting_for = frames
        line.wait_until = now + MAX_WAIT_S
        if line not in self._waiting:
            self._waiting.append(line)
        if self._poll_at is None:
            self._poll_at = now + WAIT_POLL_S

    def _start_waiting(self, now: float) -> None:
        """Start the clip of every waiting consumer that can receive now; give up on late ones."""
        still = []
        started: dict[int, _Play] = {}  # by clip: those of one NOTICE_PLAY start together
        for line in self._waiting:
            frames = line.waiting_for
            if frames is None or line.consumer.closed:
                continue  # replaced by a newer play, or gone
            if line.consumer.can_send():
                play = started.get(id(frames))
                if play is None:
                    play = started[id(frames)] = _Play(frames, now, [])
                    self._plays.append(play)
                play.lines.append(line)
                line.play = play
                line.fresh = True
                line.waiting_for = None
            elif now >= line.wait_until:
                line.waiting_for = None  # it never could: no notice for it from this play
            else:
                still.append(line)
        self._waiting = still
        self._poll_at = now + WAIT_POLL_S if still else None

    @property
    def next_due(self) -> float | None:
        """When `tick` has something to do next; None when no play is running or waiting."""
        due = min((p.due for p in self._plays), default=None)
        if self._poll_at is not None and (due is None or self._poll_at < due):
            return self._poll_at
        return due

    def tick(self, now: float) -> int:
        """Send every frame due at `now`; returns the RTP packets the consumers sent."""
        if self._poll_at is not None:
            self._start_waiting(now)
        sent = 0
        for play in self._plays:
            while play.index < len(play.frames):
                due = play.due
                if due > now + EARLY_TOLERANCE_S:
                    break
                if now - due >= MAX_CATCH_UP_S:  # the loop stalled: resume the pace from now
                    play.start = now - play.index * FRAME_SECONDS
                    due = now
                sent += self._send(play, due)
                play.index += 1
        self._prune()
        return sent

    def stop(self) -> None:
        """Abandon every play (lines keep their numbering for the next one)."""
        for line in self._lines.values():
            line.play = None
            line.waiting_for = None
        self._plays.clear()
        self._waiting.clear()
        self._poll_at = None

    def _send(self, play: _Play, due: float) -> int:
        frame = play.frames[play.index]
        head = (_VERSION_2 | _MARKER) if play.index == 0 else _VERSION_2
        sent = 0
        for line in play.lines:
            if line.play is not play:
                continue  # replaced by a newer play, or its consumer closed
            if line.fresh:
                line.fresh = False
                if line.last_due is not None:
                    # The timestamp advances with the time since its last packet, so the
                    # receiver plays the new clip after a silence of the right length.
                    gap = max(1, round((due - line.last_due) / FRAME_SECONDS))
                    line.ts = (line.ts + gap * FRAME_SAMPLES) & 0xFFFFFFFF
                    line.seq = (line.seq + 1) & 0xFFFF
            else:
                line.ts = (line.ts + FRAME_SAMPLES) & 0xFFFFFFFF
                line.seq = (line.seq + 1) & 0xFFFF
            line.last_due = due
            if self.paused:
                continue  # server-side mute applies to the announcer too
            consumer = line.consumer
            before = consumer.packets_sent
            # `forward` reads the producer packet only to rewrite header extensions (the X
            # bit of `head`), which the announcer never sets: the payload stands in for it.
            consumer.forward(frame, line.seq, line.ts, True, head, frame)
            sent += consumer.packets_sent - before
        return sent

    def _prune(self) -> None:
        """Forget plays that are over: played to the end, or every consumer left them."""
        running = []
        for play in self._plays:
            own = [line for line in play.lines if line.play is play]
            if play.index < len(play.frames) and own:
                play.lines = own
                running.append(play)
            else:
                for line in own:
                    line.play = None
        self._plays = running

    # ------------------------------------------------------------------ lifecycle

    def on_rtp(self, packet: bytes, ssrc: int) -> None:
        # No transport routes RTP here (it has no SSRC and no transport); if one ever did,
        # it would be someone else's stream.
        self.counters.drop("unknown_ssrc")

    def last_timestamp(self, consumer: Consumer) -> int | None:
        line = self._lines.get(consumer)
        return None if line is None or line.last_due is None else line.ts

    def remove_consumer(self, consumer: Consumer) -> None:
        super().remove_consumer(consumer)
        line = self._lines.pop(consumer, None)
        if line is not None:
            line.play = None
            line.waiting_for = None

    def close(self) -> None:
        self.stop()
        self._lines.clear()
        super().close()
