"""Pytest fixtures for tests that need a real Kafka broker.

``kafka_bootstrap`` returns a bootstrap address. Its source, in order:

1. ``ANOMALYBERT_TEST_KAFKA``, used as is (for example ``host:9092`` in CI).
2. The broker that ``deploy/kafka/local-kafka.sh`` runs on ``LOCAL_KAFKA_PORT``
   (default 9092), if it is already running. It is left running.
3. A broker that the fixture starts with that script and stops at the end of
   the session.

Tests that use these fixtures carry ``@pytest.mark.kafka``, so
``pytest -m "not kafka"`` skips them on machines without Java and Maven.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

BOOTSTRAP_ENV = "ANOMALYBERT_TEST_KAFKA"
PORT_ENV = "LOCAL_KAFKA_PORT"

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "deploy" / "kafka" / "local-kafka.sh"

# A cold start fetches about 45 MB of jars with Maven before the broker starts.
START_TIMEOUT_S = 600
STOP_TIMEOUT_S = 120
# local-kafka.sh start logs this on stderr only when it launches a new broker.
LAUNCH_MESSAGE = "local-kafka: starting Kafka"

TopicFactory = Callable[..., Awaitable[str]]

log = logging.getLogger(__name__)


def run_script(command: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run ``local-kafka.sh COMMAND`` and return the finished process."""
    return subprocess.run(
        [str(SCRIPT), command],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def script_failure(command: str, result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{SCRIPT} {command} failed with exit status {result.returncode}.\n"
        f"stderr:\n{result.stderr}\n"
        f"Set {BOOTSTRAP_ENV}=host:port to use another broker, "
        'or deselect these tests with -m "not kafka".'
    )


def start_broker() -> tuple[str, bool]:
    """Start the local broker, or wait for a running one.

    Returns the bootstrap address and whether this call launched the broker.
    The script checks for a running broker and launches one under a single
    lock. A separate ``status`` call before ``start`` would race with a start
    from another process and could claim that process's broker.
    """
    result = run_script("start", timeout_s=START_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(script_failure("start", result))
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{SCRIPT} start printed no bootstrap address")
    log.info("%s start: %s", SCRIPT, result.stderr.strip())
    return lines[-1], LAUNCH_MESSAGE in result.stderr


def stop_broker() -> None:
    result = run_script("stop", timeout_s=STOP_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(script_failure("stop", result))
    log.info("%s stop: %s", SCRIPT, result.stderr.strip())


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a running Kafka broker for this test session.

    NOTE: a session that launched the broker stops it at its end, even if
    another session started later on the same port is still using it.
    """
    configured = os.environ.get(BOOTSTRAP_ENV)
    if configured:
        yield configured
        return

    port = os.environ.get(PORT_ENV, "9092")
    try:
        bootstrap, launched = start_broker()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)

    if not launched:
        log.info("using the running local Kafka broker on port %s", port)
        yield bootstrap
        return

    log.info("started the local Kafka broker on port %s", port)
    try:
        yield bootstrap
    finally:
        stop_broker()


def unique_topic_name(prefix: str) -> str:
    # Kafka rejects a topic whose name differs from an existing one only in "."
    # versus "_", because both map to "_" in metric names. Hyphens avoid that.
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def kafka_topic_factory(kafka_bootstrap: str) -> AsyncIterator[TopicFactory]:
    """Async factory that creates a uniquely named topic and returns its name.

    ``await kafka_topic_factory(partitions=2, prefix="scores")`` returns when the
    broker reports a leader for every partition. The topics are deleted when the
    test ends.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def create_topic(
        partitions: int = 1, prefix: str = "test", configs: dict | None = None
    ) -> str:
        name = unique_topic_name(prefix)
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs=configs or {},
                )
            ]
        )
        # CreateTopics reports per-topic errors in the response instead of
        # raising. Each entry starts with (topic, error_code).
        for entry in response.topic_errors:
            topic, error_code = entry[0], entry[1]
            if error_code != 0:
                raise for_code(error_code)(f"creating topic {topic} failed")
        created.append(name)
        await wait_for_leaders(admin, name, partitions)
        return name

    yield create_topic

    try:
        if created:
            await admin.delete_topics(created)
    finally:
        await admin.close()


async def wait_for_leaders(
    admin: AIOKafkaAdminClient, topic: str, partitions: int, timeout_s: float = 30
) -> None:
    """Wait until the metadata lists ``partitions`` partitions with leaders.

    CreateTopics returns once the controller has created the topic, which can
    be before the broker's metadata cache lists a leader for every partition.
    """
    async with asyncio.timeout(timeout_s):
        while True:
            (description,) = await admin.describe_topics([topic])
            leaders = [
                p["leader"] for p in description["partitions"] if p["leader"] >= 0
            ]
            if description["error_code"] == 0 and len(leaders) == partitions:
                return
            await asyncio.sleep(0.1)
