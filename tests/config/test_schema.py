"""config/schema.py: the auth, store and limits sections; secrets never appear in repr or
errors."""

from __future__ import annotations

import pytest

from config import AuthConfig, Config, ConfigError, LimitsConfig, StoreConfig, load_config
from control.store import store_path


def test_defaults():
    cfg = Config()
    assert cfg.auth == AuthConfig("", "", "replace", 600, 5, 20)
    assert cfg.store == StoreConfig("sqlite", "")
    assert cfg.limits == LimitsConfig(1, 10, 100, 1440, True, True, False)
    assert store_path(cfg) == "./data/conclave.db"
    assert store_path(load_config(env={"CONCLAVE_STORE__PATH": "/srv/x.db"})) == "/srv/x.db"


def test_secrets_stay_out_of_repr_and_errors(tmp_path):
    key, secret = "operator-key-" + "x" * 20, "token-secret-" + "y" * 40
    cfg = load_config(env={"CONCLAVE_AUTH__OPERATOR_KEY": key, "CONCLAVE_AUTH__TOKEN_SECRET": secret})
    assert (cfg.auth.operator_key, cfg.auth.token_secret) == (key, secret)
    assert key not in repr(cfg) and secret not in repr(cfg)
    for variable, value in (("CONCLAVE_AUTH__OPERATOR_KEY", "short-key"), ("CONCLAVE_AUTH__TOKEN_SECRET", "s" * 31)):
        with pytest.raises(ConfigError) as caught:
            load_config(env={variable: value})
        assert "at least" in str(caught.value) and value not in str(caught.value)
    path = tmp_path / "c.yaml"
    path.write_text("auth:\n  operator_key: 1234567890123456789\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "auth.operator_key: expected a string, got a int" in str(caught.value)
    assert "1234567890123456789" not in str(caught.value)


def test_checked_values():
    cfg = load_config(env={"CONCLAVE_AUTH__HOST_LOGIN_POLICY": "REFUSE", "CONCLAVE_LIMITS__MEETINGS_DISABLED": "yes"})
    assert cfg.auth.host_login_policy == "refuse" and cfg.limits.meetings_disabled is True
    for variable, value, where in (
        ("CONCLAVE_AUTH__HOST_LOGIN_POLICY", "share", "must be one of replace, refuse"),
        ("CONCLAVE_AUTH__JOIN_TOKEN_TTL_S", "5", "between 10 and 86400"),
        ("CONCLAVE_LIMITS__MAX_LIVE_MEETINGS_PER_HOST", "0", ">= 1"),
        ("CONCLAVE_STORE__DRIVER", "postgres", "must be one of sqlite"),
    ):
        with pytest.raises(ConfigError) as caught:
            load_config(env={variable: value})
        assert variable in str(caught.value) and where in str(caught.value)


def test_the_forwarding_path_setting_reads_yaml_on_and_off_as_words(tmp_path):
    """sfu.native: YAML 1.1 makes a bare on / off a boolean; the setting takes it as meant."""
    path = tmp_path / "conclave.yaml"
    for written, meant in (("on", "on"), ("off", "off"), ("auto", "auto"), ("yes", "on"), ("OFF", "off")):
        path.write_text(f"sfu:\n  native: {written}\n")
        assert load_config(path, env={}).sfu.native == meant
    assert load_config(None, env={}).sfu.native == "auto"
    assert load_config(None, env={"CONCLAVE_SFU__NATIVE": "off"}).sfu.native == "off"
    path.write_text("sfu:\n  native: fast\n")
    with pytest.raises(ConfigError, match="sfu.native: must be auto, on or off, got 'fast'"):
        load_config(path, env={})
