"""Ingest tokens (control.accounts.tokens, audience conclave:ingest): bound to their ingest
and meeting, expiring, never interchangeable with the server's other tokens."""

from __future__ import annotations

import time

import jwt
import pytest

from control.accounts.tokens import TokenError, Tokens

pytestmark = pytest.mark.timeout(10)
SECRET = "s" * 48


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(SECRET, store=None, join_ttl_s=600)  # type: ignore[arg-type]  # no revocation here


def test_an_ingest_token_names_its_ingest_for_its_meeting(tokens):
    token = tokens.make_ingest_token("ing1", "mtg1", time.time() + 60)
    assert tokens.verify_ingest_token(token, "mtg1") == "ing1"
    with pytest.raises(TokenError) as other:
        tokens.verify_ingest_token(token, "mtg2")
    assert other.value.code == "wrong_meeting"


def test_an_expired_or_foreign_token_is_refused(tokens):
    now = time.time()
    expired = tokens.make_ingest_token("ing1", "mtg1", now - 3600, now=now - 7200)
    with pytest.raises(TokenError) as late:
        tokens.verify_ingest_token(expired, "mtg1")
    assert late.value.code == "token_expired"
    join = tokens.make_join_token(participant_id="p", meeting_id="mtg1", live_session_id="l", name="n", role="host")
    forged = jwt.encode({"iss": "conclave", "aud": "conclave:ingest", "ing": "ing1", "mtg": "mtg1",
                         "iat": int(now), "exp": int(now) + 60}, "another secret " * 4, algorithm="HS256")  # fmt: skip
    unsigned = jwt.encode({"iss": "conclave", "aud": "conclave:ingest", "ing": "ing1", "mtg": "mtg1",
                           "iat": int(now), "exp": int(now) + 60}, None, algorithm="none")  # fmt: skip
    no_ingest = jwt.encode({"iss": "conclave", "aud": "conclave:ingest", "mtg": "mtg1", "iat": int(now),
                            "exp": int(now) + 60}, SECRET, algorithm="HS256")  # fmt: skip
    for bad in (join, forged, unsigned, no_ingest, "", "x" * 5000, None):
        with pytest.raises(TokenError):
            tokens.verify_ingest_token(bad, "mtg1")
    ingest = tokens.make_ingest_token("ing1", "mtg1", now + 60)
    with pytest.raises(TokenError):
        tokens.verify_join_token(ingest)  # nor the other way round
