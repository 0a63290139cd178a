"""The WebRTC scenarios: who joins which meeting, when, publishing what.

A scenario is a plan: meetings to create and batches of participants joining them; the
runner (bench/runner.py) executes the plan, then measures one window. Every count is
bounded (MAX_PARTICIPANTS) so no run can grow without limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_PARTICIPANTS = 1024  # 1000 subscribers + their publishers fit
AV = ["audio", "video"]


@dataclass
class Batch:
    """Participants that join together; spread_s > 0: each at a random instant within it."""

    specs: list[dict[str, Any]]  # name, meeting (index into Plan.meetings), publish
    spread_s: float = 0.0
    concurrency: int | None = None  # joins in flight per client process (None: the run's default)


@dataclass
class Plan:
    meetings: int
    batches: list[Batch] = field(default_factory=list)

    @property
    def participants(self) -> int:
        return sum(len(b.specs) for b in self.batches)


def _spec(name: str, meeting: int, publish: list[str]) -> dict[str, Any]:
    return {"name": name, "meeting": meeting, "publish": list(publish)}


def fanout(subscribers: int, publish: list[str] = AV, passive: int = 0) -> Plan:
    """1 publisher, K subscribers in one meeting; the last `passive` of them stop reading
    once their first keyframe is in (the kernel counts what reaches them)."""
    plan = Plan(meetings=1)
    plan.batches.append(Batch([_spec("pub", 0, publish)]))
    specs = [_spec(f"sub{i}", 0, []) for i in range(subscribers)]
    for spec in specs[subscribers - max(0, min(passive, subscribers)) :]:
        spec["passive"] = True
    plan.batches.append(Batch(specs))
    return _bounded(plan)


def meeting(participants: int, publish: list[str] = AV) -> Plan:
    """N participants, all publish audio+video and receive everyone else."""
    plan = Plan(meetings=1)
    plan.batches.append(Batch([_spec(f"p{i}", 0, publish) for i in range(participants)]))
    return _bounded(plan)


def rooms(rooms: int, participants: int, publish: list[str] = AV) -> Plan:
    """R meetings of N participants each (control spreads meetings over workers)."""
    plan = Plan(meetings=rooms)
    # One first participant per room, one at a time: meetings that start together all
    # land on the same worker (control reserves a worker only after the router exists).
    plan.batches.append(Batch([_spec(f"r{r}p0", r, publish) for r in range(rooms)], concurrency=1))
    specs = [_spec(f"r{r}p{i}", r, publish) for r in range(rooms) for i in range(1, participants)]
    if specs:
        plan.batches.append(Batch(specs))
    return _bounded(plan)


def join_storm(joiners: int, publishers: int = 1, spread_s: float = 1.0, publish: list[str] = AV) -> Plan:
    """P publishers in place, then M participants join within `spread_s` seconds."""
    plan = Plan(meetings=1)
    plan.batches.append(Batch([_spec(f"pub{i}", 0, publish) for i in range(publishers)]))
    plan.batches.append(Batch([_spec(f"j{i}", 0, []) for i in range(joiners)], spread_s=spread_s))
    return _bounded(plan)


def _bounded(plan: Plan) -> Plan:
    if plan.participants > MAX_PARTICIPANTS:
        raise ValueError(f"{plan.participants} participants: at most {MAX_PARTICIPANTS} per run")
    if plan.participants < 1:
        raise ValueError("a scenario needs at least one participant")
    return plan
