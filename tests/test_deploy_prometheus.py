"""The alert rules under promtool, and a real Prometheus scraping a running consumer.

Needs Debian's ``prometheus`` package (``apt-get install prometheus``), which
provides ``prometheus`` and ``promtool``. The tests skip without them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from model_factory import write_model

from stream.consumer import AnomalyConsumer
from stream.metrics import ConsumerMetrics
from stream.model import load_model
from stream.settings import Settings

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
COMPOSE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "anomalybert.json"

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
MISSING_PACKAGE = (
    "needs {} from Debian's prometheus package: apt-get install -y prometheus"
)
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason=MISSING_PACKAGE.format("promtool")
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason=MISSING_PACKAGE.format("prometheus")
)

PROMETHEUS_START_TIMEOUT_S = 60
PROMETHEUS_STOP_TIMEOUT_S = 30
SCRAPE_TIMEOUT_S = 60


def run_promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def alert_names() -> list[str]:
    with ALERTS.open() as stream:
        groups = yaml.safe_load(stream)["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


# --- promtool ------------------------------------------------------------------


@needs_promtool
def test_alert_rules_pass_promtool_check():
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


@needs_promtool
def test_alert_rules_pass_unit_tests():
    result = run_promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_compose_config_passes_promtool_check():
    result = run_promtool("check", "config", str(COMPOSE_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_quiet():
    with ALERTS_TEST.open() as stream:
        tests = yaml.safe_load(stream)["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    for name in alert_names():
        assert name in fired, f"no case in {ALERTS_TEST.name} fires {name}"
        assert name in quiet, f"no case in {ALERTS_TEST.name} expects {name} quiet"


# --- A real Prometheus -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def query(base_url: str, promql: str) -> dict:
    """Run an instant query; return the ``data`` of a successful response."""
    url = f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        body = http_get_json(url)
    except urllib.error.HTTPError as error:
        raise AssertionError(
            f"query {promql!r} failed with HTTP {error.code}: {error.read().decode()}"
        ) from error
    assert body["status"] == "success", f"query {promql!r}: {body}"
    return body["data"]


def scalar_values(data: dict) -> list[float]:
    return [float(sample["value"][1]) for sample in data["result"]]


def prometheus_config(target: str) -> str:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                "job_name": "anomalybert",
                "static_configs": [{"targets": [target]}],
            }
        ],
    }
    return yaml.safe_dump(config)


def wait_until_ready(base_url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + PROMETHEUS_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise AssertionError(
                f"prometheus exited with status {process.returncode}:\n{log.read_text()}"
            )
        try:
            with urllib.request.urlopen(f"{base_url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"prometheus was not ready after {PROMETHEUS_START_TIMEOUT_S} s:\n"
                f"{log.read_text()}"
            )
        time.sleep(0.2)


@contextmanager
def running_prometheus(config: str, directory: Path) -> Iterator[str]:
    """Run Prometheus on a free 127.0.0.1 port; yield its base URL, then stop it."""
    assert PROMETHEUS is not None
    config_file = directory / "prometheus.yml"
    config_file.write_text(config)
    log = directory / "prometheus.log"
    address = f"127.0.0.1:{free_port()}"
    with log.open("w") as log_stream:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={address}",
            ],
            stdout=log_stream,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://{address}"
    try:
        wait_until_ready(base_url, process, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=PROMETHEUS_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def produce_points(bootstrap: str, topic: str, count: int) -> None:
    from aiokafka import AIOKafkaProducer

    rng = np.random.default_rng(3)
    values = 10 + np.sin(np.arange(count) / 5.0) + rng.normal(0, 0.1, count)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = []
        for i, value in enumerate(values):
            payload = {"timestamp": 1_400_000_000 + 60 * i, "value": float(value)}
            futures.append(
                await producer.send(
                    topic,
                    key=f"series-{i % 3}".encode(),
                    value=json.dumps(payload).encode(),
                )
            )
        futures.append(await producer.send(topic, key=b"series-0", value=b"not json"))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_for(predicate, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.5)


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", "1m"))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


@needs_prometheus
@pytest.mark.kafka
async def test_prometheus_scrapes_consumer(
    kafka_bootstrap, kafka_topic_factory, tmp_path
):
    topics = {
        "input": await kafka_topic_factory(partitions=2, prefix="points"),
        "output": await kafka_topic_factory(prefix="anomalies"),
        "dlq": await kafka_topic_factory(prefix="dlq"),
    }
    valid_points = 120
    await produce_points(kafka_bootstrap, topics["input"], valid_points)
    produced = valid_points + 1

    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        input_topic=topics["input"],
        output_topic=topics["output"],
        dlq_topic=topics["dlq"],
        group_id=f"group-{topics['input']}",
        model_path=write_model(tmp_path / "model"),
        metrics_host="127.0.0.1",
        metrics_port=0,
        poll_timeout_ms=50,
    )
    metrics = ConsumerMetrics()
    consumer = AnomalyConsumer(settings, load_model(settings.model_path), metrics)
    await consumer.start()
    run = asyncio.create_task(consumer.run())
    try:

        async def consumed_all() -> bool:
            return metrics.points_consumed._value.get() >= produced

        await wait_for(consumed_all, 60, "the consumer did not read every record")
        consumed = metrics.points_consumed._value.get()
        config = prometheus_config(f"127.0.0.1:{consumer.metrics_port}")

        # Every blocking call runs in a thread, so that the event loop keeps
        # serving the consumer's /metrics to Prometheus.
        with running_prometheus(config, tmp_path) as base_url:

            async def scraped_count() -> bool:
                data = await asyncio.to_thread(
                    query, base_url, "anomalybert_points_consumed_total"
                )
                return scalar_values(data) == [consumed]

            await wait_for(
                scraped_count,
                SCRAPE_TIMEOUT_S,
                f"Prometheus did not report {consumed} consumed points",
            )
            up = await asyncio.to_thread(query, base_url, 'up{job="anomalybert"}')
            invalid = await asyncio.to_thread(
                query, base_url, "sum by (reason) (anomalybert_points_invalid_total)"
            )
            dashboard_results = {
                (title, expr): await asyncio.to_thread(query, base_url, expr)
                for title, expr in dashboard_queries()
            }

            async def rules_evaluated() -> bool:
                body = await asyncio.to_thread(
                    http_get_json, f"{base_url}/api/v1/rules"
                )
                rules = [
                    rule for group in body["data"]["groups"] for rule in group["rules"]
                ]
                return len(rules) == len(alert_names()) and all(
                    rule["health"] == "ok" for rule in rules
                )

            await wait_for(rules_evaluated, 30, "the alert rules were not all healthy")
            alerts = await asyncio.to_thread(http_get_json, f"{base_url}/api/v1/alerts")
    finally:
        consumer.request_stop()
        await asyncio.wait_for(run, 30)
        await consumer.stop()

    assert consumed == produced
    assert scalar_values(up) == [1.0]
    assert [
        (sample["metric"]["reason"], float(sample["value"][1]))
        for sample in invalid["result"]
    ] == [("invalid_json", 1.0)]
    for (title, expr), data in dashboard_results.items():
        assert data["resultType"] == "vector", f"panel {title!r}: {expr}"
    for title, expr in (
        ("Consumers up", 'sum(up{job="anomalybert"})'),
        ("Active series", "sum(anomalybert_active_series)"),
        (
            "Consumer lag",
            "max by (topic, partition) (anomalybert_consumer_lag_records)",
        ),
    ):
        assert dashboard_results[(title, expr)]["result"], f"panel {title!r} is empty"
    firing = [
        alert["labels"]["alertname"]
        for alert in alerts["data"]["alerts"]
        if alert["state"] == "firing"
    ]
    assert "AnomalyBertConsumerDown" not in firing
    assert "AnomalyBertConsumerAbsent" not in firing
