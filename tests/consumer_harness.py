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
