"""cffi (API mode) build of the native forwarding module, `sfu.transport.native._forward`.

Run by setup.py (`pip install -e .`, an optional extension: without a compiler the
install still works and the worker forwards in Python, sfu.transport.native.loader says
so), by `python -m sfu.transport.native.build` (in place, e.g. in a worktree), and with
`--asan` for the AddressSanitizer build the fuzz command uses (bench/native_fuzz.py).
"""

from __future__ import annotations

import os
import sys

import cffi

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = "sfu.transport.native._forward"

CDEF = """
struct cc_batch;
struct cc_route;
struct cc_route *cc_route_new(int fd, const char *addr, int addrlen, uintptr_t srtp);
void cc_route_free(struct cc_route *r);
struct cc_batch *cc_batch_new(uintptr_t protect_fn);
void cc_batch_free(struct cc_batch *b);
int cc_send(struct cc_batch *b, const struct cc_route *r, const char *data, int len);
int cc_send_header(struct cc_batch *b, const struct cc_route *r, unsigned first, unsigned seq, uint32_t ts,
                   uint32_t ssrc, const char *a, int alen, int tcc_at, unsigned tcc_seq);
int cc_send_rewritten(struct cc_batch *b, const struct cc_route *r, unsigned first, unsigned seq, uint32_t ts,
                      uint32_t ssrc, const char *a, int alen, int tcc_at, unsigned tcc_seq,
                      const char *c, int clen, const char *t, int tlen);
int cc_flush(struct cc_batch *b);
int cc_count(struct cc_batch *b);
int cc_unsent(struct cc_batch *b, int index, int *fd, const char **data, const char **addr, int *addrlen);
void cc_clear(struct cc_batch *b);
long cc_send_errors(struct cc_batch *b);
"""


def builder(asan: bool = False, module: str = MODULE) -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    with open(os.path.join(HERE, "forward.c")) as f:
        source = f.read()
    flags = ["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    link: list[str] = []
    if asan:
        flags = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
        link = ["-fsanitize=address,undefined"]
    ffi.set_source(module, source, extra_compile_args=flags, extra_link_args=link)
    return ffi


ffibuilder = builder()


def build_in_place(asan: bool = False, target_dir: str | None = None) -> str:
    """Compile next to the sources (or into target_dir); returns the library's path."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
    ffi = builder(asan, "_forward_asan" if asan else MODULE)
    tmpdir = os.path.join(root, "build", "cffi-asan" if asan else "cffi")
    out = ffi.compile(tmpdir=tmpdir, verbose=False)
    if target_dir is None and not asan:
        target_dir = root
    if target_dir is not None:
        dest = os.path.join(target_dir, os.path.relpath(out, tmpdir))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(out, dest)
        return dest
    return out


if __name__ == "__main__":
    print(build_in_place(asan="--asan" in sys.argv[1:]))
