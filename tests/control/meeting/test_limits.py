"""control.meeting.limits: the settings' limits, a customer's overrides, the server's cap."""

from __future__ import annotations

import pytest

from config import LimitsConfig
from control.meeting.limits import LimitsPolicy
from control.store.base import Customer

pytestmark = pytest.mark.unit


def customer(**limits: object) -> Customer:
    return Customer(id="c1", name="Acme", api_key_hash="", limits=dict(limits))


def test_overrides_laid_over_the_settings_and_the_cap_applied() -> None:
    policy = LimitsPolicy(LimitsConfig(max_participants_per_meeting=50, auto_record=True), server_max_participants=20)
    plain = policy.for_meeting(customer())
    assert plain.account.auto_record and plain.capacity == 20  # the server's cap is lower
    small = policy.for_meeting(customer(max_participants_per_meeting=5, unknown_old_limit=1))
    assert small.capacity == 5 and small.account.max_meeting_minutes == LimitsConfig().max_meeting_minutes
    assert policy.as_json(customer(recording_allowed=False))["recording_allowed"] is False


def test_who_may_transcribe() -> None:
    policy = LimitsPolicy(LimitsConfig(), 100)
    default = policy.for_meeting(customer())
    assert default.may_transcribe(is_host=True) and not default.may_transcribe(is_host=False)
    assert policy.for_meeting(customer(participants_may_transcribe=True)).may_transcribe(is_host=False)
    assert not policy.for_meeting(customer(transcription_allowed=False)).may_transcribe(is_host=True)
