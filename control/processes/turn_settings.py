"""TURN as clients are told it and as coturn is run: the resolved `turn` settings, the
ephemeral credentials of the TURN REST API, and coturn's configuration file.

Credentials (draft-uberti-behave-turn-rest, what coturn's `use-auth-secret` checks):
username `EXPIRY:PARTICIPANT_ID`, password base64(HMAC-SHA1(secret, username)). coturn
accepts any username whose HMAC matches and whose EXPIRY (unix time) is in the future; it
knows nothing of meetings. What makes a credential worth little outside its meeting is
said in docs/signaling.md ("TURN"): EXPIRY is the end of the meeting's allowed duration
(capped), and the relay reaches only the SFU's own addresses, where every transport has
its own ICE credentials and DTLS.

The secret goes to coturn in a 0600 file (never on its command line: /proc/PID/cmdline
is readable by every user) and to nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from common.private_files import stored_secret, write_private_file
from config import Config, ConfigError, resolved_announced_ips

SECRET_FILE = "turn_secret"
TURN_DB = "turndb"  # coturn's SQLite user database, in DATA_DIR/turn
REALM = "conclave"
TURNSERVER = "turnserver"

# Every address coturn could relay to is denied, then the SFU's own are allowed (coturn:
# an address both allowed and denied is allowed). Clients of an SFU never need to reach
# anything else: no tenant reaches the server's private network, loopback or the internet
# through our relay. Multicast is refused separately (--no-multicast-peers).
DENY_ALL = ("0.0.0.0-255.255.255.255", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")


@dataclass(frozen=True)
class TurnSettings:
    """`turn` resolved: mode auto decided, defaults taken from `sfu`, the secret read."""

    mode: str  # managed | external | off
    secret: str = ""
    urls: tuple[str, ...] = ()
    max_ttl_s: int = 86400
    # Managed only:
    listen_ip: str = ""
    relay_ip: str = ""
    port: int = 0
    tls_port: int = 0
    tls_cert: str = ""
    tls_key: str = ""
    min_port: int = 0
    max_port: int = 0
    allowed_peers: tuple[str, ...] = ()
    allow_loopback_peers: bool = False

    @property
    def on(self) -> bool:
        return self.mode != "off"

    @property
    def tls_on(self) -> bool:
        return bool(self.tls_cert)

    def __repr__(self) -> str:  # never the secret, in a log line or a traceback
        return f"TurnSettings(mode={self.mode!r}, urls={self.urls!r})"


def resolve_mode(mode: str, which=shutil.which) -> str:
    """auto: managed when coturn's turnserver is on PATH, else off."""
    if mode == "auto":
        return "managed" if which(TURNSERVER) else "off"
    if mode == "managed" and not which(TURNSERVER):
        raise ConfigError("turn.mode: managed needs coturn's turnserver on PATH (apt-get install coturn), "
                          "or set turn.mode: off")  # fmt: skip
    return mode


def resolve(cfg: Config, which=shutil.which) -> TurnSettings:
    turn = cfg.turn
    mode = resolve_mode(turn.mode, which)
    if mode == "off":
        return TurnSettings(mode="off")
    if mode == "external":
        return TurnSettings(mode="external", secret=turn.secret, urls=turn.urls, max_ttl_s=turn.credential_max_ttl_s)
    return _managed(cfg)


def _managed(cfg: Config) -> TurnSettings:
    turn = cfg.turn
    announced = resolved_announced_ips(cfg)
    # Its own certificate, else the server's HTTPS one (files or self-signed: the same name).
    cert, key = (turn.tls_cert, turn.tls_key) if turn.tls_cert else (cfg.https_certificate() or ("", ""))
    host = turn.public_host or announced[0]
    tls_on = bool(cert) and bool(turn.tls_port)
    return TurnSettings(
        mode="managed",
        secret=turn.secret or turn_secret(cfg.data_dir),
        urls=client_urls(host, turn.port, turn.tls_port if tls_on else 0),
        max_ttl_s=turn.credential_max_ttl_s,
        listen_ip=turn.listen_ip or cfg.sfu.listen_ip,
        relay_ip=turn.relay_ip or cfg.sfu.listen_ip,
        port=turn.port,
        tls_port=turn.tls_port if tls_on else 0,
        tls_cert=cert if tls_on else "",
        tls_key=key if tls_on else "",
        min_port=turn.min_port,
        max_port=turn.max_port,
        allowed_peers=sfu_addresses(cfg),
        allow_loopback_peers=turn.allow_loopback_peers,
    )


def client_urls(host: str, port: int, tls_port: int) -> tuple[str, ...]:
    """turn: over UDP and TCP, turns: over TLS when it is on (RFC 7065)."""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    urls = [f"turn:{host}:{port}?transport=udp", f"turn:{host}:{port}?transport=tcp"]
    if tls_port:
        urls.append(f"turns:{host}:{tls_port}?transport=tcp")
    return tuple(urls)


def sfu_addresses(cfg: Config) -> tuple[str, ...]:
    """What the relay may reach: the addresses the workers announce and listen on."""
    addresses = [*resolved_announced_ips(cfg), cfg.sfu.listen_ip]
    unique = dict.fromkeys(a for a in addresses if not ipaddress.ip_address(a).is_unspecified)
    return tuple(unique)


# --- credentials --------------------------------------------------------------------------


def credential(secret: str, participant_id: str, expiry: int) -> tuple[str, str]:
    """(username, password) of the TURN REST API for `participant_id` until `expiry`."""
    username = f"{expiry}:{participant_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(
    settings: TurnSettings, participant_id: str, now: float, meeting_ends_at: float | None, secret: str | None = None
) -> list[dict]:
    """`joined.ice_servers`: one entry with every URL, valid until the meeting's allowed
    end (never longer than the cap, never already expired). `secret`: the meeting's own
    (managed coturn: control.processes.turn_secrets), else the server's."""
    if not settings.on:
        return []
    latest = now + settings.max_ttl_s
    ends = latest if meeting_ends_at is None else min(meeting_ends_at, latest)
    expiry = int(max(ends, now + 60))  # a meeting at its very end: still long enough to connect
    username, password = credential(secret or settings.secret, participant_id, expiry)
    return [{"urls": list(settings.urls), "username": username, "credential": password}]


# --- coturn's configuration -----------------------------------------------------------------


def coturn_config(settings: TurnSettings, state_dir: str) -> str:
    """turnserver.conf for the managed coturn (written 0600; the secrets are in its userdb)."""
    lines = [
        f"listening-port={settings.port}",
        # No static secret: each live meeting's own is a row of the user database below
        # (control.processes.turn_secrets), read by coturn at every authentication.
        "use-auth-secret",
        f"realm={REALM}",
        "fingerprint",
        "no-cli",
        "no-dtls",
        "no-multicast-peers",
        "no-software-attribute",  # do not tell the world which coturn version runs
        f"min-port={settings.min_port}",
        f"max-port={settings.max_port}",
        # Allocations are read from the log (control.processes.turn.TurnLog): verbose
        # logs each one; the log goes to stdout, which control reads.
        "verbose",
        "log-file=stdout",
        "simple-log",
        f"pidfile={os.path.join(state_dir, 'turnserver.pid')}",
        # Its own user database (the meetings' secrets), not the system's /var/lib/turn/turndb.
        f"userdb={os.path.join(state_dir, TURN_DB)}",
    ]
    lines += _addresses(settings) + _tls(settings) + _peers(settings)
    return "\n".join(lines)


def _addresses(settings: TurnSettings) -> list[str]:
    lines = []
    if not ipaddress.ip_address(settings.listen_ip).is_unspecified:
        lines.append(f"listening-ip={settings.listen_ip}")
    if not ipaddress.ip_address(settings.relay_ip).is_unspecified:
        lines.append(f"relay-ip={settings.relay_ip}")
    return lines


def _tls(settings: TurnSettings) -> list[str]:
    if not settings.tls_on:
        return ["no-tls"]
    return [f"tls-listening-port={settings.tls_port}", f"cert={settings.tls_cert}", f"pkey={settings.tls_key}"]


def _peers(settings: TurnSettings) -> list[str]:
    lines = [f"denied-peer-ip={span}" for span in DENY_ALL]
    lines += [f"allowed-peer-ip={address}" for address in settings.allowed_peers]
    if settings.allow_loopback_peers:
        lines.append("allow-loopback-peers")
    return lines


def state_dir_of(data_dir: str) -> str:
    """DATA_DIR/turn: coturn's configuration, pid file and user database."""
    return os.path.join(os.path.abspath(data_dir), "turn")


def write_coturn_config(settings: TurnSettings, data_dir: str) -> Path:
    """DATA_DIR/turn/turnserver.conf (0600, in a 0700 directory); returns its path."""
    state_dir = state_dir_of(data_dir)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    os.chmod(state_dir, 0o700)
    path = os.path.join(state_dir, "turnserver.conf")
    write_private_file(path, coturn_config(settings, state_dir))
    return Path(path)


def coturn_command(config_path: Path) -> list[str]:
    """turnserver's argv: everything, the secret included, is in the 0600 file."""
    return [TURNSERVER, "-c", str(config_path)]


# --- the shared secret ---


def turn_secret(data_dir: str) -> str:
    """DATA_DIR/turn_secret, generated (0600) the first time; kept across restarts so that
    credentials handed out before a restart stay valid."""
    return stored_secret(os.path.join(data_dir, SECRET_FILE), 32)[0]
