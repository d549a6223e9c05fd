"""End-to-end speed through a local Kafka broker: ``python -m benchmarks.kafka_e2e``.

Starts the broker of ``deploy/kafka/local-kafka.sh`` on 127.0.0.1 (its own port,
29192 unless ``--port``), unless one already runs there, and stops it at the end
if it started it. Producer, broker and consumer share this machine.

Throughput: for each scenario a fresh input topic with ``--partitions``
partitions is filled with ``--points`` points of ``--series`` series, then
``python -m stream.consumer`` processes are started in one consumer group. The
group's committed offsets are polled every 50 ms. The sustained rate is the
number of points committed after the first commit, divided by the time from the
first commit to the last. The broker gets ``group.initial.rebalance.delay.ms=3000``
(Kafka's default; the test broker uses 0), so that consumers started together
join the group in one rebalance.

Latency: one consumer with the default settings runs on empty topics, and points
are then produced at half the sustained rate of that configuration measured in
the same run. A point's latency is the time from its produce timestamp to the
first poll (every 20 ms) of the group's committed offsets that covers it. With
at_least_once the consumer commits a batch only after scoring it and after the
brokers acknowledged its outputs, so this is an upper bound of the time from
produce to score known. Output records would give the score time itself, but
they are rare (only anomalies are published, and the calibration publishes none
in a series' first points), and publishing every point would change the load.

Prints a Markdown section; ``--doc PATH`` also writes it into the ``speed``
section of PATH.
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
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CoordinatorNotAvailableError,
    GroupCoordinatorNotAvailableError,
    for_code,
)

from benchmarks import help_description
from benchmarks.common import (
    PointStream,
    format_rate,
    format_ratio,
    machine_lines,
    markdown_table,
    median,
    print_flush,
    python_command,
    repository_root,
    write_speed_part,
)

DEFAULT_PORT = 29192
T = TypeVar("T")
SCRIPT = repository_root() / "deploy" / "kafka" / "local-kafka.sh"
# local-kafka.sh start logs this on stderr only when it launches a new broker.
LAUNCH_MESSAGE = "local-kafka: starting Kafka"
BROKER_EXTRA_CONFIG = "group.initial.rebalance.delay.ms=3000\n"
COMMIT_POLL_SECONDS = 0.05
LATENCY_POLL_SECONDS = 0.02
CONSUMER_STOP_SECONDS = 60.0
TARGET_POINTS_PER_SECOND = 15_000
GOAL_POINTS_PER_SECOND = 30_000
TARGET_P99_SECONDS = 0.1


@dataclass(frozen=True)
class Scenario:
    """One consumer configuration whose throughput is measured."""

    key: str
    label: str
    guarantee: str = "at_least_once"
    changelog: bool = True
    consumers: int = 1
    environment: tuple[tuple[str, str], ...] = ()


SCENARIOS = (
    Scenario("alo-off", "at_least_once, changelog off", changelog=False),
    Scenario("alo-on", "at_least_once, changelog on (the defaults)"),
    Scenario("eos", "exactly_once (changelog on)", guarantee="exactly_once"),
    Scenario("alo-on-2", "at_least_once, changelog on, 2 consumers", consumers=2),
    Scenario(
        "alo-on-s2",
        "at_least_once, changelog on, 2 ONNX sessions",
        environment=(("ANOMALYBERT_INFERENCE_SESSIONS", "2"),),
    ),
    Scenario(
        "alo-on-k4",
        "at_least_once, changelog on, stride 4",
        environment=(("ANOMALYBERT_STRIDE", "4"),),
    ),
    Scenario(
        "alo-on-k16",
        "at_least_once, changelog on, stride 16",
        environment=(("ANOMALYBERT_STRIDE", "16"),),
    ),
)
# The latency run uses this scenario's settings and half its sustained rate.
LATENCY_SCENARIO = "alo-on"


@dataclass
class ThroughputRun:
    rate: float
    seconds: float
    points: int
    assignments: int


@dataclass
class LatencyRun:
    rate: float
    produced: int
    # Seconds from produce to the offset commit that covers the point.
    committed: list[float] = field(default_factory=list)


# --- broker -----------------------------------------------------------------


def start_broker(port: int, config_file: Path) -> tuple[str, bool]:
    """Start the local broker on ``port``, or find it running.

    Returns the bootstrap address and whether this call launched the broker.
    """
    environment = {
        **os.environ,
        "LOCAL_KAFKA_PORT": str(port),
        "LOCAL_KAFKA_EXTRA_CONFIG": str(config_file),
    }
    result = subprocess.run(
        [str(SCRIPT), "start"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{SCRIPT} start failed with exit status {result.returncode}: "
            f"{result.stderr.strip()}"
        )
    return result.stdout.strip().splitlines()[-1], LAUNCH_MESSAGE in result.stderr


def stop_broker(port: int) -> None:
    environment = {**os.environ, "LOCAL_KAFKA_PORT": str(port)}
    result = subprocess.run(
        [str(SCRIPT), "stop"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if result.returncode != 0:
        print_flush(f"stopping the broker failed: {result.stderr.strip()}")


async def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create the topics (name: partitions) and wait for a leader of every partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, n, replication_factor=1) for name, n in topics.items()]
        )
        for entry in response.topic_errors:
            if entry[1] != 0:
                raise for_code(entry[1])(f"creating topic {entry[0]} failed")
        async with asyncio.timeout(60):
            for name, partitions in topics.items():
                while True:
                    (description,) = await admin.describe_topics([name])
                    leaders = [p for p in description["partitions"] if p["leader"] >= 0]
                    if description["error_code"] == 0 and len(leaders) == partitions:
                        break
                    await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (this run's topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


# --- producing --------------------------------------------------------------


def encode_points(stream: PointStream, size: int) -> list[tuple[bytes, bytes]]:
    """Return ``size`` (key, value) messages of the stream's next points."""
    series, timestamps, values = stream.next_arrays(size)
    names = [name.encode() for name in stream.names]
    return [
        (names[s], json.dumps({"timestamp": t, "value": round(v, 6)}).encode())
        for s, t, v in zip(
            series.tolist(), timestamps.tolist(), values.tolist(), strict=True
        )
    ]


async def preload(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]
) -> float:
    """Produce every message as fast as the broker takes them and return points/s."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=262_144
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send(topic, value=value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(messages) / (time.perf_counter() - started)


# --- consumer processes -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ConsumerProcess:
    process: subprocess.Popen
    metrics_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2
            ) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False


def start_consumer(
    bootstrap: str,
    topics: dict[str, str],
    group: str,
    scenario: Scenario,
    log_dir: Path,
    index: int,
    extra: dict[str, str] | None = None,
) -> ConsumerProcess:
    """Start ``python -m stream.consumer`` with the scenario's settings."""
    metrics_port = free_port()
    environment = {
        **os.environ,
        "ANOMALYBERT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ANOMALYBERT_INPUT_TOPIC": topics["input"],
        "ANOMALYBERT_OUTPUT_TOPIC": topics["output"],
        "ANOMALYBERT_DLQ_TOPIC": topics["dlq"],
        "ANOMALYBERT_GROUP_ID": group,
        "ANOMALYBERT_CLIENT_ID": f"{group}-{index}",
        "ANOMALYBERT_PROCESSING_GUARANTEE": scenario.guarantee,
        "ANOMALYBERT_STATE_CHANGELOG": "true" if scenario.changelog else "false",
        "ANOMALYBERT_METRICS_PORT": str(metrics_port),
        "ANOMALYBERT_MODEL_CHECK_SECONDS": "0",
        **dict(scenario.environment),
        **(extra or {}),
    }
    log_path = log_dir / f"{group}-{index}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream.consumer"],
            cwd=repository_root(),
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ConsumerProcess(process, metrics_port, log_path)


def stop_consumers(consumers: list[ConsumerProcess]) -> None:
    for consumer in consumers:
        if consumer.process.poll() is None:
            consumer.process.send_signal(signal.SIGTERM)
    for consumer in consumers:
        try:
            consumer.process.wait(timeout=CONSUMER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            print_flush(
                f"consumer pid {consumer.process.pid} ignored SIGTERM; killing it"
            )
            consumer.process.kill()
            consumer.process.wait()


def check_alive(consumers: list[ConsumerProcess]) -> None:
    for consumer in consumers:
        if consumer.process.poll() is not None:
            raise RuntimeError(
                f"consumer pid {consumer.process.pid} exited with status "
                f"{consumer.process.returncode}; its log ends with:\n"
                f"{consumer.log()[-3000:]}"
            )


async def committed_total(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except (GroupCoordinatorNotAvailableError, CoordinatorNotAvailableError):
        # A fresh broker creates __consumer_offsets when the first group joins.
        return 0
    return sum(
        meta.offset
        for tp, meta in offsets.items()
        if tp.topic == topic and meta.offset > 0
    )


# --- scenarios --------------------------------------------------------------


def topic_names(prefix: str) -> dict[str, str]:
    return {
        "input": f"{prefix}-points",
        "output": f"{prefix}-anomalies",
        "dlq": f"{prefix}-dlq",
    }


async def run_throughput(
    args: argparse.Namespace, bootstrap: str, scenario: Scenario, log_dir: Path
) -> ThroughputRun:
    """Pre-load a topic, start the consumers and time them from first to last commit."""
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    topics = topic_names(prefix)
    await create_topics(
        bootstrap,
        {topics["input"]: args.partitions, topics["output"]: 1, topics["dlq"]: 1},
    )
    stream = PointStream(args.series, seed=len(scenario.key))
    messages = encode_points(stream, args.points)
    produce_rate = await preload(bootstrap, topics["input"], messages)
    print_flush(
        f"  pre-loaded {len(messages):,} points at {produce_rate:,.0f} points/s"
    )

    group = f"{prefix}-group"
    consumers = [
        start_consumer(bootstrap, topics, group, scenario, log_dir, index)
        for index in range(scenario.consumers)
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + args.timeout
        first_time = None
        first_total = 0
        last_time = None
        while time.monotonic() < deadline:
            check_alive(consumers)
            total = await committed_total(admin, group, topics["input"])
            now = time.perf_counter()
            if first_time is None and total > 0:
                first_time, first_total = now, total
            if total >= args.points:
                last_time = now
                break
            await asyncio.sleep(COMMIT_POLL_SECONDS)
        if first_time is None or last_time is None:
            tails = "\n".join(c.log()[-2000:] for c in consumers)
            raise RuntimeError(
                f"scenario {scenario.label}: {total:,} of {args.points:,} points "
                f"committed after {args.timeout:.0f} s; the consumer logs end with:\n"
                f"{tails}"
            )
    finally:
        await admin.close()
        stop_consumers(consumers)
        await delete_topics(bootstrap, prefix)
    assignments = sum(c.log().count("partitions assigned:") for c in consumers)
    seconds = last_time - first_time
    points = args.points - first_total
    return ThroughputRun(points / seconds, seconds, points, assignments)


async def run_latency(
    args: argparse.Namespace, bootstrap: str, rate: float, log_dir: Path
) -> LatencyRun:
    """Produce at ``rate`` points/s into a running consumer and collect the latencies.

    A point's latency is the first poll of the group's committed offsets that
    covers the point, minus the point's produce timestamp.
    """
    scenario = next(s for s in SCENARIOS if s.key == LATENCY_SCENARIO)
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    topics = topic_names(prefix)
    await create_topics(
        bootstrap,
        {topics["input"]: args.partitions, topics["output"]: 1, topics["dlq"]: 1},
    )
    group = f"{prefix}-group"
    consumer = start_consumer(bootstrap, topics, group, scenario, log_dir, 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    sent: list[tuple[asyncio.Future, int]] = []
    # Polls of the committed offsets: (wall-clock ms, {partition: offset}).
    polls: list[tuple[int, dict[int, int]]] = []
    producing = True
    try:
        async with asyncio.timeout(args.timeout):
            while not consumer.ready():
                check_alive([consumer])
                await asyncio.sleep(0.2)
        # The restore of the (empty) changelog follows the assignment.
        await asyncio.sleep(2.0)
        await producer.start()
        await admin.start()
        stream = PointStream(args.series, seed=99)
        count = int(rate * (args.latency_warm_up + args.latency_seconds))

        async def produce() -> None:
            nonlocal producing
            started = time.monotonic()
            step = 20  # points sent together every 20 / rate seconds
            for first in range(0, count, step):
                delay = started + first / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                for key, value in encode_points(stream, min(step, count - first)):
                    stamp = int(time.time() * 1000)
                    future = await producer.send(
                        topics["input"], value=value, key=key, timestamp_ms=stamp
                    )
                    sent.append((future, stamp))
            producing = False

        async def poll() -> None:
            while True:
                offsets = await admin.list_consumer_group_offsets(group)
                now = int(time.time() * 1000)
                committed = {
                    tp.partition: meta.offset
                    for tp, meta in offsets.items()
                    if tp.topic == topics["input"]
                }
                polls.append((now, committed))
                if not producing and sum(committed.values()) >= count:
                    return
                check_alive([consumer])
                await asyncio.sleep(LATENCY_POLL_SECONDS)

        async with asyncio.timeout(
            args.latency_warm_up + args.latency_seconds + args.timeout
        ):
            await asyncio.gather(produce(), poll())
        metadata = await asyncio.gather(*(future for future, _ in sent))
    finally:
        await producer.stop()
        await admin.close()
        stop_consumers([consumer])
        await delete_topics(bootstrap, prefix)

    result = LatencyRun(rate=rate, produced=len(sent))
    measured_from = int(rate * args.latency_warm_up)
    times = np.array([t for t, _ in polls])
    partitions = {record.partition for record in metadata}
    committed = {
        partition: np.array([c.get(partition, -1) for _, c in polls])
        for partition in partitions
    }
    for index in range(measured_from, len(sent)):
        record, stamp = metadata[index], sent[index][1]
        # Committed offsets only grow, so bisection finds the first poll that
        # covers the record (its offset is below the committed next offset).
        first = int(
            np.searchsorted(committed[record.partition], record.offset, side="right")
        )
        result.committed.append((times[first] - stamp) / 1000)
    return result


# --- report -----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def render(
    args: argparse.Namespace,
    runs: dict[str, list[ThroughputRun]],
    latency: list[LatencyRun],
) -> str:
    lines = ["### End to end through Kafka", ""]
    lines += machine_lines(python_command("benchmarks.kafka_e2e", args.argv))
    lines += throughput_lines(args, runs)
    if latency:
        lines += latency_lines(args, latency)
    return "\n".join(lines)


def throughput_lines(
    args: argparse.Namespace, runs: dict[str, list[ThroughputRun]]
) -> list[str]:
    lines = [
        "",
        f"One broker (Kafka 4.4.0, local-kafka.sh), the load producer and the "
        f"consumer processes share the machine. Each run pre-loads {args.points:,} "
        f"points of {args.series:,} series into a topic with {args.partitions} "
        "partitions, then starts `python -m stream.consumer`. The rate is the "
        "number of points committed after the group's first commit, divided by "
        f"the time from first to last commit. Median of {args.repeats} runs per "
        "scenario, the scenarios in turn within each repeat.",
        "",
    ]
    baseline = median([r.rate for r in runs[LATENCY_SCENARIO]])
    rows = []
    for scenario in SCENARIOS:
        if scenario.key not in runs:
            continue
        results = runs[scenario.key]
        rate = median([r.rate for r in results])
        ratios = [
            r.rate / b.rate
            for r, b in zip(results, runs[LATENCY_SCENARIO], strict=True)
        ]
        rows.append(
            [
                scenario.label,
                format_rate(rate),
                f"{format_rate(min(r.rate for r in results))} – "
                f"{format_rate(max(r.rate for r in results))}",
                format_ratio(median(ratios)),
                f"{median([r.seconds for r in results]):.1f}",
                str(max(r.assignments for r in results)),
            ]
        )
    lines.append(
        markdown_table(
            [
                "scenario",
                "points/s (median)",
                "range",
                "vs defaults",
                "seconds",
                "assignments",
            ],
            rows,
        )
    )
    lines += [
        "",
        "vs defaults is the median of the per-repeat ratios to the at_least_once, "
        "changelog on run. assignments counts the `partitions assigned` log lines "
        "of all consumers of a run: more than one per consumer means a rebalance "
        "happened while the run was timed.",
        "",
    ]
    verdict = "met" if baseline >= TARGET_POINTS_PER_SECOND else "missed"
    best_key = max(runs, key=lambda key: median([r.rate for r in runs[key]]))
    best = median([r.rate for r in runs[best_key]])
    best_label = next(s.label for s in SCENARIOS if s.key == best_key)
    lines.append(
        f"Target: >= {TARGET_POINTS_PER_SECOND:,} points/s end to end (goal "
        f"{GOAL_POINTS_PER_SECOND:,}) with the defaults: {verdict}, "
        f"{format_rate(baseline)} points/s is "
        f"{baseline / TARGET_POINTS_PER_SECOND:.2f} of the target. The fastest "
        f"scenario ({best_label}) reaches {format_rate(best)} points/s, "
        f"{best / TARGET_POINTS_PER_SECOND:.2f} of the target."
    )
    return lines


def latency_lines(args: argparse.Namespace, latency: list[LatencyRun]) -> list[str]:
    by_rate: dict[float, list[LatencyRun]] = {}
    for run in latency:
        by_rate.setdefault(run.rate, []).append(run)
    rows = []
    for rate, runs in by_rate.items():
        committed = [x for run in runs for x in run.committed]
        rows.append(
            [
                format_rate(rate),
                f"{len(committed):,}",
                f"{percentile(committed, 50) * 1000:.0f}",
                f"{percentile(committed, 99) * 1000:.0f}",
                f"{max(committed) * 1000:.0f}",
            ]
        )
    first = [x for run in by_rate[latency[0].rate] for x in run.committed]
    p99 = percentile(first, 99)
    source = (
        "set by --latency-rate"
        if args.latency_rate
        else "fractions "
        + ", ".join(f"{f:g}" for f in args.latency_fractions)
        + " of the median sustained rate with the defaults"
    )
    return [
        "",
        f"Latency ({source}; same consumer settings), {args.latency_seconds:g} s "
        f"measured after {args.latency_warm_up:g} s of warm-up, "
        f"{args.latency_repeats} run(s) per rate. A point's latency runs from its "
        "produce timestamp to the first poll (every "
        f"{LATENCY_POLL_SECONDS * 1000:.0f} ms) of the group's committed offsets "
        "that covers it. With at_least_once the consumer commits a batch after "
        "its scores are computed and its outputs acknowledged, so this is an "
        "upper bound of produce to score known, at most one poll late.",
        "",
        markdown_table(
            ["points/s", "points", "p50 ms", "p99 ms", "max ms"],
            rows,
        ),
        "",
        f"Target: p99 < {TARGET_P99_SECONDS * 1000:.0f} ms at half the sustained "
        f"rate, judged at the first rate above ({format_rate(latency[0].rate)} "
        "points/s): "
        f"{'met' if p99 < TARGET_P99_SECONDS else 'missed'} "
        f"({p99 * 1000:.0f} ms, {p99 / TARGET_P99_SECONDS:.2f} of the limit).",
    ]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kafka_e2e", description=help_description(__doc__)
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"broker port on 127.0.0.1 (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--points",
        type=int,
        default=20_000,
        help="points per throughput run (default 20000)",
    )
    parser.add_argument(
        "--series",
        type=int,
        default=1_000,
        help="series the points belong to (default 1000)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=4,
        help="partitions of the input topic (default 4)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per scenario (default 3)"
    )
    parser.add_argument(
        "--scenarios",
        type=lambda text: text.split(","),
        default=[s.key for s in SCENARIOS],
        help="comma-separated scenarios to run: "
        + ", ".join(f"{s.key} ({s.label})" for s in SCENARIOS)
        + f"; {LATENCY_SCENARIO} always runs",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=20.0,
        help="measured seconds of a latency run (default 20)",
    )
    parser.add_argument(
        "--latency-warm-up",
        type=float,
        default=3.0,
        help="seconds produced before the latency measurement starts (default 3)",
    )
    parser.add_argument(
        "--latency-fractions",
        type=lambda text: [float(part) for part in text.split(",") if part],
        default=[0.5, 0.25],
        help="comma-separated fractions of the median sustained rate with the "
        "defaults at which latency is measured (default 0.5,0.25)",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="one rate in points/s for the latency runs, in place of the fractions",
    )
    parser.add_argument(
        "--latency-repeats",
        type=int,
        default=1,
        help="latency runs (default 1; 0 skips them)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds one run may take before it fails (default 600)",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="also write the section into this Markdown file",
    )
    args = parser.parse_args(argv)
    known = {s.key for s in SCENARIOS}
    unknown = [key for key in args.scenarios if key not in known]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {sorted(known)}")
    if LATENCY_SCENARIO not in args.scenarios:
        args.scenarios.append(LATENCY_SCENARIO)
    args.argv = argv
    return args


async def run(args: argparse.Namespace, bootstrap: str, log_dir: Path) -> str:
    runs: dict[str, list[ThroughputRun]] = {}
    for repeat in range(args.repeats):
        for scenario in SCENARIOS:
            if scenario.key not in args.scenarios:
                continue
            print_flush(f"repeat {repeat + 1} of {args.repeats}: {scenario.label}")
            result = await run_throughput(args, bootstrap, scenario, log_dir)
            print_flush(
                f"  {result.rate:,.0f} points/s over {result.seconds:.1f} s, "
                f"{result.assignments} assignment(s)"
            )
            runs.setdefault(scenario.key, []).append(result)
    latency: list[LatencyRun] = []
    sustained = median([r.rate for r in runs[LATENCY_SCENARIO]])
    rates = (
        [args.latency_rate]
        if args.latency_rate
        else [sustained * fraction for fraction in args.latency_fractions]
    )
    for rate in rates:
        for repeat in range(args.latency_repeats):
            print_flush(
                f"latency run {repeat + 1} of {args.latency_repeats} at "
                f"{rate:,.0f} points/s"
            )
            latency.append(await run_latency(args, bootstrap, rate, log_dir))
    return render(args, runs, latency)


def with_broker(port: int, prefix: str, work: Callable[[str, Path], Awaitable[T]]) -> T:
    """Run ``work(bootstrap, temporary_dir)`` against the local broker on ``port``.

    The broker is started unless one already runs there, and stopped at the end
    only if this call started it.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
        temporary_dir = Path(temporary)
        config_file = temporary_dir / "broker-extra.properties"
        config_file.write_text(BROKER_EXTRA_CONFIG)
        print_flush(f"starting the broker on 127.0.0.1:{port}")
        bootstrap, launched = start_broker(port, config_file)
        try:
            return asyncio.run(work(bootstrap, temporary_dir))
        finally:
            if launched:
                print_flush("stopping the broker")
                stop_broker(port)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    section = with_broker(
        args.port,
        "kafka-e2e-",
        lambda bootstrap, log_dir: run(args, bootstrap, log_dir),
    )
    print(section)
    if args.doc is not None:
        write_speed_part(args.doc, "kafka", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
