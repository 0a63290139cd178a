"""TURN settings, credentials, coturn's configuration and its log, without coturn."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
import stat

import pytest

from config import Config, ConfigError, HttpConfig, SfuConfig, TurnConfig, load_config
from control.cli.tls import certificate_files
from control.processes import turn_settings
from control.processes.turn import TurnLog
from control.processes.turn_settings import TurnSettings


def config(tmp_path, **turn) -> Config:
    return Config(
        data_dir=str(tmp_path / "data"),
        sfu=SfuConfig(listen_ip="10.0.0.5", announced_ips=("203.0.113.10",)),
        turn=TurnConfig(**{"mode": "managed", **turn}),
    )


def on_path(name):
    return f"/usr/bin/{name}"


def nowhere(name):
    return None


# --- config ---------------------------------------------------------------------------------


def test_auto_is_managed_with_turnserver_installed_and_off_without():
    assert turn_settings.resolve_mode("auto", on_path) == "managed"
    assert turn_settings.resolve_mode("auto", nowhere) == "off"
    assert turn_settings.resolve_mode("off", on_path) == "off"
    with pytest.raises(ConfigError, match=r"^turn\.mode: managed needs coturn"):
        turn_settings.resolve_mode("managed", nowhere)


@pytest.mark.parametrize(
    ("turn", "message"),
    [
        ({"mode": "external", "secret": "s" * 20}, "turn.urls: must be set when turn.mode is external"),
        ({"mode": "external", "urls": ["turn:t.example.com:3478"]}, "turn.secret: must be set when turn.mode is external"),
        ({"urls": ["http://t.example.com"]}, "turn.urls[0]: 'http://t.example.com' is not a turn: or turns: URL"),
        ({"secret": "short"}, "turn.secret: must be empty (generated) or at least 16 characters long"),
        ({"mode": "always"}, "turn.mode: "),
        ({"min_port": 50000, "max_port": 40000}, "turn.min_port: must not be above turn.max_port"),
        ({"port": 3478, "tls_port": 3478}, "turn.tls_port: must differ from turn.port"),
        ({"listen_ip": "turn.example.com"}, "turn.listen_ip: 'turn.example.com' is not an IP address"),
    ],
)
def test_bad_turn_settings_name_the_key(tmp_path, turn, message):
    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"turn": turn}))
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert message in str(error.value)
    if "secret" in turn:
        assert turn["secret"] not in str(error.value)


def test_tls_cert_and_key_go_together(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match=r"^turn\.tls_key: must be set together with turn\.tls_cert"):
        TurnConfig(tls_cert=str(cert))


def test_external_mode_gives_the_operators_urls(tmp_path):
    cfg = config(tmp_path, mode="external", urls=("turns:turn.example.com:443?transport=tcp",), secret="x" * 24)
    settings = turn_settings.resolve(cfg, on_path)
    assert (settings.mode, settings.urls, settings.secret) == ("external", cfg.turn.urls, "x" * 24)
    assert "x" * 24 not in repr(settings) and "x" * 24 not in repr(cfg)


# --- managed: defaults from sfu, the secret file ----------------------------------------------


def test_managed_defaults_follow_the_sfu_and_generate_a_private_secret(tmp_path):
    settings = turn_settings.resolve(config(tmp_path), on_path)
    assert settings.urls == (
        "turn:203.0.113.10:3478?transport=udp",
        "turn:203.0.113.10:3478?transport=tcp",
    )  # no certificate: no turns:
    assert (settings.listen_ip, settings.relay_ip) == ("10.0.0.5", "10.0.0.5")
    assert settings.allowed_peers == ("203.0.113.10", "10.0.0.5")
    secret_path = tmp_path / "data" / "turn_secret"
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert settings.secret == secret_path.read_text().strip() and len(settings.secret) >= 32
    # Kept across restarts: credentials handed out before one stay valid.
    assert turn_settings.resolve(config(tmp_path), on_path).secret == settings.secret


def test_turns_url_when_a_certificate_is_set(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    settings = turn_settings.resolve(
        config(tmp_path, tls_cert=str(cert), tls_key=str(key), public_host="turn.example.com", secret="y" * 20), on_path
    )
    assert settings.urls[-1] == "turns:turn.example.com:5349?transport=tcp"
    assert settings.secret == "y" * 20 and not (tmp_path / "data" / "turn_secret").exists()
    assert turn_settings.client_urls("2001:db8::1", 3478, 0)[0] == "turn:[2001:db8::1]:3478?transport=udp"


def test_the_self_signed_https_certificate_serves_turn_over_tls_too(tmp_path):
    cfg = dataclasses.replace(config(tmp_path), http=HttpConfig(tls="self-signed", public_url="https://10.0.0.5:8443"))
    settings = turn_settings.resolve(cfg, on_path)
    crt = os.path.join(str(tmp_path / "data"), "tls", "self-signed.crt")
    assert (settings.tls_cert, settings.tls_key) == (crt, crt[: -len("crt")] + "key")
    # The same files control.cli.tls makes for HTTPS.
    assert str(certificate_files(cfg).cert) == crt
    assert settings.urls[-1] == "turns:203.0.113.10:5349?transport=tcp"


# --- credentials ---------------------------------------------------------------------------


def test_credential_is_the_turn_rest_api_form():
    # Computed here independently: base64(HMAC-SHA1(secret, "expiry:participant")).
    expected = base64.b64encode(hmac.new(b"north-wind-secret", b"1700000000:p-42", hashlib.sha1).digest()).decode()
    # and by openssl: printf 1700000000:p-42 | openssl dgst -sha1 -hmac north-wind-secret -binary | base64
    assert expected == "e1V/HcENAAUJsJO/eiRrBkfC1ag="
    assert turn_settings.credential("north-wind-secret", "p-42", 1700000000) == ("1700000000:p-42", expected)


def test_ice_servers_expire_when_the_meeting_must_end_capped():
    settings = TurnSettings(mode="managed", secret="s" * 20, urls=("turn:h:3478?transport=udp",), max_ttl_s=3600)
    [server] = turn_settings.ice_servers(settings, "p1", now=1000.0, meeting_ends_at=1000.0 + 1800)
    assert server["username"] == "2800:p1" and server["urls"] == ["turn:h:3478?transport=udp"]
    assert server["credential"] == turn_settings.credential("s" * 20, "p1", 2800)[1]
    [capped] = turn_settings.ice_servers(settings, "p1", now=1000.0, meeting_ends_at=1000.0 + 7 * 86400)
    assert capped["username"] == "4600:p1"
    [unknown_end] = turn_settings.ice_servers(settings, "p1", now=1000.0, meeting_ends_at=None)
    assert unknown_end["username"] == "4600:p1"
    assert turn_settings.ice_servers(TurnSettings(mode="off"), "p1", now=1000.0, meeting_ends_at=None) == []


# --- coturn's configuration ----------------------------------------------------------------


def test_coturn_config_denies_every_peer_but_the_sfu_and_keeps_the_secret_off_the_command_line(tmp_path):
    settings = dataclasses.replace(turn_settings.resolve(config(tmp_path, secret="z" * 24), on_path))
    path = turn_settings.write_coturn_config(settings, str(tmp_path / "data"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    lines = path.read_text().splitlines()
    for line in (
        "use-auth-secret", f"userdb={tmp_path / 'data' / 'turn' / 'turndb'}", "realm=conclave", "no-cli", "fingerprint",
        "no-multicast-peers", "listening-ip=10.0.0.5", "relay-ip=10.0.0.5", "listening-port=3478", "no-tls",
        "denied-peer-ip=0.0.0.0-255.255.255.255", "allowed-peer-ip=203.0.113.10", "allowed-peer-ip=10.0.0.5",
        "log-file=stdout",
    ):  # fmt: skip
        assert line in lines, line
    assert "allow-loopback-peers" not in lines
    # No static secret: each live meeting's is a row of that userdb (turn_secrets).
    assert not any("z" * 24 in line or line.startswith("static-auth-secret") for line in lines)
    command = turn_settings.coturn_command(path)
    assert command == ["turnserver", "-c", str(path)] and not any("z" * 24 in arg for arg in command)
    loopback = dataclasses.replace(settings, allow_loopback_peers=True)
    assert "allow-loopback-peers" in turn_settings.coturn_config(loopback, str(tmp_path)).splitlines()


# --- coturn's log --------------------------------------------------------------------------


def test_log_counts_allocations_and_refusals_and_ignores_the_rest():
    lines = [
        "0: : IPv4. UDP listener opened on: 127.0.0.1:34780",
        "1: : session 000000000000000001: realm <conclave> user <>: incoming packet message processed, error 401: Unauthorized",
        "1: : session 000000000000000001: new, realm=<conclave>, username=<1796643292:p1>, lifetime=777",
        "1: : session 000000000000000001: refreshed, realm=<conclave>, username=<1796643292:p1>, lifetime=600",
        "1: : session 001000000000000001: new, realm=<conclave>, username=<1796643292:p2>, lifetime=777",
        "6: : ERROR: check_stun_auth: Cannot find credentials of user <1796643273:p1>",
        "1: : ERROR: A peer IP 127.0.0.2 denied in the range: 0.0.0.0-255.255.255.255",
        "something coturn 4.7 may say", "", "session x: new, realm=",  # unknown: ignored
        "8: : session 000000000000000001: closed (2nd stage), user <1796643292:p1> realm <conclave> origin <>, "
        "local 127.0.0.1:34780, remote 127.0.0.1:50908, reason: allocation timeout",
        "8: : session 000000000000000009: closed (2nd stage), user <x> realm <conclave>",  # never seen opening
    ]  # fmt: skip
    log = TurnLog()
    for line in lines:
        log.feed(line)
    assert log.listening
    assert (log.allocations, log.allocations_total, log.auth_failures_total, log.peers_denied_total) == (1, 2, 1, 1)
    log.restarted()
    assert (log.allocations, log.listening, log.allocations_total) == (0, False, 2)
