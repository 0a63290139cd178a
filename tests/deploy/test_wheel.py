"""`pip install` of the project builds a wheel that ships what the server serves and reads
besides code: the web client, the spoken notices and the default settings. Checked on the
wheel pip builds, and by importing the server's modules from the unpacked wheel alone."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]


def shipped_in_repo() -> set[str]:
    wanted = set()
    for folder, patterns in (("control/static", ("*",)), ("common/notices", ("*.ogg", "*.opus-frames")),
                             ("config", ("*.yaml",))):  # fmt: skip
        for pattern in patterns:
            wanted |= {str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob(pattern) if p.is_file()}
    return {name for name in wanted if "__pycache__" not in name}


def test_the_wheel_ships_the_web_client_notices_and_default_settings(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path)],
                           capture_output=True, text=True, timeout=150)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = list(tmp_path.glob("conclave-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = shipped_in_repo() - names
    assert not missing, sorted(missing)
    assert not any(name.startswith("tests/") for name in names)

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = ("from control.http.pages import STATIC_DIR; from common.notices import notice_frames; "
             "from config import load_config; import pathlib; "
             "assert (STATIC_DIR / 'meeting.html').is_file(); print(STATIC_DIR); "
             "print(load_config(None, env={}).http.port)")  # fmt: skip
    # The unpacked wheel first on sys.path (its dependencies from this virtualenv).
    ran = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(unpacked)!r}); {probe}"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    static_dir, port = ran.stdout.split()
    assert static_dir.startswith(str(unpacked)) and port == "8080"
