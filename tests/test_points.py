"""Tests of timestamp and value parsing and of timestamp formatting."""

from __future__ import annotations

import math

import pytest

from stream.errors import InvalidPointError
from stream.points import (
    MAX_EPOCH_SECONDS,
    MIN_EPOCH_SECONDS,
    REASON_INVALID_TIMESTAMP,
    REASON_INVALID_VALUE,
    REASON_NON_FINITE_VALUE,
    REASON_TIMESTAMP_OUT_OF_RANGE,
    REASON_VALUE_OUT_OF_RANGE,
    check_not_future,
    format_timestamp,
    parse_timestamp,
    parse_value,
)

# 2014-04-10 07:15:00 UTC
APRIL_10 = 1397114100.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2014-04-10 07:15:00", APRIL_10),
        ("2014-04-10T07:15:00", APRIL_10),
        ("2014-04-10T07:15:00Z", APRIL_10),
        ("2014-04-10T09:15:00+02:00", APRIL_10),
        ("2014-04-10T02:15:00-05:00", APRIL_10),
        ("2014-04-10T07:15:00.250", APRIL_10 + 0.25),
        ("  2014-04-10 07:15:00 ", APRIL_10),
        ("2014-04-10", APRIL_10 - (7 * 3600 + 15 * 60)),
        (1397114100, APRIL_10),
        (1397114100.5, APRIL_10 + 0.5),
        ("1397114100", APRIL_10),
        (" 1397114100.5 ", APRIL_10 + 0.5),
        (0, 0.0),
        (-86400, -86400.0),
        (MIN_EPOCH_SECONDS, MIN_EPOCH_SECONDS),
        (MAX_EPOCH_SECONDS, MAX_EPOCH_SECONDS),
        ("0001-01-01T00:00:00", MIN_EPOCH_SECONDS),
        ("9999-12-31T23:59:59Z", MAX_EPOCH_SECONDS),
    ],
)
def test_timestamp_valid(raw, expected):
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("yesterday", REASON_INVALID_TIMESTAMP),
        ("", REASON_INVALID_TIMESTAMP),
        ("2014-13-01", REASON_INVALID_TIMESTAMP),
        ("2014-04-10 25:00:00", REASON_INVALID_TIMESTAMP),
        ("1_397_114_100", REASON_INVALID_TIMESTAMP),
        ("١٧٠٠٠٠٠٠٠٠", REASON_INVALID_TIMESTAMP),
        (True, REASON_INVALID_TIMESTAMP),
        (None, REASON_INVALID_TIMESTAMP),
        ([1397114100], REASON_INVALID_TIMESTAMP),
        ({"seconds": 1}, REASON_INVALID_TIMESTAMP),
        (math.nan, REASON_INVALID_TIMESTAMP),
        (math.inf, REASON_INVALID_TIMESTAMP),
        ("nan", REASON_INVALID_TIMESTAMP),
        ("-inf", REASON_INVALID_TIMESTAMP),
        (1e20, REASON_TIMESTAMP_OUT_OF_RANGE),
        (MAX_EPOCH_SECONDS + 1, REASON_TIMESTAMP_OUT_OF_RANGE),
        (MIN_EPOCH_SECONDS - 1, REASON_TIMESTAMP_OUT_OF_RANGE),
        ("1e20", REASON_TIMESTAMP_OUT_OF_RANGE),
        # Too large for a float: float() raises OverflowError.
        (10**400, REASON_TIMESTAMP_OUT_OF_RANGE),
        (-(10**400), REASON_TIMESTAMP_OUT_OF_RANGE),
        # An offset moves these dates outside years 1 to 9999 in UTC.
        ("0001-01-01T00:00:00+01:00", REASON_TIMESTAMP_OUT_OF_RANGE),
        ("9999-12-31T23:59:59-01:00", REASON_TIMESTAMP_OUT_OF_RANGE),
    ],
)
def test_timestamp_rejected(raw, reason):
    with pytest.raises(InvalidPointError) as caught:
        parse_timestamp(raw)
    assert caught.value.reason == reason


def test_timestamp_message_shortened():
    with pytest.raises(InvalidPointError) as caught:
        parse_timestamp(["x" * 500])
    assert len(str(caught.value)) < 200
    assert "..." in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (12.5, 12.5),
        (-3, -3.0),
        (0, 0.0),
        ("12.5", 12.5),
        (" -4e3 ", -4000.0),
        ("1e-300", 1e-300),
        (1e300, 1e300),
        (-1e300, -1e300),
    ],
)
def test_value_valid(raw, expected):
    assert parse_value(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("abc", REASON_INVALID_VALUE),
        ("", REASON_INVALID_VALUE),
        ("1,5", REASON_INVALID_VALUE),
        ("1_000", REASON_INVALID_VALUE),
        ("١٢", REASON_INVALID_VALUE),
        ("１", REASON_INVALID_VALUE),
        (True, REASON_INVALID_VALUE),
        (False, REASON_INVALID_VALUE),
        (None, REASON_INVALID_VALUE),
        ([1.0], REASON_INVALID_VALUE),
        ({"value": 1.0}, REASON_INVALID_VALUE),
        (10**400, REASON_INVALID_VALUE),
        (math.nan, REASON_NON_FINITE_VALUE),
        (math.inf, REASON_NON_FINITE_VALUE),
        (-math.inf, REASON_NON_FINITE_VALUE),
        ("nan", REASON_NON_FINITE_VALUE),
        ("NaN", REASON_NON_FINITE_VALUE),
        ("inf", REASON_NON_FINITE_VALUE),
        ("-Infinity", REASON_NON_FINITE_VALUE),
        ("1e999", REASON_NON_FINITE_VALUE),
        (1e308, REASON_VALUE_OUT_OF_RANGE),
        ("-1.1e300", REASON_VALUE_OUT_OF_RANGE),
    ],
)
def test_value_rejected(raw, reason):
    with pytest.raises(InvalidPointError) as caught:
        parse_value(raw)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (APRIL_10, "2014-04-10T07:15:00Z"),
        (APRIL_10 + 0.25, "2014-04-10T07:15:00.250000Z"),
        (0.0, "1970-01-01T00:00:00Z"),
        (-1.0, "1969-12-31T23:59:59Z"),
        (MIN_EPOCH_SECONDS, "0001-01-01T00:00:00Z"),
        (MAX_EPOCH_SECONDS, "9999-12-31T23:59:59Z"),
    ],
)
def test_format_timestamp(seconds, expected):
    assert format_timestamp(seconds) == expected


@pytest.mark.parametrize(
    "text",
    ["2014-04-10T07:15:00Z", "2014-04-10T07:15:00.250000Z", "1970-01-01T00:00:00Z"],
)
def test_format_parse_round_trip(text):
    assert format_timestamp(parse_timestamp(text)) == text


@pytest.mark.parametrize("seconds", [1e300, -1e300, 2.0**53])
def test_format_timestamp_beyond_datetime_gives_the_number(seconds):
    assert format_timestamp(seconds) == f"{seconds!r} s"


def test_future_timestamp_rejected():
    check_not_future(100.0, latest=100.0)
    with pytest.raises(
        InvalidPointError, match="ANOMALYBERT_MAX_FUTURE_SECONDS"
    ) as info:
        check_not_future(253402214400.0, latest=100.0)
    assert info.value.reason == "timestamp_in_future"
    assert "9999-12-31T00:00:00Z" in str(info.value)
