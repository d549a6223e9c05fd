"""A logging filter that masks secrets, such as the SASL password, in log records.

aiokafka logs every request at DEBUG level, and the SASL PLAIN request carries
the password in clear text (aiokafka 0.14.0, logger ``aiokafka.conn``). The
filter replaces each registered secret in a record's formatted message with
``***``, so DEBUG logs can be shared.
"""

from __future__ import annotations

import logging

MASK = "***"

# Loggers that log protocol requests. A filter on a logger applies only to the
# records created by that logger, not to those of its children.
PROTOCOL_LOGGERS = ("aiokafka", "aiokafka.conn", "aiokafka.client")


class SecretFilter(logging.Filter):
    """Log filter that replaces registered secrets in messages and drops no record."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if not secret:
            return
        self._secrets.add(secret)
        # Requests are logged as bytes reprs, where a non-ASCII secret shows up
        # as \x escapes.
        self._secrets.add(repr(secret.encode("utf-8"))[2:-1])

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        masked = message
        for secret in self._secrets:
            masked = masked.replace(secret, MASK)
        if masked != message:
            record.msg = masked
            record.args = ()
        return True


_filter = SecretFilter()


def redact_secret(secret: str) -> None:
    """Mask ``secret`` in the records of the Kafka client's loggers from now on."""
    _filter.add(secret)
    for name in PROTOCOL_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)


def redact_in_handlers(root: logging.Logger | None = None) -> None:
    """Add the filter to the root logger's handlers, which see every logger's records."""
    for handler in (root or logging.getLogger()).handlers:
        if _filter not in handler.filters:
            handler.addFilter(_filter)
