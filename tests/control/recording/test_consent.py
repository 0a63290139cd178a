"""control.recording.consent: the ledger of one recording, as changes for the store."""

from __future__ import annotations

import pytest

from control.recording.consent import CONTINUED, LEFT, PENDING, ConsentLedger

pytestmark = pytest.mark.unit


def test_notify_policy_entries_channels_and_the_stop() -> None:
    ledger = ConsentLedger("notify")
    ledger.present("host", "Ann", consented=True)
    ledger.present("bo", "Bo", consented=False)
    assert [ledger.entries[p].decision for p in ("host", "bo")] == [CONTINUED, PENDING]
    assert not ledger.holds("bo")  # notify never holds media

    first = ledger.notified("bo", audio=False)
    assert (first.kind, first.entry.channels) == ("notified", ["banner", "event"])
    assert ledger.notified("bo", audio=False) is None  # nothing new to record
    assert not ledger.heard("bo")
    more = ledger.audio_reached("bo")
    assert (more.kind, more.entry.channels) == ("channels", ["banner", "event", "audio"])
    assert ledger.heard("bo") and ledger.audio_reached("bo") is None

    settled = ledger.settle_at_stop()
    assert [(c.participant_id, c.decision) for c in settled] == [("bo", CONTINUED)]
    assert ledger.settle_at_stop() == []


def test_require_policy_holds_until_a_decision() -> None:
    ledger = ConsentLedger("require")
    ledger.present("bo", "Bo", consented=False)
    assert ledger.holds("bo") and not ledger.holds("nobody")
    change = ledger.decide("bo", CONTINUED)
    assert (change.kind, change.decision) == ("decision", CONTINUED)
    assert not ledger.holds("bo")
    assert ledger.decide("bo", LEFT) is None  # decided already
    assert ledger.settle_at_stop() == []  # require: the stop decides nothing


def test_leaving_while_pending_counts_only_when_it_was_their_choice() -> None:
    ledger = ConsentLedger("require")
    ledger.present("bo", "Bo", consented=False)
    assert ledger.gone("bo", "reset") is None  # the media server restarted: not their decision
    assert ledger.gone("bo", "replaced") is None
    assert ledger.gone("bo", None).decision == LEFT  # closed their socket
    # Coming back asks again: a new pending entry.
    again = ledger.present("bo", "Bo", consented=False)
    assert again.decision == PENDING and ledger.holds("bo")
    assert ledger.notified("bo", audio=True).kind == "notified"  # a new row for the new entry


def test_a_new_connection_hears_the_notice_again() -> None:
    ledger = ConsentLedger("notify")
    ledger.present("bo", "Bo", consented=False)
    ledger.notified("bo", audio=True)
    assert ledger.heard("bo")
    ledger.new_connection("bo")
    assert not ledger.heard("bo")
    assert ledger.audio_reached("bo") is None  # the channel is on the row already
    assert ledger.heard("bo")
