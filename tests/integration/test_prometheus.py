"""A real Prometheus (Debian's, started by scripts/services.sh) scrapes a running worker.

Every query of the Grafana dashboard (deploy/grafana/dashboards) must return data, and the alert
rules of deploy/prometheus/alerts.yml are loaded and evaluated against the worker's series.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from services import ensure_prometheus

from tests.integration.harness import REPO, WorkerProcess, produce, settings_for, wait_caught_up
from tests.integration.test_ops import bad_lines, free_port, stale_cart
from tests.integration.test_worker_e2e import journeys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
ALERTS_TEXT = (REPO / "deploy" / "prometheus" / "alerts.yml").read_text()


def dashboard_queries() -> list[tuple[str, str]]:
    """``(panel title, expression)`` of every panel target, Grafana's ``$__rate_interval`` as 1m."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text()).get("panels", []):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((panel.get("title", "?"), target["expr"].replace("$__rate_interval", "1m")))
    return out


@pytest.fixture(scope="session")
def prometheus() -> tuple[str, Path]:
    try:
        return ensure_prometheus()
    except RuntimeError as exc:
        required = os.environ.get("SEGMENTER_REQUIRE_SERVICES") == "1"
        pytest.fail(f"this test needs Prometheus{' (SEGMENTER_REQUIRE_SERVICES=1)' if required else ''}: {exc}")


async def query(http: aiohttp.ClientSession, url: str, expr: str) -> list[Any]:
    async with http.get(f"{url}/api/v1/query", params={"query": expr}) as resp:
        body = await resp.json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


async def test_prometheus_scrapes_a_worker_and_every_dashboard_query_has_data(
    services: tuple[str, str], prometheus: tuple[str, Path], tmp_path: Path
) -> None:
    url, targets = prometheus
    port = free_port()
    settings = settings_for(*services, web_port=port, idle_wallclock_advance=True, tick_interval_seconds=0.5)
    # good events, bad lines (dead letters) and a cart that only the wall clock abandons (timer lateness)
    lines = journeys() + bad_lines() + [stale_cart()]
    await produce(settings, lines)
    job = f"segmenter-{settings.app_id}"
    target = targets / f"{settings.app_id}.json"
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        targets.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"instance_job": job}}]))
        await wait_caught_up(settings, 120)
        queries = dashboard_queries()
        assert len(queries) >= 10, queries
        missing: list[tuple[str, str]] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            # scraped every second: rates need two samples after the events, so poll for a while
            deadline = time.monotonic() + 60
            while True:
                up = await query(http, url, f'up{{instance_job="{job}"}} == 1')
                missing = []
                for title, expr in queries:
                    scoped = re.sub(r"(segmenter_\w+)", rf'\1{{instance_job="{job}"}}', expr)
                    if not await query(http, url, scoped):
                        missing.append((title, scoped))
                if up and not missing:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"up: {up}; dashboard queries without data: {missing}\n{worker.log_tail()}")
                await asyncio.sleep(1)
            # the alert rules are loaded (a running Prometheus reloads them at `services.sh start`, which
            # signals it: give the reload a moment) and evaluated healthy against the worker's series
            want = len(re.findall(r"^\s+- alert: ", ALERTS_TEXT, flags=re.MULTILINE))
            deadline = time.monotonic() + 20
            while True:
                async with http.get(f"{url}/api/v1/rules") as resp:
                    groups = (await resp.json())["data"]["groups"]
                ours = [g for g in groups if g["file"].endswith("prometheus/alerts.yml")]
                rules = {r["name"]: r for g in ours for r in g["rules"]}
                if len(rules) == want and all(r["health"] == "ok" for r in rules.values()):
                    break
                assert time.monotonic() < deadline, (want, rules)
                await asyncio.sleep(1)
    finally:
        target.unlink(missing_ok=True)
        worker.stop()
