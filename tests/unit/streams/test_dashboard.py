"""The Grafana dashboard and Prometheus config only refer to metrics the worker exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.metrics_names import METRIC_NAMES
from streams.settings import Settings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "segmenter.json"
METRIC = re.compile(r"\bsegmenter_[a-z0-9_]+")
SERIES_SUFFIXES = ("_bucket", "_sum", "_count")


def panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in node.get("panels", []):
        yield panel
        yield from panels(panel)  # rows nest their panels


def base_name(series: str) -> str:
    for suffix in SERIES_SUFFIXES:
        if series.endswith(suffix) and series[: -len(suffix)] in METRIC_NAMES:
            return series[: -len(suffix)]
    return series


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


@pytest.fixture(scope="module")
def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def test_every_queried_metric_is_exposed(exprs: list[str]) -> None:
    used = {base_name(m) for e in exprs for m in METRIC.findall(e)}
    assert used, "the dashboard queries no segmenter metric"
    assert used <= set(METRIC_NAMES), f"unknown metrics: {sorted(used - set(METRIC_NAMES))}"


def test_the_operational_panels_are_there(exprs: list[str]) -> None:
    joined = "\n".join(exprs)
    assert "segmenter_consumer_lag_seconds" in joined
    assert "by (type) (rate(segmenter_events_total" in joined
    for q in ("0.5", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(segmenter_event_e2e_latency_seconds_bucket" in joined
    assert "by (segment, change) (rate(segmenter_segment_changes_total" in joined


def test_every_panel_uses_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    provisioned = (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert "uid: prometheus" in provisioned
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]


def test_metric_names_follow_prometheus_conventions() -> None:
    assert len(set(METRIC_NAMES)) == len(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert METRIC.fullmatch(name), name
        assert not name.endswith(SERIES_SUFFIXES), name


def test_prometheus_scrapes_the_worker_web_port() -> None:
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert f'"worker:{Settings().web_port}"' in config
    assert "metrics_path: /metrics" in config


def test_the_worker_exposes_exactly_these_metrics() -> None:
    from streams.metrics import Metrics

    exposed = {
        family.name + "_total" if family.type == "counter" else family.name for family in Metrics().registry.collect()
    }
    assert exposed == set(METRIC_NAMES)
