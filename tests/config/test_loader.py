"""config/: defaults in code, the YAML file over them, the environment last, and errors
that name the key (or variable) and the problem (config/loader.py, with the sections'
checks of config/schema.py it reports; the auth, store and limits sections are in
test_schema.py)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

import config
from config import (
    Config,
    ConfigError,
    HttpConfig,
    LoggingConfig,
    MediaConfig,
    SfuConfig,
    SignalingConfig,
    load_config,
    resolved_announced_ips,
    resolved_workers,
)

CONFIG_DIR = Path(config.__file__).parent


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def tls_env(cert: Path, key: Path) -> dict[str, str]:
    return {"CONCLAVE_HTTP__TLS_CERT": str(cert), "CONCLAVE_HTTP__TLS_KEY": str(key)}


def error_of(path: Path | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={} if env is None else env)
    return str(caught.value)


# --- defaults and layering --------------------------------------------------------------


def test_defaults_in_code():
    cfg = Config()
    assert cfg.data_dir == "./data"
    assert cfg.http == HttpConfig("127.0.0.1", 8080, "", "", "")
    assert cfg.sfu.workers == 0
    assert cfg.sfu.listen_ip == "127.0.0.1"
    assert cfg.sfu.announced_ips == ()
    assert cfg.sfu.port_base == 40000
    assert cfg.sfu.max_datagram == 1500
    assert cfg.sfu.nack_cache_packets == 1024
    assert cfg.sfu.rtcp_interval_s == 1.0
    assert cfg.sfu.pli_min_interval_s == 0.5
    assert cfg.sfu.restart_backoff_s == 0.5
    assert cfg.sfu.stats_interval_s == 1.0
    assert cfg.media == MediaConfig(("VP8", "H264"), ("opus",), True)
    assert cfg.signaling == SignalingConfig(65536, 2000, 500, 50, 100)
    assert cfg.logging == LoggingConfig("info", "text")


def test_no_file_and_empty_environment_gives_the_defaults():
    assert load_config(env={}) == Config()


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.http.port = 1  # type: ignore[misc]


def test_yaml_is_laid_over_the_defaults(tmp_path):
    path = write(
        tmp_path,
        """
data_dir: /srv/conclave
http:
  port: 9000
sfu:
  workers: 3
  announced_ips: [203.0.113.10, "2001:db8::1"]
  rtcp_interval_s: 2      # an int is fine where a number is expected
media:
  video_codecs: [h264]    # codec names are case-insensitive
logging:
  level: WARNING
""",
    )
    cfg = load_config(path, env={})
    assert cfg.data_dir == "/srv/conclave"
    assert cfg.http.port == 9000
    assert cfg.http.host == "127.0.0.1"  # untouched keys keep their default
    assert cfg.sfu.workers == 3
    assert cfg.sfu.announced_ips == ("203.0.113.10", "2001:db8::1")
    assert cfg.sfu.rtcp_interval_s == 2.0 and isinstance(cfg.sfu.rtcp_interval_s, float)
    assert cfg.sfu.port_base == 40000
    assert cfg.media.video_codecs == ("H264",)
    assert cfg.logging.level == "warning"
    assert cfg.signaling == SignalingConfig()


def test_empty_file_and_empty_sections_change_nothing(tmp_path):
    assert load_config(write(tmp_path, "# only a comment\n"), env={}) == Config()
    assert load_config(write(tmp_path, "http:\nsfu:\n", "b.yaml"), env={}) == Config()


def test_environment_wins_over_yaml(tmp_path):
    path = write(
        tmp_path,
        "http:\n  port: 9000\n  host: 0.0.0.0\n  behind_tls_proxy: true\n  public_url: https://meet.example.com\n"
        "sfu:\n  workers: 3\n",
    )
    cfg = load_config(path, env={"CONCLAVE_HTTP__PORT": "9100", "CONCLAVE_SFU__WORKERS": "5"})
    assert cfg.http.port == 9100
    assert cfg.http.host == "0.0.0.0"  # set by the file, not overridden
    assert cfg.sfu.workers == 5


def test_environment_values_take_the_fields_type():
    cfg = load_config(
        env={
            "CONCLAVE_DATA_DIR": "/tmp/conclave-data",
            "CONCLAVE_SFU__ANNOUNCED_IPS": "1.2.3.4, 5.6.7.8",
            "CONCLAVE_SFU__PLI_MIN_INTERVAL_S": "0.25",
            "CONCLAVE_SFU__PORT_BASE": "0",
            "CONCLAVE_MEDIA__ACCEPT_SIMULCAST": "false",
            "CONCLAVE_MEDIA__VIDEO_CODECS": "H264,VP8",
            "CONCLAVE_LOGGING__FORMAT": "json",
            "UNRELATED": "ignored",
        }
    )
    assert cfg.data_dir == "/tmp/conclave-data"
    assert cfg.sfu.announced_ips == ("1.2.3.4", "5.6.7.8")
    assert cfg.sfu.pli_min_interval_s == 0.25
    assert cfg.sfu.port_base == 0
    assert cfg.media.accept_simulcast is False
    assert cfg.media.video_codecs == ("H264", "VP8")
    assert cfg.logging.format == "json"


def test_empty_environment_list_clears_the_file_list(tmp_path):
    path = write(tmp_path, "sfu:\n  announced_ips: [203.0.113.10]\n")
    assert load_config(path, env={"CONCLAVE_SFU__ANNOUNCED_IPS": ""}).sfu.announced_ips == ()


def test_conclave_config_variable_names_the_file(tmp_path):
    path = write(tmp_path, "http:\n  port: 9001\n")
    assert load_config(env={"CONCLAVE_CONFIG": str(path)}).http.port == 9001


def test_reads_os_environ_when_env_is_not_given(monkeypatch):
    for name in list(os.environ):
        if name.startswith("CONCLAVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONCLAVE_SIGNALING__CHAT_HISTORY", "0")
    assert load_config().signaling.chat_history == 0


def test_tls_files_that_exist_are_accepted(tmp_path):
    cert, key = write(tmp_path, "cert", "c.pem"), write(tmp_path, "key", "k.pem")
    cfg = load_config(env=tls_env(cert, key))
    assert (cfg.http.tls_cert, cfg.http.tls_key) == (str(cert), str(key))


def test_public_url_loses_its_trailing_slash():
    cfg = load_config(env={"CONCLAVE_HTTP__PUBLIC_URL": "https://meet.example.com/"})
    assert cfg.http.public_url == "https://meet.example.com"


# --- errors name the key and the problem ------------------------------------------------


def test_unknown_key_in_file(tmp_path):
    path = write(tmp_path, "http:\n  prot: 80\n")
    assert error_of(path) == (
        f"config file {path}: http.prot: unknown key "
        "(known: host, port, public_url, tls_cert, tls_key, tls, redirect_port, behind_tls_proxy, trusted_proxies)"
    )


def test_unknown_top_level_key_in_file(tmp_path):
    path = write(tmp_path, "htp:\n  port: 80\n")
    assert error_of(path) == (
        f"config file {path}: htp: unknown key "
        "(known: data_dir, http, sfu, media, signaling, auth, store, limits, outbound, logging, recorder, retention, turn, metrics, cluster, shutdown)"
    )


def test_section_that_is_not_a_mapping(tmp_path):
    path = write(tmp_path, "http: 8080\n")
    assert error_of(path) == (
        f"config file {path}: http: expected a mapping of http settings, got 8080"
    )


def test_workers_not_an_integer(tmp_path):
    path = write(tmp_path, "sfu:\n  workers: two\n")
    assert error_of(path) == f"config file {path}: sfu.workers: expected an integer >= 0, got 'two'"


def test_workers_negative():
    assert error_of(env={"CONCLAVE_SFU__WORKERS": "-1"}) == (
        "CONCLAVE_SFU__WORKERS: expected an integer >= 0, got -1"
    )


def test_announced_ip_that_is_not_an_ip_names_its_index(tmp_path):
    path = write(tmp_path, "sfu:\n  announced_ips: [1.2.3.4, 1.2.3]\n")
    assert error_of(path) == f"config file {path}: sfu.announced_ips[1]: not an IP address: '1.2.3'"


def test_announced_ips_from_env_names_the_variable_and_index():
    assert error_of(env={"CONCLAVE_SFU__ANNOUNCED_IPS": "1.2.3.4,1.2.3"}) == (
        "CONCLAVE_SFU__ANNOUNCED_IPS[1]: not an IP address: '1.2.3'"
    )


def test_announced_ips_refuse_unspecified_and_duplicates(tmp_path):
    path = write(tmp_path, "sfu:\n  announced_ips: [0.0.0.0]\n")
    assert error_of(path).startswith(
        f"config file {path}: sfu.announced_ips[0]: '0.0.0.0' is not an address clients can reach"
    )
    assert error_of(env={"CONCLAVE_SFU__ANNOUNCED_IPS": "1.2.3.4,1.2.3.4"}) == (
        "CONCLAVE_SFU__ANNOUNCED_IPS[1]: listed twice: '1.2.3.4'"
    )


def test_logging_level_must_be_known(tmp_path):
    path = write(tmp_path, "logging:\n  level: verbose\n")
    assert error_of(path).startswith(
        f"config file {path}: logging.level: must be one of debug, info, warning, error"
    )


def test_env_port_not_an_integer():
    message = error_of(env={"CONCLAVE_HTTP__PORT": "x"})
    assert message == "CONCLAVE_HTTP__PORT: expected an integer, got 'x'"


def test_port_out_of_range(tmp_path):
    path = write(tmp_path, "http:\n  port: 70000\n")
    assert error_of(path) == (
        f"config file {path}: http.port: must be between 0 and 65535, got 70000"
    )


def test_yaml_bool_is_not_an_integer(tmp_path):
    path = write(tmp_path, "http:\n  port: yes\n")
    assert error_of(path) == f"config file {path}: http.port: expected an integer, got True"


def test_nack_cache_must_be_a_power_of_two():
    assert error_of(env={"CONCLAVE_SFU__NACK_CACHE_PACKETS": "1000"}) == (
        "CONCLAVE_SFU__NACK_CACHE_PACKETS: must be a power of two between 1 and 32768, got 1000"
    )


@pytest.mark.parametrize("text", ["0", "-0.5", "nan", "inf", "soon"])
def test_intervals_must_be_positive_numbers(text):
    message = error_of(env={"CONCLAVE_SFU__RTCP_INTERVAL_S": text})
    assert message.startswith("CONCLAVE_SFU__RTCP_INTERVAL_S: expected a number > 0, got ")


def test_bad_bool_and_codec():
    assert error_of(env={"CONCLAVE_MEDIA__ACCEPT_SIMULCAST": "maybe"}) == (
        "CONCLAVE_MEDIA__ACCEPT_SIMULCAST: expected true or false, got 'maybe'"
    )
    assert error_of(env={"CONCLAVE_MEDIA__VIDEO_CODECS": "VP8,theora"}) == (
        "CONCLAVE_MEDIA__VIDEO_CODECS[1]: unsupported codec 'theora' (supported: VP8, H264)"
    )
    assert error_of(env={"CONCLAVE_MEDIA__AUDIO_CODECS": ""}) == (
        "CONCLAVE_MEDIA__AUDIO_CODECS: must list at least one codec"
    )


def test_public_url_must_be_http(tmp_path):
    path = write(tmp_path, "http:\n  public_url: meet.example.com\n")
    assert error_of(path).startswith(
        f"config file {path}: http.public_url: must be an http:// or https:// base URL"
    )


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "http:\n  port: 80\n host: badly indented\n")
    assert error_of(path).startswith(f"config file {path}: invalid YAML at line 3, column 2: ")


def test_yaml_duplicate_key_is_an_error(tmp_path):
    path = write(tmp_path, "http:\n  port: 80\n  port: 81\n")
    assert error_of(path) == (
        f"config file {path}: invalid YAML at line 3, column 3: duplicate key 'port'"
    )


def test_top_level_must_be_a_mapping(tmp_path):
    path = write(tmp_path, "- a\n- b\n")
    assert error_of(path) == f"config file {path}: expected a mapping of settings, got ['a', 'b']"


def test_missing_file(tmp_path):
    path = tmp_path / "missing.yaml"
    assert error_of(path) == f"config file {path}: cannot read: No such file or directory"


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "CONCLAVE_HTTP__PROT",
            "CONCLAVE_HTTP__PROT: unknown key http.prot "
            "(known: host, port, public_url, tls_cert, tls_key, tls, redirect_port, behind_tls_proxy, trusted_proxies)",
        ),
        (
            "CONCLAVE_HTPP__PORT",
            "CONCLAVE_HTPP__PORT: unknown section 'htpp' "
            "(known: http, sfu, media, signaling, auth, store, limits, outbound, logging, recorder, retention, turn, metrics, cluster, shutdown)",
        ),
        (
            "CONCLAVE_HTTP",
            "CONCLAVE_HTTP: http is a section; set one of its keys as CONCLAVE_HTTP__<KEY>",
        ),
        ("CONCLAVE_DATADIR", "CONCLAVE_DATADIR: unknown setting (known: CONCLAVE_DATA_DIR, "),
    ],
)
def test_unknown_conclave_variables_are_errors(variable, message):
    assert error_of(env={variable: "1"}).startswith(message)


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, "http:\n  prot: 80\nsfu:\n  workers: two\n")
    lines = error_of(path, env={"CONCLAVE_HTTP__PORT": "x"}).splitlines()
    assert lines == [
        f"config file {path}: http.prot: unknown key "
        "(known: host, port, public_url, tls_cert, tls_key, tls, redirect_port, behind_tls_proxy, trusted_proxies)",
        f"config file {path}: sfu.workers: expected an integer >= 0, got 'two'",
        "CONCLAVE_HTTP__PORT: expected an integer, got 'x'",
    ]


def test_unspecified_listen_ip_needs_announced_ips():
    message = error_of(env={"CONCLAVE_SFU__LISTEN_IP": "0.0.0.0"})
    assert message.startswith("sfu.announced_ips: must be set when sfu.listen_ip is 0.0.0.0")
    cfg = load_config(
        env={"CONCLAVE_SFU__LISTEN_IP": "0.0.0.0", "CONCLAVE_SFU__ANNOUNCED_IPS": "203.0.113.10"}
    )
    assert resolved_announced_ips(cfg) == ["203.0.113.10"]


def test_tls_cert_and_key_go_together(tmp_path):
    cert = write(tmp_path, "cert", "c.pem")
    assert error_of(env={"CONCLAVE_HTTP__TLS_CERT": str(cert)}).startswith(
        "http.tls_key: must be set together with http.tls_cert"
    )
    assert error_of(env={"CONCLAVE_HTTP__TLS_KEY": str(cert)}).startswith(
        "http.tls_cert: must be set together with http.tls_key"
    )


def test_tls_files_must_exist(tmp_path):
    cert, missing = write(tmp_path, "cert", "c.pem"), tmp_path / "nope.pem"
    assert error_of(env=tls_env(cert, missing)) == f"http.tls_key: no such file: '{missing}'"


def test_worker_ports_must_fit_below_65536():
    message = error_of(env={"CONCLAVE_SFU__WORKERS": "4", "CONCLAVE_SFU__PORT_BASE": "65534"})
    assert message.startswith("sfu.port_base: 4 workers from port 65534 would need port 65537")


def test_sections_check_themselves_when_built_directly():
    with pytest.raises(ConfigError, match=r"^sfu\.workers: expected an integer >= 0, got -1$"):
        SfuConfig(workers=-1)
    with pytest.raises(ConfigError, match=r"^logging\.format: must be one of text, json"):
        LoggingConfig(format="xml")
    with pytest.raises(ConfigError, match=r"^http: expected a HttpConfig"):
        Config(http={"port": 1})  # type: ignore[arg-type]
    assert SfuConfig(announced_ips=["::1"]).announced_ips == ("::1",)  # lists become tuples


# --- helpers ----------------------------------------------------------------------------


def test_resolved_workers():
    assert resolved_workers(SfuConfig(workers=3)) == 3
    assert resolved_workers(Config()) == (os.cpu_count() or 1)


def test_resolved_announced_ips_default_to_listen_ip():
    assert resolved_announced_ips(SfuConfig(listen_ip="10.0.0.5")) == ["10.0.0.5"]
    sfu = SfuConfig(listen_ip="0.0.0.0", announced_ips=("1.2.3.4", "::1"))
    assert resolved_announced_ips(sfu) == ["1.2.3.4", "::1"]


# --- the shipped YAML files -------------------------------------------------------------


def schema_keys() -> dict[str, object]:
    keys: dict[str, object] = dict.fromkeys(Config.rules())
    for name, section_class in Config.sections().items():
        keys[name] = set(section_class.rules())
    return keys


def test_default_yaml_equals_the_defaults_in_code():
    assert load_config(CONFIG_DIR / "default.yaml", env={}) == Config()


def test_default_yaml_lists_every_key_with_a_comment():
    path = CONFIG_DIR / "default.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    written = {k: (set(v) if isinstance(v, dict) else None) for k, v in document.items()}
    assert written == schema_keys()

    lines = path.read_text(encoding="utf-8").splitlines()
    uncommented = [
        line.strip()
        for number, line in enumerate(lines)
        if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":")
        and not (number > 0 and lines[number - 1].lstrip().startswith("#"))
    ]
    assert uncommented == []


def test_example_yaml_is_valid(tmp_path):
    # Its TLS files live on the production host; point them at stand-ins.
    cert, key = write(tmp_path, "cert", "c.pem"), write(tmp_path, "key", "k.pem")
    cfg = load_config(CONFIG_DIR / "example.yaml", env=tls_env(cert, key))
    assert cfg.http.public_url.startswith("https://")
    assert cfg.sfu.listen_ip == "0.0.0.0" and cfg.sfu.announced_ips
    assert resolved_workers(cfg) == cfg.sfu.workers > 0



# --- the recorder section ---------------------------------------------------------------


def test_recorder_defaults():
    from config.schema import RecorderConfig

    recorder = Config().recorder
    assert recorder == RecorderConfig()
    assert recorder.spool_limit_bytes == 2 * 1024**3
    assert recorder.segment_seconds == 10.0
    assert recorder.transcription_engine == "pocketsphinx"
    assert (recorder.openai_base_url, recorder.openai_api_key, recorder.openai_model) == ("", "", "whisper-1")


def test_recorder_settings_from_file_and_environment(tmp_path):
    path = write(tmp_path, "recorder:\n  segment_seconds: 2\n  transcription_engine: OpenAI\n")
    env = {
        "CONCLAVE_RECORDER__OPENAI_BASE_URL": "https://stt.example.com/",
        "CONCLAVE_RECORDER__OPENAI_API_KEY": "sk-very-secret-value",
        "CONCLAVE_RECORDER__SPOOL_LIMIT_BYTES": "1048576",
    }
    recorder = load_config(path, env=env).recorder
    assert recorder.segment_seconds == 2.0 and isinstance(recorder.segment_seconds, float)
    assert recorder.transcription_engine == "openai"
    assert recorder.openai_base_url == "https://stt.example.com"
    assert recorder.openai_api_key == "sk-very-secret-value"
    assert recorder.spool_limit_bytes == 1048576


@pytest.mark.parametrize("seconds", ["0", "-1", "10.5", "60"])
def test_recorder_segments_are_at_most_ten_seconds(seconds):
    message = error_of(env={"CONCLAVE_RECORDER__SEGMENT_SECONDS": seconds})
    assert message.startswith("CONCLAVE_RECORDER__SEGMENT_SECONDS: must be more than 0 and at most 10 seconds")
    from config.schema import RecorderConfig

    with pytest.raises(ConfigError, match=r"^recorder\.segment_seconds: must be more than 0"):
        RecorderConfig(segment_seconds=float(seconds))


def test_recorder_engine_must_be_known_and_openai_needs_its_settings():
    assert "must be one of pocketsphinx, openai" in error_of(env={"CONCLAVE_RECORDER__TRANSCRIPTION_ENGINE": "vosk"})
    message = error_of(env={"CONCLAVE_RECORDER__TRANSCRIPTION_ENGINE": "openai"})
    assert message == "recorder.openai_base_url: must be set when recorder.transcription_engine is openai"
    message = error_of(
        env={
            "CONCLAVE_RECORDER__TRANSCRIPTION_ENGINE": "openai",
            "CONCLAVE_RECORDER__OPENAI_BASE_URL": "https://stt.example.com",
        }
    )
    assert message == "recorder.openai_api_key: must be set when recorder.transcription_engine is openai"
    assert "http:// or https://" in error_of(env={"CONCLAVE_RECORDER__OPENAI_BASE_URL": "ftp://x"})


def test_recorder_api_key_never_shows():
    from config.schema import RecorderConfig

    recorder = RecorderConfig(openai_api_key="sk-very-secret-value")
    assert "sk-very-secret-value" not in repr(recorder)
    assert "sk-very-secret-value" not in repr(Config(recorder=recorder))
    with pytest.raises(ConfigError) as caught:
        RecorderConfig(openai_api_key=12345)  # type: ignore[arg-type]
    assert "12345" not in str(caught.value)


# --- store.url (issue 13, item 1) ------------------------------------------------------------


def test_store_url_empty_is_sqlite_and_a_postgresql_url_is_kept_but_never_shown():
    assert load_config(env={}).store.url == ""
    url = "postgresql://app:pg-secret-value@db.example:5432/conclave"
    cfg = load_config(env={"CONCLAVE_STORE__URL": url})
    assert cfg.store.url == url
    assert "pg-secret-value" not in repr(cfg)


@pytest.mark.parametrize(
    "url",
    ["mysql://app:pg-secret-value@db/conclave", "postgresql://app:pg-secret-value@db:port/conclave",
     "postgresql://app:pg-secret-value@db.example:5432", "db.example/conclave"],
)  # fmt: skip
def test_a_bad_store_url_is_refused_naming_the_key_not_the_password(url):
    message = error_of(env={"CONCLAVE_STORE__URL": url})
    assert message.startswith("CONCLAVE_STORE__URL: must ")
    assert "pg-secret-value" not in message


# --- TLS anywhere but loopback (issue 10, item 11) -----------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "meet.example.com"])
def test_a_public_host_without_tls_is_refused_naming_the_key(host):
    message = error_of(env={"CONCLAVE_HTTP__HOST": host})
    assert message.startswith("http.host:") and "TLS" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_loopback_needs_no_tls(host):
    assert load_config(env={"CONCLAVE_HTTP__HOST": host}).http.host == host


def test_behind_a_tls_proxy_needs_an_https_public_url():
    env = {"CONCLAVE_HTTP__HOST": "0.0.0.0", "CONCLAVE_HTTP__BEHIND_TLS_PROXY": "true"}
    assert error_of(env=env).startswith("http.public_url:")
    assert error_of(env={**env, "CONCLAVE_HTTP__PUBLIC_URL": "http://meet.example.com"}).startswith("http.public_url:")
    cfg = load_config(env={**env, "CONCLAVE_HTTP__PUBLIC_URL": "https://meet.example.com"})
    assert cfg.http.behind_tls_proxy is True


def test_a_public_host_with_tls_is_accepted(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    assert load_config(env={"CONCLAVE_HTTP__HOST": "0.0.0.0", **tls_env(cert, key)}).http.host == "0.0.0.0"


def test_outbound_networks_are_checked_and_canonical():
    cfg = load_config(env={"CONCLAVE_OUTBOUND__ALLOWED_NETWORKS": "10.20.0.0/16,127.0.0.1,FD00::/8"})
    assert cfg.outbound.allowed_networks == ("10.20.0.0/16", "127.0.0.1/32", "fd00::/8")
    assert error_of(env={"CONCLAVE_OUTBOUND__ALLOWED_NETWORKS": "10.0.0.0/99"}).startswith("CONCLAVE_OUTBOUND__ALLOWED_NETWORKS[0]")


def test_allowed_origins_are_origins():
    cfg = load_config(env={"CONCLAVE_SIGNALING__ALLOWED_ORIGINS": "https://App.example.com"})
    assert cfg.signaling.allowed_origins == ("https://app.example.com",)
    assert error_of(env={"CONCLAVE_SIGNALING__ALLOWED_ORIGINS": "https://a.example.com/path"}).startswith(
        "CONCLAVE_SIGNALING__ALLOWED_ORIGINS[0]"
    )


# --- the retention section and the customer spool quota ----------------------------------


def test_retention_defaults_and_rules(tmp_path):
    from config.schema import RetentionConfig

    retention = Config().retention
    assert retention == RetentionConfig()
    assert retention.chat_messages_per_meeting == 5000
    assert (retention.webhook_deliveries_days, retention.participants_days) == (30.0, 90.0)
    assert (retention.deleted_recordings_days, retention.purge_interval_s) == (30.0, 3600.0)
    path = write(tmp_path, "retention:\n  participants_days: 0\n")
    assert "retention.participants_days: expected a number > 0" in error_of(path)
    env = {"CONCLAVE_RETENTION__CHAT_MESSAGES_PER_MEETING": "0"}
    assert "CONCLAVE_RETENTION__CHAT_MESSAGES_PER_MEETING" in error_of(env=env)
    cfg = load_config(env={"CONCLAVE_RETENTION__WEBHOOK_DELIVERIES_DAYS": "1.5"})
    assert cfg.retention.webhook_deliveries_days == 1.5


def test_customer_spool_limit():
    assert Config().recorder.customer_spool_limit_bytes == 512 * 1024**2
    cfg = load_config(env={"CONCLAVE_RECORDER__CUSTOMER_SPOOL_LIMIT_BYTES": "1000"})
    assert cfg.recorder.customer_spool_limit_bytes == 1000
    assert "expected an integer >= 1" in error_of(env={"CONCLAVE_RECORDER__CUSTOMER_SPOOL_LIMIT_BYTES": "0"})


def test_max_datagram_stops_where_the_srtp_buffers_do():
    from sfu.transport.srtp import BUFFER_BYTES

    assert load_config(env={"CONCLAVE_SFU__MAX_DATAGRAM": str(BUFFER_BYTES)}).sfu.max_datagram == BUFFER_BYTES
    assert error_of(env={"CONCLAVE_SFU__MAX_DATAGRAM": str(BUFFER_BYTES + 1)}).startswith("CONCLAVE_SFU__MAX_DATAGRAM")
