"""The state changelog: every series' state in a compacted topic, one record per series.

The changelog has as many partitions as the input topic. The state of a series
whose points arrive on input partition p is written to changelog partition p,
so the consumer that owns input partition p restores its series from one
changelog partition. Each record's key is the series id, its value the encoded
state (a tombstone when the series was evicted) and its header
``anomalybert.input.offset`` the input offset the state includes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

from stream.errors import AnomalyBertError
from stream.state import StreamScorer

logger = logging.getLogger(__name__)

# Importing one series' state took about 20 µs on a 2-vCPU Xeon VM, so a
# restore yields to the event loop after this many series (about 20 ms).
# NOTE: a restore of 500,000 series still takes about 10 s, near aiokafka's
# default session timeout of 10 s, and no setting raises that timeout. Whether
# aiokafka sends heartbeats while the assignment callback runs was not checked.
RESTORE_YIELD_SERIES = 1000

OFFSET_HEADER = "anomalybert.input.offset"


@dataclass
class RestoreReport:
    partition: int
    series: int
    records: int
    seconds: float
    last_input_offset: int | None


class StateChangelog:
    """Tracks which input partition owns each series; restores and encodes state."""

    def __init__(
        self, topic: str, input_topic: str, kafka_options: dict[str, object]
    ) -> None:
        self.topic = topic
        self.input_topic = input_topic
        self._kafka_options = kafka_options
        self.partition_of: dict[str, int] = {}
        # Changelog partitions known to exist, set by ensure_topic.
        self.partition_count = 0
        self._series_of: dict[int, set[str]] = defaultdict(set)

    async def ensure_topic(self) -> None:
        """Create the compacted changelog with the input topic's partition count if missing.

        An existing changelog with fewer partitions than the input topic gets
        partitions added: the new ones are empty, like the input partitions
        that need them.
        """
        admin = AIOKafkaAdminClient(**self._kafka_options)
        await admin.start()
        try:
            # Describing a topic that does not exist can create it with default
            # settings (auto.create.topics.enable), so only existing ones are.
            existing_topics = set(await admin.list_topics())
            if self.input_topic not in existing_topics:
                raise AnomalyBertError(
                    f"input topic {self.input_topic!r} does not exist; create it before "
                    "starting the consumer, because the state changelog copies its "
                    "partition count"
                )
            names = [t for t in (self.input_topic, self.topic) if t in existing_topics]
            described = await admin.describe_topics(names)
            partitions = {
                d["topic"]: len(d["partitions"])
                for d in described
                if d["error_code"] == 0
            }
            replicas = {
                d["topic"]: len(d["partitions"][0]["replicas"])
                for d in described
                if d["error_code"] == 0 and d["partitions"]
            }
            wanted = partitions.get(self.input_topic)
            if wanted is None:
                raise AnomalyBertError(
                    f"input topic {self.input_topic!r} does not exist; create it before "
                    "starting the consumer, because the state changelog copies its "
                    "partition count"
                )
            existing = partitions.get(self.topic)
            if existing is None:
                try:
                    await admin.create_topics(
                        [
                            NewTopic(
                                self.topic,
                                num_partitions=wanted,
                                replication_factor=replicas[self.input_topic],
                                topic_configs={"cleanup.policy": "compact"},
                            )
                        ]
                    )
                    logger.info(
                        "created state changelog %s with %d partitions",
                        self.topic,
                        wanted,
                    )
                except TopicAlreadyExistsError:
                    pass
                await _wait_for_leaders(admin, self.topic, wanted)
            elif existing < wanted:
                await admin.create_partitions({self.topic: NewPartitions(wanted)})
                logger.info(
                    "added partitions to state changelog %s: %d -> %d, as many as input "
                    "topic %s",
                    self.topic,
                    existing,
                    wanted,
                    self.input_topic,
                )
                await _wait_for_leaders(admin, self.topic, wanted)
            self.partition_count = max(existing or 0, wanted)
        finally:
            await admin.close()

    def assign(self, series: str, partition: int) -> None:
        """Record that ``series`` now arrives on input ``partition``."""
        previous = self.partition_of.get(series)
        if previous == partition:
            return
        if previous is not None:
            self._series_of[previous].discard(series)
        self.partition_of[series] = partition
        self._series_of[partition].add(series)

    def forget(self, series: str) -> None:
        partition = self.partition_of.pop(series, None)
        if partition is not None:
            self._series_of[partition].discard(series)

    def drop_partition(self, partition: int, scorer: StreamScorer) -> int:
        """Remove the state of every series of a revoked partition; return how many."""
        names = self._series_of.pop(partition, set())
        for name in names:
            self.partition_of.pop(name, None)
            if name in scorer.table.slot_of:
                scorer.table.remove(name)
        return len(names)

    async def restore(
        self,
        partitions: list[int],
        scorer: StreamScorer,
        committed: dict[int, int | None],
    ) -> list[RestoreReport]:
        """Read the changelog partitions to their end and load the latest state of each series."""
        if not partitions:
            return []
        if max(partitions) >= self.partition_count:
            # Partitions were added to the input topic while running.
            await self.ensure_topic()
        reader = AIOKafkaConsumer(
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            **self._kafka_options,
        )
        await reader.start()
        reports = []
        try:
            tps = [TopicPartition(self.topic, p) for p in partitions]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            ends = await reader.end_offsets(tps)
            for tp in tps:
                started = time.perf_counter()
                latest: dict[str, tuple[bytes | None, int | None]] = {}
                records = 0
                end = ends[tp]
                while end > 0 and await reader.position(tp) < end:
                    batch = await reader.getmany(tp, timeout_ms=1000)
                    for record in batch.get(tp, []):
                        records += 1
                        offset = _input_offset(record.headers)
                        latest[record.key.decode("utf-8")] = (record.value, offset)
                last_offset = None
                now = time.monotonic()
                restored = 0
                for index, (name, (value, offset)) in enumerate(latest.items()):
                    if index % RESTORE_YIELD_SERIES == RESTORE_YIELD_SERIES - 1:
                        # Let the event loop run (fetches, heartbeats, metrics)
                        # during a long restore.
                        await asyncio.sleep(0)
                    if offset is not None:
                        last_offset = (
                            offset if last_offset is None else max(last_offset, offset)
                        )
                    if value is None:
                        continue
                    try:
                        scorer.table.import_state(name, value, now)
                    except ValueError as exc:
                        logger.error(
                            "skipped the changelog state of series %r (partition %d): %s",
                            name,
                            tp.partition,
                            exc,
                        )
                        continue
                    self.assign(name, tp.partition)
                    restored += 1
                report = RestoreReport(
                    tp.partition,
                    restored,
                    records,
                    time.perf_counter() - started,
                    last_offset,
                )
                reports.append(report)
                _log_restore(report, self.topic, committed.get(tp.partition))
        finally:
            await reader.stop()
        return reports


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, topic: str, partitions: int, timeout_seconds: float = 30
) -> None:
    """Wait until every partition of a new topic has a leader, so it can be read."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        (description,) = await admin.describe_topics([topic])
        leaders = [p for p in description["partitions"] if p["leader"] >= 0]
        if description["error_code"] == 0 and len(leaders) == partitions:
            return
        if time.monotonic() > deadline:
            raise AnomalyBertError(
                f"state changelog {topic!r} has no leader for some partitions after "
                f"{timeout_seconds:.0f} s; check the brokers"
            )
        await asyncio.sleep(0.1)


def _input_offset(headers) -> int | None:  # type: ignore[no-untyped-def]
    for key, value in headers or ():
        if key == OFFSET_HEADER:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _log_restore(report: RestoreReport, topic: str, committed: int | None) -> None:
    if report.records == 0:
        logger.info(
            "state changelog %s[%d] is empty: no state to restore, series start fresh",
            topic,
            report.partition,
        )
        return
    logger.info(
        "restored %d series from %d changelog records of %s[%d] in %.3f s",
        report.series,
        report.records,
        topic,
        report.partition,
        report.seconds,
    )
    if committed is not None and (
        report.last_input_offset is None or report.last_input_offset + 1 < committed
    ):
        logger.warning(
            "state changelog %s[%d] ends at input offset %s but the committed offset is "
            "%d: either the last records changed no state (all invalid) or changelog "
            "records were lost to retention or deletion, and some series restart from "
            "older state",
            topic,
            report.partition,
            report.last_input_offset,
            committed,
        )
