"""Brokers of one test module, on their own ports and data folders.

Tests that stop, restart or secure a broker use a :class:`PrivateBroker`, so
the shared broker of ``kafka_bootstrap`` is never disturbed. Each one runs
``deploy/kafka/local-kafka.sh`` with ``LOCAL_KAFKA_PORT`` set to a free port
between 19100 and 19999 and ``LOCAL_KAFKA_DATA`` set to a temporary folder.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "deploy" / "kafka" / "local-kafka.sh"
HOST = "127.0.0.1"

# A cold start fetches the jars first (see tests/kafka_broker.py).
START_TIMEOUT_S = 600
STOP_TIMEOUT_S = 120
TOOL_TIMEOUT_S = 120


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """Return a port P in 19100-19998 where P (client) and P + 1 (controller) are free."""
    candidates = list(range(19100, 19999))
    random.shuffle(candidates)
    for port in candidates:
        if port_is_free(port) and port_is_free(port + 1):
            return port
    raise RuntimeError("no free pair of ports between 19100 and 19999")


class PrivateBroker:
    """A broker that ``local-kafka.sh`` runs for one test module.

    ``env`` adds LOCAL_KAFKA_* settings, for example the security mode.
    """

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port_pair()
        self.bootstrap = f"{HOST}:{self.port}"
        self.data_dir = data_dir
        self.env = dict(
            os.environ,
            LOCAL_KAFKA_PORT=str(self.port),
            LOCAL_KAFKA_DATA=str(data_dir),
            **(env or {}),
        )
        self.running = False

    def _run(self, args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{SCRIPT} {args[0]} on port {self.port} failed with exit status "
                f"{result.returncode}:\n{result.stderr}\n{result.stdout}"
            )
        return result

    def start(self) -> None:
        result = self._run(["start"], START_TIMEOUT_S)
        log.info("broker on port %d: %s", self.port, result.stderr.strip())
        self.running = True

    def stop(self) -> None:
        self._run(["stop"], STOP_TIMEOUT_S)
        self.running = False

    def tool(self, *args: str) -> str:
        """Run a Kafka tool class from the jar cache; return its output."""
        result = self._run(["tool", *args], TOOL_TIMEOUT_S)
        return result.stdout

    @property
    def admin_config(self) -> Path:
        """The admin client properties that local-kafka.sh wrote (readiness check)."""
        return self.data_dir / "admin-client.properties"


@dataclass(frozen=True)
class TlsMaterial:
    """A test CA and the broker's PKCS12 stores, all with one store password."""

    ca_pem: Path
    keystore: Path
    truststore: Path
    store_password: str


def make_tls_material(directory: Path) -> TlsMaterial:
    """Create a throwaway CA and a broker certificate for 127.0.0.1 with openssl and keytool."""
    directory.mkdir(parents=True, exist_ok=True)
    password = "test-store-" + os.urandom(6).hex()

    def run(*args: str) -> None:
        subprocess.run(args, cwd=directory, check=True, capture_output=True, text=True)

    run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=anomalybert test CA",
    )  # fmt: skip
    run(
        "openssl", "req", "-newkey", "rsa:2048", "-nodes",
        "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "openssl", "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem",
        "-CAkey", "ca.key", "-CAcreateserial", "-out", "broker.pem", "-days", "2",
        "-extfile", "san.ext",
    )  # fmt: skip
    run(
        "openssl", "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key",
        "-certfile", "ca.pem", "-name", "broker", "-out", "keystore.p12",
        "-passout", f"pass:{password}",
    )  # fmt: skip
    # keytool marks the CA as a trusted certificate entry, which Java needs in a
    # PKCS12 truststore.
    run(
        "keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem",
        "-keystore", "truststore.p12", "-storetype", "PKCS12",
        "-storepass", password,
    )  # fmt: skip
    return TlsMaterial(
        ca_pem=directory / "ca.pem",
        keystore=directory / "keystore.p12",
        truststore=directory / "truststore.p12",
        store_password=password,
    )
