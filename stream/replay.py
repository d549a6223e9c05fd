"""Producing the points of a CSV file to a Kafka topic."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from stream.csvfile import read_points
from stream.errors import AnomalyBertError

logger = logging.getLogger(__name__)

ACK_BATCH = 1000


async def replay_file(
    path: str | Path,
    series: str,
    topic: str = "points",
    bootstrap_servers: str = "localhost:9092",
    rate: float | None = None,
    producer_options: dict[str, object] | None = None,
) -> int:
    """Produce every row of ``path`` as a point of ``series``; return the count.

    The value keeps the file's own timestamp text. With ``rate`` the points are
    spaced to that many per second; otherwise they go as fast as the broker
    acknowledges them. Every row is checked before the first point is sent, so
    a bad row leaves the topic untouched.
    """
    for _row in read_points(path):
        pass
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=10,
        **(producer_options or {}),
    )
    try:
        await producer.start()
    except KafkaConnectionError as exc:
        await producer.stop()
        raise AnomalyBertError(
            f"cannot connect to Kafka at {bootstrap_servers}: {exc}; start a broker "
            "(deploy/kafka/local-kafka.sh start) or pass --bootstrap-servers"
        ) from exc
    count = 0
    key = series.encode()
    started = time.monotonic()
    pending = []
    try:
        for _line, raw_ts, _seconds, value in read_points(path):
            payload = json.dumps({"timestamp": raw_ts, "value": value}).encode()
            pending.append(await producer.send(topic, value=payload, key=key))
            count += 1
            if len(pending) >= ACK_BATCH:
                await asyncio.gather(*pending)
                pending = []
            if rate is not None:
                delay = started + count / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    logger.info("produced %d points of %s to %s", count, path, topic)
    return count
