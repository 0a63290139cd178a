"""Which node holds a meeting: the choice (pure) and the claim (atomic, in Redis).

The first join of a meeting places it on the least-loaded node that is not draining
(`choose_node`); every later join, on any node, finds that placement. Two nodes placing
the same meeting at once both end up with the one placement that won: a new placement is
written with SET NX, a placement on a node that died is replaced only if it still names
that node (compare-and-set in a Lua script, atomic on the Redis server), so no node ever
reads one placement and writes over another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

KEY_PREFIX = "conclave:"
CPU_STEP = 0.1  # CPU loads this close count as equal: then participants decide
PLACE_ATTEMPTS = 5

# KEYS[1] the placement; ARGV[1] the node it must still name, ARGV[2] the new one.
# Returns {1, new} when it replaced, else {0, what the placement names now (or nil)}.
_REPLACE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return {1, ARGV[2]}
end
return {0, current}
"""
# KEYS[1] the placement; ARGV[1] the node it must still name.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """One node as the registry holds it: where it is, and how busy."""

    node_id: str
    public_url: str = ""
    draining: bool = False
    cpu: float = 0.0  # the busiest SFU worker's share of its core, 0..1
    participants: int = 0
    meetings: int = 0
    packets_per_s: float = 0.0

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | bytes) -> NodeLoad:
        fields = json.loads(text)
        return cls(**{name: fields[name] for name in cls.__dataclass_fields__ if name in fields})


def choose_node(nodes: Iterable[NodeLoad]) -> NodeLoad | None:
    """The node a new meeting goes to: not draining, the least CPU (in steps of CPU_STEP),
    then the fewest participants, then the fewest meetings; None when no node may take it."""
    candidates = [node for node in nodes if not node.draining]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (round(n.cpu / CPU_STEP), n.participants, n.meetings, n.node_id))


class NoNodeAvailable(Exception):
    """Every node is draining, or none is registered."""


class Placements:
    """Meeting → node, in Redis (`conclave:meeting:<id>:node`)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._replace = redis.register_script(_REPLACE)
        self._release = redis.register_script(_RELEASE)
        self.outcomes = {"kept": 0, "placed": 0, "replaced": 0}  # a metric's fixed label set

    @staticmethod
    def key(meeting_id: str) -> str:
        return f"{KEY_PREFIX}meeting:{meeting_id}:node"

    async def node_of(self, meeting_id: str) -> str | None:
        value = await self._redis.get(self.key(meeting_id))
        return value.decode() if value is not None else None

    async def place(self, meeting_id: str, alive: dict[str, NodeLoad]) -> str:
        """The node holding the meeting: its placement while that node is alive, else a
        new one chosen among `alive` (raises NoNodeAvailable when none may take it)."""
        key = self.key(meeting_id)
        for _ in range(PLACE_ATTEMPTS):
            current = await self.node_of(meeting_id)
            if current is not None and current in alive:
                self.outcomes["kept"] += 1
                return current
            chosen = choose_node(alive.values())
            if chosen is None:
                raise NoNodeAvailable("no node may take a new meeting")
            if current is None:
                if await self._redis.set(key, chosen.node_id, nx=True):
                    self.outcomes["placed"] += 1
                    return chosen.node_id
                continue  # another node placed it meanwhile: read theirs
            replaced, _ = await self._replace(keys=[key], args=[current, chosen.node_id])
            if replaced:
                self.outcomes["replaced"] += 1
                return chosen.node_id
            # Another node replaced it first: the next round reads and keeps theirs.
        raise NoNodeAvailable(f"the placement of meeting {meeting_id} kept changing")

    async def release(self, meeting_id: str, node_id: str) -> bool:
        """Forget the placement if it still names `node_id` (the meeting ended there)."""
        return bool(await self._release(keys=[self.key(meeting_id)], args=[node_id]))
