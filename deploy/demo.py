"""End-to-end demo: local broker, consumer, one NAB file replayed, anomalies printed.

Run it with ``make demo`` (or ``.venv/bin/python deploy/demo.py``). It starts the
local Kafka broker unless one is already running, starts the consumer as a
subprocess, replays the file, prints the anomalies that arrive on the output
topic and a few lines of ``/metrics``, then stops what it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
BROKER_SCRIPT = REPO / "deploy" / "kafka" / "local-kafka.sh"
DEFAULT_FILE = REPO / "deploy" / "data" / "ambient_temperature_system_failure.csv"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def broker(command: str, port: int) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LOCAL_KAFKA_PORT=str(port))
    return subprocess.run(
        ["bash", str(BROKER_SCRIPT), command], env=env, text=True, capture_output=True
    )


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}{path}", timeout=2
        ) as response:
            return response.status, response.read().decode()
    except OSError as exc:
        status = getattr(exc, "code", 0)
        return int(status or 0), ""


def metric_total(text: str, name: str) -> float:
    """Sum a metric over all its label sets."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{")
    )


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=1, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def read_anomalies(
    bootstrap: str, topic: str, timeout_seconds: float
) -> list[dict]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict] = []
    try:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                break
            for records in batch.values():
                found.extend(json.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input", type=Path, default=DEFAULT_FILE, help="timestamp,value CSV to replay"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("LOCAL_KAFKA_PORT", "9092")),
        help="broker port (default 9092)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds to wait for the consumer to score every point",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from stream.csvfile import read_points
    from stream.replay import replay_file

    rows = sum(1 for _ in read_points(args.input))
    bootstrap = f"127.0.0.1:{args.port}"
    started_broker = broker("status", args.port).returncode != 0
    if started_broker:
        print(f"starting the local Kafka broker on {bootstrap} ...", flush=True)
        result = broker("start", args.port)
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
            return 1
    run_id = uuid.uuid4().hex[:8]
    points_topic, anomalies_topic, dlq_topic = (
        f"demo-{run_id}-{n}" for n in ("points", "anomalies", "dlq")
    )
    metrics_port = free_port()
    consumer_process = None
    try:
        asyncio.run(
            create_topics(bootstrap, [points_topic, anomalies_topic, dlq_topic])
        )
        env = dict(
            os.environ,
            ANOMALYBERT_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            ANOMALYBERT_INPUT_TOPIC=points_topic,
            ANOMALYBERT_OUTPUT_TOPIC=anomalies_topic,
            ANOMALYBERT_DLQ_TOPIC=dlq_topic,
            ANOMALYBERT_GROUP_ID=f"demo-{run_id}",
            ANOMALYBERT_METRICS_PORT=str(metrics_port),
        )
        log_path = REPO / ".cache" / "demo-consumer.log"
        log_path.parent.mkdir(exist_ok=True)
        log_file = log_path.open("w")
        print(
            f"starting the consumer (metrics on 127.0.0.1:{metrics_port}, log in {log_path.relative_to(REPO)}) ...",
            flush=True,
        )
        consumer_process = subprocess.Popen(
            [sys.executable, "-m", "stream.consumer"],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while scrape(metrics_port, "/readyz")[0] != 200:
            if consumer_process.poll() is not None or time.monotonic() > deadline:
                print("the consumer did not become ready", file=sys.stderr)
                return 1
            time.sleep(0.5)

        print(f"replaying {rows} points of {args.input.name} ...", flush=True)
        asyncio.run(replay_file(args.input, args.input.stem, points_topic, bootstrap))
        deadline = time.monotonic() + args.timeout
        while True:
            text = scrape(metrics_port)[1]
            # A point is done once it was scored or sent to the dead-letter topic.
            consumed = metric_value(
                text, "anomalybert_points_scored_total"
            ) + metric_total(text, "anomalybert_points_invalid_total")
            if consumed >= rows or time.monotonic() > deadline:
                break
            time.sleep(0.5)

        anomalies = asyncio.run(read_anomalies(bootstrap, anomalies_topic, 10))
        print(f"\n{len(anomalies)} anomalies published to {anomalies_topic}:")
        for record in anomalies:
            print(
                f"  {record['timestamp']}  value {record['value']:>10.4g}  score {record['score']:.3f}"
            )
        text = scrape(metrics_port)[1]
        print("\nfrom /metrics:")
        for line in text.splitlines():
            if line.startswith(
                (
                    "anomalybert_points_consumed_total",
                    "anomalybert_points_scored_total",
                    "anomalybert_anomalies_published_total",
                    "anomalybert_active_series",
                    "anomalybert_inference_seconds_count",
                )
            ):
                print("  " + line)
        return 0 if consumed >= rows else 1
    finally:
        if consumer_process is not None and consumer_process.poll() is None:
            consumer_process.send_signal(signal.SIGTERM)
            code = consumer_process.wait(timeout=30)
            print(f"\nconsumer stopped (exit code {code})")
        if started_broker:
            broker("stop", args.port)
            print("local Kafka broker stopped")


if __name__ == "__main__":
    sys.exit(main())
