"""Settings of the consumer, read once from ``ANOMALYBERT_*`` environment variables."""

from __future__ import annotations

import ssl
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.model import default_model_path


class ProcessingGuarantee(StrEnum):
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


class Settings(BaseSettings):
    """Consumer settings; every field is set by ``ANOMALYBERT_<FIELD NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="ANOMALYBERT_", frozen=True, extra="ignore"
    )

    kafka_bootstrap_servers: str = Field(
        "localhost:9092", description="comma-separated host:port list of Kafka brokers"
    )
    input_topic: str = Field("points", description="topic the points are read from")
    output_topic: str = Field(
        "anomalies", description="topic the anomalies are written to"
    )
    dlq_topic: str = Field(
        "points.dlq",
        description="dead-letter topic for invalid points, with the reason",
    )
    group_id: str = Field("anomalybert", description="Kafka consumer group id")
    client_id: str = Field("anomalybert-stream", description="Kafka client id")
    processing_guarantee: ProcessingGuarantee = Field(
        ProcessingGuarantee.AT_LEAST_ONCE,
        description="at_least_once: offsets are committed after the outputs are acknowledged; exactly_once: outputs, state and offsets of a batch commit in one Kafka transaction per input partition",
    )
    state_changelog: bool = Field(
        True,
        description="write each series' state to a compacted changelog topic and restore it when partitions are assigned",
    )
    changelog_topic: str | None = Field(
        None,
        description="state changelog topic (default: <GROUP_ID>-<INPUT_TOPIC>-changelog)",
    )
    transactional_id_prefix: str | None = Field(
        None,
        description="prefix of the transactional ids, one per input partition, with exactly_once (default: GROUP_ID)",
    )
    transaction_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="with exactly_once, how long one partition's transaction may take before it is given up, its producer replaced and the partition reprocessed from the committed offset",
    )
    model_path: Path = Field(
        default_factory=default_model_path,
        description="model.onnx.json of the model to load (its SHA-256 is checked)",
    )
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="alert threshold on the score (default: from the model metadata)",
    )
    lag_points: int | None = Field(
        None,
        ge=0,
        description="points to wait before a point's score is final (default: from the model metadata)",
    )
    episode_gap_points: int = Field(
        16,
        ge=0,
        description="points below the threshold that end an anomalous episode; only the first anomaly of an episode is published (0 publishes every one)",
    )
    model_check_seconds: float = Field(
        30.0,
        ge=0,
        description="how often to check the model files for a change and reload them (0: only on SIGHUP)",
    )
    max_series: int = Field(
        1_000_000,
        ge=1,
        description="series held at most; the least recently seen are evicted beyond it",
    )
    series_idle_seconds: float = Field(
        86_400.0, gt=0, description="a series with no point for this long is evicted"
    )
    max_future_seconds: float = Field(
        86_400.0,
        gt=0,
        description="points timestamped further than this ahead of the consumer's "
        "clock are sent to the dead-letter topic, because one such point would "
        "put every later point of its series out of order",
    )
    max_payload_bytes: int = Field(
        4096,
        ge=64,
        description="larger message values are sent to the dead-letter topic",
    )
    max_batch_points: int = Field(
        2000, ge=1, description="records fetched and scored together at most"
    )
    inference_sessions: int = Field(
        1,
        ge=1,
        description="ONNX Runtime sessions that score the chunks of a batch in parallel threads, one core each (2 suits a consumer with two cores to itself)",
    )
    stride: int = Field(
        1,
        ge=1,
        description="score only the window that ends at every STRIDE-th point of a series, to keep up with inputs faster than the model (1 to the window size); lag_points is raised to at least STRIDE - 1",
    )
    poll_timeout_ms: int = Field(
        200, ge=1, description="how long one fetch waits for records"
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="address the /metrics, /healthz and /readyz server binds to",
    )
    metrics_port: int = Field(
        9108,
        ge=0,
        le=65535,
        description="port of the metrics server (0 picks a free one)",
    )
    start_timeout_seconds: float = Field(
        300.0,
        gt=0,
        description="how long to retry an unreachable broker at start before exiting",
    )
    metadata_max_age_ms: int = Field(
        300_000,
        ge=100,
        description="milliseconds between Kafka metadata refreshes; new input partitions are found at the next refresh",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        Field("PLAINTEXT", description="Kafka security protocol")
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism when the protocol is SASL_*"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password (never logged)"
    )
    ssl_cafile: Path | None = Field(
        None, description="CA certificate (PEM) that signed the brokers' certificates"
    )
    ssl_certfile: Path | None = Field(
        None, description="client certificate (PEM) for mutual TLS"
    )
    ssl_keyfile: Path | None = Field(
        None, description="private key (PEM) of the client certificate"
    )
    ssl_check_hostname: bool = Field(
        True, description="check that broker certificates match their host names"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="log level"
    )

    @property
    def changelog_topic_name(self) -> str:
        return self.changelog_topic or f"{self.group_id}-{self.input_topic}-changelog"

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if (
            self.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE
            and not self.state_changelog
        ):
            raise ValueError(
                "ANOMALYBERT_PROCESSING_GUARANTEE=exactly_once needs "
                "ANOMALYBERT_STATE_CHANGELOG=true"
            )
        if self.security_protocol.startswith("SASL") and (
            not self.sasl_username or self.sasl_password is None
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs ANOMALYBERT_SASL_USERNAME "
                "and ANOMALYBERT_SASL_PASSWORD"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "set both ANOMALYBERT_SSL_CERTFILE and ANOMALYBERT_SSL_KEYFILE, or neither"
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(
                    f"ANOMALYBERT_{name.upper()}={str(path)!r} is not a file; "
                    "point it at a PEM file or unset it"
                )
        if self.security_protocol in ("SSL", "SASL_SSL"):
            # Load the certificates now, so that a bad file fails at start-up
            # with the setting's name instead of at the first connection.
            try:
                self._ssl_context()
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    "the TLS files of ANOMALYBERT_SSL_CAFILE, ANOMALYBERT_SSL_CERTFILE "
                    f"and ANOMALYBERT_SSL_KEYFILE could not be loaded ({exc}); check "
                    "that they are PEM files and that the key matches the certificate"
                ) from None
        return self

    def _ssl_context(self) -> ssl.SSLContext:
        from aiokafka.helpers import create_ssl_context

        context = create_ssl_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
            certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
            keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
        )
        context.check_hostname = self.ssl_check_hostname
        return context

    def kafka_options(self) -> dict[str, object]:
        """Return the connection and security options shared by consumer and producer."""
        options: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "metadata_max_age_ms": self.metadata_max_age_ms,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = self._ssl_context()
        if self.security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            assert self.sasl_password is not None
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return options


def settings_help() -> str:
    """Describe every setting with its environment variable and default."""
    lines = ["Settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, StrEnum):
            default = default.value
        if name == "sasl_password":
            default = "(unset)"
        lines.append(f"  ANOMALYBERT_{name.upper()}")
        description = field.description or ""
        if "(default:" in description:
            # The description already states the default in words.
            lines.append(f"      {description}")
        else:
            lines.append(f"      {description} [default: {default}]")
    return "\n".join(lines)
