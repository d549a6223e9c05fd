"""The streaming consumer: ``python -m stream.consumer``.

Reads points from the input topic, scores them in batches, publishes anomalies
and dead letters, and commits the input offsets only after every record produced
from a batch has been acknowledged by the brokers (at least once).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordTooLargeError,
)
from aiokafka.structs import ConsumerRecord, TopicPartition
from pydantic import ValidationError

from stream.changelog import OFFSET_HEADER, StateChangelog
from stream.connection import find_permanent_failure
from stream.decode import decode_point
from stream.detect import scorer_for
from stream.errors import AnomalyBertError, InvalidPointError, ModelError
from stream.metrics import ConsumerMetrics
from stream.model import ModelMetadata, WindowModel, load_model
from stream.points import Point, check_not_future
from stream.redact import MASK, redact_in_handlers, redact_secret
from stream.server import MetricsServer
from stream.settings import ProcessingGuarantee, Settings, settings_help
from stream.state import BatchResult, StreamScorer

logger = logging.getLogger(__name__)

EVICTION_INTERVAL_SECONDS = 60.0

# A record to produce: topic, key, value, headers and partition (None: by key).
Message = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]], int | None]
MAX_RETRY_DELAY_SECONDS = 30.0
PRODUCER_STOP_TIMEOUT_SECONDS = 10.0
# How long a stop request waits for the outputs of the batch in hand.
STOP_GRACE_SECONDS = 10.0
# A dead-letter record must fit the producer's request limit (aiokafka's
# max_request_size, 1 MiB by default) and a topic's default message size limit
# (about 1 MiB), so longer keys and values are cut. Its source headers name where
# the whole record is, and a size header gives the original length.
DLQ_MAX_KEY_BYTES = 16 * 1024
DLQ_MAX_VALUE_BYTES = 512 * 1024
# After a dead-letter topic rejected a record as too large, its records go
# with at most this much key and no value.
DLQ_SMALL_KEY_BYTES = 1024


class TransactionTimeout(Exception):
    """A partition's transaction did not end within its timeout."""


class StopRequested(Exception):
    """A stop was requested while start-up or a batch's outputs were retried."""


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: AnomalyConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        logger.info("partitions revoked: %s", _describe(revoked))
        await self._owner._release(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info("partitions assigned: %s", _describe(assigned))
        if not assigned:
            logger.warning(
                "no partition of input topic %s is assigned: the topic is missing "
                "(deleted?) or the group has more members than partitions; waiting "
                "for the next rebalance",
                self._owner.settings.input_topic,
            )
        await self._owner._acquire(set(assigned))


def _model_files_stamp(metadata: ModelMetadata) -> tuple[float, ...]:
    """Modification times and sizes of the model's two files (0 when missing)."""
    stamp: list[float] = []
    for path in (metadata.path, metadata.onnx_path):
        try:
            info = path.stat()
        except OSError:
            stamp += [0.0, 0.0]
        else:
            stamp += [info.st_mtime, float(info.st_size)]
    return tuple(stamp)


def _describe(partitions: set[TopicPartition]) -> str:
    return (
        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions)) or "none"
    )


class AnomalyConsumer:
    """Consumes points, scores them and publishes anomalies.

    The constructor does no I/O: call :meth:`start`, then :meth:`run`, then
    :meth:`stop` (safe to call twice), or use ``async with``.
    """

    def __init__(
        self,
        settings: Settings,
        model: WindowModel,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.metrics = metrics or ConsumerMetrics()
        overrides: dict[str, object] = {
            "episode_gap_points": settings.episode_gap_points,
            "max_series": settings.max_series,
            "stride": settings.stride,
        }
        if settings.threshold is not None:
            overrides["threshold"] = settings.threshold
        if settings.lag_points is not None:
            overrides["lag_points"] = settings.lag_points
        self.scorer: StreamScorer = scorer_for(model, **overrides)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._exactly_once = (
            settings.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE
        )
        # One transactional producer per owned input partition (exactly once), so
        # that a new owner of a partition fences the producer of the old one.
        self._transactional: dict[int, AIOKafkaProducer] = {}
        self.changelog: StateChangelog | None = None
        if settings.state_changelog:
            self.changelog = StateChangelog(
                settings.changelog_topic_name,
                settings.input_topic,
                settings.kafka_options(),
            )
        self._server: MetricsServer | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
        self._assigned: set[TopicPartition] = set()
        self._has_assignment = False
        self._stopping = asyncio.Event()
        self._evictions_counted = 0
        self._dlq_key_limit = DLQ_MAX_KEY_BYTES
        self._dlq_value_limit = DLQ_MAX_VALUE_BYTES
        # Scoring runs in a worker thread, and a rebalance can drop or restore
        # state meanwhile, so both hold this lock.
        self._state_lock = asyncio.Lock()
        # The running transaction of each partition, by partition number.
        self._in_flight: dict[int, asyncio.Task] = {}
        self._fatal: BaseException | None = None
        self._acquired = asyncio.Event()
        self._acquired.set()
        self._last_eviction = time.monotonic()
        self._reload_requested = False
        self._last_model_check = time.monotonic()
        self._model_stamp = _model_files_stamp(model.metadata)
        self._publish_model_info()
        if settings.sasl_password is not None:
            redact_secret(settings.sasl_password.get_secret_value())

    def _publish_model_info(self) -> None:
        meta = self.model.metadata
        self.metrics.model_info.info(
            {"version": meta.model_version, "sha256": meta.model_sha256}
        )

    @property
    def metrics_port(self) -> int:
        assert self._server is not None
        return self._server.port

    def is_ready(self) -> bool:
        return self._consumer is not None and bool(self._assigned)

    async def __aenter__(self) -> AnomalyConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        s = self.settings
        self._server = MetricsServer(
            self.metrics.registry, s.metrics_host, s.metrics_port, self.is_ready
        )
        await self._server.start()
        self._producer = await self._start_with_retry(
            "producer",
            lambda: AIOKafkaProducer(
                acks="all", enable_idempotence=True, linger_ms=5, **s.kafka_options()
            ),
        )
        if self.changelog is not None:
            await self.changelog.ensure_topic()
        # aiokafka 0.14 refreshes the metadata of all topics until a topic is
        # added to its list, and from then on only of the listed ones, so it
        # forgot the output topic's leader when the changelog was first written
        # and its records waited request_timeout_ms. Listing every topic the
        # producer writes keeps their leaders known.
        written = [s.output_topic, s.dlq_topic]
        if self.changelog is not None:
            written.append(self.changelog.topic)
        await self._producer.client.set_topics(written)
        self._consumer = await self._start_with_retry(
            "consumer",
            lambda: AIOKafkaConsumer(
                group_id=s.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level=(
                    "read_committed" if self._exactly_once else "read_uncommitted"
                ),
                **s.kafka_options(),
            ),
        )
        self._consumer.subscribe([s.input_topic], listener=_Rebalance(self))
        logger.info(
            "consumer started: %s, group %s, input %s, output %s, dead letters %s, model %s, threshold %.3f",
            s.processing_guarantee.value,
            s.group_id,
            s.input_topic,
            s.output_topic,
            s.dlq_topic,
            self.model.metadata.model_version,
            self.scorer.settings.threshold,
        )

    async def _start_with_retry(self, name: str, factory):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + self.settings.start_timeout_seconds
        delay = 0.5
        while True:
            client = factory()
            try:
                await self._unless_stopping(client.start())
                return client
            except StopRequested:
                await client.stop()
                raise
            except KafkaConnectionError as exc:
                await client.stop()
                permanent = await self._unless_stopping(
                    find_permanent_failure(self.settings)
                )
                if permanent is not None:
                    raise AnomalyBertError(
                        f"Kafka {name} cannot connect: {permanent}"
                    ) from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AnomalyBertError(
                        f"Kafka at {self.settings.kafka_bootstrap_servers} was unreachable for "
                        f"{self.settings.start_timeout_seconds:.0f} s ({exc}); check "
                        "ANOMALYBERT_KAFKA_BOOTSTRAP_SERVERS and the broker"
                    ) from exc
                logger.warning(
                    "Kafka %s could not connect to %s (%s); retrying in %.1f s",
                    name,
                    self.settings.kafka_bootstrap_servers,
                    exc,
                    min(delay, remaining),
                )
                # The last attempt happens at the deadline, so the broker gets
                # the whole start timeout to come up.
                try:
                    await asyncio.wait_for(self._stopping.wait(), min(delay, remaining))
                except TimeoutError:
                    delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)
                    continue
                raise StopRequested from exc

    async def _unless_stopping(self, awaitable, grace: float = 0.0):  # type: ignore[no-untyped-def]
        """Return what ``awaitable`` returns, or raise StopRequested at a stop request.

        Connecting and producing can wait for a broker for tens of seconds, and
        SIGTERM should not wait with them. After a stop request ``awaitable``
        still gets ``grace`` seconds to finish.
        """
        task = asyncio.ensure_future(awaitable)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done() and grace > 0:
            await asyncio.wait({task}, timeout=grace)
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise StopRequested

    def request_stop(self) -> None:
        """Ask :meth:`run` to finish the batch in hand and return."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`request_stop` is called."""
        assert self._consumer is not None, "call start() first"
        s = self.settings
        while not self._stopping.is_set():
            batch = await self._consumer.getmany(
                timeout_ms=s.poll_timeout_ms, max_records=s.max_batch_points
            )
            if self._fatal is not None:
                raise AnomalyBertError(
                    f"stopping: partition assignment failed ({self._fatal})"
                ) from self._fatal
            # aiokafka can hand out records while the assignment listener is
            # still restoring state, so a batch waits for the restore to finish
            # and keeps only partitions that are still assigned.
            if not self._acquired.is_set():
                await self._wait_for_restore()
                if self._stopping.is_set():
                    break
            batch = {tp: r for tp, r in batch.items() if tp in self._assigned}
            if batch:
                try:
                    await self.process_batch(batch)
                except StopRequested:
                    logger.warning(
                        "stop requested while a batch's outputs were retried; "
                        "the batch is not committed and will be consumed again"
                    )
                    return
            self._maybe_evict()
            await self._maybe_reload_model()
        logger.info("stop requested: the batch in hand was committed")

    async def _acquire(self, assigned: set[TopicPartition]) -> None:
        """Restore the state of newly assigned partitions and open their producers.

        aiokafka logs and ignores exceptions of rebalance listeners, so a failure
        is kept and raised by :meth:`run`: processing without restored state
        would publish wrong scores.
        """
        self._acquired.clear()
        try:
            await self._acquire_partitions(assigned)
        except Exception as exc:  # noqa: BLE001 - re-raised by run()
            logger.error("restoring assigned partitions failed: %s", exc)
            self._fatal = exc
        finally:
            self._acquired.set()

    async def _acquire_partitions(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None
        new = sorted(assigned - self._assigned)
        self._assigned = set(assigned)
        self.metrics.assigned_partitions.set(len(assigned))
        if self.changelog is not None and new:
            committed = {tp.partition: await self._consumer.committed(tp) for tp in new}
            known_partitions = self.changelog.partition_count
            async with self._state_lock:
                reports = await self.changelog.restore(
                    [tp.partition for tp in new], self.scorer, committed
                )
            if self.changelog.partition_count > known_partitions and self._producer:
                # The restore added changelog partitions for new input partitions,
                # and the producer sends to them by number: it must see them first.
                await self._producer.client.force_metadata_update()
            for report in reports:
                self.metrics.state_restored_series.inc(report.series)
                self.metrics.state_restore_seconds.observe(report.seconds)
            self.metrics.active_series.set(self.scorer.active_series)
        if self._exactly_once:
            for tp in new:
                self._transactional[tp.partition] = await self._start_transactional(tp)

    async def _start_transactional(self, tp: TopicPartition) -> AIOKafkaProducer:
        prefix = self.settings.transactional_id_prefix or self.settings.group_id
        transactional_id = f"{prefix}-{tp.topic}-{tp.partition}"
        producer = AIOKafkaProducer(
            transactional_id=transactional_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            **self.settings.kafka_options(),
        )
        # Starting a producer with this id fences any older one with it.
        await producer.start()
        logger.info("transactional producer %s started", transactional_id)
        return producer

    async def _release(self, revoked: set[TopicPartition]) -> None:
        """Drop the state and producers of revoked partitions."""
        self._assigned -= revoked
        self.metrics.assigned_partitions.set(len(self._assigned))
        for tp in sorted(revoked):
            if self.changelog is not None:
                async with self._state_lock:
                    dropped = self.changelog.drop_partition(tp.partition, self.scorer)
                logger.info(
                    "dropped the state of %d series of %s[%d]",
                    dropped,
                    tp.topic,
                    tp.partition,
                )
            in_flight = self._in_flight.pop(tp.partition, None)
            if in_flight is not None:
                in_flight.cancel()
            producer = self._transactional.pop(tp.partition, None)
            if producer is not None:
                await producer.stop()
            try:
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass  # no batch of this partition was committed here
        self.metrics.active_series.set(self.scorer.active_series)

    async def process_batch(
        self, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """Score, publish and commit one fetched batch."""
        assert self._consumer is not None and self._producer is not None
        records = [
            record
            for partition_records in batch.values()
            for record in partition_records
        ]
        self.metrics.points_consumed.inc(len(records))
        self.metrics.batch_points.observe(len(records))

        points: list[Point] = []
        sources: list[ConsumerRecord] = []
        dead: list[tuple[ConsumerRecord, str, str]] = []
        latest = time.time() + self.settings.max_future_seconds
        for record in records:
            try:
                point = decode_point(
                    record.key, record.value, self.settings.max_payload_bytes
                )
                check_not_future(point.timestamp, latest)
            except InvalidPointError as exc:
                dead.append((record, exc.reason, str(exc)))
                continue
            points.append(point)
            sources.append(record)

        result = await self._score(points, batch)
        if result is None:
            return
        for rejection in result.rejected:
            dead.append(
                (sources[rejection.input_index], rejection.reason, rejection.message)
            )

        outgoing = self._outgoing(result, sources, dead)
        if self.changelog is not None:
            rejected = {r.input_index for r in result.rejected}
            self._add_state_updates(outgoing, points, sources, rejected)
        offsets = {
            tp: partition_records[-1].offset + 1
            for tp, partition_records in batch.items()
        }
        if self._exactly_once:
            await asyncio.gather(
                *(
                    self._commit_transaction(tp, outgoing.get(tp, []), offsets[tp])
                    for tp in offsets
                )
            )
        else:
            await self._publish([m for messages in outgoing.values() for m in messages])
            await self._commit(offsets)
        await self._update_lag(offsets)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit offsets; after a rebalance, leave the records to the new owner."""
        assert self._consumer is not None
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The outputs are published, so the records are consumed again by
            # whoever owns the partitions now: at least once, never lost.
            logger.warning(
                "offsets %s not committed because the group rebalanced (%s); the "
                "partitions' new owner consumes these records again",
                ", ".join(
                    f"{tp.topic}[{tp.partition}]={o}" for tp, o in offsets.items()
                ),
                exc,
            )

    def _add_state_updates(
        self,
        outgoing: dict[TopicPartition, list[Message]],
        points: list[Point],
        sources: list[ConsumerRecord],
        rejected: set[int],
    ) -> None:
        """Queue the new state of every series the batch changed, and evictions' tombstones."""
        assert self.changelog is not None
        topic = self.changelog.topic
        latest: dict[str, ConsumerRecord] = {}
        for index, point in enumerate(points):
            if index not in rejected:
                latest[point.series] = sources[index]
        for series in self.scorer.evicted_series:
            partition = self.changelog.partition_of.get(series)
            if partition is not None and series not in latest:
                tp = TopicPartition(self.settings.input_topic, partition)
                outgoing.setdefault(tp, []).append(
                    (topic, series.encode(), None, [], partition)
                )
            self.changelog.forget(series)
        self.scorer.evicted_series.clear()
        table = self.scorer.table
        for series, record in latest.items():
            if series not in table.slot_of:
                continue
            self.changelog.assign(series, record.partition)
            headers = [(OFFSET_HEADER, str(record.offset).encode())]
            state = table.export_state(series)
            tp = TopicPartition(record.topic, record.partition)
            outgoing.setdefault(tp, []).append(
                (topic, series.encode(), state, headers, record.partition)
            )

    async def _commit_transaction(
        self, tp: TopicPartition, messages: list[Message], offset: int
    ) -> None:
        """Publish one partition's outputs, state and next offset in one transaction."""
        assert self._consumer is not None
        producer = self._transactional.get(tp.partition)
        if producer is None:
            # The partition was revoked while the batch was scored. Its new
            # owner reads these records again from the committed offset.
            logger.info(
                "%s[%d] was revoked during the batch: its outputs are dropped",
                tp.topic,
                tp.partition,
            )
            return
        # aiokafka waits for a transaction's end without a timeout, and its
        # sender can stay stuck on a coordinator after a broker change
        # (github.com/aio-libs/aiokafka/issues/1145). The transaction runs as a
        # task so that a stuck one can be left behind.
        task = asyncio.ensure_future(
            self._run_transaction(producer, tp, messages, offset)
        )
        # A task left behind after a timeout may fail later; retrieving its
        # exception keeps asyncio from logging it as never retrieved.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        # A revocation cancels the task, because it stops the producer.
        self._in_flight[tp.partition] = task
        timeout = self.settings.transaction_timeout_seconds
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                raise TransactionTimeout(
                    f"it did not end within {timeout:g} s "
                    "(ANOMALYBERT_TRANSACTION_TIMEOUT_SECONDS)"
                )
            if task.cancelled():
                raise TransactionTimeout("it was cancelled")
            task.result()
        except (TransactionTimeout, KafkaError) as exc:
            self.metrics.transactions.labels(outcome="aborted").inc()
            if (
                tp not in self._assigned
                or self._transactional.get(tp.partition) is not producer
            ):
                # The partition was revoked during the transaction. Its new
                # owner reads the records again from the committed offset.
                task.cancel()
                logger.info(
                    "the transaction of %s[%d] ended after the partition was "
                    "revoked (%s)",
                    tp.topic,
                    tp.partition,
                    exc,
                )
                return
            if isinstance(exc, MessageSizeTooLargeError | RecordTooLargeError):
                if self._dlq_value_limit == 0 or not any(
                    m[0] == self.settings.dlq_topic for m in messages
                ):
                    raise AnomalyBertError(
                        f"a record of {tp.topic}[{tp.partition}]'s transaction is too "
                        f"large to produce ({exc}); raise the max.message.bytes of "
                        "the output, dead-letter and changelog topics"
                    ) from exc
                # The batch is read again, and its dead letters go small. The
                # failed send broke the producer's sequence numbers, so it is
                # replaced as after a timeout.
                self._lower_dlq_limits(exc)
                await self._abort_transaction(tp, offset, exc, task, replace=True)
                return
            if not isinstance(exc, ProducerFenced):
                await self._abort_transaction(tp, offset, exc, task)
                return
            raise AnomalyBertError(
                f"the transactional producer of {tp.topic}[{tp.partition}] was fenced: "
                "another consumer instance owns this partition now; exiting so that "
                "this instance rejoins the group"
            ) from exc
        finally:
            if self._in_flight.get(tp.partition) is task:
                del self._in_flight[tp.partition]
        self.metrics.transactions.labels(outcome="committed").inc()
        self.metrics.anomalies_published.inc(
            sum(1 for m in messages if m[0] == self.settings.output_topic)
        )

    async def _abort_transaction(
        self,
        tp: TopicPartition,
        offset: int,
        exc: Exception,
        task: asyncio.Task,
        replace: bool = False,
    ) -> None:
        """Give up a partition's failed transaction and reprocess from its commit.

        After a timeout, or with ``replace``, the partition's producer is
        replaced, which fences the old one and aborts its transaction.
        """
        timed_out = isinstance(exc, TransactionTimeout)
        replace = replace or timed_out
        logger.error(
            "transaction for %s[%d] up to offset %d %s (%s); %s and reprocessing "
            "from the committed offset",
            tp.topic,
            tp.partition,
            offset,
            "timed out" if timed_out else "aborted",
            exc,
            "replacing its producer" if replace else "restoring its state",
        )
        if replace:
            task.cancel()
            await self._replace_producer(tp)
        await self._rewind(tp)

    async def _run_transaction(
        self,
        producer: AIOKafkaProducer,
        tp: TopicPartition,
        messages: list[Message],
        offset: int,
    ) -> None:
        async with producer.transaction():
            futures = [
                await producer.send(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    partition=partition,
                )
                for topic, key, value, headers, partition in messages
            ]
            await asyncio.gather(*futures)
            await producer.send_offsets_to_transaction(
                {tp: offset}, self.settings.group_id
            )

    async def _replace_producer(self, tp: TopicPartition) -> None:
        """Stop a partition's transactional producer and start a new one with its id.

        Starting the new producer fences the old one, and the broker aborts the
        old producer's open transaction.
        """
        old = self._transactional.pop(tp.partition, None)
        if old is None:
            # The partition was revoked while its transaction ran, and the
            # revocation stopped its producer.
            return
        try:
            await asyncio.wait_for(old.stop(), PRODUCER_STOP_TIMEOUT_SECONDS)
        except (TimeoutError, KafkaError) as exc:
            logger.warning(
                "stopping the old transactional producer of %s[%d] failed: %s",
                tp.topic,
                tp.partition,
                exc,
            )
        if tp in self._assigned:
            self._transactional[tp.partition] = await self._start_transactional(tp)

    async def _rewind(self, tp: TopicPartition) -> None:
        """Reset a partition to its last committed transaction: state and position."""
        assert self._consumer is not None and self.changelog is not None
        if tp not in self._assigned:
            # Revoked meanwhile: its state is dropped and its new owner starts
            # from the committed offset.
            return
        async with self._state_lock:
            self.changelog.drop_partition(tp.partition, self.scorer)
            committed = await self._consumer.committed(tp)
            await self.changelog.restore(
                [tp.partition], self.scorer, {tp.partition: committed}
            )
        if committed is None:
            # Nothing committed yet: the partition starts where a new group
            # starts (auto_offset_reset="earliest"). seek_to_committed would
            # leave the position after the aborted records and skip them.
            await self._consumer.seek_to_beginning(tp)
        else:
            self._consumer.seek(tp, committed)

    async def _score(
        self, points: list[Point], batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> BatchResult | None:
        """Score a batch's points, or return None if one of its partitions was revoked.

        A revoked partition's state is gone, so the whole batch is left: the
        partitions still assigned are rewound to the batch's first records, and
        the new owners read the others from their committed offsets.
        """
        assert self._consumer is not None
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        async with self._state_lock:
            revoked = [tp for tp in batch if tp not in self._assigned]
            if revoked:
                logger.info(
                    "%s revoked while the batch waited: the batch is read again",
                    _describe(set(revoked)),
                )
                for tp, records in batch.items():
                    if tp in self._assigned:
                        self._consumer.seek(tp, records[0].offset)
                return None
            if not points:
                return BatchResult()
            # Scoring runs in a worker thread so that heartbeats and fetches go on.
            result = await loop.run_in_executor(
                self._executor, self.scorer.process, points, time.monotonic()
            )
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        self.metrics.windows_scored.inc(result.windows_scored)
        self.metrics.points_scored.inc(len(result.scored))
        self._count_evictions()
        self.metrics.active_series.set(self.scorer.active_series)
        return result

    def _outgoing(
        self,
        result: BatchResult,
        sources: Sequence[ConsumerRecord],
        dead: list[tuple[ConsumerRecord, str, str]],
    ) -> dict[TopicPartition, list[Message]]:
        """Build the anomaly and dead-letter records, grouped by source partition."""
        s = self.settings
        threshold = self.scorer.settings.threshold
        version = self.model.metadata.model_version
        outgoing: dict[TopicPartition, list[Message]] = {}
        for scored in result.scored:
            if scored.publish:
                source = sources[scored.input_index]
                value = json.dumps(scored.to_record(threshold, version)).encode()
                outgoing.setdefault(
                    TopicPartition(source.topic, source.partition), []
                ).append((s.output_topic, scored.series.encode(), value, [], None))
        for record, reason, message in dead:
            self.metrics.points_invalid.labels(reason=reason).inc()
            headers = [
                ("anomalybert.reason", reason.encode()),
                ("anomalybert.error", message.encode("utf-8", "replace")[:1024]),
                ("anomalybert.source.topic", record.topic.encode()),
                ("anomalybert.source.partition", str(record.partition).encode()),
                ("anomalybert.source.offset", str(record.offset).encode()),
            ]
            key, value = record.key, record.value
            if key is not None and len(key) > self._dlq_key_limit:
                headers.append(("anomalybert.key.bytes", str(len(key)).encode()))
                key = key[: self._dlq_key_limit]
            if value is not None and len(value) > self._dlq_value_limit:
                headers.append(("anomalybert.value.bytes", str(len(value)).encode()))
                value = value[: self._dlq_value_limit]
            outgoing.setdefault(
                TopicPartition(record.topic, record.partition), []
            ).append((s.dlq_topic, key, value, headers, None))
        if dead:
            logger.warning(
                "sent %d invalid records to %s, first: partition %d offset %d: %s",
                len(dead),
                s.dlq_topic,
                dead[0][0].partition,
                dead[0][0].offset,
                dead[0][2],
            )
        return outgoing

    async def _publish(self, outgoing: list[Message]) -> None:
        """Produce every record and wait for all acknowledgements, retrying failures."""
        assert self._producer is not None
        pending = list(outgoing)
        delay = 0.5
        # A stop lets the first attempt finish (it usually takes milliseconds),
        # so that the batch in hand is committed, but not the retries.
        grace = STOP_GRACE_SECONDS
        while pending:
            outcomes = await self._unless_stopping(self._send_all(pending), grace)
            grace = 0.0
            failed = [
                (message, outcome)
                for message, outcome in zip(pending, outcomes, strict=True)
                if isinstance(outcome, BaseException)
            ]
            for index, (message, outcome) in enumerate(failed):
                if not isinstance(outcome, KafkaError):
                    raise outcome
                if isinstance(outcome, MessageSizeTooLargeError | RecordTooLargeError):
                    failed[index] = (self._shrink(message, outcome), outcome)
            published = sum(
                1
                for message, outcome in zip(pending, outcomes, strict=True)
                if message[0] == self.settings.output_topic
                and not isinstance(outcome, BaseException)
            )
            self.metrics.anomalies_published.inc(published)
            if not failed:
                return
            logger.error(
                "%d of %d records could not be produced (first: topic %s: %s); the batch "
                "is not committed, retrying in %.1f s",
                len(failed),
                len(pending),
                failed[0][0][0],
                failed[0][1],
                delay,
            )
            pending = [message for message, _ in failed]
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)
                continue
            raise StopRequested

    async def _send_all(self, messages: list[Message]) -> list[object]:
        """Produce ``messages`` and return each one's metadata or exception."""
        assert self._producer is not None
        futures = []
        for topic, key, value, headers, partition in messages:
            try:
                future = await self._producer.send(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    partition=partition,
                )
            except KafkaError as exc:
                # send() raises before queueing the record when the topic's
                # metadata is unavailable or not authorised; retry it below.
                future = asyncio.get_running_loop().create_future()
                future.set_exception(exc)
            futures.append(future)
        return await asyncio.gather(*futures, return_exceptions=True)

    def _shrink(self, message: Message, error: KafkaError) -> Message:
        """Return a dead-letter record cut to the small limits, after a topic
        rejected it as too large.

        Retrying cannot make any other record smaller, so a record of another
        topic, or one already at the small limits, stops the consumer.
        """
        topic, key, value, headers, partition = message
        if topic != self.settings.dlq_topic:
            raise AnomalyBertError(
                f"a record for topic {topic} is too large to produce ({error}); "
                "raise the topic's max.message.bytes"
            )
        self._lower_dlq_limits(error)
        headers = list(headers)
        names = {name for name, _ in headers}
        if key is not None and len(key) > self._dlq_key_limit:
            if "anomalybert.key.bytes" not in names:
                headers.append(("anomalybert.key.bytes", str(len(key)).encode()))
            key = key[: self._dlq_key_limit]
        if value:
            if "anomalybert.value.bytes" not in names:
                headers.append(("anomalybert.value.bytes", str(len(value)).encode()))
            value = b""
        shrunk = (topic, key, value, headers, partition)
        if shrunk == message:
            raise AnomalyBertError(
                f"a dead-letter record without its value is still too large for "
                f"topic {topic} ({error}); raise the topic's max.message.bytes"
            )
        return shrunk

    def _lower_dlq_limits(self, error: KafkaError) -> None:
        """Send dead-letter records with a short key and no value from now on."""
        if self._dlq_value_limit == 0:
            return
        self._dlq_key_limit = DLQ_SMALL_KEY_BYTES
        self._dlq_value_limit = 0
        logger.error(
            "dead-letter topic %s rejected a record as too large (%s); its records "
            "go without values from now on, and their source headers name the "
            "original records. Raise the topic's max.message.bytes and restart",
            self.settings.dlq_topic,
            error,
        )

    async def _update_lag(self, offsets: dict[TopicPartition, int]) -> None:
        """Set the lag gauge of each partition of a batch from its high watermark."""
        assert self._consumer is not None
        highwaters: dict[TopicPartition, int | None] = {}
        # A rebalance during the batch may have revoked some of its partitions.
        offsets = {tp: o for tp, o in offsets.items() if tp in self._assigned}
        for tp in offsets:
            highwater = self._consumer.highwater(tp)
            if highwater is None and self._exactly_once:
                highwater = self._consumer.last_stable_offset(tp)
            highwaters[tp] = highwater
        unknown = [tp for tp, highwater in highwaters.items() if highwater is None]
        if unknown:
            # The fetch that returned these records did not report a high
            # watermark, so ask the broker once.
            try:
                highwaters.update(await self._consumer.end_offsets(unknown))
            except KafkaError as exc:
                logger.debug("end offsets for the lag metric failed: %s", exc)
        for tp, position in offsets.items():
            highwater = highwaters.get(tp)
            if highwater is not None:
                self.metrics.consumer_lag.labels(
                    topic=tp.topic, partition=str(tp.partition)
                ).set(max(0, highwater - position))

    async def _wait_for_restore(self) -> None:
        """Wait until the assignment listener has restored state, or a stop is requested."""
        restored = asyncio.ensure_future(self._acquired.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({restored, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (restored, stopping):
            waiter.cancel()

    def request_model_reload(self) -> None:
        """Reload the model files before the next batch (the SIGHUP handler)."""
        self._reload_requested = True

    async def _maybe_reload_model(self) -> None:
        """Swap in a changed model between two batches, so no point is dropped."""
        now = time.monotonic()
        interval = self.settings.model_check_seconds
        polled = interval > 0 and now - self._last_model_check >= interval
        if not (self._reload_requested or polled):
            return
        self._last_model_check = now
        requested, self._reload_requested = self._reload_requested, False
        stamp = _model_files_stamp(self.model.metadata)
        if not requested and stamp == self._model_stamp:
            return
        self._model_stamp = stamp
        path = self.settings.model_path
        loop = asyncio.get_running_loop()
        try:
            model = await loop.run_in_executor(
                self._executor,
                functools.partial(
                    load_model, path, sessions=self.settings.inference_sessions
                ),
            )
            threshold = self.settings.threshold
            if threshold is None:
                threshold = model.metadata.alert.threshold
            self.scorer.replace_model(model, threshold)
        except (AnomalyBertError, ValueError) as exc:
            logger.error(
                "model reload from %s failed, still using %s: %s",
                path,
                self.model.metadata.model_version,
                exc,
            )
            return
        previous = self.model.metadata.model_version
        self.model = model
        self._publish_model_info()
        logger.info(
            "model reloaded: %s -> %s (sha256 %s)",
            previous,
            model.metadata.model_version,
            model.metadata.model_sha256[:12],
        )

    def _maybe_evict(self) -> None:
        now = time.monotonic()
        if now - self._last_eviction < EVICTION_INTERVAL_SECONDS:
            return
        self._last_eviction = now
        self.scorer.evict_idle(now, self.settings.series_idle_seconds)
        self._count_evictions()
        self.metrics.active_series.set(self.scorer.active_series)

    def _count_evictions(self) -> None:
        """Count the series evicted since the last call, idle or beyond the cap."""
        total = self.scorer.evicted_total
        self.metrics.series_evicted.inc(total - self._evictions_counted)
        self._evictions_counted = total
        if self.changelog is None:
            # Only the changelog reads the evicted names (to delete their state).
            self.scorer.evicted_series.clear()

    async def stop(self) -> None:
        """Close the consumer, the producers and the metrics server."""
        producers = list(self._transactional.values())
        self._transactional.clear()
        for producer in producers:
            await producer.stop()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        self._executor.shutdown(wait=True)
        logger.info("consumer stopped")


def _quiet_fenced_futures(
    loop: asyncio.AbstractEventLoop, context: dict[str, Any]
) -> None:
    """Log aiokafka's unretrieved ProducerFenced futures at DEBUG level.

    After a new owner of a partition fences this instance's producer, aiokafka
    0.14's sender leaves futures that hold ProducerFenced, and asyncio would
    log each with a traceback when it is collected. The consumer has already
    handled the fencing, so the tracebacks would only look like a crash.
    """
    if isinstance(context.get("exception"), ProducerFenced):
        logger.debug("fenced producer: %s", context.get("message"))
        return
    loop.default_exception_handler(context)


async def serve(settings: Settings, model: WindowModel) -> None:
    """Run the consumer until SIGTERM or SIGINT."""
    consumer = AnomalyConsumer(settings, model)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_fenced_futures)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, consumer.request_stop)
    loop.add_signal_handler(signal.SIGHUP, consumer.request_model_reload)
    try:
        await consumer.start()
        await consumer.run()
    except StopRequested:
        logger.info("stop requested while connecting to Kafka")
    finally:
        await consumer.stop()


def describe_settings_error(error: Mapping[str, Any]) -> str:
    """Describe one pydantic error of Settings without revealing a secret.

    An error of one field names its variable and value, masked for a password.
    A check across fields has the whole input as its value, so only its
    message is given.
    """
    field = "_".join(str(part) for part in error["loc"])
    if not field:
        return str(error["msg"])
    value = error.get("input")
    if "password" in field:
        value = MASK
    return f"ANOMALYBERT_{field.upper()}={value!r}: {error['msg']}"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(
            "usage: python -m stream.consumer\n\nReads points from Kafka, scores them "
            "and publishes anomalies.\nConfigure it with environment variables.\n"
        )
        print(settings_help())
        return 0
    if args:
        print(
            f"error: unexpected arguments {args}; configure with ANOMALYBERT_* variables, see --help",
            file=sys.stderr,
        )
        return 2
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(describe_settings_error(error) for error in exc.errors())
        # The password may also stand in another variable, for example when
        # two values were swapped, so it is masked wherever it appears.
        password = next(
            (
                v
                for k, v in os.environ.items()
                if k.upper() == "ANOMALYBERT_SASL_PASSWORD"
            ),
            "",
        )
        if password:
            problems = problems.replace(password, MASK)
        print(f"error: invalid settings: {problems}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    redact_in_handlers()
    if settings.sasl_password is not None:
        # Mask it before the first log line, such as a model path containing it.
        redact_secret(settings.sasl_password.get_secret_value())
    try:
        model = load_model(settings.model_path, sessions=settings.inference_sessions)
    except ModelError as exc:
        logger.error("%s (the model path is ANOMALYBERT_MODEL_PATH)", exc)
        return 1
    try:
        asyncio.run(serve(settings, model))
    except AnomalyBertError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
