"""Decoding Kafka messages into points; every failure carries a reason code."""

from __future__ import annotations

import json

from stream.errors import InvalidPointError
from stream.points import Point, parse_timestamp, parse_value

REASON_TOMBSTONE = "tombstone"
REASON_PAYLOAD_TOO_LARGE = "payload_too_large"
REASON_INVALID_ENCODING = "invalid_encoding"
REASON_INVALID_JSON = "invalid_json"
REASON_NOT_AN_OBJECT = "not_an_object"
REASON_MISSING_FIELD = "missing_field"
REASON_MISSING_SERIES = "missing_series"
REASON_INVALID_SERIES = "invalid_series"

MAX_SERIES_CHARS = 256


def _reject_constant(name: str) -> float:
    raise InvalidPointError(
        "non_finite_value", f"invalid value {name}: NaN and infinities cannot be scored"
    )


def decode_point(
    key: bytes | None, value: bytes | None, max_payload_bytes: int
) -> Point:
    """Decode one message: key = series id, value = JSON ``{"timestamp", "value"}``.

    A ``"series"`` field in the value names the series when the key is empty.
    Raises :class:`InvalidPointError` with a reason code for anything else.
    """
    if value is None:
        raise InvalidPointError(
            REASON_TOMBSTONE,
            "message has no value (a tombstone); expected a JSON point",
        )
    if len(value) > max_payload_bytes:
        raise InvalidPointError(
            REASON_PAYLOAD_TOO_LARGE,
            f"message value is {len(value)} bytes, more than the limit of "
            f"{max_payload_bytes} (ANOMALYBERT_MAX_PAYLOAD_BYTES)",
        )
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPointError(
            REASON_INVALID_ENCODING, f"message value is not UTF-8 (byte {exc.start})"
        ) from None
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except InvalidPointError:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidPointError(
            REASON_INVALID_JSON,
            f"message value is not valid JSON ({str(exc)[:120]}); expected "
            '{"timestamp": "2014-04-10 07:15:00", "value": 1.5}',
        ) from None
    if not isinstance(document, dict):
        raise InvalidPointError(
            REASON_NOT_AN_OBJECT,
            f"message value is a JSON {type(document).__name__}; expected an object "
            'such as {"timestamp": 1397114100, "value": 1.5}',
        )
    for field in ("timestamp", "value"):
        if field not in document:
            raise InvalidPointError(
                REASON_MISSING_FIELD, f"message value has no {field!r} field"
            )
    series = _series_of(key, document)
    return Point(
        series, parse_timestamp(document["timestamp"]), parse_value(document["value"])
    )


def _series_of(key: bytes | None, document: dict[str, object]) -> str:
    if key:
        try:
            series = key.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidPointError(
                REASON_INVALID_ENCODING, f"message key is not UTF-8 (byte {exc.start})"
            ) from None
    else:
        named = document.get("series")
        if named is None:
            raise InvalidPointError(
                REASON_MISSING_SERIES,
                "message has an empty key and no 'series' field; set the key to the "
                "series id",
            )
        if not isinstance(named, str) or not named:
            raise InvalidPointError(
                REASON_INVALID_SERIES,
                f"'series' field {named!r:.80} must be a non-empty string",
            )
        if not named.isascii():
            try:
                named.encode("utf-8")
            except UnicodeEncodeError:
                # A "\ud800" escape decodes to a lone surrogate, which cannot be
                # encoded back into the key of an anomaly record.
                raise InvalidPointError(
                    REASON_INVALID_SERIES,
                    f"'series' field {named!r:.80} contains a lone UTF-16 surrogate "
                    "escape; send valid Unicode",
                ) from None
        series = named
    if len(series) > MAX_SERIES_CHARS:
        raise InvalidPointError(
            REASON_INVALID_SERIES,
            f"series id of {len(series)} characters is longer than {MAX_SERIES_CHARS}",
        )
    return series
