"""A small asyncio HTTP server for /metrics, /healthz and /readyz."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stream.errors import AnomalyBertError

logger = logging.getLogger(__name__)

MAX_REQUEST_LINE_BYTES = 8192


class MetricsServer:
    """Serves the registry at ``/metrics``; ``/readyz`` calls ``is_ready``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        is_ready: Callable[[], bool],
    ) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._is_ready = is_ready
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._handle, self._host, self._port
            )
        except OSError as exc:
            raise AnomalyBertError(
                f"cannot serve metrics on {self._host}:{self._port}: {exc.strerror}; "
                "free the port or set ANOMALYBERT_METRICS_PORT"
            ) from exc
        logger.info(
            "serving /metrics, /healthz and /readyz on %s:%d", self._host, self.port
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while True:  # skip the headers
                line = await asyncio.wait_for(reader.readline(), timeout=5)
                if line in (b"\r\n", b"\n", b""):
                    break
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, body, content_type = (
                    "405 Method Not Allowed",
                    b"use GET\n",
                    "text/plain",
                )
            elif path == "/metrics":
                status, body, content_type = (
                    "200 OK",
                    generate_latest(self._registry),
                    CONTENT_TYPE_LATEST,
                )
            elif path == "/healthz":
                status, body, content_type = "200 OK", b"ok\n", "text/plain"
            elif path == "/readyz":
                ready = self._is_ready()
                status = "200 OK" if ready else "503 Service Unavailable"
                body = b"ready\n" if ready else b"not ready\n"
                content_type = "text/plain"
            else:
                status, body, content_type = (
                    "404 Not Found",
                    b"not found\n",
                    "text/plain",
                )
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1"))
            if parts and parts[0] != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError) as exc:
            logger.debug("metrics request failed: %s", exc)
        finally:
            writer.close()
