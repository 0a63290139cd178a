"""deploy/prometheus/alerts.yml: valid for Prometheus (`promtool check rules`), every alert
unit-tested firing and quiet (`promtool test rules alerts_test.yml`), and every Conclave
metric an alert reads is one a real server exports (no typo'd name survives)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from control.metrics import certificates, cluster
from tests.support.turn import coturn_available, turn_test_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES, RULE_TESTS = DEPLOY / "alerts.yml", DEPLOY / "alerts_test.yml"
PROMTOOL = shutil.which("promtool")

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (apt-get install prometheus)"),
    pytest.mark.timeout(120),
]


def alerts() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60)


def test_rules_are_valid_and_every_alert_fires_in_its_unit_test():
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    # promtool does not require a test per alert: this does, quiet first and firing later.
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {check["alertname"] for case in cases for check in case["alert_rule_test"] if check["exp_alerts"]}
    quiet = {check["alertname"] for case in cases for check in case["alert_rule_test"] if not check["exp_alerts"]}
    assert fired == quiet == set(alerts())
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


@pytest.mark.skipif(not coturn_available(), reason="needs coturn (apt-get install coturn)")
async def test_every_metric_an_alert_reads_is_exported(conclave_server_factory):
    server = await conclave_server_factory(turn=turn_test_settings())
    assert await server.services.turn.wait_up(15)
    exported = set(re.findall(r"^# TYPE (\S+) ", server.services.metrics.render().decode(), re.M))
    # Histograms and counters are read by their series names.
    series = exported | {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    # The certificate metrics appear only with TLS configured; their collector's names.
    series |= {certificates.EXPIRY[0], certificates.ERRORS[0]}
    # The cluster's appear only with cluster.redis_url (tests/control/cluster reads them).
    series |= {cluster.REDIS_UP, cluster.NODES}
    used = {name for rule in alerts().values() for name in re.findall(r"\b(conclave_[a-z0-9_]+)", rule["expr"])}
    assert used and used <= series, sorted(used - series)
