"""A real shaped network link for tests: a network namespace joined to the host by a veth
pair, its download (host → namespace) limited by a token bucket on the host side.

    with shaped_link(rate_kbit=350) as link:        # needs root
        link.host_ip, link.ns_ip                    # a private /30 of 10.213.0.0/16
        wrapper = link.chromium_wrapper(tmp_dir)    # Playwright's executable_path
        link.lift()                                 # unconstrained from now on
        link.shape(350)                             # and shaped again
        link.block_udp()                            # only TCP leaves the namespace

netem does not exist on these machines (FIELD-NOTES): a bandwidth limit is `tbf` on the
host side of the veth, which is what the namespace receives. Everything made here (the
namespace, which owns one end of the veth and so takes the pair with it, the wrapper, and
any process left inside the namespace) is removed on exit, also when the body raised.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# No other test uses this range (tests/ and bench/ were searched): one /30 per link, so
# links of concurrent runs and of one test never share an address.
LINK_RANGE = ipaddress.ip_network("10.213.0.0/16")
# tbf as FIELD-NOTES found it to work: a small bucket so the rate holds on short scales,
# and a queue of at most 300 ms (a real bottleneck's buffer; more would only add delay).
BURST_KBIT = 16
LATENCY_MS = 300
_COMMAND_TIMEOUT = 10.0
_serial = 0


class LinkUnavailable(RuntimeError):
    """This machine cannot make shaped links (not root, or no `ip`/`tc`): tests skip."""


def unavailable_reason() -> str | None:
    """Why shaped links cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "shaped links need root (ip netns, veth, tc)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"shaped links need {' and '.join(missing)} (iproute2)"
    return None


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
    return result


def _addresses_in_use() -> set[ipaddress.IPv4Address]:
    out = _run("ip", "-o", "-4", "addr", "show").stdout
    return {ipaddress.ip_interface(line.split()[3]).ip for line in out.splitlines() if len(line.split()) > 3}


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 of LINK_RANGE no interface of the host uses, starting from one that depends on
    the PID (concurrent runs start apart) and this process's count of links."""
    global _serial
    subnets = 2 ** (30 - LINK_RANGE.prefixlen)
    used = _addresses_in_use()
    start = (os.getpid() * 7 + _serial) % subnets
    for step in range(subnets):
        subnet = list(_nth_subnet((start + step) % subnets))
        if not used & set(subnet):
            _serial += 1
            return _nth_subnet((start + step) % subnets)
    raise RuntimeError(f"no free /30 left in {LINK_RANGE}")


def _nth_subnet(n: int) -> ipaddress.IPv4Network:
    return ipaddress.ip_network((int(LINK_RANGE.network_address) + 4 * n, 30))


@dataclass
class ShapedLink:
    """One namespace and its veth pair; `rate_kbit` is the shaping now (None: none)."""

    namespace: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str
    rate_kbit: int | None = None
    wrappers: list[Path] = field(default_factory=list)
    history: list[tuple[float, int | None]] = field(default_factory=list)  # (monotonic, rate)

    def shape(self, rate_kbit: int, burst_kbit: int = BURST_KBIT, latency_ms: int = LATENCY_MS) -> None:
        """Limits what the namespace receives to `rate_kbit` (replaces any shaping)."""
        _run("tc", "qdisc", "replace", "dev", self.host_if, "root", "tbf", "rate", f"{rate_kbit}kbit",
             "burst", f"{burst_kbit}kbit", "latency", f"{latency_ms}ms")
        self.rate_kbit = rate_kbit
        self.history.append((time.monotonic(), rate_kbit))

    def lift(self) -> None:
        """No shaping from now on (the veth's default queue again)."""
        if self.rate_kbit is not None:
            _run("tc", "qdisc", "del", "dev", self.host_if, "root")
        self.rate_kbit = None
        self.history.append((time.monotonic(), None))

    def qdisc(self) -> str:
        """`tc qdisc show` of the host side (what the kernel really applies)."""
        return _run("tc", "-s", "qdisc", "show", "dev", self.host_if).stdout.strip()

    def block_udp(self) -> None:
        """Every UDP send from inside the namespace fails (EACCES) while TCP still routes:
        a firewall that lets only TCP out (FIELD-NOTES; there is no iptables here). Goes
        with the namespace."""
        _run(*self.exec_prefix(), "ip", "rule", "add", "ipproto", "udp", "prohibit", "pref", "100")

    def exec_prefix(self) -> list[str]:
        """Prefix for a command that should run inside the namespace."""
        return ["ip", "netns", "exec", self.namespace]

    def chromium_wrapper(self, directory: Path, chromium: str = CHROMIUM) -> Path:
        """An executable that runs Chromium inside the namespace, for Playwright's
        `executable_path` (Playwright talks to it over a pipe, which crosses namespaces)."""
        path = Path(directory) / f"chromium-in-{self.namespace}"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {self.namespace} {chromium} "$@"\n')
        path.chmod(0o755)
        self.wrappers.append(path)
        return path

    def pids(self) -> list[int]:
        """Processes running inside the namespace."""
        out = _run("ip", "netns", "pids", self.namespace, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def remove(self) -> None:
        """Kills what still runs inside (ours: nothing else enters it), deletes the
        namespace (and with it the veth pair) and the wrappers. Safe to call twice."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _run("ip", "netns", "del", self.namespace, check=False)
        # The pair goes with its namespace end; a half-made link may have only the host end.
        if _run("ip", "link", "show", self.host_if, check=False).returncode == 0:
            _run("ip", "link", "del", self.host_if, check=False)
        for path in self.wrappers:
            path.unlink(missing_ok=True)


def _names() -> tuple[str, str, str]:
    """Namespace and interface names unique to this process and link (interface names
    have at most 15 characters)."""
    tag = f"{os.getpid() % 10**7}x{_serial % 100}"
    return f"conclave-shaped-{tag}", f"csh{tag}", f"csn{tag}"


def create_link(rate_kbit: int | None = None) -> ShapedLink:
    """Makes the namespace and the veth pair (raises LinkUnavailable without root).
    Call `remove()`, or use `shaped_link`, which always does."""
    reason = unavailable_reason()
    if reason:
        raise LinkUnavailable(reason)
    subnet = _free_subnet()
    namespace, host_if, ns_if = _names()
    host_ip, ns_ip = (str(ip) for ip in list(subnet.hosts())[:2])
    link = ShapedLink(namespace, host_if, ns_if, host_ip, ns_ip)
    try:
        _run("ip", "netns", "add", namespace)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", namespace)
        inside = link.exec_prefix()
        # No IPv6 link-local addresses: they arrive a moment after "up", and Chromium
        # (on the host too) aborts loads in flight on any address change (ERR_NETWORK_CHANGED).
        _run("ip", "link", "set", host_if, "addrgenmode", "none")
        _run(*inside, "ip", "link", "set", ns_if, "addrgenmode", "none")
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        _run(*inside, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        _run(*inside, "ip", "link", "set", ns_if, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        # Every host address through this veth: one server address serves several links.
        _run(*inside, "ip", "route", "add", "default", "via", host_ip)
        if rate_kbit is not None:
            link.shape(rate_kbit)
    except BaseException:
        link.remove()
        raise
    return link


@contextlib.contextmanager
def shaped_link(rate_kbit: int | None = None) -> Iterator[ShapedLink]:
    """A link for the `with` block, removed at its end whatever happened."""
    link = create_link(rate_kbit)
    try:
        yield link
    finally:
        link.remove()
