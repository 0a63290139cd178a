"""client.botcli, the bot's command line (`python -m client.bot LINK ...`): it refuses to
start without a credential. Running it against a real server is in test_bot.py."""

from __future__ import annotations

from client.bot import Bot, main
from client.botcli import speaker_lines


def test_bot_cli_needs_a_link_token_or_a_passcode(capsys):
    assert main(["http://127.0.0.1:9/m/123-4567-8901", "--name", "x"]) == 1
    assert "--passcode" in capsys.readouterr().err
    assert main(["http://127.0.0.1:9/", "--passcode", "1"]) == 1
    assert "meeting link" in capsys.readouterr().err


def test_the_cli_prints_who_speaks_by_name(capsys):
    bot = Bot("http://127.0.0.1:9", "12345678901", "cli", passcode="1")
    bot.participant_id = "me"
    bot.participants = {"ada1": {"participant_id": "ada1", "name": "Ada"}}
    on_speaker = speaker_lines(bot)
    for who in ("ada1", "me", None, "stranger-id"):
        bot._on_active_speaker({"type": "active_speaker", "participant_id": who})
        on_speaker({"type": "active_speaker", "participant_id": who})
    assert capsys.readouterr().out.splitlines() == [
        "speaking: Ada", "speaking: us", "speaking: nobody", "speaking: stranger"
    ]
    assert bot.active_speaker == "stranger-id"
    assert [who for _, who in bot.active_speakers] == ["ada1", "me", None, "stranger-id"]
