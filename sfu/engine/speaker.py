"""Who is speaking: the dominant (active) speaker of a meeting, from audio levels.

Pure: no clock of its own (every call is given `now_ms`, integer milliseconds), no I/O.
One `DominantSpeaker` per meeting. Fed the audio level of each packet (RFC 6464, the
`ssrc-audio-level` header extension: 0..127, the level in -dBov, so 20 is -20 dBov and 127
silence; the V bit is ignored, as not every sender sets it), it says who dominates.

After Volfin & Cohen, "Dominant speaker identification for multipoint
videoconferencing" (and Jitsi's DominantSpeakerIdentification, which uses RFC 6464
levels in place of the paper's frequency sub-bands). Three time scales per participant:

- **immediate**: the last 20 ms frame, as a number of active "sub-bands" 0..12 (its
  loudness in 10 dB steps; a frame no louder than the participant's noise floor + 10 dB
  counts as 0);
- **medium**: the last 100 ms block, as the number of its 5 frames that were loud
  (immediate >= 7, i.e. at least -57 dBov and above the floor);
- **long**: the last second, as the number of its 10 blocks with at least 3 loud frames.

Each count is turned into a speech activity score: the log-likelihood ratio of "speech"
(binomial, p = 0.5) to "not speech" (exponential, λ 0.78 / 24 / 47 for the three
scales), floored at a tiny positive value. Every `DECISION_INTERVAL_MS` a participant
other than the dominant one takes over when, on every scale, log(its score / the
dominant's) exceeds C1 = 3, C2 = 2, C3 = 0 (it is clearly more active now, over the
last 100 ms and over the last second). Ours on top, as the dominant is often quiet and
then any activity beats it: the challenger's last second must be at least half active
(`TAKEOVER_BLOCKS` blocks: a cough or a "yes" is not) and modulated like speech, whose
level swings with its syllables (`TAKEOVER_MODULATED` blocks whose frames differ by
`MODULATION_DB` or more: a fan switched on, steady, is not). Among several challengers,
the one most ahead on the medium scale wins.

What follows from it:

- silence is not a change: nobody quiet can take over, so the last speaker stays
  dominant through pauses, however long;
- a new speaker takes over after 0.6 s of clear speech once the other has stopped
  (tests/sfu/engine/test_speaker.py: 0.6 s typically, 1.2 s at worst, with 20 or 60 ms
  packets, varied or even syllables); while the dominant keeps talking, it keeps the
  floor;
- a cough, a short interjection (under half a second) or a 0.3 s pause does not flap;
- background noise never wins: each participant's noise floor follows its quietest
  level (down at once; up to the quietest level of each `FLOOR_WINDOW_MS`, as speech
  always dips to the floor between words within seconds and noise does not dip below
  it), and nothing within 10 dB of it counts as activity. A noise that starts later (a
  fan switched on) is above the floor until the next window ends (at most twice
  FLOOR_WINDOW_MS), but, not modulated, it cannot take over meanwhile.

Packets arrive every 10–60 ms (DTX: every 400 ms in silence); a frame without a packet
takes the last level heard within `GAP_FILL_MS`, else silence.

Memory: per participant a fixed handful of integers and a ring of 10 blocks' flags,
whatever the length of the meeting; `remove` forgets a participant who left.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

SILENT = 127  # RFC 6464: -127 dBov, digital silence
FRAME_MS = 20
BAND = 10  # loudness units (dB) per immediate "sub-band"
SUBBANDS = 13  # immediate counts 0..12 of 13
FRAMES_PER_BLOCK = 5  # a medium block: 100 ms
LOUD_FRAME = 7  # immediate count from which a frame is loud (>= -57 dBov)
BLOCKS_PER_LONG = 10  # the long scale: 1 s
LOUD_BLOCK = 3  # loud frames from which a block is active
TAKEOVER_BLOCKS = 5  # active blocks in the last second needed to take over
C1, C2, C3 = 3.0, 2.0, 0.0  # log-ratio thresholds: immediate, medium, long
LAMBDAS = (0.78, 24.0, 47.0)
DECISION_INTERVAL_MS = 200
GAP_FILL_MS = 70
FLOOR_WINDOW_MS = 5_000
MODULATION_DB = 10  # a block whose frames differ by this much is modulated
TAKEOVER_MODULATED = 2  # modulated blocks in the last second needed to take over
_MIN_SCORE = 1e-10
_NOTHING = -1  # no level heard in the frame / block
_ACTIVE, _MODULATED = 1, 2


def _score_table(n: int, lam: float) -> tuple[float, ...]:
    """log(P(k of n | speech) / P(k | not speech)) for k = 0..n, floored."""
    return tuple(
        max(_MIN_SCORE, math.log(math.comb(n, k)) + n * math.log(0.5) - math.log(lam) + lam * k) for k in range(n + 1)
    )


_IMMEDIATE = _score_table(SUBBANDS, LAMBDAS[0])
_MEDIUM = _score_table(FRAMES_PER_BLOCK, LAMBDAS[1])
_LONG = _score_table(BLOCKS_PER_LONG, LAMBDAS[2])


class _Speaker:
    """One participant's levels on the three time scales."""

    __slots__ = (
        "frame",
        "frame_count",
        "frame_loudness",
        "last_count",
        "last_loudness",
        "last_at",
        "immediate",
        "block_loud",
        "block_high",
        "block_low",
        "medium",
        "blocks",
        "long",
        "modulated",
        "floor",
        "window_min",
        "window_start",
    )

    def __init__(self, now_ms: int) -> None:
        self.frame = now_ms // FRAME_MS  # the frame being filled
        self.frame_count = 0  # its immediate count so far (the loudest packet's)
        self.frame_loudness = _NOTHING  # its loudness (127 - level) so far
        self.last_count = 0  # the last packet's immediate count
        self.last_loudness = 0  # and loudness
        self.last_at = now_ms - GAP_FILL_MS  # and when it came
        self.immediate = 0  # the last whole frame's count
        self.block_loud = 0  # loud frames so far in the block being filled
        self.block_high = _NOTHING  # its loudest and quietest frames heard
        self.block_low = SILENT
        self.medium = 0  # the last whole block's loud frames
        self.blocks = [0] * BLOCKS_PER_LONG  # the last second's blocks: _ACTIVE | _MODULATED
        self.long = 0  # active blocks in `blocks`
        self.modulated = 0  # modulated blocks in `blocks`
        self.floor: int | None = None  # the noise floor, in loudness
        self.window_min = SILENT
        self.window_start = now_ms

    def advance(self, now_ms: int) -> None:
        """Close every frame before the one `now_ms` falls in."""
        target = now_ms // FRAME_MS
        if target <= self.frame:
            return
        if target - self.frame > FRAMES_PER_BLOCK * BLOCKS_PER_LONG + FRAMES_PER_BLOCK:
            # Silent for more than the long scale: everything is quiet now.
            self.immediate = self.medium = self.block_loud = self.long = self.modulated = 0
            self.block_high, self.block_low = _NOTHING, SILENT
            self.blocks = [0] * BLOCKS_PER_LONG
            self.frame, self.frame_count, self.frame_loudness = target, 0, _NOTHING
            return
        while self.frame < target:
            self._close_frame()
            self.frame += 1
            if self.frame * FRAME_MS - self.last_at < GAP_FILL_MS:
                self.frame_count, self.frame_loudness = self.last_count, self.last_loudness
            else:
                self.frame_count, self.frame_loudness = 0, _NOTHING

    def _close_frame(self) -> None:
        count = self.frame_count
        self.immediate = count
        if count >= LOUD_FRAME:
            self.block_loud += 1
        loudness = self.frame_loudness
        if loudness != _NOTHING:  # a frame nothing was heard in says nothing of modulation
            self.block_high = max(self.block_high, loudness)
            self.block_low = min(self.block_low, loudness)
        if self.frame % FRAMES_PER_BLOCK == FRAMES_PER_BLOCK - 1:
            self.medium = self.block_loud
            slot = (self.frame // FRAMES_PER_BLOCK) % BLOCKS_PER_LONG
            old = self.blocks[slot]
            new = _ACTIVE if self.block_loud >= LOUD_BLOCK else 0
            if self.block_high - self.block_low >= MODULATION_DB:
                new |= _MODULATED
            self.long += (new & _ACTIVE) - (old & _ACTIVE)
            self.modulated += (new >> 1) - (old >> 1)
            self.blocks[slot] = new
            self.block_loud, self.block_high, self.block_low = 0, _NOTHING, SILENT

    def level(self, level: int, now_ms: int) -> None:
        """One packet's level, heard at `now_ms` (not before the frame being filled)."""
        loudness = SILENT - min(max(level, 0), SILENT)
        count = 0
        if loudness > 0:
            floor = self.floor
            if floor is None or loudness < floor:
                self.floor = floor = loudness
            self.window_min = min(self.window_min, loudness)
            if now_ms - self.window_start >= FLOOR_WINDOW_MS:
                if self.window_min > floor:  # nothing this quiet for a whole window: the floor rose
                    self.floor = floor = self.window_min
                self.window_min, self.window_start = SILENT, now_ms
            if loudness >= floor + BAND:
                count = min(loudness // BAND, SUBBANDS - 1)
        self.last_count, self.last_loudness, self.last_at = count, loudness, now_ms
        if count > self.frame_count:
            self.frame_count = count
        if loudness > self.frame_loudness:
            self.frame_loudness = loudness

    def may_take_over(self) -> bool:
        return self.long >= TAKEOVER_BLOCKS and self.modulated >= TAKEOVER_MODULATED

    def scores(self) -> tuple[float, float, float]:
        return (_IMMEDIATE[self.immediate], _MEDIUM[self.medium], _LONG[self.long])


class DominantSpeaker:
    """The dominant speaker of one meeting (see the module docstring).

    Participants are any hashable ids. The caller feeds `on_level` per audio packet and
    calls `tick` on a timer (every DECISION_INTERVAL_MS or so; `next_tick_ms` says when
    the next decision is due)."""

    __slots__ = ("_speakers", "_dominant", "_recency", "_next_decision", "changes")

    def __init__(self) -> None:
        self._speakers: dict[Hashable, _Speaker] = {}
        self._dominant: Hashable | None = None
        self._recency: list[Hashable] = []  # ever dominant, most recent first
        self._next_decision: int | None = None
        self.changes = 0  # how many times the dominant speaker changed

    @property
    def dominant(self) -> Hashable | None:
        return self._dominant

    @property
    def next_tick_ms(self) -> int | None:
        """When the next decision is due (None: nothing heard yet)."""
        return self._next_decision

    def on_level(self, participant: Hashable, level_dbov: int, now_ms: int) -> None:
        """An audio packet from `participant` with RFC 6464 level `level_dbov` (0..127,
        -dBov) arrived at `now_ms`."""
        speaker = self._speakers.get(participant)
        if speaker is None:
            speaker = self._speakers[participant] = _Speaker(now_ms)
            if self._next_decision is None:
                self._next_decision = now_ms + DECISION_INTERVAL_MS
        speaker.advance(now_ms)
        speaker.level(level_dbov, now_ms)

    def remove(self, participant: Hashable) -> None:
        """The participant left: forgotten (if they were dominant, nobody is until someone speaks)."""
        self._speakers.pop(participant, None)
        if participant in self._recency:
            self._recency.remove(participant)
        if self._dominant == participant:
            self._dominant = None

    def speakers_by_recency(self) -> list[Hashable]:
        """Everyone who has been dominant, the current one first, then by when they last
        were (the allocator's `speakers`); those who never were are not listed."""
        return list(self._recency)

    def tick(self, now_ms: int) -> Hashable | None:
        """Decide, if a decision is due: the new dominant speaker, or None (no change)."""
        if self._next_decision is None or now_ms < self._next_decision:
            return None
        self._next_decision = now_ms + DECISION_INTERVAL_MS
        for speaker in self._speakers.values():
            speaker.advance(now_ms)
        winner = self._decide()
        if winner is None or winner == self._dominant:
            return None
        self._dominant = winner
        if winner in self._recency:
            self._recency.remove(winner)
        self._recency.insert(0, winner)
        self.changes += 1
        return winner

    def _decide(self) -> Hashable | None:
        current = self._speakers.get(self._dominant) if self._dominant is not None else None
        if current is None:
            # Nobody dominates yet: the most active of those who could take over.
            best, best_key = None, None
            for participant, speaker in self._speakers.items():
                key = (speaker.long, speaker.medium, speaker.immediate)
                if speaker.may_take_over() and (best_key is None or key > best_key):
                    best, best_key = participant, key
            return best
        ours = current.scores()
        best, best_c2 = None, C2
        for participant, speaker in self._speakers.items():
            if speaker is current or not speaker.may_take_over():
                continue
            theirs = speaker.scores()
            c1 = math.log(theirs[0] / ours[0])
            c2 = math.log(theirs[1] / ours[1])
            c3 = math.log(theirs[2] / ours[2])
            if c1 > C1 and c2 > best_c2 and c3 > C3:
                best, best_c2 = participant, c2
        return best
