"""Settings of the consumer, read once from ``ANOMALYBERT_*`` environment variables."""

from __future__ import annotations

import ssl
import stat
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.model import default_model_path

TLS_FILE_FIELDS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
POINT_AT_PEM_FILE = "point it at a PEM file or unset it"


def _env_name(field: str) -> str:
    """Return the environment variable of a Settings field."""
    return f"ANOMALYBERT_{field.upper()}"


def _unreadable_file_reason(path: Path) -> str | None:
    """Return why ``path`` is not a readable regular file, with the fix, or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"was not found; {POINT_AT_PEM_FILE}"
    except PermissionError:
        return (
            "is not readable (permission denied on a folder of its path); give the "
            "consumer's user search access to its folders"
        )
    except OSError as exc:
        return f"could not be read ({exc.strerror}); {POINT_AT_PEM_FILE}"
    if stat.S_ISDIR(mode):
        return f"is a directory, not a file; {POINT_AT_PEM_FILE}"
    if not stat.S_ISREG(mode):
        return f"is not a regular file; {POINT_AT_PEM_FILE}"
    try:
        with path.open("rb"):
            pass
    except PermissionError:
        return (
            "is not readable (permission denied); give the consumer's user read "
            "access to it"
        )
    except OSError as exc:
        return f"could not be read ({exc.strerror}); {POINT_AT_PEM_FILE}"
    return None


class _KeyPasswordRequestedError(Exception):
    """Error that the password callback raises when OpenSSL reads an encrypted key."""


def _reject_key_password() -> str:
    # Without a callback, OpenSSL would prompt for the password on the terminal.
    raise _KeyPasswordRequestedError


def _check_pem_certificates(field: str, path: Path) -> None:
    """Raise ValueError unless ``path`` contains at least one PEM certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ValueError(
            f"{_env_name(field)}={str(path)!r} is not a valid PEM file ({exc}); point "
            "it at a PEM certificate (openssl x509 -inform der -in FILE -out FILE.pem "
            "converts a DER one)"
        ) from None


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
        None, description="unencrypted private key (PEM) of the client certificate"
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
        if self.security_protocol.startswith("SASL"):
            self._check_sasl_credentials()
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "set both ANOMALYBERT_SSL_CERTFILE and ANOMALYBERT_SSL_KEYFILE, or neither"
            )
        for name in TLS_FILE_FIELDS:
            path = getattr(self, name)
            reason = None if path is None else _unreadable_file_reason(path)
            if reason is not None:
                raise ValueError(f"{_env_name(name)}={str(path)!r} {reason}")
        if self.security_protocol in ("SSL", "SASL_SSL"):
            # Load the certificates now, so that a bad file fails at start-up
            # with the setting's name instead of at the first connection.
            self._check_tls_contents()
            try:
                self._ssl_context()
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    "the TLS files of ANOMALYBERT_SSL_CAFILE, ANOMALYBERT_SSL_CERTFILE "
                    f"and ANOMALYBERT_SSL_KEYFILE could not be loaded ({exc}); check "
                    "that they are PEM files and that the key matches the certificate"
                ) from None
        return self

    def _check_sasl_credentials(self) -> None:
        """Reject an unset, empty or whitespace-only SASL user name or password.

        The message names the variables and never contains their values.
        """
        password = self.sasl_password
        credentials = {
            "sasl_username": self.sasl_username,
            "sasl_password": None if password is None else password.get_secret_value(),
        }
        problems: dict[str, str] = {}
        for name, value in credentials.items():
            if value is None:
                problems[_env_name(name)] = "is not set"
            elif not value.strip():
                problems[_env_name(name)] = "is empty or only whitespace"
        if problems:
            found = " and ".join(
                f"{name} {problem}" for name, problem in problems.items()
            )
            raise ValueError(
                f"ANOMALYBERT_SECURITY_PROTOCOL={self.security_protocol} needs a SASL "
                f"user name and password, but {found}; set {' and '.join(problems)} "
                "for the consumer's Kafka user"
            )

    def _check_tls_contents(self) -> None:
        """Load each TLS file alone, so that an error names the file at fault."""
        if self.ssl_cafile is not None:
            _check_pem_certificates("ssl_cafile", self.ssl_cafile)
        if self.ssl_certfile is None or self.ssl_keyfile is None:
            return
        _check_pem_certificates("ssl_certfile", self.ssl_certfile)
        keyfile_setting = f"ANOMALYBERT_SSL_KEYFILE={str(self.ssl_keyfile)!r}"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_cert_chain(
                self.ssl_certfile, self.ssl_keyfile, password=_reject_key_password
            )
        except _KeyPasswordRequestedError:
            raise ValueError(
                f"{keyfile_setting} is an encrypted private key, and no setting "
                "supplies its password; point it at an unencrypted key (openssl pkey "
                "-in KEY -out KEY.pem writes one)"
            ) from None
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise ValueError(
                    f"{keyfile_setting} does not match the certificate in "
                    f"ANOMALYBERT_SSL_CERTFILE={str(self.ssl_certfile)!r}; point it "
                    "at that certificate's private key"
                ) from None
            # OpenSSL reports "[SSL] PEM lib" without a reason. The certificate
            # passed its own check above, so the key file contains no PEM private
            # key. Other reasons fall through to the check of the whole context.
            if exc.reason is None:
                raise ValueError(
                    f"{keyfile_setting} is not a valid PEM private key ({exc}); "
                    "point it at the PEM private key of the client certificate"
                ) from None

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
