"""Tests of aiokafka against the real broker that deploy/kafka/local-kafka.sh runs.

These tests pin down the client features the streaming consumer relies on:
produce and fetch, consumer groups with committed offsets, and transactions
that commit consumer offsets together with the produced records.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

pytestmark = pytest.mark.kafka

# Upper bound for each wait on the broker. A healthy local broker responds in
# well under a second, so reaching it means something hangs.
TIMEOUT_S = 60


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def fetch_records(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord]:
    """Fetch until at least ``count`` records have arrived, across partitions."""
    records: list[ConsumerRecord] = []
    async with asyncio.timeout(TIMEOUT_S):
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    return records


async def fetch_to_end(consumer: AIOKafkaConsumer, tp: TopicPartition) -> list[bytes]:
    """Fetch the values of ``tp`` from the position up to the end offset.

    For a read_committed consumer the end offset is the last stable offset, and
    the position moves past transaction markers without returning them.
    """
    end_offset = (await consumer.end_offsets([tp]))[tp]
    values: list[bytes] = []
    async with asyncio.timeout(TIMEOUT_S):
        while await consumer.position(tp) < end_offset:
            batches = await consumer.getmany(tp, timeout_ms=500)
            values.extend(record.value for record in batches.get(tp, []))
    return values


async def wait_for_committed(
    consumer: AIOKafkaConsumer, tp: TopicPartition, expected: int
) -> int:
    """Poll the group's committed offset until it equals ``expected``.

    EndTxn returns before the broker has written the transaction markers, and
    a transactional offset commit becomes visible only with its marker.
    Returns the last offset read, which differs from ``expected`` on timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    committed = await consumer.committed(tp)
    while committed != expected and loop.time() < deadline:
        await asyncio.sleep(0.1)
        committed = await consumer.committed(tp)
    return committed


async def test_produce_consume_roundtrip(kafka_bootstrap, kafka_topic_factory):
    topic = await kafka_topic_factory(partitions=2, prefix="roundtrip")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(
                topic,
                value=f"value-{i}".encode(),
                key=f"key-{i}".encode(),
                partition=i % 2,
                headers=[("index", str(i).encode())],
            )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records = await fetch_records(consumer, 6)
    finally:
        await consumer.stop()

    assert len(records) == 6
    for partition in (0, 1):
        in_partition = [r for r in records if r.partition == partition]
        expected = [f"value-{i}".encode() for i in range(partition, 6, 2)]
        assert [r.value for r in in_partition] == expected
        assert [r.offset for r in in_partition] == [0, 1, 2]
    for record in records:
        index = int(dict(record.headers)["index"])
        assert record.key == f"key-{index}".encode()
        assert record.partition == index % 2


async def test_group_resumes_from_committed_offset(
    kafka_bootstrap, kafka_topic_factory
):
    topic = await kafka_topic_factory(partitions=1, prefix="group-resume")
    tp = TopicPartition(topic, 0)
    group_id = unique_id("group")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, str(i).encode(), partition=0)
    finally:
        await producer.stop()

    def group_consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    first = group_consumer()
    await first.start()
    try:
        records = await fetch_records(first, 4)
        assert [r.offset for r in records[:4]] == [0, 1, 2, 3]
        # Commit an explicit offset, because the fetch may have returned more.
        await first.commit({tp: 4})
        assert await first.committed(tp) == 4
    finally:
        await first.stop()

    second = group_consumer()
    await second.start()
    try:
        assert await second.committed(tp) == 4
        records = await fetch_records(second, 6)
        assert second.assignment() == {tp}
    finally:
        await second.stop()

    assert [r.offset for r in records] == [4, 5, 6, 7, 8, 9]
    assert [r.value for r in records] == [str(i).encode() for i in range(4, 10)]


async def test_group_splits_partitions(kafka_bootstrap, kafka_topic_factory):
    topic = await kafka_topic_factory(partitions=2, prefix="group-split")
    group_id = unique_id("group")
    # A short heartbeat interval makes the first member notice the rebalance
    # that the second member's join starts within a fraction of a second.
    consumers = [
        AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=group_id,
            heartbeat_interval_ms=200,
        )
        for _ in range(2)
    ]
    for consumer in consumers:
        await consumer.start()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not all(len(c.assignment()) == 1 for c in consumers):
                # getmany lets each consumer process the rebalance.
                await asyncio.gather(*(c.getmany(timeout_ms=200) for c in consumers))
        assignments = [c.assignment() for c in consumers]
    finally:
        for consumer in consumers:
            await consumer.stop()

    assert assignments[0].isdisjoint(assignments[1])
    assert assignments[0] | assignments[1] == {
        TopicPartition(topic, 0),
        TopicPartition(topic, 1),
    }


async def test_transaction_commits_offsets_and_hides_abort(
    kafka_bootstrap, kafka_topic_factory
):
    """Consume-transform-produce with one aborted and retried transaction."""
    input_topic = await kafka_topic_factory(partitions=1, prefix="tx-input")
    output_topic = await kafka_topic_factory(partitions=1, prefix="tx-output")
    input_tp = TopicPartition(input_topic, 0)
    output_tp = TopicPartition(output_topic, 0)
    group_id = unique_id("tx-group")

    plain_producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await plain_producer.start()
    try:
        for i in range(3):
            await plain_producer.send_and_wait(input_topic, f"in-{i}".encode())
    finally:
        await plain_producer.stop()

    consumer = AIOKafkaConsumer(
        input_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=unique_id("tx")
    )
    await consumer.start()
    await producer.start()
    try:
        inputs = await fetch_records(consumer, 3)
        assert [r.value for r in inputs] == [b"in-0", b"in-1", b"in-2"]

        # The group has an active member while the producer commits its
        # offsets. aiokafka sends TxnOffsetCommit without a member id and
        # generation, which the broker accepts for transactional commits.
        async with producer.transaction():
            for record in inputs[:2]:
                await producer.send(output_topic, record.value.replace(b"in", b"out"))
            await producer.send_offsets_to_transaction({input_tp: 2}, group_id)
        assert await wait_for_committed(consumer, input_tp, 2) == 2

        await producer.begin_transaction()
        await producer.send_and_wait(output_topic, b"aborted")
        await producer.send_offsets_to_transaction({input_tp: 3}, group_id)
        await producer.abort_transaction()

        # Retry the aborted record from the committed offset, as a real
        # processor does after an abort.
        consumer.seek(input_tp, 2)
        (retried,) = await fetch_records(consumer, 1)
        assert retried.value == b"in-2"
        async with producer.transaction():
            # The transaction coordinator rejects the partitions of a new
            # transaction with CONCURRENT_TRANSACTIONS until the previous
            # transaction's markers are written. Once this write succeeds, the
            # aborted offset commit would be visible if the abort had kept it.
            await producer.send_and_wait(output_topic, b"out-2")
            assert await consumer.committed(input_tp) == 2
            await producer.send_offsets_to_transaction(
                {input_tp: retried.offset + 1}, group_id
            )
        assert await wait_for_committed(consumer, input_tp, 3) == 3
    finally:
        await producer.stop()
        await consumer.stop()

    expected = {
        "read_committed": [b"out-0", b"out-1", b"out-2"],
        # The aborted record stays in the log, and only read_committed skips it.
        "read_uncommitted": [b"out-0", b"out-1", b"aborted", b"out-2"],
    }
    outputs = {}
    extras = {}
    for isolation_level, values in expected.items():
        reader = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap, isolation_level=isolation_level
        )
        await reader.start()
        try:
            reader.assign([output_tp])
            await reader.seek_to_beginning(output_tp)
            records = await fetch_records(reader, len(values))
            outputs[isolation_level] = [r.value for r in records]
            extras[isolation_level] = await fetch_to_end(reader, output_tp)
        finally:
            await reader.stop()

    assert outputs == expected
    assert extras == {"read_committed": [], "read_uncommitted": []}
