"""sfu.transport.ice without a network: STUN bytes in, what is sent and what the
transport does out, on a fake clock.

- unauthenticated checks get no answer at all (counted), authenticated ones a success;
- only a nominated check (USE-CANDIDATE from the controlling side) selects an address;
- once media may flow, a new address must answer a check of ours (keyed with the peer's
  password, from that very address) before anything is sent there;
- consent (RFC 7675): 30 s without an authenticated check from the selected address
  and the transport sends nowhere; a peer that comes back is checked again;
- an address another transport's peer has is never taken (MediaSocket.bind_peer).
"""

from __future__ import annotations

import os

from aiortc.rtcdtlstransport import RTCCertificate

from sfu.engine.router import Registry, Router
from sfu.engine.stats import Counters
from sfu.transport.ice import NOTHING, PROBE, SELECT, IcePath
from sfu.transport.udp import MediaSocket
from sfu.transport.webrtc import WebRtcTransport
from sfu.wire import stun

CLIENT = ("192.0.2.10", 50000)
ELSEWHERE = ("198.51.100.7", 41000)
VICTIM = ("203.0.113.5", 3478)
CLIENT_UFRAG, CLIENT_PWD = "clientuf", "client-password-0123456789"
_CERTIFICATE: list[RTCCertificate] = []


# --- the decision alone ------------------------------------------------------------------------


def test_only_a_nominated_check_selects_and_only_before_media_flows_at_once():
    path = IcePath(30.0)
    assert path.on_check(CLIENT, False, 0.0, established=False) == NOTHING
    assert path.on_check(CLIENT, True, 0.0, established=False) == SELECT
    path.select(CLIENT, 0.0)
    assert path.on_check(ELSEWHERE, False, 1.0, established=True) == NOTHING
    assert path.on_check(ELSEWHERE, True, 1.0, established=True) == PROBE
    path.probing(ELSEWHERE, b"t" * 12, 1.0)
    assert path.on_check(ELSEWHERE, True, 1.2, established=True) == NOTHING  # asked moments ago
    assert path.on_check(ELSEWHERE, True, 1.6, established=True) == PROBE
    assert not path.on_answer(ELSEWHERE, b"x" * 12, 1.7)  # not our question
    assert not path.on_answer(VICTIM, b"t" * 12, 1.7)  # not where we asked
    assert path.on_answer(ELSEWHERE, b"t" * 12, 1.7)


def test_consent_lapses_without_checks_from_the_selected_address():
    path = IcePath(30.0)
    path.select(CLIENT, 0.0)
    for now in (5.0, 10.0, 29.0):
        path.on_check(CLIENT, False, now, established=True)  # a consent check, not nominated
        assert not path.expire(now)
    path.on_check(ELSEWHERE, False, 40.0, established=True)  # checks from elsewhere renew nothing
    assert not path.expire(58.9) and path.expire(59.0) and path.selected is None
    assert not path.expire(70.0)
    # The peer comes back on its address: checked again first, even without USE-CANDIDATE.
    assert path.on_check(CLIENT, False, 80.0, established=True) == PROBE


# --- the STUN side -----------------------------------------------------------------------------


class Endpoint:
    def __init__(self) -> None:
        self.ice_ufrag = "serverUF"
        self.ice_pwd_bytes = b"server-password-abcdefghij"
        self.remote_ice_ufrag: str | None = CLIENT_UFRAG
        self.remote_ice_pwd_bytes: bytes | None = CLIENT_PWD.encode()
        self.ice_tiebreaker = 1234
        self.checks: list[tuple[tuple[str, int], bool]] = []
        self.answers: list[tuple[tuple[str, int], bytes]] = []

    def on_ice_check(self, addr, nominated):
        self.checks.append((addr, nominated))

    def on_ice_answer(self, addr, transaction_id):
        self.answers.append((addr, transaction_id))


class Sent(MediaSocket):
    """A MediaSocket whose sends are kept (nothing is bound)."""

    def __init__(self, counters: Counters) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        super().__init__(counters)

    def sendto(self, data, addr):
        self.sent.append((bytes(data), addr))


def check(ufrag="serverUF", pwd=b"server-password-abcdefghij", nominate=False, controlling=True, remote=CLIENT_UFRAG):
    return stun.build_binding_request(
        os.urandom(12), f"{ufrag}:{remote}", pwd, priority=1, use_candidate=nominate,
        controlling_tiebreaker=7 if controlling else None, controlled_tiebreaker=None if controlling else 7,
    )  # fmt: skip


def test_unauthenticated_checks_get_no_answer_and_are_counted():
    counters = Counters()
    socket = Sent(counters)
    endpoint = Endpoint()
    socket.ice.register(endpoint)
    for request in (
        check(pwd=b"wrong-password-xxxxxxxxxx"),  # right ufrag, wrong key
        check(ufrag="nobody12"),  # no such transport
        check(remote="somebody"),  # not the peer this transport negotiated with
    ):
        socket.ice.handle(request, VICTIM)
    assert socket.sent == [] and endpoint.checks == []
    assert counters.dropped["stun_auth"] == 3 and counters.stun_requests == 3


def test_an_authenticated_check_is_answered_and_nominated_only_by_the_controlling_side():
    counters = Counters()
    socket = Sent(counters)
    endpoint = Endpoint()
    socket.ice.register(endpoint)
    socket.ice.handle(check(nominate=False), CLIENT)
    socket.ice.handle(check(nominate=True), CLIENT)
    socket.ice.handle(check(nominate=True, controlling=False), CLIENT)  # USE-CANDIDATE from the controlled side
    assert endpoint.checks == [(CLIENT, False), (CLIENT, True), (CLIENT, False)]
    assert len(socket.sent) == 3
    for data, addr in socket.sent:
        answer = stun.parse(data)
        assert addr == CLIENT and answer.message_class == stun.CLASS_SUCCESS
        assert answer.xor_mapped_address == CLIENT and stun.verify_message_integrity(data, endpoint.ice_pwd_bytes)


def test_our_checks_go_with_the_peer_s_credentials_and_only_a_true_answer_counts():
    counters = Counters()
    socket = Sent(counters)
    endpoint = Endpoint()
    socket.ice.register(endpoint)
    transaction_id = socket.ice.probe(endpoint, ELSEWHERE)
    (data, addr), = socket.sent
    request = stun.parse(data)
    assert addr == ELSEWHERE and request.transaction_id == transaction_id
    assert request.username == f"{CLIENT_UFRAG}:serverUF" and request.ice_controlled == 1234
    assert stun.verify_message_integrity(data, CLIENT_PWD.encode()) and stun.verify_fingerprint(data)
    # Answers that do not count: from elsewhere, with the wrong key, to another question.
    socket.ice.handle(stun.build_binding_success(transaction_id, ELSEWHERE, CLIENT_PWD.encode()), VICTIM)
    socket.ice.handle(stun.build_binding_success(transaction_id, ELSEWHERE, b"guessed-password-xxxxxxx"), ELSEWHERE)
    socket.ice.handle(stun.build_binding_success(os.urandom(12), ELSEWHERE, CLIENT_PWD.encode()), ELSEWHERE)
    assert endpoint.answers == []
    assert counters.dropped["stun_auth"] == 2 and counters.dropped["stun_unexpected"] == 1
    socket.ice.handle(stun.build_binding_success(transaction_id, ELSEWHERE, CLIENT_PWD.encode()), ELSEWHERE)
    assert endpoint.answers == [(ELSEWHERE, transaction_id)]
    # Answered once: a replay is unexpected.
    socket.ice.handle(stun.build_binding_success(transaction_id, ELSEWHERE, CLIENT_PWD.encode()), ELSEWHERE)
    assert len(endpoint.answers) == 1 and counters.dropped["stun_unexpected"] == 2


# --- a transport on a fake clock ---------------------------------------------------------------


class Clear:
    def protect(self, packet: bytes) -> bytes:
        return packet


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def certificate() -> RTCCertificate:
    if not _CERTIFICATE:
        _CERTIFICATE.append(RTCCertificate.generateCertificate())
    return _CERTIFICATE[0]


def transport(socket: Sent, clock: Clock, name: str = "t", router: Router | None = None) -> WebRtcTransport:
    router = router or Router("r", Registry())
    made = WebRtcTransport(name, router, "subscribe", socket, certificate(), socket.counters, lambda t, s: None, clock=clock)
    router.add_transport(made)
    # The client's answer told us its credentials (set_remote); no DTLS in these tests.
    made.remote_ice_ufrag = CLIENT_UFRAG
    made.remote_ice_pwd_bytes = CLIENT_PWD.encode()
    return made


def its_check(made: WebRtcTransport, nominate: bool) -> bytes:
    return check(ufrag=made.ice_ufrag, pwd=made.ice_pwd_bytes, nominate=nominate)


def test_a_third_address_with_the_right_credentials_does_not_redirect_media():
    clock = Clock()
    socket = Sent(Counters())
    made = transport(socket, clock)
    socket.ice.handle(its_check(made, nominate=False), CLIENT)
    assert made.addr is None  # answered, but not nominated: selects nothing
    socket.ice.handle(its_check(made, nominate=True), CLIENT)
    assert made.addr == CLIENT and socket.peers[CLIENT] is made
    made.connected = True  # DTLS is up: media flows to CLIENT

    socket.sent.clear()
    socket.ice.handle(its_check(made, nominate=False), VICTIM)
    assert made.addr == CLIENT and [addr for _, addr in socket.sent] == [VICTIM]  # the answer only

    socket.sent.clear()
    socket.ice.handle(its_check(made, nominate=True), VICTIM)
    assert made.addr == CLIENT and VICTIM not in socket.peers
    answer, ours = socket.sent  # our answer to it, and our own check of that address
    assert stun.parse(ours[0]).message_class == stun.CLASS_REQUEST and ours[1] == VICTIM
    # The victim never answers (it does not know the transaction id): nothing moves, ever.
    clock.now += 10
    socket.ice.handle(its_check(made, nominate=True), CLIENT)
    assert made.addr == CLIENT and made.counters.ice_path_switches == 0


def test_the_peer_moves_to_a_new_address_it_proves():
    clock = Clock()
    socket = Sent(Counters())
    made = transport(socket, clock)
    socket.ice.handle(its_check(made, nominate=True), CLIENT)
    made.connected = True
    socket.sent.clear()
    socket.ice.handle(its_check(made, nominate=True), ELSEWHERE)  # e.g. Wi-Fi to mobile data
    probe = stun.parse(socket.sent[-1][0])
    socket.ice.handle(stun.build_binding_success(probe.transaction_id, ELSEWHERE, CLIENT_PWD.encode()), ELSEWHERE)
    assert made.addr == ELSEWHERE and socket.peers.get(ELSEWHERE) is made and CLIENT not in socket.peers
    assert made.counters.ice_path_switches == 1


def test_without_consent_checks_the_transport_stops_sending_after_30_s():
    clock = Clock()
    socket = Sent(Counters())
    made = transport(socket, clock)
    states: list[str] = []
    made.on_state = lambda t, state: states.append(state)
    socket.ice.handle(its_check(made, nominate=True), CLIENT)
    made.connected = True
    made.tx = Clear()  # SRTP as if DTLS were up
    socket.sent.clear()
    made.send_rtp(b"\x80" * 20)
    assert socket.sent == [(b"\x80" * 20, CLIENT)]
    for _ in range(10):  # a browser's checks every 5 s keep it
        clock.now += 5
        socket.ice.handle(its_check(made, nominate=False), CLIENT)
        made.check_consent()
    assert made.addr == CLIENT
    clock.now += 29.5
    made.check_consent()
    assert made.addr == CLIENT
    clock.now += 0.6
    made.check_consent()
    assert made.addr is None and CLIENT not in socket.peers and made.counters.ice_consent_expired == 1
    assert states == ["disconnected"]  # control hears it (a WHEP viewer ends there)
    socket.sent.clear()
    made.send_rtp(b"\x80" * 20)  # nowhere to send
    assert socket.sent == []
    # The client is back: checked first, then selected again.
    socket.ice.handle(its_check(made, nominate=False), CLIENT)
    probe = stun.parse(socket.sent[-1][0])
    assert probe.message_class == stun.CLASS_REQUEST and made.addr is None
    socket.ice.handle(stun.build_binding_success(probe.transaction_id, CLIENT, CLIENT_PWD.encode()), CLIENT)
    assert made.addr == CLIENT


def test_a_check_never_takes_the_address_of_another_transport():
    clock = Clock()
    counters = Counters()
    socket = Sent(counters)
    router = Router("r", Registry())
    victim = transport(socket, clock, "victim", router)
    attacker = transport(socket, clock, "attacker", router)
    socket.ice.handle(its_check(victim, nominate=True), CLIENT)
    assert socket.peers[CLIENT] is victim
    # The attacker's own credentials, the victim's address as source, before its DTLS.
    socket.ice.handle(its_check(attacker, nominate=True), CLIENT)
    assert socket.peers[CLIENT] is victim and attacker.addr is None
    assert counters.dropped["address_taken"] == 1
