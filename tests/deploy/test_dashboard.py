"""deploy/grafana/conclave.json: made by deploy/grafana/dashboard.py (grafanalib), and
every query of every panel returns data from a real Prometheus (Debian's) scraping a real
server with a meeting of bots in it: no typo'd metric name, label or function survives."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.support.turn import free_port

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
PROMETHEUS = shutil.which("prometheus")
SCRAPE_INTERVAL_S = 1
FIRST_SCRAPE_TIMEOUT_S = 30.0
# rate(...[1m]) needs two samples in its window; a few more make it steady.
SETTLE_S = 6.0


def generator():
    spec = importlib.util.spec_from_file_location("conclave_dashboard", GRAFANA / "dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def queries(dashboard: dict) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.mark.unit
def test_the_committed_dashboard_is_what_the_code_makes():
    made = generator().render()
    assert (GRAFANA / "conclave.json").read_text() == made, "run: python deploy/grafana/dashboard.py"
    dashboard = json.loads(made)
    assert dashboard["uid"] == "conclave" and len(dashboard["panels"]) >= 10
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(expr for _, expr in queries(dashboard))


class Prometheus:
    """Debian's prometheus on loopback, scraping one target every second; stopped by PID."""

    def __init__(self, tmp_path: Path, target: str) -> None:
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "conclave", "static_configs": [{"targets": [target]}]}],
        }))  # fmt: skip
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"),
        )  # fmt: skip

    async def query(self, session: aiohttp.ClientSession, expr: str) -> list:
        url = f"http://127.0.0.1:{self.port}/api/v1/query"
        async with session.get(url, params={"query": expr}) as response:
            body = await response.json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    async def wait_scraped(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + FIRST_SCRAPE_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if await self.query(session, 'up{job="conclave"} == 1'):
                    return
            except aiohttp.ClientError:
                pass  # not listening yet
            await asyncio.sleep(0.5)
        raise AssertionError("Prometheus never scraped the server")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.mark.process
@pytest.mark.timeout(180)
@pytest.mark.skipif(PROMETHEUS is None, reason="needs prometheus (apt-get install prometheus)")
async def test_every_panel_query_returns_data_from_a_real_prometheus(conclave_server, tmp_path):
    server = conclave_server
    meeting = await server.create_meeting()
    bots = [server.bot(meeting, name, width=512, height=64, fps=10) for name in ("ann", "bob")]
    prometheus = Prometheus(tmp_path, server.base_url.removeprefix("http://"))
    try:
        for bot in bots:
            await bot.start()
        await bots[1].wait_for_frames(bots[0].participant_id, "camera", count=3, timeout=30)
        async with aiohttp.ClientSession() as session:
            await prometheus.wait_scraped(session)
            await asyncio.sleep(SETTLE_S)
            # What the panels' $instance variable would be set to.
            dashboard = json.loads((GRAFANA / "conclave.json").read_text())
            empty = []
            for title, expr in queries(dashboard):
                result = await prometheus.query(session, expr.replace("$instance", ".*"))
                if not result:
                    empty.append((title, expr))
            assert not empty, empty
            # And the meeting is in them: two participants.
            [participants] = await prometheus.query(session, 'sum(conclave_participants{job="conclave"})')
            assert float(participants["value"][1]) == 2
    finally:
        prometheus.stop()
        await asyncio.gather(*(bot.stop() for bot in bots))
