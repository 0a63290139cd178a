"""Every Conclave setting: its default, its type and the values it accepts.

Defaults live here, in code; config/default.yaml mirrors them for operators and a test
keeps the two equal. Each section is a frozen dataclass that checks itself when it is
built, so any Config that exists is valid whoever built it (the loader, a test, a bench
script); the loader only finds the values and says where a bad one came from.

Sections know nothing of each other: each component receives only its own section
(`cfg.sfu`, `cfg.http`, ...), so a check never reaches across sections.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar
from urllib.parse import urlsplit

# Where `http.tls: self-signed` keeps its certificate, under data_dir.
SELF_SIGNED_DIR = "tls"
SELF_SIGNED_CERT = "self-signed.crt"
SELF_SIGNED_KEY = "self-signed.key"


class ConfigError(ValueError):
    """A setting is unknown or invalid; the message names its full key path and the problem."""


class BadValue(ValueError):
    """A value that a Rule refuses.

    `where` locates the bad part inside the value ("[1]" for the second item of a list), so
    the caller can print `sfu.announced_ips[1]: ...` whatever the source of the value.
    """

    def __init__(self, problem: str, where: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.where = where


@dataclass(frozen=True, slots=True)
class Rule:
    """How one setting is read and checked.

    kind:   the Python type stored: int, float, str, bool, or tuple (a list of items).
    expect: finishes "expected ..., got X" when a value is of the wrong type.
    refine: given a value of the right kind, returns the value to store (possibly
            normalized, e.g. "INFO" -> "info") or raises BadValue saying what is wrong.
    item:   for a tuple, the rule each item obeys.
    secret: error messages never quote the value.
    """

    kind: type
    expect: str
    refine: Callable[[Any], Any] | None = None
    item: Rule | None = None
    secret: bool = False

    def accept(self, value: Any) -> Any:
        """Check a typed value (from YAML or Python); return what to store or raise BadValue."""
        value = self._of_kind(value)
        return value if self.refine is None else self.refine(value)

    def accept_text(self, text: str) -> Any:
        """Check a value written as text (an environment variable); return what to store."""
        return self.accept(self._from_text(text))

    def _of_kind(self, value: Any) -> Any:
        if self.kind is tuple:
            if not isinstance(value, (list, tuple)):
                raise self._wrong_type(value)
            return tuple(_each_item(self.item.accept, value))
        # bool is a subclass of int, but `port: yes` is a mistake, not port 1.
        if isinstance(value, bool) and self.kind is not bool:
            raise self._wrong_type(value)
        if self.kind is float and isinstance(value, int):
            value = float(value) if abs(value) < 2**1023 else math.inf  # refused below
        if not isinstance(value, self.kind):
            raise self._wrong_type(value)
        if self.kind is float and not math.isfinite(value):
            raise self._wrong_type(value)
        return value

    def _from_text(self, text: str) -> Any:
        if self.kind is str:
            return text
        if self.kind is tuple:
            # Comma-separated; an empty or blank value is the empty list.
            parts = [part.strip() for part in text.split(",")] if text.strip() else []
            return tuple(_each_item(self.item._from_text, parts))
        if self.kind is bool:
            word = text.strip().lower()
            if word in _TRUE_WORDS or word in _FALSE_WORDS:
                return word in _TRUE_WORDS
            raise self._wrong_type(text)
        try:
            return self.kind(text.strip())
        except ValueError:
            raise self._wrong_type(text) from None

    def _wrong_type(self, value: Any) -> BadValue:
        if self.secret:
            return BadValue(f"expected {self.expect}, got a {type(value).__name__}")
        return BadValue(f"expected {self.expect}, got {value!r}")


_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _each_item(convert: Callable[[Any], Any], items: list | tuple):
    """Apply convert to each item, naming the index of the first one it refuses."""
    for index, value in enumerate(items):
        try:
            yield convert(value)
        except BadValue as error:
            raise BadValue(error.problem, f"[{index}]{error.where}") from None


# --- rules ------------------------------------------------------------------------------


def integer(minimum: int, maximum: int | None = None) -> Rule:
    """An int in [minimum, maximum] (no upper bound when maximum is None)."""
    if maximum is None:
        expect = f"an integer >= {minimum}"

        def refine(value: int) -> int:
            if value < minimum:
                raise BadValue(f"expected {expect}, got {value!r}")
            return value

        return Rule(int, expect, refine)

    def refine_bounded(value: int) -> int:
        if not minimum <= value <= maximum:
            raise BadValue(f"must be between {minimum} and {maximum}, got {value!r}")
        return value

    return Rule(int, "an integer", refine_bounded)


PORT = integer(0, 65535)


def non_negative_number() -> Rule:
    """A float >= 0 (an int is accepted and stored as float)."""

    def refine(value: float) -> float:
        if value < 0:
            raise BadValue(f"expected a number >= 0, got {value!r}")
        return value

    return Rule(float, "a number >= 0", refine)


def positive_number() -> Rule:
    """A float > 0 (an int is accepted and stored as float)."""

    def refine(value: float) -> float:
        if value <= 0:
            raise BadValue(f"expected a number > 0, got {value!r}")
        return value

    return Rule(float, "a number > 0", refine)


def power_of_two(maximum: int) -> Rule:
    """An int that is a power of two, 1..maximum (ring buffers index with `seq & (n - 1)`)."""

    def refine(value: int) -> int:
        if value < 1 or value > maximum or value & (value - 1):
            raise BadValue(f"must be a power of two between 1 and {maximum}, got {value!r}")
        return value

    return Rule(int, "an integer", refine)


def one_of(*choices: str) -> Rule:
    """One of a few lower-case words; any case is accepted and stored lower-case."""

    def refine(value: str) -> str:
        if value.lower() not in choices:
            raise BadValue(f"must be one of {', '.join(choices)}, got {value!r}")
        return value.lower()

    return Rule(str, "a string", refine)


@dataclass(frozen=True, slots=True)
class _AutoOnOff(Rule):
    """auto, on or off, where YAML 1.1 reads a bare on / off (yes / no, true / false) as
    a boolean: `native: on` in a file means on, not a type error."""

    def accept(self, value: Any) -> Any:
        if isinstance(value, bool):
            value = "on" if value else "off"
        return Rule.accept(self, value)


def auto_on_off() -> Rule:
    def refine(value: str) -> str:
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return "on"
        if word in _FALSE_WORDS:
            return "off"
        if word != "auto":
            raise BadValue(f"must be auto, on or off, got {value!r}")
        return word

    return _AutoOnOff(str, "auto, on or off", refine)


def non_empty_text(expect: str) -> Rule:
    def refine(value: str) -> str:
        if not value.strip():
            raise BadValue("must not be empty")
        return value

    return Rule(str, expect, refine)


def ip_address(*, allow_unspecified: bool) -> Rule:
    """An IPv4 or IPv6 address, stored in its canonical text form."""

    def refine(value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise BadValue(f"not an IP address: {value!r}") from None
        if address.is_unspecified and not allow_unspecified:
            raise BadValue(
                f"{value!r} is not an address clients can reach; "
                "give the public address they should send media to"
            )
        return str(address)

    return Rule(str, "an IP address", refine)


def _no_duplicates(values: tuple) -> tuple:
    seen = set()
    for index, value in enumerate(values):
        if value in seen:
            raise BadValue(f"listed twice: {value!r}", f"[{index}]")
        seen.add(value)
    return values


def network() -> Rule:
    """An IPv4 or IPv6 network in CIDR form (an address alone is its /32 or /128), stored
    canonical."""

    def refine(value: str) -> str:
        try:
            return str(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise BadValue(f"not an IP network such as 10.0.0.0/8 or fd00::/8: {value!r}") from None

    return Rule(str, "an IP network", refine)


def network_list() -> Rule:
    return Rule(tuple, "a list of IP networks", _no_duplicates, network())


def origin() -> Rule:
    """A web origin: scheme://host[:port], nothing after it."""

    def refine(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query:
            raise BadValue(f"must be an origin such as https://meet.example.com, got {value!r}")
        return f"{parts.scheme}://{parts.netloc}".lower()

    return Rule(str, "an origin", refine)


def ip_list() -> Rule:
    each = ip_address(allow_unspecified=False)
    return Rule(tuple, "a list of IP addresses", _no_duplicates, each)


def codec_list(*supported: str) -> Rule:
    """A non-empty list of codec names in order of preference; names are case-insensitive
    (as in SDP, RFC 4855 section 3) and stored in the spelling of `supported`."""
    canonical = {name.lower(): name for name in supported}

    def refine_name(value: str) -> str:
        if value.lower() not in canonical:
            raise BadValue(f"unsupported codec {value!r} (supported: {', '.join(supported)})")
        return canonical[value.lower()]

    def refine_list(values: tuple) -> tuple:
        if not values:
            raise BadValue("must list at least one codec")
        return _no_duplicates(values)

    return Rule(tuple, "a list of codec names", refine_list, Rule(str, "a codec name", refine_name))


def base_url() -> Rule:
    """Empty, or an http(s) base URL; a trailing slash is dropped so paths can be appended."""

    def refine(value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        is_base_url = parts.scheme in ("http", "https") and parts.netloc
        if not is_base_url or parts.query or parts.fragment:
            raise BadValue(
                "must be an http:// or https:// base URL such as https://meet.example.com, "
                f"got {value!r}"
            )
        return value.rstrip("/")

    return Rule(str, "a URL", refine)


BOOLEAN = Rule(bool, "true or false")


def database_url() -> Rule:
    """Empty, or a postgresql:// URL naming a host and a database; the message never
    repeats the URL (it may hold the password)."""

    def refine(value: str) -> str:
        if not value:
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise BadValue("must be a postgresql:// URL whose port is a number") from None
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or parts.path.strip("/") == "":
            raise BadValue("must be empty (SQLite) or a postgresql://USER:PASSWORD@HOST:PORT/DATABASE URL")
        return value

    return Rule(str, "a database URL", refine, secret=True)


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: reachable from this machine only."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False
FILE_PATH = Rule(str, "a file path")


def setting(default: Any, rule: Rule) -> Any:
    """A dataclass field holding one setting, with its default and its rule. A secret rule's
    value never appears in repr() (so never in a log line or a traceback)."""
    return field(default=default, repr=not rule.secret, metadata={"rule": rule})


def secret_text(minimum_chars: int) -> Rule:
    """Empty (generated at first start), or a secret of at least `minimum_chars`; the
    message never repeats the value."""

    def refine(value: str) -> str:
        if value and len(value) < minimum_chars:
            raise BadValue(f"must be empty (generated) or at least {minimum_chars} characters long")
        return value

    return Rule(str, "a string", refine, secret=True)


def section(cls: type) -> Any:
    """A dataclass field holding a whole section."""
    return field(default_factory=cls, metadata={"section": cls})


# --- sections ---------------------------------------------------------------------------


class _Section:
    """What every section shares: it checks (and normalizes) its own fields when built."""

    __slots__ = ()
    SECTION: ClassVar[str]  # this section's key in the YAML file; "" at the top level

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        """The rule of each setting of this section, in declaration order."""
        return {f.name: f.metadata["rule"] for f in fields(cls) if "rule" in f.metadata}

    @classmethod
    def key_path(cls, name: str) -> str:
        return f"{cls.SECTION}.{name}" if cls.SECTION else name

    def __post_init__(self) -> None:
        for f in fields(self):
            if "rule" in f.metadata:
                try:
                    value = f.metadata["rule"].accept(getattr(self, f.name))
                except BadValue as error:
                    where = self.key_path(f.name) + error.where
                    raise ConfigError(f"{where}: {error.problem}") from None
                # Frozen: store the normalized value the only way a frozen dataclass allows.
                object.__setattr__(self, f.name, value)
        self._check_together()

    def _check_together(self) -> None:
        """Checks that involve several fields of the section; none by default."""


@dataclass(frozen=True, slots=True)
class HttpConfig(_Section):
    SECTION: ClassVar[str] = "http"

    host: str = setting("127.0.0.1", non_empty_text("a host name or IP address"))
    port: int = setting(8080, PORT)
    # Base URL of join links; empty: derived from the Host header of each request.
    public_url: str = setting("", base_url())
    # TLS is on when both are set; both or neither.
    tls_cert: str = setting("", FILE_PATH)
    tls_key: str = setting("", FILE_PATH)
    # "files": TLS from tls_cert/tls_key when set; "self-signed": a certificate made for
    # public_url's host (a LAN trial; control.cli.tls).
    tls: str = setting("files", one_of("files", "self-signed"))
    # A plain-HTTP port that redirects to HTTPS (0: none); TLS must be on.
    redirect_port: int = setting(0, PORT)
    # TLS ends at a reverse proxy in front of this server (public_url must be https).
    behind_tls_proxy: bool = setting(False, BOOLEAN)
    # Reverse proxies whose X-Forwarded-For is believed (control.http.proxies): a request
    # from one of these is the client's the proxies name, so per-client limits stay per
    # client. Empty: every request is its peer's.
    trusted_proxies: tuple[str, ...] = setting((), network_list())

    def _check_together(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            missing, present = ("tls_key", "tls_cert") if self.tls_cert else ("tls_cert", "tls_key")
            raise ConfigError(
                f"http.{missing}: must be set together with http.{present} "
                "(HTTPS needs both the certificate and its key; leave both empty for HTTP)"
            )
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ConfigError(f"http.{name}: no such file: {path!r}")
        if self.tls == "self-signed" and self.tls_cert:
            raise ConfigError(
                "http.tls: self-signed makes its own certificate: leave http.tls_cert and http.tls_key "
                "empty, or set http.tls: files to use them"
            )
        if self.redirect_port and not self.tls_on:
            raise ConfigError("http.redirect_port: redirects to HTTPS, but TLS is off (set http.tls_cert "
                              "and http.tls_key, or http.tls: self-signed)")
        if self.redirect_port and self.redirect_port == self.port:
            raise ConfigError("http.redirect_port: must differ from http.port")
        self._check_tls_off_loopback()

    @property
    def tls_on(self) -> bool:
        """HTTPS on this server's own port (a certificate from files, or self-signed)."""
        return bool(self.tls_cert) or self.tls == "self-signed"

    def _check_tls_off_loopback(self) -> None:
        """Sign-in passwords, session tokens and join tokens cross this socket: anywhere but
        loopback it must be TLS, here or at a proxy in front."""
        if is_loopback_host(self.host) or self.tls_on:
            return
        if self.behind_tls_proxy:
            if not self.public_url.startswith("https://"):
                raise ConfigError(
                    "http.public_url: must be an https:// URL when http.behind_tls_proxy is true "
                    "(the address clients open, at the proxy that terminates TLS)"
                )
            return
        raise ConfigError(
            f"http.host: {self.host!r} is reachable from other machines but TLS is off: set "
            "http.tls_cert and http.tls_key, or http.behind_tls_proxy: true with an https "
            "http.public_url when a reverse proxy terminates TLS, or listen on 127.0.0.1"
        )


@dataclass(frozen=True, slots=True)
class SfuConfig(_Section):
    SECTION: ClassVar[str] = "sfu"

    # 0: one worker per CPU (see resolved_workers).
    workers: int = setting(0, integer(0))
    listen_ip: str = setting("127.0.0.1", ip_address(allow_unspecified=True))
    # Addresses put in ICE candidates; empty: [listen_ip] (see resolved_announced_ips).
    announced_ips: tuple[str, ...] = setting((), ip_list())
    # Worker i binds UDP port_base + i; 0: each worker takes an ephemeral port (tests).
    port_base: int = setting(40000, PORT)
    # 576 is the smallest datagram every IPv4 host must accept; 1500 the most the SRTP
    # buffers hold (sfu.transport.srtp.BUFFER_BYTES, as pylibsrtp's): a larger setting
    # would only make larger packets fail to protect.
    max_datagram: int = setting(1500, integer(576, 1500))
    # Indexed by sequence number modulo its size; at most half the 16-bit sequence space.
    nack_cache_packets: int = setting(1024, power_of_two(32768))
    rtcp_interval_s: float = setting(1.0, positive_number())
    pli_min_interval_s: float = setting(0.5, positive_number())
    # Retransmissions (NACK answers) per consumer and second: at most nack_budget_ratio
    # times what it forwarded, in packets and in bytes, never less than the floors.
    nack_budget_ratio: float = setting(2.0, positive_number())
    nack_budget_min_packets_per_s: int = setting(30, integer(1))
    nack_budget_min_bytes_per_s: int = setting(36000, integer(1))
    # A NACK for a packet older than this (RTP time, against the newest) is refused.
    nack_max_age_s: float = setting(1.0, positive_number())
    # A sequence number answered this recently is not answered again.
    nack_repeat_interval_s: float = setting(0.1, positive_number())
    # ICE consent (RFC 7675): a client whose checks stop for this long is sent nothing more.
    ice_consent_timeout_s: float = setting(30.0, positive_number())
    # ICE-TCP (RFC 6544): each worker also listens on TCP, the same port number as its UDP
    # port, and offers a passive TCP candidate below its UDP ones (clients without UDP).
    ice_tcp: bool = setting(True, BOOLEAN)
    # Offer UDP candidates. false offers only the TCP ones: for tests and firewall trials.
    ice_udp: bool = setting(True, BOOLEAN)
    # Bytes one ICE-TCP connection may have waiting to be sent; past it, what it should be
    # sent is dropped (counted) so a client that stops reading never grows the worker.
    ice_tcp_send_buffer_bytes: int = setting(262144, integer(16384, 16 * 1024 * 1024))
    # ICE-TCP connections one worker keeps open at once; one past it is closed on accept.
    ice_tcp_max_connections: int = setting(1024, integer(1, 65536))
    restart_backoff_s: float = setting(0.5, positive_number())
    stats_interval_s: float = setting(1.0, positive_number())
    # The forwarding path (sfu.transport.native, issue 15): auto uses the native module
    # when it was built (pip install with gcc and python3-dev) and Python otherwise; on
    # refuses to start without it; off forwards in Python. The worker logs which one.
    native: str = setting("auto", auto_on_off())

    def _check_together(self) -> None:
        if not self.announced_ips and ipaddress.ip_address(self.listen_ip).is_unspecified:
            raise ConfigError(
                f"sfu.announced_ips: must be set when sfu.listen_ip is {self.listen_ip}: "
                "clients cannot send media to an unspecified address; list this host's "
                "public IP address(es), e.g. announced_ips: [203.0.113.10]"
            )
        if not self.ice_udp and not self.ice_tcp:
            raise ConfigError("sfu.ice_udp: false needs sfu.ice_tcp: true (no candidate would be offered)")
        last_port = self.port_base + self.workers - 1
        if self.port_base and self.workers and last_port > 65535:
            raise ConfigError(
                f"sfu.port_base: {self.workers} workers from port {self.port_base} "
                f"would need port {last_port}, past 65535"
            )


@dataclass(frozen=True, slots=True)
class MediaConfig(_Section):
    SECTION: ClassVar[str] = "media"

    # In order of preference. The SFU never transcodes, so these are what senders may use.
    video_codecs: tuple[str, ...] = setting(("VP8", "H264"), codec_list("VP8", "H264"))
    audio_codecs: tuple[str, ...] = setting(("opus",), codec_list("opus"))
    # On by default (issue 11): browsers send camera video as three rid layers; a client
    # that cannot (aiortc bots) sends one, forwarded whole.
    accept_simulcast: bool = setting(True, BOOLEAN)
    # What one participant may make the SFU carry (docs/security-media.md). A publish
    # offer with more m-lines, or sending more tracks, is refused whole.
    max_publish_mlines: int = setting(32, integer(1, 1024))
    max_published_tracks: int = setting(8, integer(1, 256))
    # M-lines of one subscriber's receive connection (tracks forwarded to them, closed ones
    # recycled): the client's answer lists them all and must fit in one signaling message.
    max_subscribe_mlines: int = setting(64, integer(1, 1024))

    def _check_together(self) -> None:
        if self.max_published_tracks > self.max_publish_mlines:
            raise ConfigError(
                f"media.max_published_tracks: {self.max_published_tracks} tracks cannot fit in "
                f"media.max_publish_mlines ({self.max_publish_mlines}) m-lines"
            )


@dataclass(frozen=True, slots=True)
class SignalingConfig(_Section):
    SECTION: ClassVar[str] = "signaling"

    max_message_bytes: int = setting(65536, integer(1))
    chat_max_chars: int = setting(2000, integer(1))
    # Chat messages sent to a joiner (the newest); 0 sends none. Storage: retention.chat_messages_per_meeting.
    chat_history: int = setting(500, integer(0))
    # Per WebSocket.
    messages_per_second: int = setting(50, integer(1))
    max_participants_per_meeting: int = setting(100, integer(1))
    # A client that has not answered a subscribe offer after this long is disconnected.
    answer_timeout_s: float = setting(30.0, positive_number())
    # People waiting at once in one meeting's waiting room (or for its host).
    max_waiting_per_meeting: int = setting(50, integer(1))
    # Sockets that have not joined yet: per client (IPv4 address, IPv6 /64) and in all.
    max_unjoined_sockets_per_address: int = setting(10, integer(1))
    max_unjoined_sockets: int = setting(1000, integer(1))
    # Bytes one socket may send per second (a bucket holding max(this, 2 * max_message_bytes)).
    bytes_per_second: int = setting(262144, integer(1))
    # Bytes queued to a client that does not read before its socket is closed.
    max_outbox_bytes: int = setting(16 * 1024 * 1024, integer(1024))
    # Web origins allowed to open sockets besides http.public_url (or the request's own host
    # when that is empty); a request without Origin (not a browser) is allowed.
    allowed_origins: tuple[str, ...] = setting((), Rule(tuple, "a list of origins", _no_duplicates, origin()))


@dataclass(frozen=True, slots=True)
class AuthConfig(_Section):
    SECTION: ClassVar[str] = "auth"

    # Bearer key of the server operator; empty: generated into DATA_DIR/operator-key.
    operator_key: str = setting("", secret_text(16))
    # HS256 key of join tokens; empty: generated into DATA_DIR/token-secret.
    token_secret: str = setting("", secret_text(32))
    # A second login of a host: "replace" ends the first session, "refuse" answers 409.
    host_login_policy: str = setting("replace", one_of("replace", "refuse"))
    # Lifetime of a join token: long enough to connect (the live socket outlives it).
    join_token_ttl_s: int = setting(600, integer(10, 86400))
    # Wrong passcodes per meeting per client (IPv4 address, IPv6 /64), and per client.
    passcode_attempts_per_minute: int = setting(5, integer(1))
    passcode_attempts_per_address_per_minute: int = setting(20, integer(1))
    # Wrong sign-ins per email per client, and per client.
    login_attempts_per_email_per_minute: int = setting(10, integer(1))
    login_attempts_per_address_per_minute: int = setting(30, integer(1))
    # Successful joins per client (participant rows and tokens it can make).
    joins_per_address_per_minute: int = setting(60, integer(1))
    # A host sign-in ends after this long unused, and this long after it began.
    host_session_idle_s: int = setting(12 * 3600, integer(60))
    host_session_max_s: int = setting(7 * 24 * 3600, integer(60))
    # Lifetime of a transcript link (/t/<id>?t=...).
    transcript_link_ttl_s: int = setting(3600, integer(10, 7 * 24 * 3600))
    # Lifetime of a reconnect credential (it proves who someone was after a restart of
    # the server or the loss of a node); refreshed every third of it while they stay.
    reconnect_ttl_s: int = setting(900, integer(30, 86400))


@dataclass(frozen=True, slots=True)
class StoreConfig(_Section):
    SECTION: ClassVar[str] = "store"

    driver: str = setting("sqlite", one_of("sqlite"))
    # Database file; empty: DATA_DIR/conclave.db.
    path: str = setting("", FILE_PATH)
    # Empty: the SQLite file above (one machine). postgresql://USER:PASSWORD@HOST:PORT/DB:
    # PostgreSQL instead, shared by several nodes (the password is never shown).
    url: str = setting("", database_url())


@dataclass(frozen=True, slots=True)
class LimitsConfig(_Section):
    """Per-customer limits; each customer may override any of them."""

    SECTION: ClassVar[str] = "limits"

    max_live_meetings_per_host: int = setting(1, integer(1))
    max_concurrent_meetings: int = setting(10, integer(1))
    max_participants_per_meeting: int = setting(100, integer(1))
    max_meeting_minutes: int = setting(1440, integer(1))
    recording_allowed: bool = setting(True, BOOLEAN)
    transcription_allowed: bool = setting(True, BOOLEAN)
    meetings_disabled: bool = setting(False, BOOLEAN)
    # Recording (issue 5): start recording when the host starts the meeting; whether
    # participants only get notice (`notify`) or must say "continue" before they are heard
    # and seen (`require`); whether participants (not only the host) may start transcription.
    auto_record: bool = setting(False, BOOLEAN)
    consent_policy: str = setting("notify", one_of("notify", "require"))
    participants_may_transcribe: bool = setting(False, BOOLEAN)
    # Last-N (issue 11): the most a host may set a meeting's `last_n` to (participants
    # whose video each subscriber receives at once); a meeting without one gets 25, capped
    # by this.
    max_last_n: int = setting(25, integer(1, 1000))
    # WHEP playback (issue 12, item 5): viewers of one meeting at once.
    max_viewers_per_meeting: int = setting(50, integer(1, 10000))


def segment_length() -> Rule:
    """Seconds of one recording segment: > 0 and at most 10 (a crash loses at most that)."""

    def refine(value: float) -> float:
        if not 0 < value <= 10:
            raise BadValue(f"must be more than 0 and at most 10 seconds, got {value!r}")
        return value

    return Rule(float, "a number of seconds", refine)


@dataclass(frozen=True, slots=True)
class RecorderConfig(_Section):
    """The recorder process (issue 5): its spool, segments and transcription engine."""

    SECTION: ClassVar[str] = "recorder"

    # Bytes of files waiting for customer storage (DATA_DIR/spool); at the limit recordings
    # stop, with a notice, rather than lose data.
    spool_limit_bytes: int = setting(2 * 1024**3, integer(1))
    # Of those, bytes one customer's files may hold: a customer whose storage is down stops
    # only its own recordings (the smaller of the two limits applies).
    customer_spool_limit_bytes: int = setting(512 * 1024**2, integer(1))
    segment_seconds: float = setting(10.0, segment_length())
    # A recording an earlier recorder process left unfinished (control or the recorder was
    # killed) waits this long for control to continue or stop it; then it is finished and
    # uploaded from what is on disk.
    orphan_grace_s: float = setting(60.0, positive_number())
    transcription_engine: str = setting("pocketsphinx", one_of("pocketsphinx", "openai"))
    # An OpenAI-compatible speech-to-text service (POST {base}/v1/audio/transcriptions).
    openai_base_url: str = setting("", base_url())
    openai_api_key: str = setting("", Rule(str, "a string", secret=True))
    openai_model: str = setting("whisper-1", Rule(str, "a model name"))

    def _check_together(self) -> None:
        if self.transcription_engine != "openai":
            return
        for name in ("openai_base_url", "openai_api_key", "openai_model"):
            if not getattr(self, name):
                raise ConfigError(
                    f"recorder.{name}: must be set when recorder.transcription_engine is openai"
                )


@dataclass(frozen=True, slots=True)
class OutboundConfig(_Section):
    """Requests control makes to addresses customers give: webhooks, S3 endpoints."""

    SECTION: ClassVar[str] = "outbound"

    # Private, loopback, link-local and other special addresses are refused; networks
    # listed here are allowed anyway (on-premises storage, an internal webhook receiver).
    allowed_networks: tuple[str, ...] = setting((), network_list())
    # Webhook deliveries waiting or in flight, per customer.
    webhook_max_pending_per_customer: int = setting(100, integer(1))
    # Bytes of a webhook receiver's answer read (the rest is dropped).
    webhook_max_response_bytes: int = setting(65536, integer(0))


@dataclass(frozen=True, slots=True)
class RetentionConfig(_Section):
    """How long control keeps what it stores about people, and the periodic purge
    (control.recording.retention)."""

    SECTION: ClassVar[str] = "retention"

    # Chat messages stored per meeting; past it the oldest go.
    chat_messages_per_meeting: int = setting(5000, integer(1))
    # Days a webhook delivery attempt (its payload names participants) is kept.
    webhook_deliveries_days: float = setting(30.0, positive_number())
    # Days a participant row (name, times) is kept after the join; never while its live
    # session is open.
    participants_days: float = setting(90.0, positive_number())
    # Days the record of a deleted recording is kept once its files are gone from storage
    # (it holds the storage settings, so that a late upload is deleted too).
    deleted_recordings_days: float = setting(30.0, positive_number())
    # Seconds between purges; each also retries storage deletions that failed.
    purge_interval_s: float = setting(3600.0, positive_number())


def turn_url_list() -> Rule:
    """turn:/turns: URLs (RFC 7065) of an operator's own TURN server."""

    def refine_url(value: str) -> str:
        if not value.startswith(("turn:", "turns:")) or len(value.split(":")) < 2 or not value.split(":")[1]:
            raise BadValue(f"{value!r} is not a turn: or turns: URL (e.g. turn:turn.example.com:3478?transport=udp)")
        return value

    return Rule(tuple, "a list of turn:/turns: URLs", _no_duplicates, Rule(str, "a turn: URL", refine_url))


def _empty_or_ip(value: str) -> str:
    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise BadValue(f"{value!r} is not an IP address") from None
    return value


@dataclass(frozen=True, slots=True)
class TurnConfig(_Section):
    """TURN for clients that cannot reach the workers' UDP ports (control.processes.turn)."""

    SECTION: ClassVar[str] = "turn"

    # auto: managed when coturn's turnserver is on PATH, else off; managed: control runs
    # coturn; external: an operator's own TURN server (urls + secret); off: no TURN.
    mode: str = setting("auto", one_of("auto", "managed", "external", "off"))
    # Managed: where coturn listens; empty: sfu.listen_ip.
    listen_ip: str = setting("", Rule(str, "an IP address or empty", _empty_or_ip))
    port: int = setting(3478, PORT)
    # TLS listener, on only when a certificate is available (tls_cert/tls_key, else http's).
    tls_port: int = setting(5349, PORT)
    tls_cert: str = setting("", FILE_PATH)
    tls_key: str = setting("", FILE_PATH)
    # Managed: address relayed media leaves from; empty: sfu.listen_ip.
    relay_ip: str = setting("", Rule(str, "an IP address or empty", _empty_or_ip))
    # Managed: host name or address clients are told (turn:HOST:PORT); empty: the first of
    # sfu.announced_ips, else sfu.listen_ip.
    public_host: str = setting("", Rule(str, "a host name or IP address"))
    min_port: int = setting(49152, integer(1024, 65535))
    max_port: int = setting(65535, integer(1024, 65535))
    # Tests on one machine only: lets coturn relay to 127.0.0.1 (the SFU's address there).
    allow_loopback_peers: bool = setting(False, BOOLEAN)
    # The shared secret (TURN REST API); managed: empty generates DATA_DIR/turn_secret.
    secret: str = setting("", secret_text(16))
    # External: the TURN server's URLs, given to clients with the credentials.
    urls: tuple[str, ...] = setting((), turn_url_list())
    # Longest a credential lives, even in a meeting allowed to last longer.
    credential_max_ttl_s: int = setting(86400, integer(60))

    def _check_together(self) -> None:
        if self.mode == "external":
            for name in ("urls", "secret"):
                if not getattr(self, name):
                    raise ConfigError(f"turn.{name}: must be set when turn.mode is external")
        if bool(self.tls_cert) != bool(self.tls_key):
            missing, present = ("tls_key", "tls_cert") if self.tls_cert else ("tls_cert", "tls_key")
            raise ConfigError(f"turn.{missing}: must be set together with turn.{present}")
        if self.min_port > self.max_port:
            raise ConfigError("turn.min_port: must not be above turn.max_port")
        if self.port and self.port == self.tls_port:
            raise ConfigError("turn.tls_port: must differ from turn.port")



def logger_level() -> Rule:
    """LOGGER=LEVEL, LEVEL one of debug, info, warning, error."""

    def refine(value: str) -> str:
        name, _, level = value.partition("=")
        if not name.strip() or level.strip().lower() not in ("debug", "info", "warning", "error"):
            raise BadValue(f"expected LOGGER=LEVEL (e.g. sfu.worker=debug), got {value!r}")
        return f"{name.strip()}={level.strip().lower()}"

    return Rule(str, "LOGGER=LEVEL", refine)


@dataclass(frozen=True, slots=True)
class LoggingConfig(_Section):
    SECTION: ClassVar[str] = "logging"

    level: str = setting("info", one_of("debug", "info", "warning", "error"))
    format: str = setting("text", one_of("text", "json"))
    # Levels per component over `level`, LOGGER=LEVEL (e.g. [sfu.worker=debug,
    # aiohttp.access=info]; every process applies those of its loggers).
    levels: tuple[str, ...] = setting((), Rule(tuple, "a list of LOGGER=LEVEL", _no_duplicates, logger_level()))


def listen_address() -> Rule:
    """Empty, or IP:PORT ([IPv6]:PORT) for a listener of its own."""

    def refine(value: str) -> str:
        if not value:
            return value
        host, _, port = value.rpartition(":")
        try:
            address = ipaddress.ip_address(host.strip("[]"))
            number = int(port)
        except ValueError:
            raise BadValue(f"expected IP:PORT (e.g. 127.0.0.1:9464), got {value!r}") from None
        if not 1 <= number <= 65535:
            raise BadValue(f"port out of range in {value!r}")
        return f"[{address}]:{number}" if address.version == 6 else f"{address}:{number}"

    return Rule(str, "IP:PORT", refine)


def optional_secret(minimum_chars: int) -> Rule:
    """Empty (none), or a secret of at least `minimum_chars`; never repeated in a message."""

    def refine(value: str) -> str:
        if value and len(value) < minimum_chars:
            raise BadValue(f"must be empty (none) or at least {minimum_chars} characters long")
        return value

    return Rule(str, "a string", refine, secret=True)


def redis_url() -> Rule:
    """Empty (one node, no Redis), or a redis://, rediss:// or unix:// URL; it may hold a
    password, so a message never quotes it."""

    def refine(value: str) -> str:
        if value and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise BadValue("must be empty (a single node) or a redis://, rediss:// or unix:// URL")
        return value

    return Rule(str, "a URL", refine, secret=True)


@dataclass(frozen=True, slots=True)
class ClusterConfig(_Section):
    """Several nodes coordinated through Redis (issue 13, docs/cluster.md)."""

    SECTION: ClassVar[str] = "cluster"

    # "": this node is alone (the embedded default). redis://host:6379/0: nodes register
    # there, meetings are placed there, and cross-node events travel there.
    redis_url: str = setting("", redis_url())
    # This node's name in the registry; "": the machine's host name and the HTTP port.
    node_id: str = setting("", Rule(str, "a string"))
    # How often this node renews its registration, and how long the registration lives
    # without a renewal: a node killed outright is gone from placement after node_ttl_s.
    heartbeat_s: float = setting(1.0, positive_number())
    node_ttl_s: float = setting(5.0, positive_number())

    def _check_together(self) -> None:
        if self.node_ttl_s < 2 * self.heartbeat_s:
            raise ConfigError("cluster.node_ttl_s: must be at least twice cluster.heartbeat_s")


@dataclass(frozen=True, slots=True)
class ShutdownConfig(_Section):
    SECTION: ClassVar[str] = "shutdown"

    # Several nodes (cluster.redis_url): on SIGTERM the node drains first: no new meeting,
    # its running ones go on for at most this many seconds, then move to other nodes
    # (docs/cluster.md). 0: they move at once. A single node ends its meetings on stop.
    drain_timeout_s: float = setting(0.0, non_negative_number())


@dataclass(frozen=True, slots=True)
class MetricsConfig(_Section):
    SECTION: ClassVar[str] = "metrics"

    # "": /metrics on the HTTP port; IP:PORT: only on a plain-HTTP listener of its own
    # there (e.g. 127.0.0.1:9464, for a Prometheus on the same host or network).
    listen: str = setting("", listen_address())
    # Non-empty: /metrics answers only `Authorization: Bearer <token>` (Prometheus's
    # `authorization` / `bearer_token_file`).
    token: str = setting("", optional_secret(16))


@dataclass(frozen=True, slots=True)
class Config(_Section):
    SECTION: ClassVar[str] = ""

    data_dir: str = setting("./data", non_empty_text("a directory path"))
    http: HttpConfig = section(HttpConfig)
    sfu: SfuConfig = section(SfuConfig)
    media: MediaConfig = section(MediaConfig)
    signaling: SignalingConfig = section(SignalingConfig)
    auth: AuthConfig = section(AuthConfig)
    store: StoreConfig = section(StoreConfig)
    limits: LimitsConfig = section(LimitsConfig)
    outbound: OutboundConfig = section(OutboundConfig)
    logging: LoggingConfig = section(LoggingConfig)
    recorder: RecorderConfig = section(RecorderConfig)
    retention: RetentionConfig = section(RetentionConfig)
    turn: TurnConfig = section(TurnConfig)
    metrics: MetricsConfig = section(MetricsConfig)
    cluster: ClusterConfig = section(ClusterConfig)
    shutdown: ShutdownConfig = section(ShutdownConfig)

    def https_certificate(self) -> tuple[str, str] | None:
        """(certificate, key) paths of the server's HTTPS, None when it is plain HTTP. In
        `http.tls: self-signed` mode the files are made at start (control.cli.tls) under
        data_dir/tls; the managed coturn's TURN/TLS uses the same ones."""
        if self.http.tls == "self-signed":
            directory = os.path.join(self.data_dir, SELF_SIGNED_DIR)
            return os.path.join(directory, SELF_SIGNED_CERT), os.path.join(directory, SELF_SIGNED_KEY)
        if self.http.tls_cert and self.http.tls_key:
            return self.http.tls_cert, self.http.tls_key
        return None

    @classmethod
    def sections(cls) -> dict[str, type[_Section]]:
        """The class of each section, by its key, in declaration order."""
        return {f.name: f.metadata["section"] for f in fields(cls) if "section" in f.metadata}

    def _check_together(self) -> None:
        for name, cls in self.sections().items():
            value = getattr(self, name)
            if not isinstance(value, cls):
                raise ConfigError(f"{name}: expected a {cls.__name__}, got {value!r}")
        if self.cluster.redis_url and not self.http.public_url:
            raise ConfigError("http.public_url: required with cluster.redis_url (each node announces its own "
                              "address to the others and to clients)")
