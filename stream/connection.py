"""Diagnosis of a failed Kafka connection: retry it, or give up at once.

aiokafka logs why a bootstrap connection failed and then raises only
``KafkaConnectionError("Unable to bootstrap ...")``, the same error as for a
broker that is down. A wrong password or an untrusted certificate will not fix
itself, so the consumer opens one connection of its own to learn the cause.
"""

from __future__ import annotations

import logging
import ssl

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from stream.settings import Settings

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_MS = 10_000


async def find_permanent_failure(settings: Settings) -> str | None:
    """Return why the brokers reject this client for good, or None to retry.

    Authentication and TLS failures are permanent. A refused, reset or timed
    out connection returns None, because a broker that is starting gives those.
    The message names the settings to fix and never contains the password.
    """
    options = settings.kafka_options()
    for host, port, _family in collect_hosts(settings.kafka_bootstrap_servers):
        address = f"{host}:{port}"
        try:
            connection = await create_conn(
                host,
                port,
                client_id=settings.client_id,
                request_timeout_ms=PROBE_TIMEOUT_MS,
                ssl_context=options.get("ssl_context"),
                security_protocol=settings.security_protocol,
                sasl_mechanism=options.get("sasl_mechanism"),
                sasl_plain_username=options.get("sasl_plain_username"),
                sasl_plain_password=options.get("sasl_plain_password"),
            )
        except (
            SaslAuthenticationFailed,
            AuthenticationFailedError,
            IllegalSaslStateError,
        ) as exc:
            return (
                f"SASL authentication as user {settings.sasl_username!r} with "
                f"{settings.sasl_mechanism} failed at {address} ({exc}); check "
                "ANOMALYBERT_SASL_USERNAME, ANOMALYBERT_SASL_PASSWORD and "
                "ANOMALYBERT_SASL_MECHANISM"
            )
        except UnsupportedSaslMechanismError as exc:
            return (
                f"the broker at {address} does not offer SASL mechanism "
                f"{settings.sasl_mechanism} ({exc}); set ANOMALYBERT_SASL_MECHANISM "
                "to one that the broker enables"
            )
        except ssl.SSLCertVerificationError as exc:
            return (
                f"the TLS certificate of {address} failed verification "
                f"({exc.verify_message}); set ANOMALYBERT_SSL_CAFILE to the CA that "
                "signed it, and check ANOMALYBERT_SSL_CHECK_HOSTNAME"
            )
        except ssl.SSLError as exc:
            return (
                f"the TLS handshake with {address} failed ({exc.reason or exc}); check "
                "that the listener uses TLS (ANOMALYBERT_SECURITY_PROTOCOL="
                f"{settings.security_protocol}) and the ANOMALYBERT_SSL_* settings"
            )
        # OSError includes TimeoutError and refused or reset connections.
        except (OSError, KafkaError) as exc:
            logger.debug("connection check of %s failed, will retry: %r", address, exc)
            continue
        connection.close()
    return None
