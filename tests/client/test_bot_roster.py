"""client.bot.Bot keeps the participant list from `joined` and the server's
`participants_changed` batches (docs/signaling.md, "Participants"): pages and deltas."""

from __future__ import annotations

import pytest

from client.bot import Bot

pytestmark = pytest.mark.unit


def _person(participant_id: str, muted: bool = False) -> dict:
    return {"participant_id": participant_id, "name": participant_id, "role": "participant",
            "muted": {"microphone": muted, "camera": False}}  # fmt: skip


def test_batches_add_update_and_remove_and_never_list_the_bot_itself():
    bot = Bot("http://127.0.0.1:9", "12345678901", "me")
    bot.participant_id = "me"
    bot.participants = {"a": _person("a")}
    bot.connection_quality = {"a": "good", "b": "poor"}
    bot._apply_participants_changed({"type": "participants_changed", "joined": [_person("b"), _person("me")]})
    bot._apply_participants_changed({"type": "participants_changed", "updated": [_person("b", muted=True)], "left": ["a"]})
    assert set(bot.participants) == {"b"}
    assert bot.participants["b"]["muted"]["microphone"] is True
    assert bot.connection_quality == {"b": "poor"}  # a's level went with a


def test_malformed_batches_change_nothing():
    bot = Bot("http://127.0.0.1:9", "12345678901", "me")
    bot.participants = {"a": _person("a")}
    bot._apply_participants_changed({"type": "participants_changed", "joined": "all", "updated": [None, 5, {}], "left": [7]})
    assert set(bot.participants) == {"a"}


def test_batches_before_the_media_is_set_up_wait_for_joined():
    # The pages of a large meeting's list follow `joined` at once: the bot takes `joined`'s
    # list when it sets its media up, then these (an offer that early waits the same way).
    bot = Bot("http://127.0.0.1:9", "12345678901", "me")
    batch = {"type": "participants_changed", "joined": [_person("b")]}
    bot._on_participants_changed(batch)
    assert bot._early_roster == [batch] and bot.participants == {}
