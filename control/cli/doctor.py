"""`conclave doctor [--config FILE]`: run on the server's machine, next to a running
`conclave serve` with the same settings, it checks what a client will need and prints what
a client will be offered.

Checks, each printed as `ok`, `warn` or `FAIL`:
- the settings load (a bad one is named, exit 2);
- HTTP(S) answers `/readyz` on `http.host:http.port` (workers, store, recorder, managed
  coturn: control.http.health); with TLS, the
  certificate is valid for `http.public_url`'s host and not about to expire (self-signed:
  the one in data_dir, its fingerprint printed); the HTTP → HTTPS redirect port redirects;
- every worker's UDP port (`sfu.port_base` + i) is bound and its ICE-TCP port (the same
  number) listens (read from /proc/net, no packet sent);
- TURN (`turn.mode` managed or external) answers a STUN Binding request over UDP and TCP,
  and completes a TLS handshake with its certificate on the `turns:` port.

Exit codes: 0 nothing failed (warnings allowed), 1 something failed, 2 bad settings.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import ipaddress
import json
import os
import socket
import ssl
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from config import Config, ConfigError, load_config, resolved_announced_ips, resolved_workers
from control.processes import turn_settings

PROBE_TIMEOUT_S = 3.0
MAX_BODY = 64 * 1024
CERT_WARN_DAYS = 14
STUN_MAGIC = 0x2112A442
STUN_BINDING_REQUEST, STUN_BINDING_SUCCESS = 0x0001, 0x0101
PROC_NET = "/proc/net"
UDP_UNCONNECTED = "07"  # /proc/net/udp st column of a bound, unconnected socket
TCP_LISTEN = "0A"  # /proc/net/tcp st column of a listening socket


@dataclass
class Report:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def ok(self, text: str) -> None:
        self.lines.append(("ok", text))

    def warn(self, text: str) -> None:
        self.lines.append(("warn", text))

    def fail(self, text: str) -> None:
        self.lines.append(("FAIL", text))

    @property
    def failed(self) -> bool:
        return any(level == "FAIL" for level, _ in self.lines)

    def render(self) -> str:
        return "\n".join(f"{level:<4}  {text}" for level, text in self.lines)


# ---------------------------------------------------------------------- pure parts


def stun_binding_request(transaction_id: bytes) -> bytes:
    """A STUN Binding request (RFC 8489) with no attributes."""
    return struct.pack("!HHI", STUN_BINDING_REQUEST, 0, STUN_MAGIC) + transaction_id


def is_binding_success(data: bytes, transaction_id: bytes) -> bool:
    if len(data) < 20:
        return False
    kind, _, magic = struct.unpack_from("!HHI", data)
    return kind == STUN_BINDING_SUCCESS and magic == STUN_MAGIC and data[8:20] == transaction_id


def bound_udp_ports(tables: Iterable[str]) -> set[tuple[str, int]]:
    """(address, port) of every bound UDP socket in /proc/net/udp and udp6 texts."""
    return _sockets_in_state(tables, UDP_UNCONNECTED)


def listening_tcp_ports(tables: Iterable[str]) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket in /proc/net/tcp and tcp6 texts."""
    return _sockets_in_state(tables, TCP_LISTEN)


def _sockets_in_state(tables: Iterable[str], state: str) -> set[tuple[str, int]]:
    """(local address, port) of the rows of /proc/net tables whose `st` column is `state`."""
    found = set()
    for text in tables:
        for row in text.splitlines()[1:]:
            columns = row.split()
            if len(columns) < 4 or columns[3] != state:
                continue
            address_hex, port_hex = columns[1].split(":")
            found.add((_proc_address(address_hex), int(port_hex, 16)))
    return found


def _proc_address(hex_text: str) -> str:
    """/proc/net's address: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_text)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def port_is_bound(bound: set[tuple[str, int]], listen_ip: str, port: int) -> bool:
    """Bound on `listen_ip` or on every address (0.0.0.0 / ::)."""
    return any(p == port and (a == listen_ip or ipaddress.ip_address(a).is_unspecified) for a, p in bound)


def offered(cfg: Config) -> list[str]:
    """What a joining client is told: the workers' ICE candidates and the TURN servers."""
    lines = []
    workers = resolved_workers(cfg)
    protocols = [name for name, on in (("udp", cfg.sfu.ice_udp), ("tcp (passive)", cfg.sfu.ice_tcp)) if on]
    for ip in resolved_announced_ips(cfg):
        for protocol in protocols:
            if cfg.sfu.port_base:
                ports = ", ".join(str(cfg.sfu.port_base + i) for i in range(workers))
                lines.append(f"ICE host candidates: {protocol} {ip} port {ports} (one port per worker)")
            else:
                lines.append(f"ICE host candidates: {protocol} {ip} on an ephemeral port per worker (sfu.port_base: 0)")
    try:
        settings = turn_settings.resolve(cfg)
    except ConfigError as exc:
        return lines + [f"TURN: none ({exc})"]
    lines += [f"TURN: {url}" for url in settings.urls] or ["TURN: none (turn.mode: off)"]
    return lines


# ---------------------------------------------------------------------- checks


def local_host(host: str) -> str:
    """Where to reach a socket bound on `host` from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return "::1" if host == "::" else host


def check_http(cfg: Config, report: Report) -> None:
    served = cfg.http
    host = local_host(served.host)
    where = _netloc(host, served.port)
    name = (urlsplit(served.public_url).hostname if served.public_url else None) or host
    context = _tls_context(cfg) if served.tls_on else None
    try:
        status, headers, body, cert = _get(host, served.port, "/readyz", context, name)
    except ssl.SSLCertVerificationError as exc:
        report.fail(f"the HTTPS certificate on {where} is not valid for {name}: {exc.verify_message}")
        return
    except OSError as exc:
        report.fail(f"nothing answers on {where}: {exc} (is `conclave serve` running with these settings?)")
        return
    ready = _json(body)
    checks = ready.get("checks", {})
    if status == 200:
        report.ok(f"{'HTTPS' if context else 'HTTP'} answers on {where}: ready, "
                  f"every worker up ({len(checks.get('workers', {}))}), store and recorder up")  # fmt: skip
    else:
        failing = ", ".join(f"{part} ({checks.get(part)})" for part in ready.get("failing", [])) or "?"
        report.fail(f"{where}/readyz answered {status}: not ready: {failing}")
    if cert is not None:
        report_certificate(cfg, name, cert, report)
    if served.redirect_port:
        check_redirect(host, served.redirect_port, report)


def _json(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _get(host: str, port: int, path: str, context: ssl.SSLContext | None, name: str):
    """(status, headers, body, (certificate dict, DER) or None) of one GET, over TLS when
    `context` is given, checking the name clients use (`name`) on the local socket."""
    with socket.create_connection((host, port), PROBE_TIMEOUT_S) as raw:
        sock = context.wrap_socket(raw, server_hostname=name) if context is not None else raw
        with sock:
            cert = (sock.getpeercert(), sock.getpeercert(binary_form=True)) if context is not None else None
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            response = http.client.HTTPResponse(sock)
            response.begin()
            return response.status, response.headers, response.read(MAX_BODY), cert


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tls_context(cfg: Config) -> ssl.SSLContext:
    """Self-signed: trust exactly the server's own certificate; else the system's CAs."""
    paths = cfg.https_certificate()
    if cfg.http.tls == "self-signed" and paths and os.path.exists(paths[0]):
        return ssl.create_default_context(cafile=paths[0])
    return ssl.create_default_context()


def report_certificate(cfg: Config, name: str, cert: tuple[dict, bytes | None], report: Report) -> None:
    """The served certificate: valid for `name` (the handshake checked it), when it expires,
    its fingerprint when self-signed."""
    info, der = cert
    ends = datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(info["notAfter"]), datetime.timezone.utc)
    days = (ends - datetime.datetime.now(datetime.timezone.utc)).days
    if cfg.http.tls == "self-signed":
        digest = hashlib.sha256(der or b"").hexdigest().upper()
        colons = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))  # as `serve` prints it
        text = f"HTTPS self-signed certificate valid for {name}, {days} days left (SHA-256 fingerprint {colons})"
    else:
        text = f"HTTPS certificate valid for {name}, {days} days left"
    (report.warn if days < CERT_WARN_DAYS else report.ok)(text)


def check_redirect(host: str, port: int, report: Report) -> None:
    where = _netloc(host, port)
    try:
        status, headers, _, _ = _get(host, port, "/", None, host)
    except OSError as exc:
        report.fail(f"nothing answers on the redirect port {where}: {exc}")
        return
    target = headers.get("Location", "")
    if status in (301, 308) and target.startswith("https://"):
        report.ok(f"HTTP port {port} redirects to {target}")
    else:
        report.fail(f"HTTP port {where} answered {status}, not a redirect to HTTPS")


def check_workers(cfg: Config, report: Report, proc_net: str = PROC_NET) -> None:
    sfu = cfg.sfu
    if not sfu.port_base:
        report.warn("sfu.port_base is 0: workers take ephemeral ports (fine for tests, not behind a firewall)")
        return
    udp = bound_udp_ports(_proc_tables(proc_net, "udp", "udp6"))
    tcp = listening_tcp_ports(_proc_tables(proc_net, "tcp", "tcp6"))
    for index in range(resolved_workers(cfg)):
        port = sfu.port_base + index
        where = _netloc(sfu.listen_ip, port)
        if sfu.ice_udp:
            if port_is_bound(udp, sfu.listen_ip, port):
                report.ok(f"worker {index}: UDP {where} is bound")
            else:
                report.fail(f"worker {index}: nothing is bound to UDP {where}")
        if sfu.ice_tcp:
            if port_is_bound(tcp, sfu.listen_ip, port):
                report.ok(f"worker {index}: ICE-TCP {where} is listening")
            else:
                report.fail(f"worker {index}: nothing listens on TCP {where} (ICE-TCP)")


def _proc_tables(proc_net: str, *names: str) -> list[str]:
    tables = []
    for name in names:
        try:
            with open(os.path.join(proc_net, name), encoding="ascii") as f:
                tables.append(f.read())
        except OSError:
            continue
    return tables


def check_turn(cfg: Config, report: Report) -> None:
    try:
        settings = turn_settings.resolve(cfg)
    except ConfigError as exc:
        report.fail(str(exc))
        return
    if not settings.on:
        report.warn("turn.mode is off: clients behind a firewall that blocks UDP cannot join")
        return
    for url in settings.urls:
        scheme, host, port, transport = _parse_turn_url(url)
        if settings.mode == "managed":
            host = local_host(settings.listen_ip)  # checked from here: its own socket
        try:
            if scheme == "turns":
                _tls_handshake(host, port, cfg)
            else:
                _stun_binding(host, port, transport)
            report.ok(f"TURN answers: {url}")
        except (OSError, ValueError) as exc:
            report.fail(f"TURN does not answer: {url}: {exc}")


def _parse_turn_url(url: str) -> tuple[str, str, int, str]:
    scheme, rest = url.split(":", 1)
    address, _, query = rest.partition("?")
    host, _, port = address.rpartition(":")
    transport = query.partition("transport=")[2] or ("tcp" if scheme == "turns" else "udp")
    return scheme, host.strip("[]"), int(port or (5349 if scheme == "turns" else 3478)), transport


def _stun_binding(host: str, port: int, transport: str) -> None:
    transaction_id = os.urandom(12)
    request = stun_binding_request(transaction_id)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if transport == "udp":
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(PROBE_TIMEOUT_S)
            sock.sendto(request, (host, port))
            answer = sock.recv(2048)
    else:
        with socket.create_connection((host, port), PROBE_TIMEOUT_S) as sock:
            sock.sendall(request)
            answer = sock.recv(2048)
    if not is_binding_success(answer, transaction_id):
        raise ValueError("no STUN Binding success in the answer")


def _tls_handshake(host: str, port: int, cfg: Config) -> None:
    """TLS with the certificate coturn serves (checked like a browser would, by its name)."""
    settings = turn_settings.resolve(cfg)
    context = ssl.create_default_context()
    if cfg.http.tls == "self-signed" and settings.tls_cert and os.path.exists(settings.tls_cert):
        context = ssl.create_default_context(cafile=settings.tls_cert)
    name = _parse_turn_url(settings.urls[-1])[1]
    with socket.create_connection((host, port), PROBE_TIMEOUT_S) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            transaction_id = os.urandom(12)
            tls.sendall(stun_binding_request(transaction_id))
            if not is_binding_success(tls.recv(2048), transaction_id):
                raise ValueError("no STUN Binding success over TLS")


# ---------------------------------------------------------------------- the command


def run(cfg: Config) -> Report:
    report = Report()
    check_http(cfg, report)
    check_workers(cfg, report)
    check_turn(cfg, report)
    return report


def doctor_command(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"FAIL  settings: {exc}", file=sys.stderr)
        return 2
    report = run(cfg)
    print(report.render())
    print("\nA joining client is offered:")
    for line in offered(cfg):
        print(f"  {line}")
    return 1 if report.failed else 0


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("doctor", help="check a running server's ports, TLS and TURN; print what clients get")
    parser.add_argument("--config", metavar="FILE", help="the settings `conclave serve` runs with (as for serve)")
    parser.set_defaults(handler=doctor_command)
