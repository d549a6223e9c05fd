"""The consumer against a broker with TLS, SASL (PLAIN, SCRAM) and ACLs.

The module starts a private broker in ``LOCAL_KAFKA_SECURITY=sasl_ssl`` mode
with a throwaway CA, an ``admin`` super user and an ``app`` user for the
consumer, and the StandardAuthorizer. Topics without ACLs are open to every
authenticated user, so a test can take write access away with one DENY ACL.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import TopicPartition
from consumer_harness import (
    RunningConsumer,
    consumer_env,
    create_topics,
    expected_anomalies,
    published,
    unused_port,
    write_spike_model,
)
from private_broker import PrivateBroker, TlsMaterial, make_tls_material
from prometheus_client import CollectorRegistry
from test_consumer_kafka import point_messages, series_values

import stream.consumer
from stream.consumer import AnomalyConsumer
from stream.errors import AnomalyBertError
from stream.model import load_model
from stream.redact import redact_secret
from stream.server import MetricsServer
from stream.settings import Settings

REPO = Path(__file__).resolve().parent.parent
FAST_EXIT_S = 30


class SecureBroker:
    """The running SASL_SSL broker with its CA and test users."""

    def __init__(self, broker: PrivateBroker, tls: TlsMaterial, passwords: dict):
        self.broker = broker
        self.tls = tls
        self.passwords = passwords
        self.bootstrap = broker.bootstrap

    def client_options(self, user: str = "admin", mechanism: str = "SCRAM-SHA-512"):
        return {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "ssl_context": create_ssl_context(cafile=str(self.tls.ca_pem)),
            "sasl_mechanism": mechanism,
            "sasl_plain_username": user,
            "sasl_plain_password": self.passwords[user],
        }

    def settings_env(self, mechanism: str = "SCRAM-SHA-512", **extra) -> dict:
        """ANOMALYBERT_* settings of a consumer that logs in as ``app``."""
        return {
            "kafka_bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": mechanism,
            "sasl_username": "app",
            "sasl_password": self.passwords["app"],
            "ssl_cafile": self.tls.ca_pem,
            **extra,
        }

    def acl(self, *args: str) -> str:
        return self.broker.tool(
            "org.apache.kafka.tools.AclCommand",
            "--bootstrap-server",
            self.bootstrap,
            "--command-config",
            str(self.broker.admin_config),
            *args,
        )


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    tls = make_tls_material(tmp_path_factory.mktemp("tls"))
    passwords = {
        "admin": "admin-" + os.urandom(8).hex(),
        "app": "app-" + os.urandom(8).hex(),
    }
    extra = tmp_path_factory.mktemp("broker-config") / "authorizer.properties"
    extra.write_text(
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n"
        "allow.everyone.if.no.acl.found=true\n"
        "super.users=User:admin\n"
    )
    broker = PrivateBroker(
        tmp_path_factory.mktemp("kafka-secure"),
        env={
            "LOCAL_KAFKA_SECURITY": "sasl_ssl",
            "LOCAL_KAFKA_SSL_KEYSTORE": str(tls.keystore),
            "LOCAL_KAFKA_SSL_TRUSTSTORE": str(tls.truststore),
            "LOCAL_KAFKA_SSL_PASSWORD": tls.store_password,
            "LOCAL_KAFKA_SASL_USERS": " ".join(
                f"{u}:{p}" for u, p in passwords.items()
            ),
            "LOCAL_KAFKA_EXTRA_CONFIG": str(extra),
        },
    )
    broker.start()
    try:
        yield SecureBroker(broker, tls, passwords)
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return write_spike_model(tmp_path_factory.mktemp("model"))


async def produce(secure: SecureBroker, topic: str, messages) -> None:
    producer = AIOKafkaProducer(acks="all", **secure.client_options())
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(secure: SecureBroker, topic: str, idle_s: float = 2.0) -> list:
    consumer = AIOKafkaConsumer(
        topic, auto_offset_reset="earliest", **secure.client_options()
    )
    await consumer.start()
    records = []
    try:
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_s:
            batch = await consumer.getmany(timeout_ms=300)
            for partition_records in batch.values():
                records.extend(partition_records)
            if batch:
                idle_since = time.monotonic()
    finally:
        await consumer.stop()
    return records


async def committed_offset(secure: SecureBroker, group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(
        group_id=group, enable_auto_commit=False, **secure.client_options()
    )
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


def scrape_metric(port: int, name: str) -> float:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/metrics", timeout=5
    ) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


def topic_settings(topics: dict[str, str], model_path: Path) -> dict:
    return {
        "input_topic": topics["input"],
        "output_topic": topics["output"],
        "dlq_topic": topics["dlq"],
        "group_id": f"group-{topics['input']}",
        "model_path": model_path,
        "poll_timeout_ms": 50,
    }


@pytest.mark.kafka
async def test_sasl_ssl_scram_end_to_end(secure_broker, model_path, tmp_path):
    """The consumer process over SASL_SSL + SCRAM-SHA-512, logging at DEBUG."""
    topics = await create_topics(**secure_broker.client_options())
    values = {"s1": series_values(200), "s2": series_values(200, seed=3)}
    messages = [m for name, v in values.items() for m in point_messages(name, v)]
    await produce(secure_broker, topics["input"], messages)

    port = unused_port()
    env = consumer_env(
        **secure_broker.settings_env(
            log_level="DEBUG",
            metrics_host="127.0.0.1",
            metrics_port=port,
            **topic_settings(topics, model_path),
        )
    )
    # DEBUG output is large: a file, unlike an unread pipe, never blocks it.
    log_path = tmp_path / "consumer.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream.consumer"],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        consumed = 0.0
        while consumed < len(messages) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            try:
                consumed = await asyncio.to_thread(
                    scrape_metric, port, "anomalybert_points_consumed_total"
                )
            except OSError:
                if process.poll() is not None:
                    break
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    output = log_path.read_text()
    assert process.returncode == 0, output[-3000:]
    assert consumed == len(messages)
    assert f"serving /metrics, /healthz and /readyz on 127.0.0.1:{port}" in output

    records = await read_topic(secure_broker, topics["output"])
    want = expected_anomalies(model_path, values)
    assert want
    assert want <= set(published(records))
    assert await committed_offset(
        secure_broker, f"group-{topics['input']}", topics["input"]
    ) == len(messages)

    # DEBUG logs from the consumer and aiokafka never show a password.
    assert "DEBUG" in output
    for password in (
        secure_broker.passwords["app"],
        secure_broker.passwords["admin"],
        secure_broker.tls.store_password,
    ):
        assert password not in output


@pytest.mark.kafka
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_sasl_mechanisms(secure_broker, model_path, mechanism, caplog):
    caplog.set_level(logging.DEBUG)
    topics = await create_topics(**secure_broker.client_options())
    values = {"m": series_values(120)}
    await produce(secure_broker, topics["input"], point_messages("m", values["m"]))
    settings = Settings(
        **secure_broker.settings_env(mechanism),
        **topic_settings(topics, model_path),
        metrics_port=0,
    )
    runner = RunningConsumer(settings)
    async with runner as consumer:
        await runner.wait(
            lambda: consumer.metrics.points_consumed._value.get() >= 120, 60
        )
    records = await read_topic(secure_broker, topics["output"])
    assert expected_anomalies(model_path, values) <= set(published(records))
    assert secure_broker.passwords["app"] not in caplog.text


@pytest.mark.kafka
async def test_wrong_password_fails_fast(secure_broker, model_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + os.urandom(8).hex()
    settings = Settings(
        **secure_broker.settings_env(sasl_password=wrong),
        model_path=model_path,
        metrics_port=0,
    )
    consumer = AnomalyConsumer(settings, load_model(model_path))
    started = time.monotonic()
    try:
        with pytest.raises(AnomalyBertError) as raised:
            await consumer.start()
    finally:
        await consumer.stop()
    assert time.monotonic() - started < FAST_EXIT_S
    message = str(raised.value)
    assert "SASL authentication as user 'app' with SCRAM-SHA-512 failed" in message
    assert "ANOMALYBERT_SASL_PASSWORD" in message
    assert "retrying in" not in caplog.text
    assert wrong not in message
    assert wrong not in caplog.text


@pytest.mark.kafka
async def test_untrusted_certificate_fails_fast(secure_broker, model_path, tmp_path):
    other_ca = make_tls_material(tmp_path / "other").ca_pem
    settings = Settings(
        **secure_broker.settings_env(ssl_cafile=other_ca),
        model_path=model_path,
        metrics_port=0,
    )
    consumer = AnomalyConsumer(settings, load_model(model_path))
    try:
        with pytest.raises(AnomalyBertError) as raised:
            await consumer.start()
    finally:
        await consumer.stop()
    assert "failed verification" in str(raised.value)
    assert "ANOMALYBERT_SSL_CAFILE" in str(raised.value)


@pytest.mark.kafka
async def test_unwritable_output_is_retried(
    secure_broker, model_path, caplog, monkeypatch
):
    """A DENY ACL on the output topic: no commit and no loss until it is lifted."""
    caplog.set_level(logging.WARNING)
    # Retries every 2 s at most, so the test does not wait out a long backoff.
    monkeypatch.setattr(stream.consumer, "MAX_RETRY_DELAY_SECONDS", 2.0)
    topics = await create_topics(**secure_broker.client_options())
    acl = [
        "--deny-principal",
        "User:app",
        "--operation",
        "Write",
        "--topic",
        topics["output"],
    ]
    await asyncio.to_thread(secure_broker.acl, "--add", *acl)

    values = {"w": series_values(200)}
    await produce(secure_broker, topics["input"], point_messages("w", values["w"]))
    settings = Settings(
        **secure_broker.settings_env(),
        **topic_settings(topics, model_path),
        metrics_port=0,
    )
    group = settings.group_id
    runner = RunningConsumer(settings)
    async with runner as consumer:
        await runner.wait(
            lambda: caplog.text.count("could not be produced") >= 2, 60, "two retries"
        )
        assert consumer.metrics.anomalies_published._value.get() == 0
        assert await committed_offset(secure_broker, group, topics["input"]) is None
        await asyncio.to_thread(secure_broker.acl, "--remove", "--force", *acl)
        await runner.wait(
            lambda: consumer.metrics.anomalies_published._value.get() > 0,
            90,
            "the retry after the ACL was removed",
        )
        await asyncio.sleep(1)
    assert await committed_offset(secure_broker, group, topics["input"]) == 200
    retries = [r for r in caplog.records if "could not be produced" in r.getMessage()]
    assert "TopicAuthorizationFailedError" in retries[0].getMessage()
    assert "not committed" in retries[0].getMessage()
    records = await read_topic(secure_broker, topics["output"])
    assert expected_anomalies(model_path, values) <= set(published(records))


@pytest.mark.kafka
async def test_stop_during_retries_leaves_batch(
    secure_broker, model_path, caplog, monkeypatch
):
    """A stop while outputs are retried ends the run and commits nothing."""
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(stream.consumer, "MAX_RETRY_DELAY_SECONDS", 30.0)
    topics = await create_topics(**secure_broker.client_options())
    acl = ["--deny-principal", "User:app", "--operation", "Write"]
    acl += ["--topic", topics["output"]]
    await asyncio.to_thread(secure_broker.acl, "--add", *acl)
    try:
        values = series_values(200)
        await produce(secure_broker, topics["input"], point_messages("w", values))
        settings = Settings(
            **secure_broker.settings_env(),
            **topic_settings(topics, model_path),
            metrics_port=0,
        )
        runner = RunningConsumer(settings)
        async with runner as consumer:
            await runner.wait(
                lambda: "could not be produced" in caplog.text, 60, "a retry"
            )
            consumer.request_stop()
            started = time.monotonic()
            await asyncio.wait_for(asyncio.shield(runner.task), 10)
            stopped_after = time.monotonic() - started
        assert stopped_after < 5
        assert "the batch is not committed" in caplog.text
        group = settings.group_id
        assert await committed_offset(secure_broker, group, topics["input"]) is None
    finally:
        await asyncio.to_thread(secure_broker.acl, "--remove", "--force", *acl)


# --- Without a broker ------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {"ANOMALYBERT_SECURITY_PROTOCOL": "SASL_SSL"},
        {"ANOMALYBERT_SSL_CERTFILE": __file__},
        {"ANOMALYBERT_METRICS_PORT": "not a port"},
        {"ANOMALYBERT_SASL_MECHANISM": "PASSWORD"},
        {"ANOMALYBERT_LOG_LEVEL": "PASSWORD"},
    ],
    ids=["no user name", "certificate without key", "bad port", "swapped", "swapped 2"],
)
def test_invalid_settings_hide_password(monkeypatch, capsys, env):
    password = "pw-" + os.urandom(6).hex()
    monkeypatch.setenv("ANOMALYBERT_SASL_PASSWORD", password)
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("PASSWORD", password))
    assert stream.consumer.main([]) == 2
    error = capsys.readouterr().err
    assert "invalid settings" in error
    assert password not in error


@pytest.fixture
def missing_model(monkeypatch, tmp_path):
    """Point the model path at no file, so that settings which pass validation
    end ``main()`` with status 1 instead of starting a consumer."""
    monkeypatch.setenv("ANOMALYBERT_MODEL_PATH", str(tmp_path / "missing.onnx.json"))


@pytest.mark.parametrize(
    ("env", "variables"),
    [
        ({"ANOMALYBERT_SASL_PASSWORD": ""}, ["ANOMALYBERT_SASL_PASSWORD"]),
        ({"ANOMALYBERT_SASL_PASSWORD": " \t "}, ["ANOMALYBERT_SASL_PASSWORD"]),
        ({"ANOMALYBERT_SASL_USERNAME": ""}, ["ANOMALYBERT_SASL_USERNAME"]),
        ({"ANOMALYBERT_SASL_USERNAME": "  "}, ["ANOMALYBERT_SASL_USERNAME"]),
        (
            {"ANOMALYBERT_SASL_USERNAME": "", "ANOMALYBERT_SASL_PASSWORD": ""},
            ["ANOMALYBERT_SASL_USERNAME", "ANOMALYBERT_SASL_PASSWORD"],
        ),
    ],
    ids=["empty password", "blank password", "empty user", "blank user", "both empty"],
)
@pytest.mark.usefixtures("missing_model")
def test_blank_sasl_credentials_rejected(monkeypatch, capsys, env, variables):
    password = "pw-" + os.urandom(6).hex()
    monkeypatch.setenv("ANOMALYBERT_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("ANOMALYBERT_SASL_USERNAME", "app")
    monkeypatch.setenv("ANOMALYBERT_SASL_PASSWORD", password)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert stream.consumer.main([]) == 2
    error = capsys.readouterr().err
    assert "invalid settings" in error
    assert "ANOMALYBERT_SECURITY_PROTOCOL=SASL_PLAINTEXT" in error
    for variable in variables:
        assert f"{variable} is empty or only whitespace" in error
    assert password not in error


@pytest.mark.usefixtures("missing_model")
def test_unset_sasl_password_named(monkeypatch, capsys):
    monkeypatch.setenv("ANOMALYBERT_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ANOMALYBERT_SASL_USERNAME", "app")
    monkeypatch.delenv("ANOMALYBERT_SASL_PASSWORD", raising=False)
    assert stream.consumer.main([]) == 2
    error = capsys.readouterr().err
    assert "ANOMALYBERT_SASL_PASSWORD is not set" in error
    assert "ANOMALYBERT_SASL_USERNAME" not in error


def test_sasl_password_with_spaces_accepted():
    settings = Settings(
        security_protocol="SASL_PLAINTEXT",
        sasl_username="app",
        sasl_password=" pass word ",
    )
    assert settings.kafka_options()["sasl_plain_password"] == " pass word "


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> Path:
    """A folder with a CA, a client certificate and key, and broken variants."""
    if shutil.which("openssl") is None:
        pytest.skip(
            "the openssl command, which makes the test certificates, is missing"
        )
    folder = tmp_path_factory.mktemp("tls-files")

    def openssl(*args: str) -> None:
        subprocess.run(
            ["openssl", *args], cwd=folder, check=True, capture_output=True, text=True
        )

    for name in ("ca", "client", "other"):
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN=anomalybert test {name}",
        )  # fmt: skip
    openssl(
        "pkey", "-in", "client.key", "-out", "encrypted.key", "-aes256",
        "-passout", "pass:key-password",
    )  # fmt: skip
    (folder / "garbage.txt").write_text("not a PEM file\n")
    (folder / "folder").mkdir()
    return folder


@pytest.mark.parametrize(
    ("name", "file", "message"),
    [
        ("ANOMALYBERT_SSL_CAFILE", "missing.pem", "was not found"),
        ("ANOMALYBERT_SSL_CAFILE", "folder", "is a directory, not a file"),
        ("ANOMALYBERT_SSL_CAFILE", "garbage.txt", "is not a valid PEM file"),
        ("ANOMALYBERT_SSL_CAFILE", "client.key", "is not a valid PEM file"),
        ("ANOMALYBERT_SSL_CERTFILE", "missing.pem", "was not found"),
        ("ANOMALYBERT_SSL_CERTFILE", "garbage.txt", "is not a valid PEM file"),
        ("ANOMALYBERT_SSL_KEYFILE", "missing.key", "was not found"),
        ("ANOMALYBERT_SSL_KEYFILE", "folder", "is a directory, not a file"),
        ("ANOMALYBERT_SSL_KEYFILE", "garbage.txt", "is not a valid PEM private key"),
        ("ANOMALYBERT_SSL_KEYFILE", "client.pem", "is not a valid PEM private key"),
        ("ANOMALYBERT_SSL_KEYFILE", "other.key", "does not match the certificate"),
        ("ANOMALYBERT_SSL_KEYFILE", "encrypted.key", "is an encrypted private key"),
    ],
)
@pytest.mark.usefixtures("missing_model")
def test_bad_tls_file_named(monkeypatch, capsys, tls_files, name, file, message):
    good = {
        "ANOMALYBERT_SSL_CAFILE": tls_files / "ca.pem",
        "ANOMALYBERT_SSL_CERTFILE": tls_files / "client.pem",
        "ANOMALYBERT_SSL_KEYFILE": tls_files / "client.key",
    }
    path = tls_files / file
    monkeypatch.setenv("ANOMALYBERT_SECURITY_PROTOCOL", "SSL")
    for variable, good_path in {**good, name: path}.items():
        monkeypatch.setenv(variable, str(good_path))
    assert stream.consumer.main([]) == 2
    error = capsys.readouterr().err
    assert f"{name}={str(path)!r} {message}" in error
    assert "key-password" not in error


@pytest.mark.usefixtures("missing_model")
def test_missing_tls_file_named_without_tls(monkeypatch, capsys):
    """A missing file is reported even while the protocol does not use TLS."""
    monkeypatch.setenv("ANOMALYBERT_SSL_CAFILE", "/nonexistent/ca.pem")
    assert stream.consumer.main([]) == 2
    error = capsys.readouterr().err
    assert "ANOMALYBERT_SSL_CAFILE='/nonexistent/ca.pem' was not found" in error


@pytest.mark.usefixtures("missing_model")
def test_unreadable_tls_file_named(monkeypatch, capsys, tls_files):
    path = tls_files / "ca.pem"
    original_open = Path.open

    # Root reads a file whatever its mode, so the permission error is simulated.
    def open_without_permission(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return original_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_without_permission)
    monkeypatch.setenv("ANOMALYBERT_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("ANOMALYBERT_SSL_CAFILE", str(path))
    assert stream.consumer.main([]) == 2
    error = capsys.readouterr().err
    assert f"ANOMALYBERT_SSL_CAFILE={str(path)!r} is not readable" in error
    assert "permission denied" in error


def test_valid_tls_files_accepted(tls_files):
    settings = Settings(
        security_protocol="SSL",
        ssl_cafile=tls_files / "ca.pem",
        ssl_certfile=tls_files / "client.pem",
        ssl_keyfile=tls_files / "client.key",
    )
    context = settings.kafka_options()["ssl_context"]
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 1


def test_password_masked_in_client_logs(caplog):
    caplog.set_level(logging.DEBUG)
    password = "pw-" + os.urandom(6).hex()
    redact_secret(password)
    # What aiokafka 0.14.0 logs for a SASL PLAIN request at DEBUG level.
    logging.getLogger("aiokafka.conn").debug(
        "Request to %s: %s", "127.0.0.1:9092", b"\x00app\x00" + password.encode()
    )
    assert password not in caplog.text
    assert "\\x00app\\x00***" in caplog.text


async def test_metrics_server_binds_host():
    assert Settings.model_fields["metrics_host"].default == "127.0.0.1"
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, lambda: True)
    await server.start()
    try:
        addresses = {sock.getsockname()[0] for sock in server._server.sockets}
        assert addresses == {"127.0.0.1"}
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
    finally:
        await server.stop()


# Calls that unpickle: module.function pairs, and whole modules whose loaders do.
PICKLE_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "cloudpickle",
    "joblib",
    "shelve",
    "marshal",
}


def unpickling_calls(path: Path) -> list[str]:
    """Return ``path:line`` descriptions of code that can unpickle data."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = getattr(node, "module", None) or ""
            for name in [module, *names]:
                if name.split(".")[0] in PICKLE_MODULES:
                    found.append(f"{path}:{node.lineno} imports {name}")
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = ast.unparse(node.func.value)
        function = node.func.attr
        keywords = {k.arg: k.value for k in node.keywords}
        call = f"{owner}.{function}"
        if call in ("torch.load", "torch.serialization.load"):
            weights_only = keywords.get("weights_only")
            if not (
                isinstance(weights_only, ast.Constant) and weights_only.value is True
            ):
                found.append(f"{path}:{node.lineno} {call} without weights_only=True")
        elif call in ("np.load", "numpy.load"):
            allow = keywords.get("allow_pickle")
            if allow is not None and not (
                isinstance(allow, ast.Constant) and allow.value is False
            ):
                found.append(f"{path}:{node.lineno} {call} with allow_pickle")
        elif call in ("pd.read_pickle", "pandas.read_pickle", "yaml.unsafe_load"):
            found.append(f"{path}:{node.lineno} {call}")
        elif call == "yaml.load":
            loader = keywords.get("Loader")
            if loader is None or "Safe" not in ast.unparse(loader):
                found.append(f"{path}:{node.lineno} yaml.load without a safe Loader")
    return found


def test_no_code_unpickles():
    sources = [
        path
        for folder in ("stream", "training")
        for path in sorted((REPO / folder).rglob("*.py"))
    ]
    assert sources
    found = [entry for path in sources for entry in unpickling_calls(path)]
    assert found == []


def test_unpickling_scan_finds_calls(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import pickle\n"
        "import numpy as np\n"
        "import torch\n"
        "torch.load('m.pt')\n"
        "torch.load('m.pt', weights_only=True)\n"
        "np.load('a.npz', allow_pickle=True)\n"
        "np.load('a.npz', allow_pickle=False)\n"
    )
    found = unpickling_calls(sample)
    assert len(found) == 3, found
    assert "imports pickle" in found[0]
    assert "torch.load without weights_only=True" in found[1]
    assert "np.load with allow_pickle" in found[2]
