"""`conclave serve`: load the settings, log, run the app until a signal.

Lifecycle: first SIGTERM/SIGINT stops accepting connections, closes every signaling socket
(WebSocket 1001), stops the workers (SIGTERM, SIGKILL after a timeout) and exits 0. A
second signal SIGKILLs the workers and exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
import time
from typing import Any

import uvloop
from aiohttp import web

from config import Config, ConfigError, load_config
from control.app import SERVICES, create_app

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
    setup_logging(cfg.logging.level, cfg.logging.format)
    return uvloop.run(serve(cfg))


# ---------------------------------------------------------------------- logging


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    """Root logging to stderr. Settings and request bodies are never logged here."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per HTTP request is too chatty at info; debug shows it.
    access = logging.DEBUG if level == "debug" else max(logging.WARNING, root.level)
    logging.getLogger("aiohttp.access").setLevel(access)


# ---------------------------------------------------------------------- serve


def _ssl_context(cfg: Config) -> ssl.SSLContext | None:
    if not (cfg.http.tls_cert and cfg.http.tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cfg.http.tls_cert, cfg.http.tls_key)
    return context


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default


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

    access_log = logging.getLogger("aiohttp.access")
    runner = web.AppRunner(app, handle_signals=False, access_log=access_log, shutdown_timeout=5.0)
    await runner.setup()  # starts the workers (app cleanup context)
    tls = _ssl_context(cfg)
    site = web.TCPSite(runner, cfg.http.host, cfg.http.port, ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", cfg.http.host, cfg.http.port, exc)
        await runner.cleanup()
        return 1
    url = serving_url(cfg, _bound_port(runner, cfg.http.port), tls is not None)
    public = f" (public URL {cfg.http.public_url})" if cfg.http.public_url else ""
    print(f"conclave serving at {url}{public}", flush=True)
    log.info("serving at %s with %d SFU worker(s)", url, len(services.workers.workers))

    await stop.wait()
    started = time.monotonic()
    try:
        await asyncio.wait_for(runner.cleanup(), SHUTDOWN_TIMEOUT_S)
    except asyncio.TimeoutError:
        log.error("shutdown took longer than %.0f s; killing workers", SHUTDOWN_TIMEOUT_S)
        kill_children()
        return 1
    log.info("stopped in %.1f s", time.monotonic() - started)
    return 0

