"""The Python ceiling: a bare uvloop relay, recv then sendto x N, optionally SRTP in/out.

No parsing, no rewriting, no counters: what any Python forwarder pays at minimum on this
machine. Usage (the bench starts it; prints "READY <port>" once bound, stops on SIGTERM):

    python -m bench.plainrtp.bare_relay --dest 127.0.0.1:5000 ... [--srtp-in KEY --srtp-out KEY ... [--fast]]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import signal
import socket
import sys

import uvloop

from bench.plainrtp.packets import srtp_session


class Relay(asyncio.DatagramProtocol):
    def __init__(self, dests: list[tuple[str, int]], rx, txs) -> None:
        self.dests = dests
        self.rx = rx
        self.pairs = list(zip(txs, dests))
        self.sendto = None

    def connection_made(self, transport) -> None:
        self.sendto = transport.sendto
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)

    def datagram_received(self, data: bytes, addr) -> None:
        sendto = self.sendto
        if self.rx is None:
            for dest in self.dests:
                sendto(data, dest)
            return
        plain = self.rx.unprotect(data)
        for tx, dest in self.pairs:
            sendto(tx.protect(plain), dest)


async def main(args: argparse.Namespace) -> None:
    dests = [(host, int(port)) for host, port in (d.rsplit(":", 1) for d in args.dest)]
    rx = srtp_session(base64.b64decode(args.srtp_in), outbound=False, fast=args.fast) if args.srtp_in else None
    txs = [srtp_session(base64.b64decode(k), outbound=True, fast=args.fast) for k in args.srtp_out]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: Relay(dests, rx, txs), local_addr=("127.0.0.1", 0))
    print("READY", transport.get_extra_info("sockname")[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    transport.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench.plainrtp.bare_relay")
    parser.add_argument("--dest", action="append", default=[], required=True)
    parser.add_argument("--srtp-in")
    parser.add_argument("--srtp-out", action="append", default=[])
    parser.add_argument("--fast", action="store_true", help="call libsrtp through sfu.transport.srtp.FastSrtp")
    arguments = parser.parse_args()
    if arguments.srtp_in and len(arguments.srtp_out) != len(arguments.dest):
        sys.exit("--srtp-out is needed once per --dest when --srtp-in is given")
    uvloop.run(main(arguments))
