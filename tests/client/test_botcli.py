"""client.botcli, the bot's command line (`python -m client.bot LINK ...`): it refuses to
start without a credential. Running it against a real server is in test_bot.py."""

from __future__ import annotations

from client.bot import main


def test_bot_cli_needs_a_link_token_or_a_passcode(capsys):
    assert main(["http://127.0.0.1:9/m/123-4567-8901", "--name", "x"]) == 1
    assert "--passcode" in capsys.readouterr().err
    assert main(["http://127.0.0.1:9/", "--passcode", "1"]) == 1
    assert "meeting link" in capsys.readouterr().err
