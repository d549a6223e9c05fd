"""Prometheus metrics of the consumer, on an injectable registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

# Inference of one batch takes from about 0.1 ms (a single window) to about
# 0.33 s (2,000 points with one ONNX session on a 2-vCPU VM).
INFERENCE_BUCKETS_SECONDS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS_POINTS = (1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


class ConsumerMetrics:
    """Every metric the consumer exports; a fresh registry per instance in tests."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.points_consumed = Counter(
            "anomalybert_points_consumed_total",
            "Records read from the input topic.",
            registry=r,
        )
        self.points_invalid = Counter(
            "anomalybert_points_invalid_total",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.points_scored = Counter(
            "anomalybert_points_scored_total",
            "Points whose score became known.",
            registry=r,
        )
        self.windows_scored = Counter(
            "anomalybert_windows_scored_total",
            "Windows scored by the model.",
            registry=r,
        )
        self.anomalies_published = Counter(
            "anomalybert_anomalies_published_total",
            "Anomalies written to the output topic.",
            registry=r,
        )
        self.inference_seconds = Histogram(
            "anomalybert_inference_seconds",
            "Time to normalise and score one batch.",
            buckets=INFERENCE_BUCKETS_SECONDS,
            registry=r,
        )
        self.batch_points = Histogram(
            "anomalybert_batch_points",
            "Records per fetched batch.",
            buckets=BATCH_BUCKETS_POINTS,
            registry=r,
        )
        self.active_series = Gauge(
            "anomalybert_active_series", "Series whose state is held.", registry=r
        )
        self.series_evicted = Counter(
            "anomalybert_series_evicted_total",
            "Series dropped because they were idle or the cap was reached.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "anomalybert_consumer_lag_records",
            "Records between the high watermark and the consumer's position.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "anomalybert_assigned_partitions", "Input partitions assigned.", registry=r
        )
        self.state_restored_series = Counter(
            "anomalybert_state_restored_series_total",
            "Series whose state was restored from the changelog.",
            registry=r,
        )
        self.state_restore_seconds = Histogram(
            "anomalybert_state_restore_seconds",
            "Time to restore the state of one assigned partition.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        self.transactions = Counter(
            "anomalybert_transactions_total",
            "Kafka transactions by outcome (committed, aborted).",
            ["outcome"],
            registry=r,
        )
        self.model_info = Info("anomalybert_model", "The model in use.", registry=r)
