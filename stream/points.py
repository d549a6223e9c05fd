"""Points, timestamps and the checks every point passes before it is scored."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from stream.errors import InvalidPointError

# datetime supports years 1 to 9999; epoch seconds outside this range cannot be
# formatted back into an ISO-8601 timestamp.
MIN_EPOCH_SECONDS = -62135596800.0
MAX_EPOCH_SECONDS = 253402300799.0

# Values beyond this magnitude are rejected: the normalisation subtracts a window's
# median from its values and sums the differences, which overflows float64 near
# 1.8e308, and an infinite spread would blind the series for good.
MAX_ABS_VALUE = 1e300

# Reason codes for rejected points. They label the invalid-points metric and the
# dead-letter records, so they never change meaning.
REASON_INVALID_TIMESTAMP = "invalid_timestamp"
REASON_TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
REASON_INVALID_VALUE = "invalid_value"
REASON_NON_FINITE_VALUE = "non_finite_value"
REASON_VALUE_OUT_OF_RANGE = "value_out_of_range"
REASON_DUPLICATE_TIMESTAMP = "duplicate_timestamp"
REASON_OUT_OF_ORDER = "out_of_order"
REASON_TIMESTAMP_IN_FUTURE = "timestamp_in_future"


@dataclass(frozen=True, slots=True)
class Point:
    """One sample of one series: epoch seconds (UTC) and a finite value."""

    series: str
    timestamp: float
    value: float


def parse_timestamp(raw: object) -> float:
    """Convert an ISO-8601 string or epoch seconds into epoch seconds (UTC).

    Numbers (and strings that hold a plain decimal number) are epoch seconds.
    Other strings are ISO-8601, as ``datetime.fromisoformat`` reads them; a
    timestamp without an offset is taken as UTC.
    """
    if isinstance(raw, bool):
        raise InvalidPointError(
            REASON_INVALID_TIMESTAMP,
            f"invalid timestamp {raw!r}: expected an ISO-8601 string or epoch seconds",
        )
    if isinstance(raw, int | float):
        try:
            seconds = float(raw)
        except OverflowError:
            # An integer too large for a float is far outside the range, so
            # _check_epoch reports it as out of range.
            seconds = 2 * (MAX_EPOCH_SECONDS if raw > 0 else MIN_EPOCH_SECONDS)
        return _check_epoch(seconds, raw)
    if isinstance(raw, str):
        text = raw.strip()
        try:
            return _check_epoch(_parse_decimal(text), raw)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidPointError(
                REASON_INVALID_TIMESTAMP,
                f"invalid timestamp {raw!r}: expected ISO-8601 such as "
                "'2014-04-10 07:15:00' or epoch seconds such as 1397114100",
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        # An offset can move a date of year 1 or 9999 outside the range that
        # format_timestamp can write back.
        return _check_epoch(parsed.timestamp(), raw)
    raise InvalidPointError(
        REASON_INVALID_TIMESTAMP,
        f"invalid timestamp {_shorten(raw)}: expected an ISO-8601 string or "
        f"epoch seconds, not {type(raw).__name__}",
    )


def _parse_decimal(text: str) -> float:
    """Parse an ASCII decimal number as ``float`` does.

    ``float`` also reads digit underscores (``"1_000"``) and non-ASCII digits
    (``"١٢"`` is 12.0), which no CSV or JSON producer writes for numbers, so
    such a string is more likely a malformed field and is rejected.
    """
    if "_" in text or not text.isascii():
        raise ValueError(f"not an ASCII decimal number: {text!r}")
    return float(text)


def _check_epoch(seconds: float, raw: object) -> float:
    if not math.isfinite(seconds):
        raise InvalidPointError(
            REASON_INVALID_TIMESTAMP,
            f"invalid timestamp {_shorten(raw)}: epoch seconds must be finite",
        )
    if not MIN_EPOCH_SECONDS <= seconds <= MAX_EPOCH_SECONDS:
        raise InvalidPointError(
            REASON_TIMESTAMP_OUT_OF_RANGE,
            f"timestamp {_shorten(raw)} is outside years 1 to 9999; send epoch "
            "seconds or an ISO-8601 date",
        )
    return seconds


def parse_value(raw: object) -> float:
    """Convert a JSON number (or a numeric string from a CSV file) into a float."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise InvalidPointError(
            REASON_INVALID_VALUE,
            f"invalid value {_shorten(raw)}: expected a number, "
            f"not {type(raw).__name__}",
        )
    try:
        value = _parse_decimal(raw) if isinstance(raw, str) else float(raw)
    except (ValueError, OverflowError):
        raise InvalidPointError(
            REASON_INVALID_VALUE,
            f"invalid value {_shorten(raw)}: expected a number such as 12.5",
        ) from None
    if not math.isfinite(value):
        raise InvalidPointError(
            REASON_NON_FINITE_VALUE,
            f"invalid value {_shorten(raw)}: NaN and infinities cannot be scored; "
            "drop the point or send a finite number",
        )
    check_value_range(value, raw)
    return value


def check_value_range(value: float, raw: object = None) -> None:
    """Raise :class:`InvalidPointError` if ``abs(value)`` exceeds MAX_ABS_VALUE."""
    if abs(value) > MAX_ABS_VALUE:
        shown = _shorten(value if raw is None else raw)
        raise InvalidPointError(
            REASON_VALUE_OUT_OF_RANGE,
            f"invalid value {shown}: values beyond +-{MAX_ABS_VALUE:g} cannot be "
            "normalised; rescale the series",
        )


def check_not_future(timestamp: float, latest: float) -> None:
    """Raise :class:`InvalidPointError` if ``timestamp`` is after ``latest``.

    A series accepts only increasing timestamps, so one point far in the future
    would put every later point of its series out of order.
    """
    if timestamp > latest:
        raise InvalidPointError(
            REASON_TIMESTAMP_IN_FUTURE,
            f"timestamp {format_timestamp(timestamp)} is after "
            f"{format_timestamp(latest)}, the consumer's clock plus "
            "ANOMALYBERT_MAX_FUTURE_SECONDS; fix the producer's clock or raise "
            "that setting",
        )


def format_timestamp(seconds: float) -> str:
    """Format epoch seconds as ISO-8601 UTC, with microseconds only when present.

    Seconds beyond the years datetime can hold come back as a plain number.
    """
    try:
        moment = datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return f"{seconds!r} s"
    text = moment.isoformat(
        timespec="microseconds" if moment.microsecond else "seconds"
    )
    return text.replace("+00:00", "Z")


def _shorten(raw: object, limit: int = 80) -> str:
    text = repr(raw)
    return text if len(text) <= limit else text[: limit - 3] + "..."
