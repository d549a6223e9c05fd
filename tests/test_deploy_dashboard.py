"""The Grafana dashboard queries only metrics and labels the consumer exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from model_factory import write_model
from prometheus_client.metrics import MetricWrapperBase

from stream.consumer import AnomalyConsumer
from stream.metrics import ConsumerMetrics
from stream.model import load_model
from stream.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "anomalybert.json"

# Series that Prometheus adds to every scrape, and the labels it attaches.
PROMETHEUS_SERIES = {"up"}
PROMETHEUS_LABELS = {"job", "instance"}

PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}

# Grafana replaces these variables before it sends a query.
GRAFANA_VARIABLES = re.compile(r"\$__\w+|\$\{[^}]+\}|\$\w+")


def exported_series(model_dir: Path) -> dict[str, set[str]]:
    """Map every sample name of a consumer's metrics registry to its label names.

    The consumer's constructor (which does no I/O) fills in the model info.
    Labelled metrics export no sample until a child exists, so each gets one.
    """
    metrics = ConsumerMetrics()
    model_path = write_model(model_dir)
    AnomalyConsumer(Settings(model_path=model_path), load_model(model_path), metrics)
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            value.labels(*["example"] * len(value._labelnames))
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def strip_promql(expr: str) -> str:
    """Remove label matchers, range selectors and strings from a PromQL query."""
    expr = GRAFANA_VARIABLES.sub("1m", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    return re.sub(r"\[[^\]]*\]", "", expr)


def metric_names(expr: str) -> set[str]:
    """Return the identifiers of ``expr`` that name series (not functions or keywords)."""
    stripped = strip_promql(expr)
    stripped = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", stripped
    )
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", stripped):
        name = match.group()
        is_call = stripped[match.end() :].lstrip().startswith("(")
        if not is_call and name not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def label_names(expr: str) -> set[str]:
    """Return the label names in matchers and in by/without/on/ignoring clauses."""
    expr = GRAFANA_VARIABLES.sub("1m", expr)
    names = set()
    for clause in re.findall(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr
    ):
        names.update(label.strip() for label in clause.split(",") if label.strip())
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        names.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    return names


def test_metric_name_extraction():
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x"}[$__rate_interval])))'
        " / on (job) group_left b_total"
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}
    assert label_names(expr) == {"le", "job"}


@pytest.fixture
def series(tmp_path: Path) -> dict[str, set[str]]:
    return exported_series(tmp_path / "model")


def test_consumer_exports_expected_series(series):
    # Guards the collection above: each metric type adds its own suffixes.
    for name, labels in {
        "anomalybert_points_consumed_total": set(),
        "anomalybert_points_invalid_total": {"reason"},
        "anomalybert_inference_seconds_bucket": {"le"},
        "anomalybert_inference_seconds_count": set(),
        "anomalybert_inference_seconds_sum": set(),
        "anomalybert_consumer_lag_records": {"topic", "partition"},
        "anomalybert_model_info": {"version", "sha256"},
    }.items():
        assert series[name] == labels, name


def test_panels_query_exported_metrics(series):
    exported = set(series) | PROMETHEUS_SERIES
    for title, expr in panel_queries():
        names = metric_names(expr)
        assert names, f"panel {title!r}: no metric in {expr!r}"
        unknown = names - exported
        assert not unknown, f"panel {title!r} queries {sorted(unknown)}, not exported"


def test_panels_use_exported_labels(series):
    for title, expr in panel_queries():
        available = set(PROMETHEUS_LABELS)
        for name in metric_names(expr) - PROMETHEUS_SERIES:
            available |= series[name]
        unknown = label_names(expr) - available
        assert not unknown, f"panel {title!r} uses labels {sorted(unknown)}"


def test_dashboard_covers_required_views():
    queries = [expr for _title, expr in panel_queries()]
    required = {
        "throughput": r"rate\(anomalybert_points_consumed_total",
        "lag": r"anomalybert_consumer_lag_records",
        "anomalies": r"anomalybert_anomalies_published_total",
        "inference latency": r"histogram_quantile\(.*anomalybert_inference_seconds_bucket",
        "dead-letter reasons": r"by \(reason\) \(rate\(anomalybert_points_invalid_total",
        "active series": r"anomalybert_active_series",
    }
    for view, pattern in required.items():
        assert any(re.search(pattern, q) for q in queries), f"no panel shows {view}"


def test_dashboard_panels_well_formed():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"]
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        for x in range(position["x"], position["x"] + position["w"]):
            for y in range(position["y"], position["y"] + position["h"]):
                assert (x, y) not in cells, (
                    f"panels {cells[(x, y)]!r} and {panel['title']!r} overlap"
                )
                cells[(x, y)] = panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
