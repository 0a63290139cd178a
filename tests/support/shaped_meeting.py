"""A meeting whose subscribers sit behind real shaped links (tests/support/shaped_link.py):
the server, the browsers and the measurements the adaptive-media proofs and
`python -m bench.shaped` share.

    async with Stage(workdir) as stage:
        link = stage.add_link(rate_kbit=350)            # before start()
        await stage.start()                             # server on the first link's host address
        publisher = await stage.publisher()             # host Chromium, 1280x720 15 fps file camera
        page = await stage.watcher("Slow", link)        # Chromium inside the link's namespace
        other = await stage.member("Both", link)        # ... publishing as well as watching
        await set_tile(page, stage.publisher_id, 1280, 720)
        await start_sampler(page, stage.publisher_id)
        series = await samples(page)                    # [{t, framesDecoded, frameWidth, ...}]

Why TLS: the server must listen on the veth's host address (the namespace cannot reach the
host's loopback), and the config refuses plain HTTP off loopback (join tokens cross it).
So the server gets a certificate made here for that address, and the browsers ignore that
nobody signed it. Every namespace has a default route through its veth, so one server
address serves every link. Everything is undone by `aclose` (links removed even when a
browser or the server failed to start).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import ipaddress
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from config import Config
from tests.support import browser
from tests.support.servers import ConclaveServer, conclave_test_config
from tests.support.shaped_link import ShapedLink, create_link

SOURCE_SIZE = (1280, 720)
SOURCE_FPS = 15  # CPU: two cores shared by several engineers
JOIN_TIMEOUT = 40.0
WATCH_ONLY = """
navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('test', 'NotFoundError'));
"""
# Every RTCPeerConnection the page makes, so a receiver's own stats can be read (the
# full inbound-rtp: framesPerSecond, pliCount... which the client's stats() leaves out).
CAPTURE_PEER_CONNECTIONS = """
(() => {
  const Original = window.RTCPeerConnection;
  window.__conclavePcs = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Original(...args);
    window.__conclavePcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Original);
})();
"""


def make_source_video(directory: Path, seconds: float = 2.0) -> Path:
    """A short 1280x720 15 fps testsrc2 clip as y4m (Chromium loops it as its camera; a
    fixed size, where the fake camera would follow the page's constraints)."""
    path = Path(directory) / f"testsrc2-{SOURCE_SIZE[0]}x{SOURCE_SIZE[1]}-{SOURCE_FPS}.y4m"
    if path.exists():
        return path
    partial = path.with_suffix(".partial.y4m")
    size = f"{SOURCE_SIZE[0]}x{SOURCE_SIZE[1]}"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size={size}:rate={SOURCE_FPS}", "-t", str(seconds), "-pix_fmt", "yuv420p", str(partial)],
        check=True, timeout=120,
    )  # fmt: skip
    partial.rename(path)
    return path


def make_certificate(directory: Path, ip: str) -> tuple[Path, Path]:
    """A self-signed certificate for `ip` (one day), as PEM files (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = Path(directory) / f"cert-{ip}.pem", Path(directory) / f"key-{ip}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TlsServer(ConclaveServer):
    """ConclaveServer whose REST calls trust the stage's own certificate."""

    def __init__(self, base_url: str, app: web.Application, client_ssl: ssl.SSLContext) -> None:
        super().__init__(base_url, app)
        self.client_ssl = client_ssl

    async def api(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        kwargs.setdefault("ssl", self.client_ssl)
        return await super().api(method, path, **kwargs)

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.base_url}/metrics", ssl=self.client_ssl) as response:
                return await response.text()


def stage_config(directory: Path, ip: str, cert: Path, key: Path, **sections: dict[str, Any]) -> Config:
    """The test config with HTTP (TLS) and the SFU worker on `ip`, simulcast accepted."""
    base = conclave_test_config(
        directory,
        http={"host": ip, "port": 0, "tls_cert": str(cert), "tls_key": str(key)},
        sfu={"listen_ip": ip, "announced_ips": (ip,)},
        media={"accept_simulcast": True},
    )
    changes = {name: dataclasses.replace(getattr(base, name), **values) for name, values in sections.items()}
    return dataclasses.replace(base, **changes)


async def start_server(cfg: Config) -> tuple[TlsServer, web.AppRunner]:
    """Control and its real SFU worker on this event loop, served over TLS (as `conclave
    serve` does with tls_cert/tls_key)."""
    from control.app import create_app

    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cfg.http.tls_cert, cfg.http.tls_key)
    client_ssl = ssl.create_default_context(cafile=cfg.http.tls_cert)
    runner = web.AppRunner(create_app(cfg), handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()  # starts the workers
    try:
        site = web.TCPSite(runner, cfg.http.host, cfg.http.port, ssl_context=server_ssl)
        await site.start()
    except BaseException:
        await stop_server(runner)
        raise
    host, port = runner.addresses[0][:2]
    return TlsServer(f"https://{host}:{port}", runner.app, client_ssl), runner


async def stop_server(runner: web.AppRunner) -> None:
    from control.app import SERVICES

    supervisor = runner.app[SERVICES].workers
    await runner.cleanup()
    for worker in supervisor.workers:  # nothing may outlive the stage
        if worker.process is not None and worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()


def chromium_args(source: Path | None = None) -> list[str]:
    args = [*browser.CHROMIUM_ARGS, "--ignore-certificate-errors"]
    if source is not None:
        args.append(f"--use-file-for-fake-video-capture={source}")
    return args


class Stage:
    """One server, the links, one host Chromium (publisher and unconstrained watchers)
    and one Chromium per link; `aclose` undoes all of it in reverse."""

    def __init__(self, workdir: Path, source: Path | None = None, **server_sections: dict[str, Any]) -> None:
        self.workdir = Path(workdir)
        self.source = source
        self.server_sections = server_sections
        self.links: list[ShapedLink] = []
        self.server: TlsServer | None = None
        self.meeting: dict[str, Any] | None = None
        self.publisher_id: str | None = None
        self.pages: list[Any] = []
        self._browsers: dict[str | None, Any] = {}  # namespace (None: host) -> Browser
        self._stack = contextlib.AsyncExitStack()
        self._playwright: Any = None

    async def __aenter__(self) -> Stage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def add_link(self, rate_kbit: int | None = None) -> ShapedLink:
        link = create_link(rate_kbit)
        self._stack.callback(link.remove)
        self.links.append(link)
        return link

    async def start(self) -> TlsServer:
        """The server on the first link's host address, a started meeting, Playwright."""
        from playwright.async_api import async_playwright

        assert self.links, "add a link first: the server listens on its host side"
        ip = self.links[0].host_ip
        cert, key = make_certificate(self.workdir, ip)
        cfg = stage_config(self.workdir, ip, cert, key, **self.server_sections)
        self.server, runner = await start_server(cfg)
        self._stack.push_async_callback(stop_server, runner)
        self._playwright = await self._stack.enter_async_context(async_playwright())
        self.meeting = await self.server.create_meeting("shaped links")
        return self.server

    async def _browser(self, link: ShapedLink | None) -> Any:
        key = link.namespace if link else None
        if key not in self._browsers:
            executable = link.chromium_wrapper(self.workdir) if link else browser.CHROMIUM
            instance = await self._playwright.chromium.launch(
                executable_path=str(executable), headless=True, args=chromium_args(self.source))
            self._stack.push_async_callback(instance.close)
            self._browsers[key] = instance
        return self._browsers[key]

    async def _page(self, link: ShapedLink | None, name: str, watch_only: bool) -> Any:
        instance = await self._browser(link)
        page = await browser.new_media_page(instance, self.server.base_url)
        page.conclave_name = name
        await page.add_init_script(CAPTURE_PEER_CONNECTIONS)
        if watch_only:  # less for two cores to encode
            await page.add_init_script(WATCH_ONLY)
        for attempt in range(2):
            await page.goto(browser._with_name(self.meeting["join_url"], name))
            try:
                await browser.wait_for(page, "window.conclave && window.conclave.state === 'joined'",
                                       JOIN_TIMEOUT, f"{name} joined")
                break
            except AssertionError:
                # Interfaces that others' tests add or remove on this machine make Chromium
                # abort loads (ERR_NETWORK_CHANGED): load again, once.
                if attempt or not any("ERR_NETWORK_CHANGED" in e for e in page.conclave_errors):
                    raise
        self.pages.append(page)
        return page

    async def publisher(self) -> Any:
        """The host-side publisher: camera from the source file, simulcast (the server says so)."""
        page = await self._page(None, "Publisher", watch_only=False)
        self.publisher_id = await browser.participant_id(page)
        return page

    async def member(self, name: str, link: ShapedLink | None = None) -> Any:
        """A participant that publishes its (fake) camera and microphone and watches,
        inside `link`'s namespace (None: on the host)."""
        return await self._page(link, name, watch_only=False)

    async def watcher(self, name: str, link: ShapedLink | None = None) -> Any:
        """A subscriber that only watches, inside `link`'s namespace (None: on the host),
        once the publisher's camera tile is on its page."""
        page = await self._page(link, name, watch_only=True)
        await browser.wait_for(page, f"{tile_selector_js(self.publisher_id)}", JOIN_TIMEOUT,
                               f"{name}: the publisher's tile")
        return page

    async def aclose(self) -> None:
        for page in reversed(self.pages):
            await browser.close_page(page)
        self.pages.clear()
        await self._stack.aclose()


def tile_selector_js(pid: str) -> str:
    return f"document.querySelector('[data-testid=tile][data-participant-id=\"{pid}\"][data-source=camera]')"


async def set_tile(page, pid: str, width: int | None, height: int | None, hidden: bool = False) -> None:
    """Gives the tile of `pid`'s camera a fixed size in CSS pixels, or hides it (display:
    none, as a collapsed panel would): the client's ResizeObserver sees it and reports
    `tile_size` (0x0, not visible, when hidden)."""
    await page.evaluate(
        """([pid, width, height, hidden]) => {
            const tile = document.querySelector(`[data-testid=tile][data-participant-id="${pid}"][data-source=camera]`);
            Object.assign(tile.style, {boxSizing: 'content-box', padding: '0', border: '0', flex: 'none',
                                       maxWidth: 'none', maxHeight: 'none', aspectRatio: 'auto'});
            tile.style.width = width === null ? '' : `${width}px`;
            tile.style.height = height === null ? '' : `${height}px`;
            tile.style.display = hidden ? 'none' : '';
        }""",
        [pid, width, height, hidden],
    )


async def tile_quality(page, pid: str) -> dict:
    """What `pid`'s camera tile shows of the server's word on its video: {bars (0..3),
    label, shown (the indicator is visible), paused (the reason, or "")}."""
    return await page.evaluate(
        """([pid]) => {
            const tile = document.querySelector(`[data-testid=tile][data-participant-id="${pid}"][data-source=camera]`);
            const quality = tile.querySelector('[data-testid=tile-quality]');
            return {bars: Number(quality.dataset.bars), label: quality.title, shown: !quality.hidden,
                    paused: tile.dataset.paused || ''};
        }""",
        [pid],
    )


# The inbound-rtp of the receiver that feeds `pid`'s camera tile (its <video>'s track), read
# from the page's own RTCPeerConnections; null before there is one.
VIDEO_STATS = """
async ([pid]) => {
  const tile = document.querySelector(`[data-testid=tile][data-participant-id="${pid}"][data-source=camera]`);
  const stream = tile && tile.querySelector('video').srcObject;
  const track = stream && stream.getVideoTracks()[0];
  if (!track) return null;
  for (const pc of window.__conclavePcs || []) {
    const receiver = pc.getReceivers().find((r) => r.track && r.track.id === track.id);
    if (!receiver) continue;
    let out = null;
    (await receiver.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      out = {frameWidth: s.frameWidth ?? 0, frameHeight: s.frameHeight ?? 0, framesDecoded: s.framesDecoded ?? 0,
             framesPerSecond: s.framesPerSecond ?? 0, bytesReceived: s.bytesReceived ?? 0,
             packetsReceived: s.packetsReceived ?? 0, packetsLost: s.packetsLost ?? 0,
             freezeCount: s.freezeCount ?? 0, totalFreezesDuration: s.totalFreezesDuration ?? 0,
             framesDropped: s.framesDropped ?? 0, keyFramesDecoded: s.keyFramesDecoded ?? 0,
             pliCount: s.pliCount ?? 0, nackCount: s.nackCount ?? 0,
             decoderImplementation: s.decoderImplementation ?? null};
    });
    return out;
  }
  return null;
}
"""
# Samples VIDEO_STATS every `interval` ms into window.__videoSamples (t in ms, the page's
# clock): in the page, so the sampling does not wait on the test's event loop.
SAMPLER = """
([pid, interval, statsSource]) => {
  const read = eval(statsSource);
  if (window.__videoSampler) clearInterval(window.__videoSampler);
  window.__videoSamples = [];
  window.__videoSampler = setInterval(async () => {
    const entry = await read([pid]);
    if (entry) window.__videoSamples.push({t: performance.now(), ...entry});
  }, interval);
}
"""


async def video_stats(page, pid: str) -> dict[str, Any] | None:
    return await page.evaluate(VIDEO_STATS, [pid])


async def start_sampler(page, pid: str, interval_ms: int = 100) -> None:
    await page.evaluate(SAMPLER, [pid, interval_ms, VIDEO_STATS])


async def samples(page, since_ms: float = 0.0) -> list[dict[str, Any]]:
    """The sampler's series from `since_ms` (page clock) on."""
    return await page.evaluate("(since) => (window.__videoSamples || []).filter((s) => s.t >= since)", since_ms)


async def page_now(page) -> float:
    return await page.evaluate("performance.now()")


async def wait_video(page, pid: str, predicate, timeout: float, what: str) -> dict[str, Any]:
    """Polls video_stats until `predicate(stats)`; raises with the last stats otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    entry = None
    while True:
        entry = await video_stats(page, pid)
        if entry and predicate(entry):
            return entry
        if loop.time() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s; last stats {entry}{browser.page_errors(page)}")
        await asyncio.sleep(0.25)


async def top_encoding_flowing(publisher, window: float = 1.0) -> bool:
    """The publisher's encoding f went on being encoded over `window` seconds (Chromium
    sends its top encoding only while its own estimate covers all three)."""
    count = "window.conclave.publishEncodings().then((e) => (e.find((x) => x.rid === 'f') || {}).framesEncoded || 0)"
    before = await publisher.evaluate(count)
    await asyncio.sleep(window)
    return await publisher.evaluate(count) >= before + window * SOURCE_FPS * 0.6


async def wait_top_encoding(publisher, timeout: float = 40.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await top_encoding_flowing(publisher):
            return
    raise AssertionError(f"the publisher did not send its top encoding for {timeout}s: "
                         f"{await publisher.evaluate('window.conclave.publishEncodings()')}")


def sfu_metrics(text: str) -> list[str]:
    """The conclave_sfu_* sample lines of a /metrics page (no comments)."""
    return [line for line in text.splitlines() if line.startswith("conclave_sfu_")]


async def sample_bandwidth(server, seconds: float, every: float = 1.0) -> list[dict[str, float]]:
    """Each `every` s for `seconds`: the subscribers' estimates (their sum, bits/s) and the
    probe clusters sent so far, from /metrics: the story of a recovery, for a failure's note."""
    wanted = {"conclave_sfu_subscriber_estimate_bps_gsum": "estimates_bps", "conclave_sfu_bwe_probes_total": "probes"}
    samples = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < seconds:
        sample = {"t": round(loop.time() - started, 1)}
        for family in text_string_to_metric_families(await server.metrics()):
            for metric in family.samples:
                if metric.name in wanted:
                    key = wanted[metric.name]
                    sample[key] = sample.get(key, 0) + metric.value
        samples.append(sample)
        await asyncio.sleep(every)
    return samples


# Fixtures of the shaped-link tests (import them into the test module).


@pytest.fixture(scope="session")
def source_video(tmp_path_factory):
    """The publisher's fake camera: one rendered clip for the whole run."""
    return make_source_video(tmp_path_factory.mktemp("shaped-source"))


@pytest.fixture
async def stage(tmp_path, source_video):
    async with Stage(tmp_path, source_video) as made:
        yield made
