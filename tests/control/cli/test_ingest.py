"""`conclave ingest ...` (control.cli.ingest) against a running server: an RTP ingest made
from the command line, its ffmpeg command run verbatim and decoded by a participant (a
bot), listed, then deleted; exit codes 0 (done), 1 (refused, the server's message), 2."""

from __future__ import annotations

import asyncio
import json

import pytest

from control.cli import main
from tests.control.http.test_ingest import assert_ingest_received, needs_ffmpeg, run_verbatim, stop_group
from tests.support.servers import OPERATOR_KEY

pytestmark = pytest.mark.timeout(120)


async def conclave(capsys, server, *args: str) -> tuple[int, str, str]:
    """`conclave ARGS --server URL --operator-key KEY` (in a thread: it blocks on HTTP)."""
    code = await asyncio.to_thread(main, [*args, "--server", server.base_url, "--operator-key", OPERATOR_KEY])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@needs_ffmpeg
async def test_an_rtp_ingest_from_the_cli_runs_its_ffmpeg_command(conclave_server, capsys, tmp_path):
    meeting = await conclave_server.create_meeting()
    number = meeting["meeting_number"]
    bot = conclave_server.bot(meeting, "viewer")
    await bot.start(publish_audio=False, publish_video=False)
    ffmpeg = None
    try:
        code, out, err = await conclave(capsys, conclave_server, "ingest", "create-rtp", "--meeting", number,
                                        "--name", "CLI camera", "--json")  # fmt: skip
        assert code == 0, err
        made = json.loads(out)
        ffmpeg = await run_verbatim(made["commands"]["ffmpeg"], tmp_path)
        await assert_ingest_received(bot, made["participant_id"], "CLI camera")

        code, out, _ = await conclave(capsys, conclave_server, "ingest", "list", "--meeting", number)
        header, row = out.strip().splitlines()
        assert header.split()[:4] == ["ID", "KIND", "NAME", "STATE"]
        assert row.split()[:5] == [made["id"], "rtp", "CLI", "camera", "active"]

        code, out, err = await conclave(capsys, conclave_server, "ingest", "delete", "--meeting", number, made["id"])
        assert code == 0 and out.strip() == f"ingest {made['id']} (CLI camera) is revoked", err
        await bot.wait_until(lambda: made["participant_id"] not in bot.participants, 10, "the ingest gone")
    finally:
        if ffmpeg is not None:
            stop_group(ffmpeg)
        await bot.stop()


async def test_the_cli_prints_what_to_paste_and_the_servers_refusals(conclave_server, capsys):
    meeting = await conclave_server.create_meeting()
    number = meeting["meeting_number"]
    code, out, err = await conclave(capsys, conclave_server, "ingest", "create-whip", "--meeting", number,
                                    "--name", "OBS")  # fmt: skip
    assert code == 0, err
    assert f"WHIP URL:  {conclave_server.base_url}/whip/{number}" in out and "token:" in out
    assert "shown only now" in err
    code, out, err = await conclave(capsys, conclave_server, "ingest", "create-rtp", "--meeting", number,
                                    "--name", "cam", "--srtp")  # fmt: skip
    assert code == 0, err
    assert "ffmpeg -nostdin -re -i input.mp4" in out and "-srtp_out_params" in out and "gst-launch-1.0" in out

    later = await conclave_server.create_meeting(start=False)
    code, out, err = await conclave(capsys, conclave_server, "ingest", "create-rtp", "--meeting",
                                    later["meeting_number"], "--name", "cam")  # fmt: skip
    assert code == 1 and "not_live" in err and out == ""
    code, _, err = await conclave(capsys, conclave_server, "ingest", "delete", "--meeting", number, "nope")
    assert code == 1 and "not_found" in err
    with pytest.raises(SystemExit) as usage:
        main(["ingest", "create-rtp", "--meeting", number])  # no --name
    assert usage.value.code == 2
