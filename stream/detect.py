"""Scoring a whole series (a CSV file or arrays) through the streaming state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stream.calibration import CalibrationSpec
from stream.csvfile import read_points
from stream.model import WindowModel
from stream.points import Point
from stream.state import Rejection, ScoredPoint, ScorerSettings, StreamScorer

BATCH_POINTS = 512


@dataclass
class Detection:
    """Every scored point of one series, in timestamp order, and the rejected ones."""

    series: str
    threshold: float
    model_version: str
    points: list[ScoredPoint]
    rejected: list[Rejection] = field(default_factory=list)

    def top(self, n: int) -> list[ScoredPoint]:
        """Return the ``n`` points with the highest scores (ties: higher window score, then earlier)."""
        ranked = sorted(
            self.points, key=lambda p: (-p.score, -p.window_score, p.timestamp)
        )
        return ranked[:n]


def scorer_for(model: WindowModel, **overrides: object) -> StreamScorer:
    """Build a scorer with the model's own alert settings unless overridden.

    A ``calibration`` override is a dict of calibration settings that replace
    the model's own, key by key.
    """
    alert = model.metadata.alert
    calibration = {
        **alert.calibration,
        **overrides.pop("calibration", {}),  # type: ignore[dict-item]
    }
    settings = ScorerSettings(
        threshold=float(overrides.pop("threshold", alert.threshold)),  # type: ignore[arg-type]
        lag_points=int(overrides.pop("lag_points", alert.lag_points)),  # type: ignore[call-overload]
        **overrides,  # type: ignore[arg-type]
    )
    return StreamScorer(model, settings, CalibrationSpec.from_metadata(calibration))


def detect_points(
    model: WindowModel,
    points: Iterable[Point],
    series: str = "series",
    scorer: StreamScorer | None = None,
) -> Detection:
    """Feed points one batch at a time through a scorer, exactly as the consumer does."""
    scorer = scorer or scorer_for(model)
    scored: list[ScoredPoint] = []
    rejected: list[Rejection] = []
    batch: list[Point] = []
    offset = 0

    def run(batch: list[Point], offset: int) -> None:
        result = scorer.process(batch)
        for point in result.scored:
            point.input_index += offset
            scored.append(point)
        for rejection in result.rejected:
            rejection.input_index += offset
            rejected.append(rejection)

    for point in points:
        batch.append(point)
        if len(batch) == BATCH_POINTS:
            run(batch, offset)
            offset += len(batch)
            batch = []
    if batch:
        run(batch, offset)
    scored.extend(scorer.flush())
    return Detection(
        series=series,
        threshold=scorer.settings.threshold,
        model_version=model.metadata.model_version,
        points=scored,
        rejected=rejected,
    )


def detect(
    model: WindowModel,
    timestamps: Sequence[float],
    values: Sequence[float],
    series: str = "series",
) -> Detection:
    """Score one whole series given as epoch seconds and values."""
    if len(timestamps) != len(values):
        raise ValueError(
            f"timestamps and values differ in length ({len(timestamps)} != {len(values)})"
        )
    points = (
        Point(series, float(t), float(v))
        for t, v in zip(timestamps, values, strict=True)
    )
    return detect_points(model, points, series)


def detect_file(model: WindowModel, path: str | Path) -> tuple[Detection, list[int]]:
    """Score a ``timestamp,value`` CSV file; also return the line number of each row."""
    path = Path(path)
    lines: list[int] = []

    def points() -> Iterable[Point]:
        for line, _raw, seconds, value in read_points(path):
            lines.append(line)
            yield Point(path.stem, seconds, value)

    detection = detect_points(model, points(), series=path.stem)
    return detection, lines
