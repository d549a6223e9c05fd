"""Exactly once under repeated SIGKILL: ``python -m benchmarks.crash_recovery``.

The full-size version of the kill test in tests/test_exactly_once.py. Starts the
broker of ``deploy/kafka/local-kafka.sh`` on 127.0.0.1 (port 29392 unless
``--port``), unless one already runs there, and stops it at the end if it
started it. Then:

1. A reference run: ``--series`` series of ``--points`` points each (sine waves
   with spikes) are produced to a topic, and one ``python -m stream.consumer``
   with ``ANOMALYBERT_PROCESSING_GUARANTEE=exactly_once`` and the committed
   model processes them to the end without interruption.
2. A crash run: the same points are produced to a second topic over
   ``--produce-seconds``, while a consumer is started, killed with SIGKILL at a
   random moment ``--kills`` times, and finally run to the end.

The outputs of both runs are read with ``isolation_level=read_committed`` and
compared record for record, per series and in order. The exit status is 0 when
they are equal, 1 when they differ and 2 on a usage error. Prints a Markdown
section; ``--doc PATH`` also writes it into the ``crash`` section of PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks import help_description
from benchmarks.common import (
    PointStream,
    machine_lines,
    markdown_table,
    print_flush,
    python_command,
)
from benchmarks.kafka_e2e import (
    ConsumerProcess,
    Scenario,
    check_alive,
    committed_total,
    create_topics,
    delete_topics,
    preload,
    start_consumer,
    stop_consumers,
    topic_names,
    with_broker,
)
from benchmarks.nab.report import replace_section

DEFAULT_PORT = 29392
PARTITIONS = 4
# Share of points that get a spike of 8 to 20 times the noise, so that the
# outputs hold anomalies to compare.
SPIKE_SHARE = 0.002
EXACTLY_ONCE = Scenario(
    "eos",
    "exactly_once",
    guarantee="exactly_once",
    environment=(("ANOMALYBERT_MAX_BATCH_POINTS", "500"),),
)
READY_TIMEOUT_SECONDS = 120.0
END_TIMEOUT_SECONDS = 900.0


def workload(n_series: int, points: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Return the (key, value) messages of every series, interleaved in time."""
    stream = PointStream(n_series, seed=seed, prefix="crash")
    series, timestamps, values = stream.next_arrays(n_series * points)
    rng = np.random.default_rng(seed + 1)
    spikes = rng.random(len(values)) < SPIKE_SHARE
    values = values + spikes * rng.choice([-1.0, 1.0], len(values)) * rng.uniform(
        8.0, 20.0, len(values)
    )
    names = [name.encode() for name in stream.names]
    return [
        (names[s], json.dumps({"timestamp": t, "value": round(v, 6)}).encode())
        for s, t, v in zip(
            series.tolist(), timestamps.tolist(), values.tolist(), strict=True
        )
    ]


async def produce_over(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], seconds: float
) -> None:
    """Produce ``messages`` in 20 chunks spread over ``seconds``."""
    chunks = 20
    size = -(-len(messages) // chunks)
    for start in range(0, len(messages), size):
        await preload(bootstrap, topic, messages[start : start + size])
        await asyncio.sleep(seconds / chunks)


async def wait_ready(consumer: ConsumerProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not await asyncio.to_thread(consumer.ready):
        check_alive([consumer])
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the consumer was not ready after {READY_TIMEOUT_SECONDS:.0f} s"
            )
        await asyncio.sleep(0.2)


async def run_to_end(
    bootstrap: str,
    admin: AIOKafkaAdminClient,
    topics: dict[str, str],
    group: str,
    total: int,
    log_dir: Path,
    index: int,
) -> float:
    """Run one consumer until the group committed ``total`` points; return seconds."""
    consumer = start_consumer(bootstrap, topics, group, EXACTLY_ONCE, log_dir, index)
    started = time.monotonic()
    try:
        while await committed_total(admin, group, topics["input"]) < total:
            check_alive([consumer])
            if time.monotonic() - started > END_TIMEOUT_SECONDS:
                raise RuntimeError(
                    f"group {group} did not commit {total:,} points in "
                    f"{END_TIMEOUT_SECONDS:.0f} s"
                )
            await asyncio.sleep(0.5)
        return time.monotonic() - started
    finally:
        stop_consumers([consumer])


async def read_output(bootstrap: str, topic: str) -> dict[str, list[tuple]]:
    """Return each series' anomalies in order, as a read_committed reader sees them."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    by_series: dict[str, list[tuple]] = {}
    try:
        idle = 0
        while idle < 4:
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                for record in records:
                    value = json.loads(record.value)
                    by_series.setdefault(value["series"], []).append(
                        (value["timestamp"], value["value"], value["score"])
                    )
    finally:
        await consumer.stop()
    return by_series


async def run(args: argparse.Namespace, bootstrap: str, log_dir: Path) -> dict:
    messages = workload(args.series, args.points, args.seed)
    total = len(messages)
    prefix = f"crash-{int(time.time())}"
    reference, crashed = topic_names(f"{prefix}-ref"), topic_names(f"{prefix}-kill")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for topics in (reference, crashed):
            await create_topics(
                bootstrap,
                {
                    topics["input"]: PARTITIONS,
                    topics["output"]: PARTITIONS,
                    topics["dlq"]: 1,
                },
            )
        print_flush(f"reference run: {total:,} points of {args.series:,} series")
        await preload(bootstrap, reference["input"], messages)
        reference_seconds = await run_to_end(
            bootstrap, admin, reference, f"{prefix}-ref", total, log_dir, 0
        )

        print_flush(f"crash run: {args.kills} kills while the points arrive")
        group = f"{prefix}-kill"
        producing = asyncio.create_task(
            produce_over(bootstrap, crashed["input"], messages, args.produce_seconds)
        )
        rng = random.Random(args.seed)
        committed_at_kill = []
        started = time.monotonic()
        for kill in range(args.kills):
            consumer = start_consumer(
                bootstrap, crashed, group, EXACTLY_ONCE, log_dir, kill + 1
            )
            await wait_ready(consumer)
            await asyncio.sleep(rng.uniform(args.min_delay, args.max_delay))
            check_alive([consumer])
            consumer.process.kill()
            consumer.process.wait()
            committed = await committed_total(admin, group, crashed["input"])
            committed_at_kill.append(committed)
            print_flush(f"  kill {kill + 1}: {committed:,} points committed")
        await producing
        await run_to_end(
            bootstrap, admin, crashed, group, total, log_dir, args.kills + 1
        )
        crash_seconds = time.monotonic() - started

        expected = await read_output(bootstrap, reference["output"])
        actual = await read_output(bootstrap, crashed["output"])
    finally:
        await admin.close()
        await delete_topics(bootstrap, prefix)
    differing = sorted(
        name
        for name in set(expected) | set(actual)
        if expected.get(name) != actual.get(name)
    )
    return {
        "points": total,
        "reference_seconds": reference_seconds,
        "crash_seconds": crash_seconds,
        "committed_at_kill": committed_at_kill,
        "reference_records": sum(len(v) for v in expected.values()),
        "crash_records": sum(len(v) for v in actual.values()),
        "series_with_anomalies": len(expected),
        "differing": differing,
    }


def render(args: argparse.Namespace, result: dict) -> str:
    kills = result["committed_at_kill"]
    mid_stream = sum(1 for c in kills if c < result["points"])
    equal = not result["differing"]
    rows = [
        [
            "points (series x points per series)",
            f"{result['points']:,} ({args.series:,} x {args.points:,})",
        ],
        [
            "SIGKILLs",
            f"{len(kills)}, {mid_stream} of them before the last point was committed",
        ],
        ["points committed at each kill", ", ".join(f"{c:,}" for c in kills)],
        [
            "anomalies, reference run",
            f"{result['reference_records']:,} in {result['series_with_anomalies']:,} series",
        ],
        ["anomalies, crash run", f"{result['crash_records']:,}"],
        ["series whose anomalies differ", f"{len(result['differing']):,}"],
        [
            "reference run / crash run",
            f"{result['reference_seconds']:.0f} s / {result['crash_seconds']:.0f} s",
        ],
    ]
    verdict = (
        "equal, record for record"
        if equal
        else f"different in {len(result['differing'])} series"
    )
    lines = [
        "## Crash recovery (exactly once)",
        "",
        *machine_lines(python_command("benchmarks.crash_recovery", args.argv)),
        "",
        "One consumer with `ANOMALYBERT_PROCESSING_GUARANTEE=exactly_once`, the committed "
        f"model, {PARTITIONS} input partitions and batches of at most 500 points. "
        "The crash run's points arrive over "
        f"{args.produce_seconds:g} s while the consumer is killed with SIGKILL "
        f"{args.min_delay:g} to {args.max_delay:g} s after each start, then runs to the "
        "end. Both outputs are read with `isolation_level=read_committed`.",
        "",
        markdown_table(["", "value"], rows),
        "",
        f"Output of the crash run against the uninterrupted run: {verdict}.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.crash_recovery",
        description=help_description(__doc__),
    )
    parser.add_argument(
        "--series", type=int, default=1000, help="series (default 1000)"
    )
    parser.add_argument(
        "--points", type=int, default=300, help="points per series (default 300)"
    )
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs (default 5)")
    parser.add_argument(
        "--produce-seconds",
        type=float,
        default=90.0,
        help="time over which the crash run's points arrive (default 90)",
    )
    parser.add_argument(
        "--min-delay",
        type=float,
        default=3.0,
        help="minimum time from ready to kill in seconds (default 3)",
    )
    parser.add_argument(
        "--max-delay",
        type=float,
        default=12.0,
        help="maximum time from ready to kill in seconds (default 12)",
    )

    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"broker port (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="also write the section into this Markdown file",
    )

    args = parser.parse_args(argv)
    for name in ("series", "points", "kills"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.min_delay <= args.max_delay:
        parser.error(
            f"--min-delay {args.min_delay:g} and --max-delay {args.max_delay:g} must "
            "satisfy 0 <= min <= max"
        )
    if args.produce_seconds < 0:
        parser.error(
            f"--produce-seconds must be 0 or more, got {args.produce_seconds:g}"
        )
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    result = with_broker(
        args.port,
        "crash-recovery-",
        lambda bootstrap, log_dir: run(args, bootstrap, log_dir),
    )
    section = render(args, result)
    print(section)
    if args.doc is not None:
        replace_section(args.doc, "crash", section)
    return 0 if not result["differing"] else 1


if __name__ == "__main__":
    sys.exit(main())
