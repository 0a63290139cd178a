"""The kernel's floor: a C relay, recvmmsg then one sendmmsg of the K copies (crelay.c,
built with cffi and gcc as the worker's native module is). No SRTP, no parsing.

    python -m bench.plainrtp.c_relay --dest 127.0.0.1:5000 ...

Prints "READY <port>" once bound; runs in C until killed (the bench stops it by PID).
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys

import cffi

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def build():
    """Compile crelay.c (cached under build/cffi-crelay) and import it."""
    ffi = cffi.FFI()
    ffi.cdef("struct sockaddr_in { ...; }; int crelay_run(int fd, const struct sockaddr_in *dests, int ndests);")
    with open(os.path.join(HERE, "crelay.c")) as f:
        ffi.set_source("_conclave_crelay", f.read(), extra_compile_args=["-O2"])
    tmpdir = os.path.join(ROOT, "build", "cffi-crelay")
    path = ffi.compile(tmpdir=tmpdir, verbose=False)
    sys.path.insert(0, os.path.dirname(path))
    import _conclave_crelay

    return _conclave_crelay


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.plainrtp.c_relay")
    parser.add_argument("--dest", action="append", default=[], required=True)
    args = parser.parse_args()
    module = build()
    raw = b"".join(
        struct.pack("=H", socket.AF_INET) + struct.pack("!H", int(port)) + socket.inet_aton(host) + bytes(8)
        for host, port in (d.rsplit(":", 1) for d in args.dest)
    )
    dests = module.ffi.new("char[]", raw)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    print("READY", sock.getsockname()[1], flush=True)
    module.lib.crelay_run(sock.fileno(), module.ffi.cast("struct sockaddr_in *", dests), len(args.dest))


if __name__ == "__main__":
    main()
