"""The consumer against the real local Kafka broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from consumer_harness import settings_for, write_spike_model
from model_factory import write_model
from prometheus_client import generate_latest

from stream.consumer import AnomalyConsumer
from stream.detect import detect
from stream.metrics import ConsumerMetrics
from stream.model import load_model
from stream.points import format_timestamp
from stream.settings import Settings

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parent.parent


def series_values(n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = 10 + np.sin(np.arange(n) / 6.0) + rng.normal(0, 0.1, n)
    values[n // 2] += 8.0
    values[(3 * n) // 4 : (3 * n) // 4 + 5] -= 6.0
    return values


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return write_spike_model(tmp_path / "model")


async def make_topics(factory, partitions: int = 1) -> dict[str, str]:
    return {
        "input": await factory(partitions=partitions, prefix="points"),
        "output": await factory(prefix="anomalies"),
        "dlq": await factory(prefix="dlq"),
    }


async def produce(
    bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key) for key, value in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 30
) -> list:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    records = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for partition_records in batch.values():
                records.extend(partition_records)
            if len(records) >= expected and not batch:
                break
    finally:
        await consumer.stop()
    return records


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}{path}", timeout=5
        ) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def wait_for(predicate, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the consumer")
        await asyncio.sleep(0.1)


def point_messages(series: str, values: np.ndarray, start: float = 1_400_000_000.0):
    return [
        (
            series.encode(),
            json.dumps({"timestamp": start + 300 * i, "value": float(v)}).encode(),
        )
        for i, v in enumerate(values)
    ]


async def run_consumer(
    settings: Settings, until, metrics: ConsumerMetrics | None = None
):
    consumer = AnomalyConsumer(settings, load_model(settings.model_path), metrics)
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        await wait_for(lambda: until(consumer))
    finally:
        consumer.request_stop()
        await asyncio.wait_for(task, 60)
        await consumer.stop()
    return consumer


async def test_anomalies_match_detect(kafka_bootstrap, kafka_topic_factory, model_path):
    topics = await make_topics(kafka_topic_factory, partitions=2)
    settings = settings_for(kafka_bootstrap, topics, model_path)
    values = {
        name: series_values(400, seed) for seed, name in enumerate(["a", "b", "c"])
    }
    messages = [m for name, v in values.items() for m in point_messages(name, v)]
    await produce(kafka_bootstrap, topics["input"], messages)

    metrics = ConsumerMetrics()
    await run_consumer(
        settings,
        lambda c: c.metrics.points_consumed._value.get() >= len(messages),
        metrics,
    )
    records = await read_all(kafka_bootstrap, topics["output"], expected=1)
    published = sorted(
        (r.key.decode(), json.loads(r.value)["timestamp"], json.loads(r.value)["score"])
        for r in records
    )

    model = load_model(model_path)
    expected = []
    for name, v in values.items():
        times = 1_400_000_000.0 + 300 * np.arange(len(v))
        for point in detect(model, times, v, series=name).points:
            if point.publish and point.input_index >= 0:
                expected.append((name, format_timestamp(point.timestamp), point.score))
    assert len(expected) > 0
    assert [p[:2] for p in published] == [e[:2] for e in sorted(expected)]
    assert np.allclose(
        [p[2] for p in published], [e[2] for e in sorted(expected)], atol=1e-9
    )


async def test_output_record_fields(kafka_bootstrap, kafka_topic_factory, model_path):
    topics = await make_topics(kafka_topic_factory)
    settings = settings_for(kafka_bootstrap, topics, model_path)
    messages = point_messages("sensor-1", series_values(300))
    await produce(kafka_bootstrap, topics["input"], messages)
    await run_consumer(
        settings, lambda c: c.metrics.points_consumed._value.get() >= len(messages)
    )
    records = await read_all(kafka_bootstrap, topics["output"], expected=1)
    assert records, "no anomaly was published"
    record = json.loads(records[0].value)
    assert records[0].key == b"sensor-1"
    assert record["series"] == "sensor-1"
    for field in ("timestamp", "value", "score", "threshold", "model_version"):
        assert field in record
    assert record["threshold"] == 0.45
    assert record["score"] >= record["threshold"]


async def test_invalid_messages_go_to_dlq(
    kafka_bootstrap, kafka_topic_factory, model_path
):
    topics = await make_topics(kafka_topic_factory)
    settings = settings_for(kafka_bootstrap, topics, model_path, max_payload_bytes=200)
    messages = point_messages("s", series_values(21))
    good, after = messages[:20], messages[20:]
    huge = b'{"timestamp": 1, "value": "' + b"x" * 600_000 + b'"}'
    bad = [
        (b"s", b"not json"),
        (b"s", b'{"timestamp": 1, "value": NaN}'),
        (b"s", b'{"value": 1}'),
        (b"", b'{"timestamp": 1, "value": 1}'),
        (b"s", None),
        (b"s", b'{"timestamp": 1, "value": "' + b"x" * 300 + b'"}'),
        (b"s", b'{"timestamp": "9999-12-31T00:00:00", "value": 1}'),
        (b"s", huge),
        # The scorer's rejections come after the decoder's in the dead-letter
        # topic, so this one goes last.
        (b"s", good[-1][1]),  # repeats the timestamp of the last valid point
    ]
    reasons = [
        "invalid_json",
        "non_finite_value",
        "missing_field",
        "missing_series",
        "tombstone",
        "payload_too_large",
        "timestamp_in_future",
        "payload_too_large",
        "duplicate_timestamp",
    ]
    # The valid point after the bad ones is still scored: the point from the
    # future did not put its series out of order.
    await produce(kafka_bootstrap, topics["input"], good + bad + after)
    metrics = ConsumerMetrics()
    total = len(good) + len(bad) + len(after)
    consumer = await run_consumer(
        settings,
        lambda c: c.metrics.points_consumed._value.get() >= total,
        metrics,
    )
    dead = await read_all(kafka_bootstrap, topics["dlq"], expected=len(bad))
    assert len(dead) == len(bad)
    for record, (_key, value), reason in zip(dead, bad, reasons, strict=True):
        headers = dict(record.headers)
        assert headers["anomalybert.reason"].decode() == reason
        assert headers["anomalybert.source.topic"].decode() == topics["input"]
        assert headers["anomalybert.source.partition"] == b"0"
        assert int(headers["anomalybert.source.offset"]) >= len(good)
        assert headers["anomalybert.error"]
        if value is not huge:
            assert record.value == value
    # A value too large to forward whole is cut, and a header gives its length.
    cut = dead[bad.index((b"s", huge))]
    assert dict(cut.headers)["anomalybert.value.bytes"] == str(len(huge)).encode()
    assert cut.value == huge[: len(cut.value)]
    assert len(cut.value) < len(huge)
    for reason in set(reasons):
        expected_count = reasons.count(reason)
        counted = metrics.points_invalid.labels(reason=reason)._value.get()
        assert counted == expected_count
    consumed = metrics.points_consumed._value.get()
    scored = metrics.points_scored._value.get()
    invalid = sum(
        metrics.points_invalid.labels(reason=r)._value.get() for r in set(reasons)
    )
    # The newest lag_points points of the series wait for their score.
    pending = consumer.scorer.settings.lag_points
    assert scored == len(good) + len(after) - pending
    assert consumed == scored + pending + invalid
    assert consumer.scorer.active_series == 1


@pytest.mark.parametrize("changelog", [True, False], ids=["changelog", "no changelog"])
async def test_cap_evictions_counted(
    kafka_bootstrap, kafka_topic_factory, model_path, changelog
):
    topics = await make_topics(kafka_topic_factory)
    settings = settings_for(
        kafka_bootstrap,
        topics,
        model_path,
        max_series=2,
        max_batch_points=2,
        state_changelog=changelog,
    )
    # Five series in turn, two points per batch: series of earlier batches are
    # evicted to make room.
    rounds = [point_messages(f"s{i}", series_values(20)) for i in range(5)]
    messages = [m for step in zip(*rounds, strict=True) for m in step]
    await produce(kafka_bootstrap, topics["input"], messages)
    consumer = await run_consumer(
        settings, lambda c: c.metrics.points_consumed._value.get() >= len(messages)
    )
    evicted = consumer.metrics.series_evicted._value.get()
    assert evicted > 0
    assert evicted == consumer.scorer.evicted_total
    assert consumer.scorer.evicted_series == []


async def test_revoked_partition_lag_removed(model_path):
    settings = Settings(model_path=model_path, metrics_port=0, state_changelog=False)
    consumer = AnomalyConsumer(settings, load_model(model_path))
    kept, revoked = TopicPartition("points", 0), TopicPartition("points", 1)
    consumer._assigned = {kept, revoked}
    for tp in (kept, revoked):
        consumer.metrics.consumer_lag.labels(
            topic=tp.topic, partition=str(tp.partition)
        )
    await consumer._release({revoked})
    text = generate_latest(consumer.metrics.registry).decode()
    assert 'anomalybert_consumer_lag_records{partition="0",topic="points"}' in text
    assert 'partition="1"' not in text
    # A partition without a lag series is released without error.
    await consumer._release({kept, TopicPartition("points", 2)})


async def test_metrics_served_over_http(
    kafka_bootstrap, kafka_topic_factory, model_path
):
    topics = await make_topics(kafka_topic_factory)
    settings = settings_for(kafka_bootstrap, topics, model_path)
    messages = point_messages("m", series_values(50))
    await produce(kafka_bootstrap, topics["input"], messages)
    consumer = AnomalyConsumer(settings, load_model(model_path))
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        port = consumer.metrics_port
        assert (await asyncio.to_thread(scrape, port, "/healthz"))[0] == 200
        # Points are counted as consumed before they are scored.
        await wait_for(
            lambda: consumer.metrics.windows_scored._value.get() >= len(messages)
        )
        # The lag is set once the batch is committed, after it was scored.
        await wait_for(lambda: bool(consumer.metrics.consumer_lag._metrics))
        status, text = await asyncio.to_thread(scrape, port, "/metrics")
        ready_status, _ = await asyncio.to_thread(scrape, port, "/readyz")
        missing_status, _ = await asyncio.to_thread(scrape, port, "/nope")
    finally:
        consumer.request_stop()
        await asyncio.wait_for(task, 60)
        await consumer.stop()
    assert status == 200
    assert ready_status == 200
    assert missing_status == 404
    assert metric(text, "anomalybert_points_consumed_total") == len(messages)
    assert metric(text, "anomalybert_windows_scored_total") == len(messages)
    assert metric(text, "anomalybert_inference_seconds_count") >= 1
    assert metric(text, "anomalybert_active_series") == 1
    assert metric(text, "anomalybert_assigned_partitions") == 1
    assert "anomalybert_consumer_lag_records{" in text
    assert 'anomalybert_model_info{sha256="' in text
    for name in (
        "anomalybert_anomalies_published_total",
        "anomalybert_batch_points_bucket",
        "anomalybert_series_evicted_total",
    ):
        assert name in text


def consumer_env(settings: Settings, metrics_port: int) -> dict[str, str]:
    return dict(
        os.environ,
        ANOMALYBERT_KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        ANOMALYBERT_INPUT_TOPIC=settings.input_topic,
        ANOMALYBERT_OUTPUT_TOPIC=settings.output_topic,
        ANOMALYBERT_DLQ_TOPIC=settings.dlq_topic,
        ANOMALYBERT_GROUP_ID=settings.group_id,
        ANOMALYBERT_MODEL_PATH=str(settings.model_path),
        ANOMALYBERT_METRICS_PORT=str(metrics_port),
        PYTHONPATH=str(REPO),
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def committed_offset(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


async def run_process_until_consumed(
    settings: Settings, expected: int
) -> tuple[int, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "stream.consumer"],
        cwd=REPO,
        env=consumer_env(settings, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        consumed = 0.0
        while consumed < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            try:
                consumed = metric(
                    (await asyncio.to_thread(scrape, port))[1],
                    "anomalybert_points_consumed_total",
                )
            except OSError:
                continue
        text = (await asyncio.to_thread(scrape, port))[1]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return int(metric(text, "anomalybert_points_consumed_total")), output


async def test_sigterm_commits_and_restart_resumes(
    kafka_bootstrap, kafka_topic_factory, model_path
):
    topics = await make_topics(kafka_topic_factory)
    settings = settings_for(kafka_bootstrap, topics, model_path)
    first = point_messages("r", series_values(200))
    await produce(kafka_bootstrap, topics["input"], first)

    consumed, output = await run_process_until_consumed(settings, len(first))
    assert consumed == len(first)
    assert "consumer stopped" in output
    assert await committed_offset(
        kafka_bootstrap, settings.group_id, topics["input"]
    ) == len(first)

    second = point_messages("r", series_values(100, seed=3), start=1_500_000_000.0)
    await produce(kafka_bootstrap, topics["input"], second)
    consumed, _ = await run_process_until_consumed(settings, len(second))
    assert consumed == len(second)
    assert await committed_offset(
        kafka_bootstrap, settings.group_id, topics["input"]
    ) == len(first) + len(second)


async def test_model_reload_between_batches(
    kafka_bootstrap, kafka_topic_factory, tmp_path
):
    model_dir = tmp_path / "live"
    path = write_model(model_dir, position_scores=np.full(16, 0.1), threshold=0.9)
    topics = await make_topics(kafka_topic_factory)
    settings = settings_for(kafka_bootstrap, topics, path, model_check_seconds=0)
    first = point_messages("h", series_values(100))
    second = point_messages("h", series_values(100, seed=5), start=1_500_000_000.0)
    await produce(kafka_bootstrap, topics["input"], first)

    consumer = AnomalyConsumer(settings, load_model(path))
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        await wait_for(
            lambda: consumer.metrics.points_consumed._value.get() >= len(first)
        )
        old_version = consumer.model.metadata.model_version

        # A corrupt replacement is rejected and the old model stays in use.
        (model_dir / "model.onnx").write_bytes(b"not a model")
        consumer.request_model_reload()
        await wait_for(lambda: not consumer._reload_requested)
        await asyncio.sleep(0.3)
        assert consumer.model.metadata.model_version == old_version

        # A valid new model with another threshold replaces it.
        write_model(model_dir, position_scores=np.full(16, 0.3), threshold=0.25)
        new_version = load_model(path).metadata.model_version
        consumer.request_model_reload()
        await wait_for(lambda: consumer.model.metadata.model_version == new_version)
        await produce(kafka_bootstrap, topics["input"], second)
        total = len(first) + len(second)
        await wait_for(lambda: consumer.metrics.windows_scored._value.get() >= total)
        _, text = await asyncio.to_thread(scrape, consumer.metrics_port)
    finally:
        consumer.request_stop()
        await asyncio.wait_for(task, 60)
        await consumer.stop()
    assert new_version != old_version
    assert f'version="{new_version}"' in text
    assert consumer.scorer.settings.threshold == 0.25
    assert metric(text, "anomalybert_windows_scored_total") == len(first) + len(second)
    records = await read_all(kafka_bootstrap, topics["output"], expected=1)
    assert records, "the new model's threshold published nothing"
    assert all(json.loads(r.value)["model_version"] == new_version for r in records)


@pytest.mark.parametrize(
    ("check_seconds", "trigger"),
    [("0", "SIGHUP"), ("1", "file change")],
    ids=["sighup", "file change"],
)
async def test_process_reloads_model(
    kafka_bootstrap, kafka_topic_factory, tmp_path, check_seconds, trigger
):
    """The consumer process swaps in a changed model on SIGHUP or by polling the files."""
    model_dir = tmp_path / "live"
    path = write_model(model_dir, position_scores=np.full(16, 0.1), threshold=0.9)
    old_version = load_model(path).metadata.model_version
    topics = await make_topics(kafka_topic_factory)
    settings = settings_for(kafka_bootstrap, topics, path)
    port = free_port()
    env = consumer_env(settings, port)
    env["ANOMALYBERT_MODEL_CHECK_SECONDS"] = check_seconds
    process = subprocess.Popen(
        [sys.executable, "-m", "stream.consumer"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def served_text() -> str:
        try:
            return scrape(port)[1]
        except OSError:
            return ""

    try:
        await wait_for(lambda: f'version="{old_version}"' in served_text(), 60)
        write_model(model_dir, position_scores=np.full(16, 0.3), threshold=0.25)
        new_version = load_model(path).metadata.model_version
        if trigger == "SIGHUP":
            # Without polling nothing changes until the signal.
            await asyncio.sleep(2)
            assert f'version="{old_version}"' in served_text()
            process.send_signal(signal.SIGHUP)
        await wait_for(lambda: f'version="{new_version}"' in served_text(), 60)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    assert new_version != old_version
    assert process.returncode == 0, output
    assert "Traceback" not in output


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_small_dlq_topic_gets_cut_records(
    kafka_bootstrap, kafka_topic_factory, model_path, guarantee
):
    # The dead-letter topic takes at most 10,000 bytes a record, below the
    # consumer's own limits for keys and values.
    topics = {
        "input": await kafka_topic_factory(prefix="points"),
        "output": await kafka_topic_factory(prefix="anomalies"),
        "dlq": await kafka_topic_factory(
            prefix="dlq", configs={"max.message.bytes": "10000"}
        ),
    }
    settings = settings_for(
        kafka_bootstrap,
        topics,
        model_path,
        max_payload_bytes=200,
        processing_guarantee=guarantee,
    )
    good = point_messages("s", series_values(30))
    bad = [(b"k" * 20_000, None), (b"s", b"x" * 50_000)]
    await produce(kafka_bootstrap, topics["input"], good[:10] + bad + good[10:])
    total = len(good) + len(bad)

    def caught_up(consumer) -> bool:
        # The lag is set after a batch is committed; 0 once the last one is.
        lags = consumer.metrics.consumer_lag._metrics.values()
        return bool(lags) and all(lag._value.get() == 0 for lag in lags)

    await run_consumer(settings, caught_up)
    dead = await read_all(kafka_bootstrap, topics["dlq"], expected=len(bad))
    assert len(dead) == len(bad)
    tombstone, payload = dead
    assert len(tombstone.key) <= 1024
    assert dict(tombstone.headers)["anomalybert.key.bytes"] == b"20000"
    assert payload.value == b""
    assert dict(payload.headers)["anomalybert.value.bytes"] == b"50000"
    assert (
        await committed_offset(kafka_bootstrap, settings.group_id, topics["input"])
        == total
    )
