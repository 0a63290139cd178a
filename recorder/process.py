"""The recorder process: `python -m recorder --channel-fd FD`, started by control
(recorder.api.recorder_command) with its settings in the environment (`--config-json`
works too, for people). Reads them, opens the channel to control and serves
recorder.service.RecorderService on it until a signal stops it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import uvloop

from common import logs
from common.channel import open_server, serve_until_stopped
from config.schema import ConfigError, RecorderConfig
from recorder import api
from recorder.manifest import software_version
from recorder.service import RecorderService

log = logging.getLogger("recorder.service")


async def run(channel_fd: int, settings: RecorderSettings) -> None:
    service = RecorderService(settings.config, settings.data_dir, settings.allowed_networks)
    data_dir = settings.data_dir
    channel = await open_server(channel_fd, service.handle)
    service.channel = channel
    await service.start()
    pending = len(service.spool.pending())
    channel.notify(
        "recorder", api.RecorderReady(pid=os.getpid(), version=software_version(), pending_uploads=pending)
    )
    log.info("recorder ready (data in %s, %d upload(s) pending)", data_dir, pending)
    # A second signal while draining (closing segments): leave at once.
    await serve_until_stopped(channel, service.shutdown, second_signal_exits=True)


@dataclasses.dataclass(frozen=True)
class RecorderSettings:
    config: RecorderConfig
    data_dir: Path
    log_level: str
    allowed_networks: tuple[str, ...]
    log_format: str = "text"
    log_levels: tuple[str, ...] = ()


def load_settings(text: str) -> RecorderSettings:
    """The recorder's settings from recorder_config_json's JSON."""
    data = json.loads(text)
    section = {k: tuple(v) if isinstance(v, list) else v for k, v in data.get("recorder", {}).items()}
    return RecorderSettings(
        RecorderConfig(**section),
        Path(data.get("data_dir", "./data")),
        str(data.get("log_level", "info")),
        tuple(str(network) for network in data.get("allowed_networks", ())),
        str(data.get("log_format", "text")),
        tuple(str(entry) for entry in data.get("log_levels", ())),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recorder", description="Conclave recorder (started by control)")
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--config-json", default=None, help=f"default: ${api.CONFIG_ENVIRONMENT_VARIABLE}")
    parser.add_argument("--log-level", default=None, help="default: the log_level in the configuration")
    args = parser.parse_args(argv)
    os.umask(0o077)  # recordings, speech and transcripts: for this user only
    text = args.config_json or os.environ.get(api.CONFIG_ENVIRONMENT_VARIABLE, "{}")
    try:
        settings = load_settings(text)
    except (ValueError, TypeError, ConfigError) as error:
        # The message names the setting, never a secret's value (config.schema's rules).
        print(f"recorder: bad configuration: {error}", file=sys.stderr)
        return 2
    logs.setup("recorder", args.log_level or settings.log_level, settings.log_format, settings.log_levels)
    uvloop.run(run(args.channel_fd, settings))
    return 0
