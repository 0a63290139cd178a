"""Conclave settings: the schema (defaults in code) and the loader (YAML, then environment).

    from config import load_config
    cfg = load_config("conclave.yaml")
    start_sfu(cfg.sfu)   # each component receives only its own section

Imports only the standard library and PyYAML.
"""

from config.loader import load_config, resolved_announced_ips, resolved_workers
from config.schema import (
    AuthConfig,
    Config,
    ConfigError,
    HttpConfig,
    LimitsConfig,
    LoggingConfig,
    MediaConfig,
    MetricsConfig,
    OutboundConfig,
    RecorderConfig,
    RetentionConfig,
    SfuConfig,
    SignalingConfig,
    StoreConfig,
    TurnConfig,
)

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "HttpConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MediaConfig",
    "MetricsConfig",
    "OutboundConfig",
    "RecorderConfig",
    "RetentionConfig",
    "SfuConfig",
    "SignalingConfig",
    "StoreConfig",
    "TurnConfig",
    "load_config",
    "resolved_announced_ips",
    "resolved_workers",
]
