"""The native forwarding module for tests: built in place when this checkout has not
been built yet (a worktree; `pip install -e .` builds it for the install's own tree)."""

from __future__ import annotations

import importlib

from sfu.transport import native
from sfu.transport.native.build import build_in_place


def native_sender() -> native.NativeSender:
    try:
        importlib.import_module("sfu.transport.native._forward")
    except ImportError:
        build_in_place()
        importlib.invalidate_caches()
    sender = native.load("on")
    assert sender is not None
    return sender
