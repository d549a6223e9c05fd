"""Helpers that run the consumer in a test, in-process or as ``python -m stream.consumer``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from model_factory import write_model

from stream.consumer import AnomalyConsumer
from stream.detect import detect
from stream.model import load_model
from stream.points import format_timestamp
from stream.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_spike_model(folder: Path) -> Path:
    """Write a model whose scores follow the inputs, so that spikes score high.

    Calibration is off, so the expected anomalies are easy to reason about.
    """
    return write_model(
        folder,
        position_scores=np.full(16, 0.2),
        input_gain=0.1,
        threshold=0.45,
        lag_points=2,
    )


def settings_for(
    bootstrap: str, topics: dict[str, str], model_path: Path, **extra: object
) -> Settings:
    """Settings of an in-process consumer on ``topics``, with its own group."""
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        input_topic=topics["input"],
        output_topic=topics["output"],
        dlq_topic=topics["dlq"],
        group_id=f"group-{topics['input']}",
        model_path=model_path,
        metrics_port=0,
        poll_timeout_ms=50,
        **extra,
    )


async def create_topics(
    input_partitions: int = 1, other_partitions: int = 1, **client_options: object
) -> dict[str, str]:
    """Create fresh input, output and dead-letter topics; return their names by kind.

    ``client_options`` go to the admin client (``bootstrap_servers`` and any
    security settings).
    """
    suffix = os.urandom(6).hex()
    topics = {
        "input": f"points-{suffix}",
        "output": f"anomalies-{suffix}",
        "dlq": f"dlq-{suffix}",
    }
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=(
                        input_partitions if kind == "input" else other_partitions
                    ),
                    replication_factor=1,
                )
                for kind, name in topics.items()
            ]
        )
    finally:
        await admin.close()
    return topics


def consumer_env(**settings: object) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ANOMALYBERT_")
    }
    env["PYTHONPATH"] = str(REPO)
    for name, value in settings.items():
        env[f"ANOMALYBERT_{name.upper()}"] = str(value)
    return env


def run_consumer_process(
    timeout_s: float = 60, **settings: object
) -> tuple[int, str, float]:
    """Run ``python -m stream.consumer`` to its exit; return status, output, seconds."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stream.consumer"],
        cwd=REPO,
        env=consumer_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " ERROR " in line]


def consumed(consumer: AnomalyConsumer) -> float:
    return consumer.metrics.points_consumed._value.get()


def expected_anomalies(
    model_path: Path, values: dict[str, np.ndarray], start: float = 1_400_000_000.0
) -> set[tuple[str, str]]:
    """(series, timestamp) of every anomaly the consumer must publish."""
    model = load_model(model_path)
    expected = set()
    for name, series in values.items():
        times = start + 300 * np.arange(len(series))
        for point in detect(model, times, series, series=name).points:
            if point.publish and point.input_index >= 0:
                expected.add((name, format_timestamp(point.timestamp)))
    return expected


def published(records) -> list[tuple[str, str]]:
    return [(r.key.decode(), json.loads(r.value)["timestamp"]) for r in records]


class RunningConsumer:
    """An AnomalyConsumer whose start and run go on in background tasks."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = AnomalyConsumer(settings, load_model(settings.model_path))
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> AnomalyConsumer:
        async def start_and_run() -> None:
            await self.consumer.start()
            await self.consumer.run()

        self.task = asyncio.create_task(start_and_run())
        return self.consumer

    async def wait(
        self, predicate, timeout_s: float = 60, description: str = "the consumer"
    ):
        """Wait for ``predicate``; raise at once if the consumer task failed."""
        assert self.task is not None
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.task.done():
                self.task.result()
                raise AssertionError(
                    f"the consumer stopped while waiting for {description}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s:.0f} s waiting for {description}"
                )
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.task is not None
        self.consumer.request_stop()
        try:
            if exc_info[0] is None:
                await asyncio.wait_for(self.task, 60)
            else:
                self.task.cancel()
                await asyncio.gather(self.task, return_exceptions=True)
        finally:
            await self.consumer.stop()
