"""Tests of decoding Kafka messages into points, one reason code per failure."""

from __future__ import annotations

import json

import pytest

from stream.decode import MAX_SERIES_CHARS, decode_point
from stream.errors import InvalidPointError
from stream.points import Point

LIMIT = 1024
# 2014-04-10 07:15:00 UTC
APRIL_10 = 1397114100.0


def message(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def reason_of(key: bytes | None, value: bytes | None) -> str:
    with pytest.raises(InvalidPointError) as caught:
        decode_point(key, value, LIMIT)
    return caught.value.reason


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (b"pump-7", message(timestamp=1397114100, value=1.5), Point("pump-7", APRIL_10, 1.5)),
        (b"pump-7", message(timestamp=1397114100.5, value=-2), Point("pump-7", APRIL_10 + 0.5, -2.0)),
        (b"pump-7", message(timestamp="2014-04-10 07:15:00", value=0), Point("pump-7", APRIL_10, 0.0)),
        (b"pump-7", message(timestamp="2014-04-10T07:15:00Z", value=1), Point("pump-7", APRIL_10, 1.0)),
        (b"pump-7", message(timestamp="2014-04-10T09:15:00+02:00", value=1), Point("pump-7", APRIL_10, 1.0)),
        (b"pump-7", message(timestamp="1397114100", value="2.5"), Point("pump-7", APRIL_10, 2.5)),
        # The series comes from the value when the key is empty or absent.
        (b"", message(series="fan-1", timestamp=1397114100, value=3), Point("fan-1", APRIL_10, 3.0)),
        (None, message(series="fan-1", timestamp=1397114100, value=3), Point("fan-1", APRIL_10, 3.0)),
        # A non-empty key overrides the series field.
        (b"pump-7", message(series="fan-1", timestamp=1397114100, value=3), Point("pump-7", APRIL_10, 3.0)),
        ("ünï".encode(), message(timestamp=1397114100, value=1, extra=[1, 2]), Point("ünï", APRIL_10, 1.0)),
        (b"k" * MAX_SERIES_CHARS, message(timestamp=0, value=1), Point("k" * MAX_SERIES_CHARS, 0.0, 1.0)),
    ],
)  # fmt: skip
def test_decode_valid(key, value, expected):
    assert decode_point(key, value, LIMIT) == expected


def test_payload_at_limit_accepted():
    value = message(timestamp=1, value=1, pad="")
    value = message(timestamp=1, value=1, pad="x" * (LIMIT - len(value)))
    assert len(value) == LIMIT
    assert decode_point(b"s", value, LIMIT) == Point("s", 1.0, 1.0)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"s", None, "tombstone"),
        (b"s", message(timestamp=1, value=1, pad="x" * LIMIT), "payload_too_large"),
        (b"s", b'{"timestamp": 1, "value": 1}\xff', "invalid_encoding"),
        (b"s", "{}".encode("utf-16"), "invalid_encoding"),
        (b"\xff\xfe", message(timestamp=1, value=1), "invalid_encoding"),
        (b"s", b"", "invalid_json"),
        (b"s", b"{", "invalid_json"),
        (b"s", b"{'timestamp': 1, 'value': 1}", "invalid_json"),
        (b"s", b'{"timestamp": 1, "value": 1} trailing', "invalid_json"),
        (b"s", b"[1, 2]", "not_an_object"),
        (b"s", b"1.5", "not_an_object"),
        (b"s", b'"text"', "not_an_object"),
        (b"s", b"null", "not_an_object"),
        (b"s", message(value=1), "missing_field"),
        (b"s", message(timestamp=1), "missing_field"),
        (b"s", message(Timestamp=1, Value=1), "missing_field"),
        (b"", message(timestamp=1, value=1), "missing_series"),
        (None, message(timestamp=1, value=1), "missing_series"),
        (b"", message(series=None, timestamp=1, value=1), "missing_series"),
        (b"", message(series="", timestamp=1, value=1), "invalid_series"),
        (b"", message(series=7, timestamp=1, value=1), "invalid_series"),
        (b"", message(series=["a"], timestamp=1, value=1), "invalid_series"),
        (b"k" * (MAX_SERIES_CHARS + 1), message(timestamp=1, value=1), "invalid_series"),
        (b"", message(series="s" * (MAX_SERIES_CHARS + 1), timestamp=1, value=1), "invalid_series"),
        (b"s", message(timestamp="yesterday", value=1), "invalid_timestamp"),
        (b"s", message(timestamp=True, value=1), "invalid_timestamp"),
        (b"s", message(timestamp=None, value=1), "invalid_timestamp"),
        (b"s", message(timestamp=[1], value=1), "invalid_timestamp"),
        (b"s", message(timestamp=1e20, value=1), "timestamp_out_of_range"),
        (b"s", message(timestamp=-1e12, value=1), "timestamp_out_of_range"),
        (b"s", message(timestamp=1, value="abc"), "invalid_value"),
        (b"s", message(timestamp=1, value=""), "invalid_value"),
        (b"s", message(timestamp=1, value=True), "invalid_value"),
        (b"s", message(timestamp=1, value=None), "invalid_value"),
        (b"s", message(timestamp=1, value={"v": 1}), "invalid_value"),
        (b"s", b'{"timestamp": 1, "value": 1' + b"0" * 400 + b"}", "invalid_value"),
        (b"s", b'{"timestamp": 1, "value": NaN}', "non_finite_value"),
        (b"s", b'{"timestamp": 1, "value": Infinity}', "non_finite_value"),
        (b"s", b'{"timestamp": 1, "value": -Infinity}', "non_finite_value"),
        (b"s", b'{"timestamp": 1, "value": 1e999}', "non_finite_value"),
        (b"s", b'{"timestamp": 1, "value": -1e999}', "non_finite_value"),
        (b"s", message(timestamp=1, value="NaN"), "non_finite_value"),
    ],
)  # fmt: skip
def test_decode_rejected(key, value, reason):
    assert reason_of(key, value) == reason


@pytest.mark.parametrize(
    "value",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    ],
)
def test_deep_json_invalid(value):
    # Nesting deeper than the recursion limit fails as invalid JSON, not with a
    # RecursionError, when the payload limit lets it through.
    with pytest.raises(InvalidPointError) as caught:
        decode_point(b"s", value, len(value))
    assert caught.value.reason == "invalid_json"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        (b"s", None, "tombstone"),
        (b"s", message(timestamp=1, value=1, pad="x" * LIMIT), str(LIMIT)),
        (b"s", b"[1]", "list"),
        (b"s", message(value=1), "'timestamp'"),
        (b"s", message(timestamp=1, value="abc"), "'abc'"),
        (b"\xff", message(timestamp=1, value=1), "key"),
        (b"s", b"\xff", "value"),
    ],
)
def test_reject_message_names_cause(key, value, fragment):
    with pytest.raises(InvalidPointError) as caught:
        decode_point(key, value, LIMIT)
    assert fragment in str(caught.value)
