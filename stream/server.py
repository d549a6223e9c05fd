"""A small asyncio HTTP server for /metrics, /healthz and /readyz."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stream.errors import AnomalyBertError

logger = logging.getLogger(__name__)

# Limits on the request head (the request line and the header lines). A client
# over a size limit gets 414 or 431 and one that is too slow gets 408, so a
# client that trickles headers cannot hold a connection open.
MAX_REQUEST_LINE_BYTES = 8192  # line end excluded
MAX_HEADER_LINE_BYTES = 8192  # one header line, line end excluded
MAX_HEADER_LINES = 100
MAX_HEADER_BYTES = 32768  # all header lines together, line ends included
REQUEST_HEAD_TIMEOUT_S = 5.0  # for the whole head, not per line
WRITE_TIMEOUT_S = 5.0
# After rejecting a head, the server discards what the client is still sending
# for at most this long, so the client reads the response instead of a reset.
LINGER_TIMEOUT_S = 1.0
MAX_LINGER_BYTES = 65536


class RequestRejected(Exception):
    """A request head that breaks a limit, with the HTTP status to send."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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
                self._handle,
                self._host,
                self._port,
                limit=max(MAX_REQUEST_LINE_BYTES, MAX_HEADER_LINE_BYTES) + 1,
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
        peer = writer.get_extra_info("peername")
        try:
            await self._serve(reader, writer, peer)
        except (TimeoutError, ConnectionError) as exc:
            logger.debug("metrics request from %s failed: %r", peer, exc)
        finally:
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> None:
        try:
            async with asyncio.timeout(REQUEST_HEAD_TIMEOUT_S):
                request_line = await read_request_head(reader)
        except TimeoutError:
            logger.debug(
                "metrics request from %s: request head timed out after %g s",
                peer,
                REQUEST_HEAD_TIMEOUT_S,
            )
            message = f"request head timed out after {REQUEST_HEAD_TIMEOUT_S:g} s\n"
            await send_response(writer, "408 Request Timeout", message.encode())
            return
        except RequestRejected as exc:
            logger.debug("metrics request from %s rejected: %s", peer, exc.reason)
            await send_response(writer, exc.status, f"{exc.reason}\n".encode())
            await discard_input(reader, writer)
            return
        if not request_line:
            return  # the client closed the connection without a request
        parts = request_line.decode("latin-1").split()
        status, body, content_type = self._route(parts, peer)
        send_body = bool(parts) and parts[0] != "HEAD"
        await send_response(writer, status, body, content_type, send_body=send_body)

    def _route(self, parts: list[str], peer: object) -> tuple[str, bytes, str]:
        """Return the status, body and content type for a split request line."""
        if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"use GET\n", "text/plain"
        try:
            path = request_path(parts[1])
        except ValueError as exc:
            logger.debug(
                "metrics request from %s rejected: invalid request target %r: %s",
                peer,
                parts[1][:200],
                exc,
            )
            message = f"invalid request target ({exc}); send a path such as /metrics\n"
            return "400 Bad Request", message.encode(), "text/plain"
        if path == "/metrics":
            return "200 OK", generate_latest(self._registry), CONTENT_TYPE_LATEST
        if path == "/healthz":
            return "200 OK", b"ok\n", "text/plain"
        if path == "/readyz":
            if self._is_ready():
                return "200 OK", b"ready\n", "text/plain"
            return "503 Service Unavailable", b"not ready\n", "text/plain"
        return "404 Not Found", b"not found\n", "text/plain"


def request_path(target: str) -> str:
    """Return the path of a request target, without its query.

    Accepts the origin form (``/metrics``) and the absolute form
    (``http://host:port/metrics``), which RFC 9112, section 3.2.2 requires
    servers to accept. The host in an absolute URL is ignored, because the
    server has one set of paths. Raises ``ValueError`` for a URL that
    :func:`urllib.parse.urlsplit` cannot split, such as an unclosed IPv6 host.
    """
    url = urlsplit(target)
    if url.scheme in ("http", "https") and url.netloc:
        return url.path or "/"
    return target.split("?", 1)[0]


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    """Read the request line and skip the header lines, then return the request line.

    Returns ``b""`` when the client closes before sending anything. Raises
    :class:`RequestRejected` when the head breaks a size or count limit.
    """
    request_line = await read_line(
        reader, MAX_REQUEST_LINE_BYTES, "414 URI Too Long", "request line"
    )
    if not request_line:
        return b""
    header_lines = 0
    header_bytes = 0
    while True:
        line = await read_line(
            reader,
            MAX_HEADER_LINE_BYTES,
            "431 Request Header Fields Too Large",
            "header line",
        )
        if line in (b"\r\n", b"\n", b""):
            return request_line
        header_lines += 1
        header_bytes += len(line)
        if header_lines > MAX_HEADER_LINES:
            raise RequestRejected(
                "431 Request Header Fields Too Large",
                f"more than {MAX_HEADER_LINES} header lines; send fewer headers",
            )
        if header_bytes > MAX_HEADER_BYTES:
            raise RequestRejected(
                "431 Request Header Fields Too Large",
                f"header lines longer than {MAX_HEADER_BYTES} bytes in all; "
                "send fewer or shorter headers",
            )


async def read_line(
    reader: asyncio.StreamReader, limit: int, status: str, name: str
) -> bytes:
    """Read one line of at most ``limit`` bytes before its line end.

    At end of input, returns what arrived (``b""`` if nothing did). The reader's
    own buffer limit (``start_server(limit=...)``) stops it from buffering more
    than ``limit + 1`` bytes while it looks for the line end.
    """
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        line = exc.partial
    except asyncio.LimitOverrunError:
        line = None
    if line is None or len(line.rstrip(b"\r\n")) > limit:
        raise RequestRejected(
            status, f"{name} longer than {limit} bytes; send a shorter {name}"
        )
    return line


async def send_response(
    writer: asyncio.StreamWriter,
    status: str,
    body: bytes,
    content_type: str = "text/plain",
    *,
    send_body: bool = True,
) -> None:
    """Write a response that closes the connection, waiting at most WRITE_TIMEOUT_S."""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1"))
    if send_body:
        writer.write(body)
    async with asyncio.timeout(WRITE_TIMEOUT_S):
        await writer.drain()


async def discard_input(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Half-close, then read and drop the client's input until it closes.

    Closing with unread input makes the kernel send a reset, which can destroy
    the response before the client reads it. Gives up after LINGER_TIMEOUT_S or
    MAX_LINGER_BYTES.
    """
    if writer.can_write_eof():
        writer.write_eof()
    discarded = 0
    try:
        async with asyncio.timeout(LINGER_TIMEOUT_S):
            while discarded < MAX_LINGER_BYTES:
                chunk = await reader.read(MAX_LINGER_BYTES - discarded)
                if not chunk:
                    return
                discarded += len(chunk)
    except TimeoutError:
        return
