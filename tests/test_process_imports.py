"""What a process loads at startup: control must not pay for libraries it never uses.

PyAV and numpy are the recorder's (decoding, mixing); aiobotocore and botocore are loaded
only once an S3 storage is opened (common.storage.open_storage). Each check imports in a
fresh interpreter, so nothing that another test imported counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # each check runs a fresh interpreter

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("av", "numpy", "aiobotocore", "botocore")


def heavy_modules_loaded_by(code: str) -> set[str]:
    """Which of HEAVY are in sys.modules after running code in a fresh interpreter."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,  # the tree under test, first on sys.path
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_control_app_loads_no_media_or_s3_library():
    assert heavy_modules_loaded_by("import control.app") == set()


def test_the_recorder_module_control_imports_is_light():
    assert heavy_modules_loaded_by("import recorder.api") == set()


def test_notice_frames_are_read_without_a_codec_library():
    code = """
        from common.notices import NOTICE_KINDS, notice_frames
        assert all(notice_frames(kind) for kind in NOTICE_KINDS)
    """
    assert heavy_modules_loaded_by(code) == set()


def test_the_s3_client_is_loaded_only_when_an_s3_storage_is_opened(tmp_path):
    local = f"""
        from common.storage import open_storage
        open_storage({{"kind": "local", "root": {str(tmp_path)!r}}})
    """
    assert heavy_modules_loaded_by(local) == set()
    s3 = local + """
        open_storage({"kind": "s3", "bucket": "b", "access_key_id": "a", "secret_access_key": "s"})
    """
    # The check itself can see a library being loaded.
    assert heavy_modules_loaded_by(s3) == {"aiobotocore", "botocore"}
