"""Tests of the metrics HTTP server over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from stream.errors import AnomalyBertError
from stream.server import (
    MAX_HEADER_BYTES,
    MAX_HEADER_LINE_BYTES,
    MAX_HEADER_LINES,
    MAX_REQUEST_LINE_BYTES,
    REQUEST_HEAD_TIMEOUT_S,
    MetricsServer,
)

PORTS = range(39700, 39800)
CLIENT_TIMEOUT_S = 10


@pytest.fixture
async def server():
    for port in PORTS:
        candidate = MetricsServer(CollectorRegistry(), "127.0.0.1", port, lambda: True)
        try:
            await candidate.start()
        except AnomalyBertError:
            continue
        break
    else:
        pytest.fail(f"no free port in {PORTS.start}-{PORTS.stop - 1}")
    yield candidate
    await candidate.stop()


async def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` and return everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), CLIENT_TIMEOUT_S)
    finally:
        writer.close()


def request_with(headers: list[bytes], target: bytes = b"/healthz") -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", *headers, b"", b""]
    return b"\r\n".join(lines)


def header_of_length(name: bytes, length: int) -> bytes:
    prefix = name + b": "
    return prefix + b"x" * (length - len(prefix))


async def test_request_served(server):
    request = request_with([b"Host: 127.0.0.1", b"Accept: */*"])
    response = await exchange(server.port, request)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"\r\n\r\nok\n")


async def test_head_at_limits_served(server):
    # The request line, one header line and the header count each at their limit.
    prefix = b"GET /healthz?pad="
    suffix = b" HTTP/1.1"
    padding = b"p" * (MAX_REQUEST_LINE_BYTES - len(prefix) - len(suffix))
    target = b"/healthz?pad=" + padding
    headers = [header_of_length(b"X-Long", MAX_HEADER_LINE_BYTES)]
    headers += [b"X-Short-%d: 1" % i for i in range(MAX_HEADER_LINES - 1)]
    request = request_with(headers, target)
    assert len(request.split(b"\r\n")[0]) == MAX_REQUEST_LINE_BYTES
    assert sum(len(h) + 2 for h in headers) <= MAX_HEADER_BYTES
    response = await exchange(server.port, request)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_long_request_line_rejected(server):
    target = b"/healthz?pad=" + b"p" * MAX_REQUEST_LINE_BYTES
    response = await exchange(server.port, request_with([], target))
    assert response.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert b"request line longer than 8192 bytes" in response


async def test_long_header_line_rejected(server):
    header = header_of_length(b"X-Long", MAX_HEADER_LINE_BYTES + 1)
    response = await exchange(server.port, request_with([header]))
    assert response.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"header line longer than 8192 bytes" in response


async def test_too_many_header_lines_rejected(server):
    headers = [b"X-Short-%d: 1" % i for i in range(MAX_HEADER_LINES + 1)]
    response = await exchange(server.port, request_with(headers))
    assert response.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"more than 100 header lines" in response


async def test_large_header_total_rejected(server):
    count = MAX_HEADER_BYTES // MAX_HEADER_LINE_BYTES + 1
    headers = [
        header_of_length(b"X-L%d" % i, MAX_HEADER_LINE_BYTES) for i in range(count)
    ]
    assert count <= MAX_HEADER_LINES
    response = await exchange(server.port, request_with(headers))
    assert response.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"longer than 32768 bytes in all" in response


async def test_slow_head_timed_out(server):
    """A client that sends one header line a second is cut off at the deadline."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    reading = asyncio.create_task(reader.read())
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        # Trickle headers for longer than the deadline, then end the head.
        for i in range(int(REQUEST_HEAD_TIMEOUT_S) + 3):
            done, _ = await asyncio.wait({reading}, timeout=1.0)
            if done:
                break
            try:
                writer.write(b"X-Trickle-%d: 1\r\n" % i)
                await writer.drain()
            except ConnectionError:
                break
        else:
            writer.write(b"\r\n")
        response = await asyncio.wait_for(reading, CLIENT_TIMEOUT_S)
        closed_after = loop.time() - started
    finally:
        reading.cancel()
        writer.close()
    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert closed_after < REQUEST_HEAD_TIMEOUT_S + 1.5


async def test_early_close_ignored(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /heal")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    response = await exchange(server.port, request_with([]))
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_absolute_form_metrics_served(server):
    # RFC 9112, section 3.2.2 requires servers to accept a request target in
    # absolute form, the full URL that clients send to a proxy.
    target = b"http://127.0.0.1:%d/metrics" % server.port
    response = await exchange(server.port, request_with([], target))
    expected = await exchange(server.port, request_with([], b"/metrics"))
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: " + CONTENT_TYPE_LATEST.encode() + b"\r\n" in response
    assert response == expected


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"http://127.0.0.1:{port}/healthz", b"200 OK"),
        (b"http://127.0.0.1:{port}/healthz?probe=1", b"200 OK"),
        (b"HTTP://127.0.0.1:{port}/healthz", b"200 OK"),
        # The server has one set of paths, so it ignores the host in the URL.
        (b"http://other.example/readyz", b"200 OK"),
        (b"http://127.0.0.1:{port}/other", b"404 Not Found"),
        (b"http://127.0.0.1:{port}/other/metrics", b"404 Not Found"),
        # An empty path is "/", which is not served.
        (b"http://127.0.0.1:{port}", b"404 Not Found"),
        # Origin form with a path that starts with "//", not a URL.
        (b"//127.0.0.1/metrics", b"404 Not Found"),
        # urlsplit rejects an IPv6 host without its closing bracket.
        (b"http://[::1/metrics", b"400 Bad Request"),
    ],
)
async def test_absolute_form_routed_by_path(server, target, status):
    target = target.replace(b"{port}", b"%d" % server.port)
    response = await exchange(server.port, request_with([], target))
    assert response.startswith(b"HTTP/1.1 " + status + b"\r\n")
