"""`conclave serve`: load the settings, log, run the app until a signal.

Lifecycle: first SIGTERM/SIGINT stops accepting connections, closes every signaling socket
(WebSocket 1001), stops the workers (SIGTERM, SIGKILL after a timeout) and exits 0. A
second signal SIGKILLs the workers and exits at once. SIGHUP reloads the HTTPS
certificate (control.cli.tls) without closing anything.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time

import uvloop
from aiohttp import web

from common import logs
from config import Config, ConfigError, load_config
from control.app import SERVICES, create_app
from control.cli.tls import Tls, add_hsts, certificate_files, redirect_app
from control.http.requests_log import AccessLogger

log = logging.getLogger("control")

SHUTDOWN_TIMEOUT_S = 15.0
EXIT_FORCED = 130


def serve_command(args: argparse.Namespace) -> int:
    # Files control and its children make (database, secrets, recordings, spool) are for
    # this user only; the children inherit it (and set it themselves too).
    os.umask(0o077)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"conclave: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    setup_logging(cfg)
    return uvloop.run(serve(cfg))


# ---------------------------------------------------------------------- logging


def setup_logging(cfg: Config) -> None:
    """Control's log (common.logs): stderr, text or JSON, levels per component. The
    access log (control.http.access) is at debug unless `logging.levels` says otherwise."""
    access = "debug" if cfg.logging.level == "debug" else "warning"
    levels = (f"aiohttp.access={access}", *cfg.logging.levels)  # the operator's entries win
    logs.setup("control", cfg.logging.level, cfg.logging.format, levels)


# ---------------------------------------------------------------------- serve


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default


async def _start_redirect(cfg: Config, https_port: int) -> web.AppRunner | None:
    """http.redirect_port: plain HTTP answering every request with a redirect to HTTPS."""
    runner = web.AppRunner(redirect_app(cfg.http.public_url, https_port), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, cfg.http.host, cfg.http.redirect_port).start()
    except OSError as exc:
        log.error("cannot listen on %s:%s (http.redirect_port): %s", cfg.http.host, cfg.http.redirect_port, exc)
        await runner.cleanup()
        return None
    log.info("redirecting http port %d to https port %d", cfg.http.redirect_port, https_port)
    return runner


def serving_url(cfg: Config, port: int, tls: bool) -> str:
    host = cfg.http.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


async def serve(cfg: Config) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0
    app = create_app(cfg)
    services = app[SERVICES]

    def kill_children() -> None:
        services.workers.kill_now()
        services.recorder.kill_now()  # the recorder runs in a session of its own
        services.turn.kill_now()  # and coturn

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("%s received: shutting down (send it again to force)", signal.Signals(signum).name)
            stop.set()
            return
        log.warning("second signal: killing workers and exiting now")
        kill_children()
        logging.shutdown()
        os._exit(EXIT_FORCED)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    try:
        files = certificate_files(cfg)
        tls = Tls(files) if files is not None else None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        log.error("https: the certificate does not load: %s", exc)
        return 2
    if tls is not None:
        loop.add_signal_handler(signal.SIGHUP, tls.reload)
        if not tls.files.self_signed:
            app.on_response_prepare.append(add_hsts)
        print(f"conclave: https with the {tls.describe()}", flush=True)
        log.info("https with the %s", tls.describe())

    access_log = logging.getLogger("aiohttp.access")
    runner = web.AppRunner(app, handle_signals=False, access_log=access_log, access_log_class=AccessLogger,
                           shutdown_timeout=5.0)  # fmt: skip
    await runner.setup()  # starts the workers (app cleanup context)
    site = web.TCPSite(runner, cfg.http.host, cfg.http.port, ssl_context=tls.context if tls else None)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", cfg.http.host, cfg.http.port, exc)
        await runner.cleanup()
        return 1
    port = _bound_port(runner, cfg.http.port)
    redirect = None
    if tls is not None and cfg.http.redirect_port:
        redirect = await _start_redirect(cfg, port)
        if redirect is None:
            await runner.cleanup()
            return 1
    url = serving_url(cfg, port, tls is not None)
    public = f" (public URL {cfg.http.public_url})" if cfg.http.public_url else ""
    print(f"conclave serving at {url}{public}", flush=True)
    base = (cfg.http.public_url or url).rstrip("/")
    print(f"conclave: ready. Hosts sign in at {base}/host; participants join at {base}/ with a Meeting ID "
          f"and passcode, or with a join link {base}/m/...", flush=True)  # fmt: skip
    log.info("serving at %s with %d SFU worker(s)", url, len(services.workers.workers))

    await stop.wait()
    started = time.monotonic()
    if redirect is not None:
        await redirect.cleanup()
    try:
        await asyncio.wait_for(runner.cleanup(), SHUTDOWN_TIMEOUT_S)
    except asyncio.TimeoutError:
        log.error("shutdown took longer than %.0f s; killing workers", SHUTDOWN_TIMEOUT_S)
        kill_children()
        return 1
    log.info("stopped in %.1f s", time.monotonic() - started)
    return 0

