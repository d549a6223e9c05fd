"""Scoring a whole series (a CSV file or arrays) through the streaming state."""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, overload

from stream.calibration import CalibrationSpec
from stream.csvfile import read_points
from stream.model import WindowModel
from stream.points import Point
from stream.state import Rejection, ScoredPoint, ScorerSettings, StreamScorer

BATCH_POINTS = 512
# detect_file keeps the message of this many rejected rows and only counts the
# rest. `anomalybert detect` prints the first 20.
MAX_KEPT_REJECTIONS = 100

T = TypeVar("T")


def rank_key(point: ScoredPoint) -> tuple[float, float, float]:
    """Return the sort key that ranks points best first.

    Higher scores rank first, ties go to the higher window score, then to the
    earlier point.
    """
    return (-point.score, -point.window_score, point.timestamp)


@dataclass
class Detection:
    """Every scored point of one series, in timestamp order, and the rejected ones."""

    series: str
    threshold: float
    model_version: str
    points: list[ScoredPoint]
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def points_scored(self) -> int:
        return len(self.points)

    def top(self, n: int) -> list[ScoredPoint]:
        """Return the ``n`` points with the highest scores (ties: higher window score, then earlier)."""
        ranked = sorted(self.points, key=rank_key)
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
    offset = 0
    for batch in batches(points, BATCH_POINTS):
        result = scorer.process(batch)
        for point in result.scored:
            point.input_index += offset
            scored.append(point)
        for rejection in result.rejected:
            rejection.input_index += offset
            rejected.append(rejection)
        offset += len(batch)
    scored.extend(scorer.flush())
    return Detection(
        series=series,
        threshold=scorer.settings.threshold,
        model_version=model.metadata.model_version,
        points=scored,
        rejected=rejected,
    )


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Yield lists of ``size`` consecutive items, the last one possibly shorter."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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


class ScoredSeries(Sequence[ScoredPoint]):
    """The scored points of one series, stored in arrays at 41 bytes a point.

    Indexing and iteration build a new :class:`ScoredPoint` for each item, equal
    to the one appended. The list that :func:`detect_points` returns raised the
    tracemalloc peak by about 300 bytes a point (Python 3.11).
    """

    def __init__(self, series: str) -> None:
        self.series = series
        self.timestamps = array("d")
        self.values = array("d")
        self.window_scores = array("d")
        self.scores = array("d")
        self.input_indexes = array("q")
        self._flags = bytearray()  # bit 0: is_anomaly, bit 1: publish

    def append(self, point: ScoredPoint) -> None:
        if point.series != self.series:
            raise ValueError(
                f"point of series {point.series!r} appended to series {self.series!r}"
            )
        self.timestamps.append(point.timestamp)
        self.values.append(point.value)
        self.window_scores.append(point.window_score)
        self.scores.append(point.score)
        self.input_indexes.append(point.input_index)
        self._flags.append(int(point.is_anomaly) | int(point.publish) << 1)

    def __len__(self) -> int:
        return len(self._flags)

    @overload
    def __getitem__(self, index: int) -> ScoredPoint: ...

    @overload
    def __getitem__(self, index: slice) -> list[ScoredPoint]: ...

    def __getitem__(self, index: int | slice) -> ScoredPoint | list[ScoredPoint]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        flags = self._flags[index]
        return ScoredPoint(
            series=self.series,
            timestamp=self.timestamps[index],
            value=self.values[index],
            window_score=self.window_scores[index],
            score=self.scores[index],
            is_anomaly=bool(flags & 1),
            publish=bool(flags & 2),
            input_index=self.input_indexes[index],
        )


class TopPoints:
    """The ``n`` best-ranked points seen so far (see :func:`rank_key`).

    It contains at most ``max(2 * n, BATCH_POINTS)`` points, however many are
    added. The result equals ``sorted(all_points, key=rank_key)[:n]``, because
    ``heapq.nsmallest`` keeps the earlier of equal points as ``sorted`` does.
    """

    def __init__(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"invalid n {n}: must be 0 or more")
        self.n = n
        self._candidates: list[ScoredPoint] = []
        self._trim_at = max(2 * n, BATCH_POINTS)

    def add(self, point: ScoredPoint) -> None:
        self._candidates.append(point)
        if len(self._candidates) >= self._trim_at:
            self._candidates = self.best()

    def best(self) -> list[ScoredPoint]:
        """Return the ``n`` best points, best first."""
        return heapq.nsmallest(self.n, self._candidates, key=rank_key)


class RejectionLog(Sequence[Rejection]):
    """The first ``keep`` rejections of a file, and the count of all of them.

    ``len()`` is the count of all rejections, but only the kept ones can be
    read. An index or slice that reaches past them raises IndexError, and
    iteration yields the kept ones only.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.kept: list[Rejection] = []
        self.count = 0

    def add(self, rejection: Rejection) -> bool:
        """Count ``rejection`` and return whether it was kept."""
        self.count += 1
        if len(self.kept) < self.keep:
            self.kept.append(rejection)
            return True
        return False

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Rejection]:
        return iter(self.kept)

    @overload
    def __getitem__(self, index: int) -> Rejection: ...

    @overload
    def __getitem__(self, index: slice) -> list[Rejection]: ...

    def __getitem__(self, index: int | slice) -> Rejection | list[Rejection]:
        positions = range(self.count)[index]
        last = positions if isinstance(positions, int) else max(positions, default=-1)
        if last >= len(self.kept):
            raise IndexError(
                f"rejection {last} was counted but not kept; only the first "
                f"{self.keep} rejections of a file are kept (MAX_KEPT_REJECTIONS)"
            )
        if isinstance(positions, int):
            return self.kept[positions]
        return [self.kept[i] for i in positions]


@dataclass
class FileDetection:
    """The results of ``anomalybert detect`` for one file.

    ``points`` is every scored point when ``detect_file`` kept them, else None.
    Without them, :meth:`top` can rank only up to the ``top_n`` that
    ``detect_file`` was given.
    """

    series: str
    threshold: float
    model_version: str
    points: ScoredSeries | None
    rejected: RejectionLog
    top_points: TopPoints | None = None
    points_scored: int = 0

    def add(self, point: ScoredPoint) -> None:
        self.points_scored += 1
        if self.points is not None:
            self.points.append(point)
        if self.top_points is not None:
            self.top_points.add(point)

    def top(self, n: int) -> list[ScoredPoint]:
        """Return the ``n`` points with the highest scores, ranked by :func:`rank_key`."""
        if self.top_points is not None and n <= self.top_points.n:
            return self.top_points.best()[:n]
        if self.points is not None:
            return heapq.nsmallest(n, self.points, key=rank_key)
        raise ValueError(
            f"cannot rank the top {n} points: detect_file kept only the top "
            f"{self.top_points.n if self.top_points else 0}; pass top_n={n} or "
            "keep_points=True"
        )


def detect_file(
    model: WindowModel,
    path: str | Path,
    *,
    top_n: int | None = None,
    keep_points: bool = True,
) -> tuple[FileDetection, dict[int, int]]:
    """Score a ``timestamp,value`` CSV file, streaming it one batch at a time.

    Returns the detection and the line number of each kept rejection, by its
    ``input_index``. The file is never held in memory. With ``keep_points`` the
    detection keeps every scored point in compact arrays (41 bytes a point),
    which a plot of the whole series needs. With ``keep_points=False`` memory
    stays about constant however long the file is, and ``top_n`` sets how many
    points :meth:`FileDetection.top` can rank.

    NOTE: ``stream.plot.plot_detection`` sorts the kept points, which builds
    all of them as objects again while it draws.
    """
    if top_n is not None and top_n < 0:
        raise ValueError(f"invalid top_n {top_n}: must be 0 or more")
    if top_n is None and not keep_points:
        raise ValueError(
            "detect_file(keep_points=False) needs top_n, the number of best points "
            "to keep"
        )
    path = Path(path)
    scorer = scorer_for(model)
    detection = FileDetection(
        series=path.stem,
        threshold=scorer.settings.threshold,
        model_version=model.metadata.model_version,
        points=ScoredSeries(path.stem) if keep_points else None,
        rejected=RejectionLog(MAX_KEPT_REJECTIONS),
        top_points=TopPoints(top_n) if top_n is not None else None,
    )
    lines: dict[int, int] = {}
    rows = (
        (line, Point(path.stem, seconds, value))
        for line, _raw, seconds, value in read_points(path)
    )
    offset = 0
    for batch in batches(rows, BATCH_POINTS):
        result = scorer.process([point for _, point in batch])
        for point in result.scored:
            point.input_index += offset
            detection.add(point)
        for rejection in result.rejected:
            line = batch[rejection.input_index][0]
            rejection.input_index += offset
            if detection.rejected.add(rejection):
                lines[rejection.input_index] = line
        offset += len(batch)
    for point in scorer.flush():
        detection.add(point)
    return detection, lines
