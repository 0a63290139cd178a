"""common.logs: one event per line, context fields per task, levels per component, and
what looks like a credential blanked in every message."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from common import logs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /api/v1/meetings/1/ws?token=eyJhbGciOi.eyJzdWIiOi.sig123", "GET /api/v1/meetings/1/ws?token=[redacted]"),
        ("Authorization: Bearer hs_abcdefghijklmnop", "Authorization: Bearer [redacted]"),
        ("claims eyJhbGciOiJI.eyJzdWIiOiJw.c2lnbmF0dXJl here", "claims [redacted] here"),
        ("key hs_0123456789abcdefXYZ leaked", "key [redacted] leaked"),
        ("login password=hunter2-hunter2&next=/", "login password=[redacted]&next=/"),
        ("meeting 123-4567-8901 started by p_3f9c2a", "meeting 123-4567-8901 started by p_3f9c2a"),
        ("store postgresql://app:s3cr3t@db:5432/conclave down", "store postgresql://[redacted]@db:5432/conclave down"),
        ("see https://meet.example.com/join", "see https://meet.example.com/join"),
    ],
)
def test_redact_blanks_what_looks_like_a_credential(text, expected):
    assert logs.redact(text) == expected


def capture(process: str, fmt: str, levels=()) -> io.StringIO:
    logs.setup(process, "info", fmt, levels)
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)
    return stream


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("noisy.component").setLevel(logging.NOTSET)


def test_json_lines_carry_the_tasks_context_and_no_secret():
    stream = capture("worker-1", "json")

    async def socket_task(meeting: str, participant: str) -> None:
        logs.bind(meeting=meeting, participant=participant)
        logging.getLogger("control.x").info("joined with token=%s", "eyJa.eyJb.c")

    async def main() -> None:  # two tasks: each line has its own task's context only
        await asyncio.gather(socket_task("12345678901", "p_a"), socket_task("10987654321", "p_b"))
        logging.getLogger("control.x").warning("outside any socket")

    asyncio.run(main())
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["meeting"], e["participant"]) for e in events[:2]] == [("12345678901", "p_a"), ("10987654321", "p_b")]
    assert events[0]["message"] == "joined with token=[redacted]" and events[0]["process"] == "worker-1"
    assert "meeting" not in events[2] and events[2]["level"] == "warning"


def test_text_lines_and_levels_per_component():
    stream = capture("recorder", "text", ["noisy.component=error"])
    logging.getLogger("noisy.component").warning("not shown")
    logging.getLogger("noisy.component").error("shown")
    token = logs.bind(request_id="r-1")
    logging.getLogger("quiet.component").info("hello")
    logs.unbind(token)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert " recorder ERROR   noisy.component: shown" in lines[0]
    assert lines[1].endswith("quiet.component: hello [request_id=r-1]")


def test_bad_component_levels_are_refused():
    with pytest.raises(ValueError, match="LOGGER=LEVEL"):
        logs.parse_levels(["sfu.worker=loud"])
    assert logs.parse_levels(["sfu.worker=DEBUG"]) == {"sfu.worker": "debug"}
