"""deploy/systemd/conclave.service, and an instance of the cluster node template
conclave@.service, pass `systemd-analyze verify` with no warning (an unknown key is only a
warning there: any output fails this test), their ExecStart pointed at this checkout's own
`conclave`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "conclave.service"
NODE_TEMPLATE = UNIT.with_name("conclave@.service")
INSTALLED = "/opt/conclave/.venv/bin/conclave"

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze"),
]


def test_the_unit_verifies_cleanly(tmp_path):
    conclave = Path(sys.executable).parent / "conclave"
    assert conclave.exists(), "the project's own `conclave` entry point (pip install -e .)"
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED} serve --config /etc/conclave/conclave.yaml" in text
    unit = tmp_path / "conclave.service"
    unit.write_text(text.replace(INSTALLED, str(conclave)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result


def test_the_cluster_node_template_verifies_cleanly_for_an_instance(tmp_path):
    conclave = Path(sys.executable).parent / "conclave"
    text = NODE_TEMPLATE.read_text()
    assert f"ExecStart={INSTALLED} serve --config /etc/conclave/%i.yaml" in text
    assert "Environment=CONCLAVE_CLUSTER__NODE_ID=%i" in text
    (tmp_path / "conclave@.service").write_text(text.replace(INSTALLED, str(conclave)))
    instance = tmp_path / "conclave@node-1.service"
    instance.symlink_to(tmp_path / "conclave@.service")
    result = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result
