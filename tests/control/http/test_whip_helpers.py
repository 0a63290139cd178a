"""The WHIP endpoint's pure parts (control.http.whip): Link headers for ICE servers
(RFC 9725 §4.6) and telling an ICE restart from trickled candidates (§4.3)."""

from __future__ import annotations

import pytest

from control.http.whip import ice_server_links, is_ice_restart
from control.meeting.ingest import IngestSession

pytestmark = pytest.mark.timeout(10)


def test_each_ice_server_url_is_a_link_with_its_credentials():
    servers = [
        {"urls": ["turn:turn.example:3478?transport=udp", "turns:turn.example:5349?transport=tcp"],
         "username": "1700000000:p1", "credential": "c2VjcmV0"},
        {"urls": "stun:stun.example:3478"},
    ]  # fmt: skip
    credentials = '; username="1700000000:p1"; credential="c2VjcmV0"; credential-type="password"'
    assert ice_server_links(servers) == [
        '<turn:turn.example:3478?transport=udp>; rel="ice-server"' + credentials,
        '<turns:turn.example:5349?transport=tcp>; rel="ice-server"' + credentials,
        '<stun:stun.example:3478>; rel="ice-server"',
    ]
    assert ice_server_links([]) == []


def test_only_new_ice_credentials_are_a_restart():
    session = IngestSession(ingest=None, meeting=None, participant=None, ice_ufrag="abcd")  # type: ignore[arg-type]
    trickle = ("a=ice-ufrag:abcd\r\na=ice-pwd:x\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
               "a=candidate:1 1 udp 1 192.0.2.1 9 typ host\r\n")
    assert not is_ice_restart(trickle, session)
    assert not is_ice_restart("a=end-of-candidates\r\n", session)
    assert is_ice_restart(trickle.replace("abcd", "efgh"), session)
