"""Soak test of the consumer under steady load: ``python -m benchmarks.soak``.

Starts the broker of ``deploy/kafka/local-kafka.sh`` on 127.0.0.1 (port 29292
unless ``--port``, with its own data folder), unless one already runs there,
and stops it at the end if it started it. Then it starts one
``python -m stream.consumer`` process with the default model and settings and
produces ``--rate`` points per second of ``--series`` series for ``--minutes``
minutes (default 10). Every ``--interval`` seconds it records the consumer's
resident memory (VmRSS) and its lag: the input records not yet committed by the
consumer group.

After the run it fits a line to the samples taken after ``--warmup`` seconds
and prints the slopes per minute. Memory counts as flat when it grows by less
than ``--max-rss-growth`` MiB per minute, and lag as flat when it grows by less
than one second of input (``--rate`` records) per minute. Producer, broker and
consumer share this machine, so the load of other processes shows in the lag.

Prints a Markdown section for docs/benchmarks.md on stdout and progress on
stderr. The exit status is 0 when both are flat, 1 when one grows, and 2 on
a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "deploy" / "kafka" / "local-kafka.sh"
# local-kafka.sh start logs this on stderr only when it launches a new broker.
LAUNCH_MESSAGE = "local-kafka: starting Kafka"
START_EPOCH_SECONDS = 1_577_836_800.0  # 2020-01-01 UTC
PRODUCE_TICK_SECONDS = 0.1
CONSUMER_START_TIMEOUT_SECONDS = 120


@dataclass
class Sample:
    seconds: float
    rss_mib: float
    lag: int
    produced: int
    committed: int


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def broker(command: str, port: int) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LOCAL_KAFKA_PORT": str(port)}
    return subprocess.run(
        [str(SCRIPT), command],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def start_broker(port: int) -> tuple[str, bool]:
    """Start the local broker on ``port`` (or find it running); return address, launched."""
    result = broker("start", port)
    if result.returncode != 0:
        raise RuntimeError(
            f"{SCRIPT} start on port {port} failed with exit status "
            f"{result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout.strip().splitlines()[-1], LAUNCH_MESSAGE in result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def resident_mib(pid: int) -> float:
    """Return VmRSS of process ``pid`` in MiB, from /proc (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


def consumer_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/readyz", timeout=2
        ) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class PointSource:
    """Points of ``series`` series in turn, one minute apart within a series."""

    def __init__(self, series: int, seed: int = 0) -> None:
        self.keys = [f"soak-{index}".encode() for index in range(series)]
        rng = np.random.default_rng(seed)
        self._level = rng.uniform(0, 100, series)
        self._phase = rng.uniform(0, 2 * np.pi, series)
        self._rng = rng
        self.position = 0

    def next_messages(self, size: int) -> list[tuple[bytes, bytes]]:
        k = np.arange(self.position, self.position + size)
        self.position += size
        series = k % len(self.keys)
        step = k // len(self.keys)
        values = (
            self._level[series]
            + 10 * np.sin(2 * np.pi * step / 1440 + self._phase[series])
            + self._rng.normal(0, 1, size)
        )
        timestamps = START_EPOCH_SECONDS + 60.0 * step
        return [
            (
                self.keys[s],
                json.dumps({"timestamp": t, "value": round(v, 4)}).encode(),
            )
            for s, t, v in zip(
                series.tolist(), timestamps.tolist(), values.tolist(), strict=True
            )
        ]


async def produce_steadily(
    bootstrap: str, topic: str, rate: int, source: PointSource, stop: asyncio.Event
) -> None:
    """Produce ``rate`` points per second in ticks of PRODUCE_TICK_SECONDS."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    started = time.monotonic()
    try:
        while not stop.is_set():
            due = int(rate * (time.monotonic() - started)) - source.position
            if due > 0:
                pending = [
                    await producer.send(topic, value=value, key=key)
                    for key, value in source.next_messages(due)
                ]
                await asyncio.gather(*pending)
            await asyncio.sleep(PRODUCE_TICK_SECONDS)
    finally:
        await producer.stop()


async def lag_of(
    admin: AIOKafkaAdminClient,
    reader: AIOKafkaConsumer,
    group: str,
    partitions: list[TopicPartition],
) -> tuple[int, int]:
    """Return (records not committed, records committed) of ``group``."""
    ends = await reader.end_offsets(partitions)
    offsets = await admin.list_consumer_group_offsets(group)
    committed = sum(max(0, offsets[tp].offset) for tp in partitions if tp in offsets)
    return sum(ends.values()) - committed, committed


def slope_per_minute(samples: list[Sample], attribute: str) -> float:
    minutes = np.array([s.seconds / 60 for s in samples])
    values = np.array([getattr(s, attribute) for s in samples], dtype=float)
    if len(samples) < 2 or np.ptp(minutes) == 0:
        return 0.0
    return float(np.polyfit(minutes, values, 1)[0])


async def soak(args: argparse.Namespace, bootstrap: str, work: Path) -> list[Sample]:
    run_id = uuid.uuid4().hex[:8]
    topics = {
        "input": f"soak-points-{run_id}",
        "output": f"soak-anomalies-{run_id}",
        "dlq": f"soak-dlq-{run_id}",
    }
    group = f"soak-{run_id}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await reader.start()
    consumer = None
    stop = asyncio.Event()
    producing = None
    try:
        await admin.create_topics(
            [
                NewTopic(topics["input"], args.partitions, 1),
                NewTopic(topics["output"], 1, 1),
                NewTopic(topics["dlq"], 1, 1),
            ]
        )
        partitions = [
            TopicPartition(topics["input"], p) for p in range(args.partitions)
        ]
        metrics_port = free_port()
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ANOMALYBERT_")},
            "ANOMALYBERT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ANOMALYBERT_INPUT_TOPIC": topics["input"],
            "ANOMALYBERT_OUTPUT_TOPIC": topics["output"],
            "ANOMALYBERT_DLQ_TOPIC": topics["dlq"],
            "ANOMALYBERT_GROUP_ID": group,
            "ANOMALYBERT_METRICS_PORT": str(metrics_port),
            "ANOMALYBERT_LOG_LEVEL": "WARNING",
        }
        log_path = work / "consumer.log"
        with log_path.open("w") as log_file:
            consumer = subprocess.Popen(
                [sys.executable, "-m", "stream.consumer"],
                cwd=REPO,
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + CONSUMER_START_TIMEOUT_SECONDS
        while not consumer_ready(metrics_port):
            if consumer.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the consumer did not become ready; its log ends with:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            await asyncio.sleep(0.5)
        log(f"consumer pid {consumer.pid} ready; producing {args.rate} points/s")

        source = PointSource(args.series)
        producing = asyncio.create_task(
            produce_steadily(bootstrap, topics["input"], args.rate, source, stop)
        )
        samples: list[Sample] = []
        started = time.monotonic()
        duration = args.minutes * 60
        while time.monotonic() - started < duration:
            await asyncio.sleep(args.interval)
            if consumer.poll() is not None:
                raise RuntimeError(
                    f"the consumer exited with status {consumer.returncode}; its "
                    "log ends with:\n" + log_path.read_text(errors="replace")[-3000:]
                )
            if producing.done():
                producing.result()
            lag, committed = await lag_of(admin, reader, group, partitions)
            sample = Sample(
                seconds=time.monotonic() - started,
                rss_mib=resident_mib(consumer.pid),
                lag=lag,
                produced=source.position,
                committed=committed,
            )
            samples.append(sample)
            log(
                f"{sample.seconds:6.0f} s  RSS {sample.rss_mib:7.1f} MiB  lag {lag:7d}  "
                f"produced {sample.produced:9d}  committed {committed:9d}"
            )
        return samples
    finally:
        stop.set()
        if producing is not None:
            await asyncio.gather(producing, return_exceptions=True)
        if consumer is not None and consumer.poll() is None:
            consumer.send_signal(signal.SIGTERM)
            try:
                consumer.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log(f"consumer pid {consumer.pid} ignored SIGTERM; killing it")
                consumer.kill()
                consumer.wait()
        try:
            await admin.delete_topics(list(topics.values()))
        finally:
            await reader.stop()
            await admin.close()


def render(
    args: argparse.Namespace, argv: list[str], samples: list[Sample]
) -> tuple[str, bool]:
    """Return the Markdown section and whether memory and lag stayed flat."""
    import onnxruntime

    steady = [s for s in samples if s.seconds >= args.warmup]
    rss_slope = slope_per_minute(steady, "rss_mib")
    lag_slope = slope_per_minute(steady, "lag")
    rss_flat = abs(rss_slope) < args.max_rss_growth
    # Lag that grows by less than one second of input per minute is flat.
    lag_flat = lag_slope < args.rate
    lags = [s.lag for s in steady] or [0]
    rss = [s.rss_mib for s in steady] or [0.0]
    command = "python -m benchmarks.soak" + (" " + " ".join(argv) if argv else "")
    try:
        load = "{:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())
    except OSError:
        load = "unknown"
    lines = [
        "### Soak",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"ONNX Runtime {onnxruntime.__version__}. Load average (1 / 5 / 15 min) at "
        f"the end: {load}. Broker, producer and consumer share the machine.",
        "",
        f"Load: {args.rate} points/s of {args.series} series for "
        f"{args.minutes:g} min, input partitions: {args.partitions}, one consumer "
        f"with the default settings. Samples every {args.interval:g} s; the "
        f"slopes are fitted to the {len(steady)} samples after the first "
        f"{args.warmup:g} s.",
        "",
        "| | first | last | min | max | slope per minute | flat |",
        "|---|---|---|---|---|---|---|",
        f"| consumer RSS (MiB) | {rss[0]:.1f} | {rss[-1]:.1f} | {min(rss):.1f} | "
        f"{max(rss):.1f} | {rss_slope:+.2f} MiB | "
        f"{'yes' if rss_flat else 'no'} (limit {args.max_rss_growth:g} MiB/min) |",
        f"| lag (records) | {lags[0]} | {lags[-1]} | {min(lags)} | {max(lags)} | "
        f"{lag_slope:+.0f} records | {'yes' if lag_flat else 'no'} "
        f"(limit {args.rate} records/min) |",
        "",
        f"Points produced: {samples[-1].produced if samples else 0}; committed: "
        f"{samples[-1].committed if samples else 0}.",
    ]
    return "\n".join(lines) + "\n", rss_flat and lag_flat


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Steady load through a local broker; checks that the "
        "consumer's memory and lag stay flat.",
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="run time in minutes (default 10)"
    )
    parser.add_argument(
        "--rate", type=int, default=1000, help="points per second (default 1000)"
    )
    parser.add_argument("--series", type=int, default=500, help="series (default 500)")
    parser.add_argument(
        "--partitions", type=int, default=1, help="input partitions (default 1)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="seconds between samples (default 5)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="seconds of samples left out of the slopes (default 60)",
    )
    parser.add_argument(
        "--max-rss-growth",
        type=float,
        default=1.0,
        help="MiB per minute of RSS growth still counted as flat (default 1)",
    )
    parser.add_argument(
        "--port", type=int, default=29292, help="broker port (default 29292)"
    )
    args = parser.parse_args(argv)
    for name in ("minutes", "rate", "series", "partitions", "interval"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} {getattr(args, name)} must be positive")
    if args.warmup >= args.minutes * 60:
        parser.error(
            f"--warmup {args.warmup:g} s leaves no samples in a run of "
            f"{args.minutes:g} min; lower it"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    bootstrap, launched = start_broker(args.port)
    log(f"broker {bootstrap} ({'started' if launched else 'already running'})")
    try:
        with tempfile.TemporaryDirectory(prefix="soak-") as work:
            samples = asyncio.run(soak(args, bootstrap, Path(work)))
    finally:
        if launched:
            result = broker("stop", args.port)
            if result.returncode != 0:
                log(f"stopping the broker failed: {result.stderr.strip()}")
    text, flat = render(args, argv, samples)
    print(text)
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
