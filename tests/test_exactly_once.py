"""Exactly-once processing and state recovery, against the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from consumer_harness import create_topics
from model_factory import write_model
from test_consumer_kafka import free_port, produce, scrape

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 3


def workload(
    n_series: int, points_per_series: int, seed: int = 11
) -> list[tuple[bytes, bytes]]:
    """Interleaved points of many series, with spikes and level shifts."""
    rng = np.random.default_rng(seed)
    per_series = []
    for index in range(n_series):
        values = np.cumsum(rng.normal(0, 0.2, points_per_series)) + 5 * np.sin(
            np.arange(points_per_series) / (5 + index % 7)
        )
        for position in rng.integers(50, points_per_series, 3):
            values[position] += rng.choice([-1, 1]) * rng.uniform(5, 15)
        per_series.append(values)
    messages = []
    for step in range(points_per_series):
        for index in range(n_series):
            payload = {
                "timestamp": 1_600_000_000 + 60 * step,
                "value": float(per_series[index][step]),
            }
            messages.append((f"series-{index}".encode(), json.dumps(payload).encode()))
    return messages


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return write_model(
        tmp_path / "model",
        position_scores=np.linspace(0.1, 0.3, 16),
        input_gain=0.05,
        threshold=0.04,
        lag_points=3,
        calibration={
            "method": "likelihood",
            "warmup_points": 30,
            "horizon_points": 200,
        },
    )


def consumer_env(
    bootstrap: str, topics: dict[str, str], group: str, model: Path, port: int
) -> dict[str, str]:
    return dict(
        os.environ,
        ANOMALYBERT_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        ANOMALYBERT_INPUT_TOPIC=topics["input"],
        ANOMALYBERT_OUTPUT_TOPIC=topics["output"],
        ANOMALYBERT_DLQ_TOPIC=topics["dlq"],
        ANOMALYBERT_GROUP_ID=group,
        ANOMALYBERT_MODEL_PATH=str(model),
        ANOMALYBERT_METRICS_PORT=str(port),
        ANOMALYBERT_PROCESSING_GUARANTEE="exactly_once",
        ANOMALYBERT_MAX_BATCH_POINTS="500",
        ANOMALYBERT_EPISODE_GAP_POINTS="5",
        PYTHONPATH=str(REPO),
    )


def start_consumer(env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "stream.consumer"],
        cwd=REPO,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        total = 0
        for partition in range(PARTITIONS):
            total += await consumer.committed(TopicPartition(topic, partition)) or 0
        return total
    finally:
        await consumer.stop()


async def wait_committed(
    bootstrap: str, group: str, topic: str, expected: int, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while await committed_total(bootstrap, group, topic) < expected:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"group {group} did not commit {expected} offsets in {timeout_s} s"
            )
        await asyncio.sleep(0.5)


async def read_committed_output(bootstrap: str, topic: str) -> dict[str, list[tuple]]:
    """Anomalies per series, in order, as a read_committed consumer sees them."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    by_series: dict[str, list[tuple]] = {}
    try:
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                for record in records:
                    value = json.loads(record.value)
                    by_series.setdefault(value["series"], []).append(
                        (
                            value["timestamp"],
                            value["value"],
                            value["score"],
                            value["window_score"],
                        )
                    )
    finally:
        await consumer.stop()
    return by_series


async def make_topics(factory) -> dict[str, str]:
    return {
        "input": await factory(partitions=PARTITIONS, prefix="points"),
        "output": await factory(partitions=PARTITIONS, prefix="anomalies"),
        "dlq": await factory(prefix="dlq"),
    }


async def produce_slowly(
    bootstrap: str, topic: str, messages, chunk: int, pause_s: float
) -> None:
    """Produce ``messages`` in chunks with pauses, as a live stream arrives."""
    for start in range(0, len(messages), chunk):
        await produce(bootstrap, topic, messages[start : start + chunk])
        await asyncio.sleep(pause_s)


async def run_to_end(
    env: dict[str, str], bootstrap: str, topics, expected: int, log: Path
) -> None:
    process = start_consumer(env, log)
    try:
        await wait_committed(
            bootstrap, env["ANOMALYBERT_GROUP_ID"], topics["input"], expected, 240
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


async def run_reference(
    bootstrap: str, factory, model: Path, messages, log: Path
) -> dict[str, str]:
    """Process ``messages`` without interruption; return the topics it used."""
    topics = await make_topics(factory)
    await produce(bootstrap, topics["input"], messages)
    env = consumer_env(bootstrap, topics, "ref-" + topics["input"], model, free_port())
    await run_to_end(env, bootstrap, topics, len(messages), log)
    return topics


async def test_kill_nine_gives_same_output(
    kafka_bootstrap, kafka_topic_factory, model_path, tmp_path
):
    messages = workload(n_series=60, points_per_series=250)
    reference_topics = await run_reference(
        kafka_bootstrap,
        kafka_topic_factory,
        model_path,
        messages,
        tmp_path / "reference.log",
    )
    crash_topics = await make_topics(kafka_topic_factory)

    crash_env = consumer_env(
        kafka_bootstrap,
        crash_topics,
        "crash-" + crash_topics["input"],
        model_path,
        free_port(),
    )
    # The points arrive over about 40 s while the consumer is killed, so
    # each kill lands in the middle of the stream.
    producing = asyncio.create_task(
        produce_slowly(
            kafka_bootstrap, crash_topics["input"], messages, chunk=300, pause_s=0.8
        )
    )
    group = crash_env["ANOMALYBERT_GROUP_ID"]
    rng = random.Random(5)
    committed_at_kill = []
    for _ in range(3):
        process = start_consumer(crash_env, tmp_path / "crash.log")
        deadline = time.monotonic() + 60
        while scrape_ready(crash_env) != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(rng.uniform(2.0, 5.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            committed_at_kill.append(
                await committed_total(kafka_bootstrap, group, crash_topics["input"])
            )
    await producing
    await run_to_end(
        crash_env, kafka_bootstrap, crash_topics, len(messages), tmp_path / "crash.log"
    )

    reference = await read_committed_output(kafka_bootstrap, reference_topics["output"])
    crashed = await read_committed_output(kafka_bootstrap, crash_topics["output"])
    log_text = (tmp_path / "crash.log").read_text()
    assert len(committed_at_kill) == 3
    # Every kill came before the end of the stream, and the consumer made
    # progress between the kills.
    assert max(committed_at_kill) < len(messages)
    assert committed_at_kill[-1] > 0
    assert "restored" in log_text
    assert sum(len(v) for v in reference.values()) > 20
    assert sorted(crashed) == sorted(reference)
    for series in reference:
        assert crashed[series] == reference[series], series


def scrape_ready(env: dict[str, str]) -> int:
    try:
        return scrape(int(env["ANOMALYBERT_METRICS_PORT"]), "/readyz")[0]
    except OSError:
        return 0


async def test_second_consumer_joins_and_leaves(
    kafka_bootstrap, kafka_topic_factory, model_path, tmp_path
):
    messages = workload(n_series=45, points_per_series=200, seed=3)
    reference_topics = await run_reference(
        kafka_bootstrap,
        kafka_topic_factory,
        model_path,
        messages,
        tmp_path / "reference.log",
    )
    shared_topics = await make_topics(kafka_topic_factory)

    group = "pair-" + shared_topics["input"]
    first_env = consumer_env(
        kafka_bootstrap, shared_topics, group, model_path, free_port()
    )
    second_env = consumer_env(
        kafka_bootstrap, shared_topics, group, model_path, free_port()
    )
    # The points arrive over about 25 s, so the second consumer joins and
    # leaves while the stream goes on.
    producing = asyncio.create_task(
        produce_slowly(
            kafka_bootstrap, shared_topics["input"], messages, chunk=300, pause_s=0.8
        )
    )
    first = start_consumer(first_env, tmp_path / "first.log")
    try:
        await asyncio.sleep(3)
        second = start_consumer(second_env, tmp_path / "second.log")
        await asyncio.sleep(8)
        committed_at_leave = await committed_total(
            kafka_bootstrap, group, shared_topics["input"]
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
        await producing
        await wait_committed(
            kafka_bootstrap, group, shared_topics["input"], len(messages), 240
        )
    finally:
        producing.cancel()
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    assert 0 < committed_at_leave < len(messages)

    reference = await read_committed_output(kafka_bootstrap, reference_topics["output"])
    shared = await read_committed_output(kafka_bootstrap, shared_topics["output"])
    assert "partitions assigned" in (tmp_path / "second.log").read_text()
    assert sorted(shared) == sorted(reference)
    for series in reference:
        assert shared[series] == reference[series], series


async def test_paused_consumer_is_fenced(
    kafka_bootstrap, kafka_topic_factory, model_path, tmp_path
):
    """A consumer paused past its session (a zombie) is fenced: output stays exactly once."""
    messages = workload(n_series=45, points_per_series=200, seed=13)
    reference_topics = await run_reference(
        kafka_bootstrap,
        kafka_topic_factory,
        model_path,
        messages,
        tmp_path / "reference.log",
    )
    zombie_topics = await make_topics(kafka_topic_factory)

    group = "zombie-" + zombie_topics["input"]
    producing = asyncio.create_task(
        produce_slowly(
            kafka_bootstrap, zombie_topics["input"], messages, chunk=300, pause_s=0.8
        )
    )
    first_env = consumer_env(
        kafka_bootstrap, zombie_topics, group, model_path, free_port()
    )
    second_env = consumer_env(
        kafka_bootstrap, zombie_topics, group, model_path, free_port()
    )
    first = start_consumer(first_env, tmp_path / "first.log")
    second = None
    try:
        deadline = time.monotonic() + 60
        while scrape_ready(first_env) != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        # SIGSTOP freezes the first consumer mid-stream, with its heartbeats,
        # so the group drops it and gives its partitions to the second.
        first.send_signal(signal.SIGSTOP)
        committed_at_pause = await committed_total(
            kafka_bootstrap, group, zombie_topics["input"]
        )
        second = start_consumer(second_env, tmp_path / "second.log")
        await wait_committed(
            kafka_bootstrap,
            group,
            zombie_topics["input"],
            committed_at_pause + 1000,
            120,
        )
        # The zombie wakes up with a batch in hand and stale producers.
        first.send_signal(signal.SIGCONT)
        await producing
        await wait_committed(
            kafka_bootstrap, group, zombie_topics["input"], len(messages), 240
        )
    finally:
        producing.cancel()
        first.send_signal(signal.SIGCONT)
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    assert 0 < committed_at_pause < len(messages)

    reference = await read_committed_output(kafka_bootstrap, reference_topics["output"])
    zombie = await read_committed_output(kafka_bootstrap, zombie_topics["output"])
    assert "partitions assigned" in (tmp_path / "second.log").read_text()
    assert "Traceback" not in (tmp_path / "first.log").read_text()
    assert sorted(zombie) == sorted(reference)
    for series in reference:
        assert zombie[series] == reference[series], series


async def test_broker_restart_keeps_exactly_once(
    kafka_bootstrap, kafka_topic_factory, model_path, tmp_path
):
    from private_broker import PrivateBroker

    messages = workload(n_series=45, points_per_series=200, seed=9)
    reference_topics = await run_reference(
        kafka_bootstrap,
        kafka_topic_factory,
        model_path,
        messages,
        tmp_path / "reference.log",
    )

    broker = PrivateBroker(tmp_path / "broker")
    await asyncio.to_thread(broker.start)
    try:
        topics = await create_topics(
            PARTITIONS, PARTITIONS, bootstrap_servers=broker.bootstrap
        )
        await asyncio.sleep(1)
        await produce(broker.bootstrap, topics["input"], messages)
        env = consumer_env(
            broker.bootstrap,
            topics,
            "restart-" + topics["input"],
            model_path,
            free_port(),
        )
        env["ANOMALYBERT_MAX_BATCH_POINTS"] = "100"
        process = start_consumer(env, tmp_path / "restart.log")
        try:
            deadline = time.monotonic() + 60
            while scrape_ready(env) != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(3)
            await asyncio.to_thread(broker.start)
            await wait_committed(
                broker.bootstrap,
                env["ANOMALYBERT_GROUP_ID"],
                topics["input"],
                len(messages),
                240,
            )
            assert process.poll() is None, (
                "the consumer exited while the broker was down"
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        reference = await read_committed_output(
            kafka_bootstrap, reference_topics["output"]
        )
        restarted = await read_committed_output(broker.bootstrap, topics["output"])
    finally:
        await asyncio.to_thread(broker.stop)
    assert sum(len(v) for v in reference.values()) > 20
    assert sorted(restarted) == sorted(reference)
    for series in reference:
        assert restarted[series] == reference[series], series
