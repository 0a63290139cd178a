"""What the server says of the video a bot receives (docs/signaling.md, "Adaptive media"):
`track_paused` {track_id, reason}, `track_resumed` {track_id} and `track_quality`
{track_id, spatial, temporal, layers, height, paused}, kept per track as a `TrackState`.

`publish_layers` (which simulcast encodings to keep sending) needs nothing here: a bot
publishes one layer (aiortc has no rid simulcast)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

TRACK_STATE_EVENTS = ("track_paused", "track_resumed", "track_quality")


@dataclass
class TrackState:
    """One remote video track as the server last described it."""

    paused: str | None = None  # "bandwidth", "last_n" (the server's pauses), None: forwarded
    spatial: int = -1  # the layer forwarded (-1: none)
    temporal: int = -1
    layers: int = 1
    height: int = 0
    fps: float = 0.0  # frames a second of what is forwarded (0: unknown)
    changes: list[tuple[float, str | None]] = field(default_factory=list)  # (monotonic, paused) per pause change


def _int(msg: dict[str, Any], key: str, default: int) -> int:
    value = msg.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class TrackStates(dict[str, TrackState]):
    """track_id -> TrackState, fed the three events."""

    def handle(self, msg: dict[str, Any]) -> None:
        track_id = msg.get("track_id")
        if not isinstance(track_id, str):
            return
        state = self.setdefault(track_id, TrackState())
        kind = msg.get("type")
        if kind == "track_paused":
            reason = msg.get("reason")
            self._set_paused(state, reason if isinstance(reason, str) and reason else "bandwidth")
        elif kind == "track_resumed":
            self._set_paused(state, None)
        elif kind == "track_quality":
            state.spatial = _int(msg, "spatial", -1)
            state.temporal = _int(msg, "temporal", -1)
            state.layers = _int(msg, "layers", 1)
            state.height = _int(msg, "height", 0)
            fps = msg.get("fps")
            state.fps = float(fps) if isinstance(fps, (int, float)) and not isinstance(fps, bool) else 0.0

    @staticmethod
    def _set_paused(state: TrackState, paused: str | None) -> None:
        if state.paused != paused:
            state.paused = paused
            state.changes.append((time.monotonic(), paused))

    def paused(self) -> dict[str, str]:
        """track_id -> reason, for every track the server pauses now."""
        return {track_id: s.paused for track_id, s in self.items() if s.paused}
