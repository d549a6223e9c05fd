"""Faults around the consumer: brokers that are down or restart, topics that
change under it, and a model or metrics port that is unusable at start.

Tests that stop or start a broker use a private broker on its own ports and
data folder (tests/private_broker.py), never the shared test broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.structs import TopicPartition
from consumer_harness import (
    RunningConsumer,
    consumed,
    consumer_env,
    create_topics,
    error_lines,
    expected_anomalies,
    published,
    run_consumer_process,
    settings_for,
    unused_port,
    write_spike_model,
)
from model_factory import write_model
from private_broker import PrivateBroker
from test_consumer_kafka import point_messages, series_values

import stream.consumer
from stream.consumer import AnomalyConsumer
from stream.consumer import main as consumer_main
from stream.model import load_model

REPO = Path(__file__).resolve().parent.parent

# The consumer must exit within this many seconds when the model or the
# metrics port is unusable, because it starts no Kafka client in those cases.
FAST_EXIT_S = 30


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return write_spike_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory):
    """A broker of this module only, stopped at first; tests start it as needed."""
    broker = PrivateBroker(tmp_path_factory.mktemp("kafka-faults"))
    yield broker
    if broker.running:
        broker.stop()


@pytest.fixture
def running_broker(private_broker: PrivateBroker) -> PrivateBroker:
    if not private_broker.running:
        private_broker.start()
    return private_broker


async def produce(
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes | None, bytes | None]],
    partition: int | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, partition=partition)
            for key, value in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str,
    topic: str,
    idle_s: float = 2.0,
    isolation_level: str = "read_uncommitted",
) -> list:
    """Read a topic from the start until no record arrives for ``idle_s``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )
    await consumer.start()
    records = []
    try:
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_s:
            batch = await consumer.getmany(timeout_ms=300)
            for partition_records in batch.values():
                records.extend(partition_records)
            if batch:
                idle_since = time.monotonic()
    finally:
        await consumer.stop()
    return records


async def committed_offsets(
    bootstrap: str, group: str, topic: str, partitions: int = 1
) -> list[int | None]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return [
            await consumer.committed(TopicPartition(topic, p))
            for p in range(partitions)
        ]
    finally:
        await consumer.stop()


async def wait_for(predicate, timeout_s: float = 60, description: str = "the consumer"):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.0f} s waiting for {description}"
            )
        await asyncio.sleep(0.1)


# --- Model file and metrics port: exit 1 fast with one clear line ------------


def corrupt_onnx_with_matching_checksum(path: Path) -> None:
    import hashlib

    onnx_path = path.parent / "model.onnx"
    onnx_path.write_bytes(b"\x08\x07this is not an ONNX model")
    metadata = json.loads(path.read_text())
    metadata["model_sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    path.write_text(json.dumps(metadata))


def damage_model(directory: Path, damage: str) -> Path:
    """Write a model, break it as ``damage`` names and return its metadata path."""
    path = write_model(directory / "model")
    if damage == "metadata-missing":
        path = directory / "nowhere" / "model.onnx.json"
    elif damage == "metadata-corrupt":
        path.write_text('{"format_version": 1, "onnx": ')
    elif damage == "onnx-missing":
        (path.parent / "model.onnx").unlink()
    elif damage == "onnx-checksum":
        with (path.parent / "model.onnx").open("ab") as handle:
            handle.write(b"\0")
    elif damage == "onnx-corrupt":
        corrupt_onnx_with_matching_checksum(path)
    return path


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("metadata-missing", ["model metadata not found", "ANOMALYBERT_MODEL_PATH"]),
        ("metadata-corrupt", ["is not readable JSON", "ANOMALYBERT_MODEL_PATH"]),
        ("onnx-missing", ["model file not found", "model.onnx", "restore it"]),
        ("onnx-checksum", ["checksum mismatch", "model.onnx", "re-export or restore"]),
        ("onnx-corrupt", ["could not load", "model.onnx", "re-export"]),
    ],
)
def test_bad_model_logs_one_error(tmp_path, monkeypatch, caplog, damage, expected):
    path = damage_model(tmp_path, damage)
    for name, value in consumer_env(
        model_path=path, kafka_bootstrap_servers=f"127.0.0.1:{unused_port()}"
    ).items():
        monkeypatch.setenv(name, value)
    for name in os.environ:
        if name.startswith("ANOMALYBERT_") and name not in (
            "ANOMALYBERT_MODEL_PATH",
            "ANOMALYBERT_KAFKA_BOOTSTRAP_SERVERS",
        ):
            monkeypatch.delenv(name)

    assert consumer_main([]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0]
    for fragment in expected:
        assert fragment in errors[0], errors[0]
    if damage != "metadata-missing":
        assert str(path.parent) in errors[0]


def test_bad_model_process_exits_fast(tmp_path):
    path = damage_model(tmp_path, "onnx-checksum")
    status, output, seconds = run_consumer_process(
        model_path=path,
        kafka_bootstrap_servers=f"127.0.0.1:{unused_port()}",
        metrics_port=0,
    )
    assert status == 1, output
    assert seconds < FAST_EXIT_S
    errors = error_lines(output)
    assert len(errors) == 1, output
    assert "checksum mismatch" in errors[0]
    assert "Traceback" not in output


def test_metrics_port_taken_exits_fast(model_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        status, output, seconds = run_consumer_process(
            model_path=model_path,
            kafka_bootstrap_servers=f"127.0.0.1:{unused_port()}",
            metrics_host="127.0.0.1",
            metrics_port=port,
        )
    assert status == 1, output
    assert seconds < FAST_EXIT_S
    errors = error_lines(output)
    assert len(errors) == 1, output
    assert f"127.0.0.1:{port}" in errors[0]
    assert "ANOMALYBERT_METRICS_PORT" in errors[0]
    assert "Traceback" not in output


# --- Broker down at start ------------------------------------------------------


def test_start_gives_up_after_timeout(model_path):
    port = unused_port()
    status, output, seconds = run_consumer_process(
        model_path=model_path,
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        start_timeout_seconds=3,
    )
    assert status == 1, output
    # Attempts at 0, 0.5, 1.5 and 3 s: the last one is at the deadline.
    assert 3 <= seconds < FAST_EXIT_S
    retries = [line for line in output.splitlines() if "retrying in" in line]
    assert len(retries) >= 2, output
    assert f"127.0.0.1:{port}" in retries[0]
    errors = error_lines(output)
    assert len(errors) >= 1
    final = errors[-1]
    assert "was unreachable for 3 s" in final
    assert "ANOMALYBERT_KAFKA_BOOTSTRAP_SERVERS" in final
    assert "Traceback" not in output


@pytest.mark.parametrize("broker", ["nothing listening", "silent listener"])
def test_sigterm_during_start_retries_exits(model_path, broker):
    port = unused_port()
    silent = None
    if broker == "silent listener":
        # Accepts connections and never responds, so each attempt to connect
        # waits for aiokafka's request timeout (40 s).
        silent = socket.socket()
        silent.bind(("127.0.0.1", port))
        silent.listen(50)
    process = subprocess.Popen(
        [sys.executable, "-m", "stream.consumer"],
        cwd=REPO,
        env=consumer_env(
            model_path=model_path,
            kafka_bootstrap_servers=f"127.0.0.1:{port}",
            start_timeout_seconds=60,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = ""
    try:
        deadline = time.monotonic() + FAST_EXIT_S
        if silent is None:
            # Wait for the first retry, so that the signal arrives while the
            # consumer waits to connect again.
            while "retrying in" not in output and time.monotonic() < deadline:
                output += process.stdout.readline()
        else:
            # Wait until the consumer is connecting, well inside its timeout.
            while "serving /metrics" not in output and time.monotonic() < deadline:
                output += process.stdout.readline()
            time.sleep(2)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        output += process.communicate(timeout=FAST_EXIT_S)[0]
        stopped_after = time.monotonic() - started
    finally:
        process.kill()
        if silent is not None:
            silent.close()
    assert process.returncode == 0, output
    assert stopped_after < 10
    assert "stop requested while connecting to Kafka" in output
    assert "Traceback" not in output


@pytest.mark.kafka
async def test_start_waits_for_late_broker(
    private_broker, model_path, caplog, monkeypatch
):
    caplog.set_level(logging.WARNING, logger="stream.consumer")
    # Retries every 2 s at most, so the test does not wait out a long backoff.
    monkeypatch.setattr(stream.consumer, "MAX_RETRY_DELAY_SECONDS", 2.0)
    if private_broker.running:
        private_broker.stop()

    # No topics exist before the broker runs, so the consumer runs without the
    # state changelog, which needs the input topic at start.
    topics = {"input": "late-points", "output": "late-anomalies", "dlq": "late-dlq"}
    settings = settings_for(
        private_broker.bootstrap,
        topics,
        model_path,
        start_timeout_seconds=240,
        metadata_max_age_ms=1000,
        state_changelog=False,
    )
    consumer = AnomalyConsumer(settings, load_model(model_path))
    start = asyncio.create_task(consumer.start())
    try:
        await wait_for(lambda: "retrying in" in caplog.text, 30, "a retry to be logged")
        assert not start.done()
        await asyncio.to_thread(private_broker.start)
        await asyncio.wait_for(start, 120)

        values = series_values(60)
        await produce(
            private_broker.bootstrap, topics["input"], point_messages("s", values)
        )
        task = asyncio.create_task(consumer.run())
        await wait_for(lambda: consumed(consumer) >= len(values), 60)
        consumer.request_stop()
        await asyncio.wait_for(task, 30)
    finally:
        start.cancel()
        await consumer.stop()

    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries
    assert all(private_broker.bootstrap in r.getMessage() for r in retries)


# --- Broker restart mid-stream -------------------------------------------------


@pytest.mark.kafka
async def test_broker_restart_loses_nothing(running_broker, model_path, caplog):
    caplog.set_level(logging.INFO)
    bootstrap = running_broker.bootstrap
    topics = await create_topics(2, bootstrap_servers=bootstrap)
    settings = settings_for(
        bootstrap, topics, model_path, max_batch_points=50, metadata_max_age_ms=1000
    )
    names = ["r0", "r1", "r2"]
    length = 400
    values = {name: series_values(length, seed) for seed, name in enumerate(names)}
    messages = {name: point_messages(name, v) for name, v in values.items()}
    half = length // 2
    first = [m for name in names for m in messages[name][:half]]
    second = [m for name in names for m in messages[name][half:]]
    await produce(bootstrap, topics["input"], first)

    runner = RunningConsumer(settings)
    async with runner as consumer:
        # Stop the broker while the consumer is working through the first half.
        await runner.wait(lambda: consumed(consumer) >= 150, 90)
        assert consumed(consumer) < len(first)
        await asyncio.to_thread(running_broker.stop)
        await asyncio.sleep(3)
        await asyncio.to_thread(running_broker.start)
        await produce(bootstrap, topics["input"], second)
        await runner.wait(
            lambda: consumed(consumer) >= len(first) + len(second), 120, "all points"
        )
        # The last commit follows the last batch.
        await asyncio.sleep(1)

    offsets = await committed_offsets(
        bootstrap, settings.group_id, topics["input"], partitions=2
    )
    assert sum(o or 0 for o in offsets) == len(first) + len(second)
    records = await read_topic(bootstrap, topics["output"])
    got = published(records)
    want = expected_anomalies(model_path, values)
    assert want, "the series have no anomalies to check"
    assert want <= set(got), sorted(want - set(got))
    assert set(got) <= want
    dead = await read_topic(bootstrap, topics["dlq"], idle_s=1.0)
    assert dead == []


@pytest.mark.kafka
async def test_stuck_transaction_is_replaced(
    running_broker, model_path, caplog, monkeypatch
):
    caplog.set_level(logging.INFO)
    bootstrap = running_broker.bootstrap
    topics = await create_topics(bootstrap_servers=bootstrap)
    settings = settings_for(
        bootstrap,
        topics,
        model_path,
        max_batch_points=50,
        processing_guarantee="exactly_once",
        transaction_timeout_seconds=2,
    )
    # The first commit never ends, as when aiokafka's sender is stuck on a
    # transaction coordinator; later commits go through.
    original_commit = AIOKafkaProducer.commit_transaction
    hangs = []

    async def commit_or_hang(self):  # type: ignore[no-untyped-def]
        if not hangs:
            hangs.append(self)
            await asyncio.Event().wait()
        await original_commit(self)

    monkeypatch.setattr(AIOKafkaProducer, "commit_transaction", commit_or_hang)
    values = {"stuck": series_values(300, 7)}
    await produce(bootstrap, topics["input"], point_messages("stuck", values["stuck"]))

    runner = RunningConsumer(settings)
    async with runner:
        deadline = time.monotonic() + 90
        while (
            await committed_offsets(bootstrap, settings.group_id, topics["input"])
        ) != [300]:
            assert time.monotonic() < deadline, "the input was not committed in 90 s"
            await asyncio.sleep(0.5)

    assert len(hangs) == 1
    assert "timed out" in caplog.text
    assert caplog.text.count("transactional producer") >= 2
    # The stuck transaction's records were aborted by the replacement producer:
    # a read_committed reader sees every anomaly once.
    records = await read_topic(
        bootstrap, topics["output"], isolation_level="read_committed"
    )
    got = published(records)
    want = expected_anomalies(model_path, values)
    assert want, "the series has no anomalies to check"
    assert sorted(got) == sorted(want)


# --- Input topic changes while running -----------------------------------------


@pytest.mark.kafka
async def test_new_input_partitions_picked_up(running_broker, model_path, caplog):
    caplog.set_level(logging.INFO)
    bootstrap = running_broker.bootstrap
    topics = await create_topics(bootstrap_servers=bootstrap)
    settings = settings_for(bootstrap, topics, model_path, metadata_max_age_ms=1000)
    await produce(bootstrap, topics["input"], point_messages("p0", series_values(40)))

    runner = RunningConsumer(settings)
    async with runner as consumer:
        await runner.wait(lambda: consumed(consumer) >= 40)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_partitions({topics["input"]: NewPartitions(3)})
        finally:
            await admin.close()
        await produce(
            bootstrap,
            topics["input"],
            point_messages("p2", series_values(40, seed=2)),
            partition=2,
        )
        await runner.wait(lambda: consumed(consumer) >= 80, 60, "the new partition")
        assert consumer.is_ready()

    assigned = [
        r.getMessage()
        for r in caplog.records
        if "partitions assigned" in r.getMessage()
    ]
    assert any(f"{topics['input']}[2]" in message for message in assigned), assigned
    offsets = await committed_offsets(
        bootstrap, settings.group_id, topics["input"], partitions=3
    )
    assert offsets[0] == 40
    assert offsets[2] == 40


@pytest.mark.kafka
async def test_deleted_input_topic_keeps_running(running_broker, model_path, caplog):
    caplog.set_level(logging.INFO)
    bootstrap = running_broker.bootstrap
    topics = await create_topics(bootstrap_servers=bootstrap)
    settings = settings_for(bootstrap, topics, model_path, metadata_max_age_ms=1000)
    await produce(bootstrap, topics["input"], point_messages("d", series_values(30)))

    runner = RunningConsumer(settings)
    async with runner as consumer:
        await runner.wait(lambda: consumed(consumer) >= 30)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topics["input"]])
            revoked = f"partitions revoked: {topics['input']}[0]"
            await runner.wait(lambda: revoked in caplog.text, 30, "the revocation")
            missing = f"no partition of input topic {topics['input']} is assigned"
            await runner.wait(lambda: missing in caplog.text, 30, "the warning")
            assert not runner.task.done()

            # The topic comes back, and the consumer reads it from the start. The
            # consumer's own metadata requests may have created it already, and
            # then CreateTopics returns TOPIC_ALREADY_EXISTS, which is fine here.
            await admin.create_topics(
                [NewTopic(topics["input"], num_partitions=1, replication_factor=1)]
            )
        finally:
            await admin.close()
        later = point_messages("d2", series_values(30, seed=4))
        await produce(bootstrap, topics["input"], later)
        await runner.wait(lambda: consumed(consumer) >= 60, 90, "the recreated topic")
