"""Python API: score a whole series, or points one at a time as they arrive.

Both paths run the service's own scorer (:class:`stream.state.StreamScorer`) with
the model's threshold and lag, so they give the same scores as the Kafka consumer
and ``anomalybert detect``.

Score a whole series and list its anomalies. The model was neither trained nor
validated on the first ``warmup_points`` points of a series, whose windows are
padded, and it often scores them high, so skip them:

>>> import math
>>> from stream import Detector
>>> detector = Detector.load()  # the committed model; pass a model.onnx.json path for another
>>> timestamps = [1_700_000_000 + 60 * i for i in range(400)]  # epoch seconds
>>> values = [10 + math.sin(2 * math.pi * i / 50) for i in range(400)]
>>> values[300] += 8  # a spike
>>> result = detector.detect(timestamps, values, top_n=3)
>>> len(result.points)
400
>>> settled = timestamps[detector.warmup_points]
>>> [timestamps.index(p.timestamp) for p in result.anomalies if p.timestamp >= settled]
[300, 311]

Point 311 completes the 12-point block that holds the spike, and that block's
mean leaves the range of the earlier block means (the coarse channel).

Score points as they arrive, series by series:

>>> stream = detector.stream()
>>> scored = [stream.update("pump-7", t, v) for t, v in zip(timestamps, values)]
>>> [len(points) for points in scored[:3]]  # lag_points 0: each point on arrival
[1, 1, 1]
>>> scored[300][0].score == result.points[300].score
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from stream.decode import MAX_SERIES_CHARS, REASON_INVALID_SERIES
from stream.detect import detect_points, scorer_for
from stream.errors import InvalidPointError
from stream.model import WindowModel, load_model
from stream.points import (
    REASON_INVALID_VALUE,
    Point,
    _parse_decimal,
    parse_timestamp,
)
from stream.state import Rejection, ScoredPoint, StreamScorer

__all__ = ["Detector", "SeriesResult", "SeriesStream"]

Timestamp = float | int | str | datetime | np.datetime64


def to_epoch_seconds(timestamp: Timestamp) -> float:
    """Convert epoch seconds, an ISO 8601 string, a datetime or a numpy datetime64
    into epoch seconds (UTC). A timestamp without a time zone is taken as UTC.

    Raises :class:`stream.errors.InvalidPointError` for anything else, and for a
    time outside years 1 to 9999, as the service does.
    """
    if isinstance(timestamp, np.datetime64):
        if np.isnat(timestamp):
            raise InvalidPointError(
                "invalid_timestamp", "timestamp is NaT (not a time)"
            )
        return parse_timestamp(
            float(timestamp.astype("datetime64[us]").astype(np.int64)) / 1e6
        )
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=UTC)
        return parse_timestamp(timestamp.timestamp())
    if isinstance(timestamp, np.integer | np.floating):
        timestamp = timestamp.item()
    return parse_timestamp(timestamp)


def to_value(value: object) -> float:
    """Convert a number, a numpy number or a numeric string into a float.

    Raises :class:`stream.errors.InvalidPointError` (reason ``invalid_value``)
    for anything else, such as None or ``"abc"``, as ``stream.points.parse_value``
    does for the service. NaN, infinities and values beyond
    ``stream.points.MAX_ABS_VALUE`` pass, because the scorer rejects them with
    their own reason codes.
    """
    if isinstance(value, np.integer | np.floating):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidPointError(
            REASON_INVALID_VALUE,
            f"invalid value {value!r:.80}: expected a number, "
            f"not {type(value).__name__}",
        )
    try:
        return _parse_decimal(value) if isinstance(value, str) else float(value)
    except (ValueError, OverflowError):
        raise InvalidPointError(
            REASON_INVALID_VALUE,
            f"invalid value {value!r:.80}: expected a number such as 12.5",
        ) from None


def check_series(series: object) -> str:
    """Check that ``series`` is a valid series id and return it.

    A valid id is a non-empty string of at most ``MAX_SERIES_CHARS`` characters,
    as the service requires of message keys.
    """
    if not isinstance(series, str) or not series:
        raise InvalidPointError(
            REASON_INVALID_SERIES,
            f"invalid series {series!r:.80}: expected a non-empty string such as "
            "'pump-7'",
        )
    try:
        series.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPointError(
            REASON_INVALID_SERIES,
            f"invalid series {series!r:.80}: not encodable as UTF-8, as message "
            "keys must be",
        ) from None
    if len(series) > MAX_SERIES_CHARS:
        raise InvalidPointError(
            REASON_INVALID_SERIES,
            f"invalid series {series[:40]!r}...: {len(series)} characters is longer "
            f"than {MAX_SERIES_CHARS}; use a shorter series id",
        )
    return series


@dataclass(frozen=True)
class SeriesResult:
    """The scores of one whole series."""

    points: list[ScoredPoint]  # every scored point, in input order
    top: list[ScoredPoint]  # the highest scores, best first
    rejected: list[Rejection]  # points the scorer refused, with the reason
    threshold: float  # a point is an anomaly when its score >= threshold
    model_version: str

    @property
    def anomalies(self) -> list[ScoredPoint]:
        """Return the points whose score reached the threshold, in input order."""
        return [point for point in self.points if point.is_anomaly]


@dataclass
class SeriesStream:
    """Scores points of any number of series as they arrive, one call per point.

    Build it with :meth:`Detector.stream`. It keeps each series' last window and
    normaliser state, as the consumer does. Not thread-safe.
    """

    scorer: StreamScorer
    _model_version: str = field(repr=False, default="")

    @property
    def threshold(self) -> float:
        return self.scorer.settings.threshold

    def update(
        self, series: str, timestamp: Timestamp, value: float
    ) -> list[ScoredPoint]:
        """Add one point of ``series``; return the points whose score became known.

        With the model's ``lag_points = d`` that is the point d places earlier, and
        nothing for the first d points of a series. Timestamps of one series must
        increase. Raises :class:`stream.errors.InvalidPointError` (with a ``reason``
        code) for a point the service would reject: an invalid series id,
        timestamp or value, a value that is not finite or out of range, or a
        repeated or earlier timestamp. The state is then unchanged.
        """
        point = Point(
            check_series(series), to_epoch_seconds(timestamp), to_value(value)
        )
        result = self.scorer.process([point])
        if result.rejected:
            rejection = result.rejected[0]
            raise InvalidPointError(rejection.reason, rejection.message)
        return result.scored

    def flush(self) -> list[ScoredPoint]:
        """Score each series' last ``lag_points`` points as if the series ended there."""
        return self.scorer.flush()


class Detector:
    """A loaded model with its alert settings, for whole series or live points.

    Load it once with :meth:`load`. ``threshold`` and ``lag_points`` override the
    values in the model's metadata.
    """

    def __init__(
        self,
        model: WindowModel,
        threshold: float | None = None,
        lag_points: int | None = None,
    ) -> None:
        self.model = model
        self._overrides: dict[str, object] = {}
        if threshold is not None:
            if isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
                raise ValueError(
                    f"invalid threshold {threshold!r}: alert scores lie in [0, 1], "
                    "so pass a number from 0 to 1"
                )
            self._overrides["threshold"] = threshold
        if lag_points is not None:
            self._overrides["lag_points"] = lag_points
        # Builds a scorer once so that invalid overrides fail here, not later.
        self._settings = scorer_for(model, **self._overrides).settings

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        threshold: float | None = None,
        lag_points: int | None = None,
    ) -> Detector:
        """Load the model at ``path`` (a ``model.onnx.json``; default: the committed model).

        Raises :class:`stream.errors.ModelError` for a missing or corrupt model.
        """
        return cls(load_model(path), threshold=threshold, lag_points=lag_points)

    @property
    def model_version(self) -> str:
        return self.model.metadata.model_version

    @property
    def threshold(self) -> float:
        return self._settings.threshold

    @property
    def lag_points(self) -> int:
        return self._settings.lag_points

    @property
    def warmup_points(self) -> int:
        """Return the model's ``alert.warmup_points``: leading points it was not trained on."""
        return int(self.model.metadata.raw.get("alert", {}).get("warmup_points", 0))

    def detect(
        self,
        timestamps: Sequence[Timestamp],
        values: Sequence[float],
        top_n: int = 10,
        series: str = "series",
    ) -> SeriesResult:
        """Score a whole series, point by point in order, as the service would.

        Returns every scored point and the ``top_n`` highest scores (ties: the
        higher window score, then the earlier point). Rejected points, such as a
        repeated timestamp or a NaN value, are listed in ``rejected`` and get no
        score. Raises :class:`stream.errors.InvalidPointError` for an invalid
        ``series``, and for a timestamp or value that is not one at all (such as
        None or ``"abc"``), naming its position.
        """
        if len(timestamps) != len(values):
            raise ValueError(
                f"timestamps and values differ in length ({len(timestamps)} != "
                f"{len(values)}); pass one timestamp per value"
            )
        if top_n < 0:
            raise ValueError(f"invalid top_n {top_n}: must be 0 or more")
        check_series(series)
        points = []
        for index, (timestamp, value) in enumerate(
            zip(timestamps, values, strict=True)
        ):
            try:
                point = Point(series, to_epoch_seconds(timestamp), to_value(value))
            except InvalidPointError as exc:
                raise InvalidPointError(exc.reason, f"point {index}: {exc}") from None
            points.append(point)
        scorer = scorer_for(self.model, **self._overrides)
        detection = detect_points(self.model, points, series=series, scorer=scorer)
        return SeriesResult(
            points=detection.points,
            top=detection.top(top_n),
            rejected=detection.rejected,
            threshold=detection.threshold,
            model_version=detection.model_version,
        )

    def stream(self) -> SeriesStream:
        """Return a new :class:`SeriesStream` with empty state for every series."""
        return SeriesStream(
            scorer_for(self.model, **self._overrides), self.model_version
        )
