"""Where things are, whatever the depth of the test module that asks.

    from tests.support.paths import DATA_DIR, REPO_ROOT
    packet = (DATA_DIR / "wire_chromium_vp8_key.bin").read_bytes()
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "tests" / "data"  # captured packets and SDP, shared by the test packages
