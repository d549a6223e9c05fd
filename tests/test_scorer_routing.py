"""The scorer's choice between rounds and sequences never changes a score."""

from __future__ import annotations

import numpy as np
import pytest
from model_factory import WINDOW, write_model

import stream.state
from stream.batching import group_by, sequence_cutoff
from stream.detect import scorer_for
from stream.model import load_model
from stream.points import Point
from stream.state import _sequence_cutoff


@pytest.fixture(scope="module")
def echo_model(tmp_path_factory):
    path = write_model(
        tmp_path_factory.mktemp("echo"),
        np.linspace(-0.2, 0.3, WINDOW),
        input_gain=0.7,
        threshold=0.5,
        lag_points=3,
    )
    return load_model(path)


def batches_by_partition(n_series: int, length: int, partitions: int) -> list[Point]:
    """Points of many series, grouped by partition as a Kafka fetch returns them."""
    rng = np.random.default_rng(4)
    points = [
        Point(
            f"s{i}",
            1000.0 + t,
            float(np.sin(0.3 * t + i) + rng.normal(0, 0.2) + (4 * (t == 20 + i % 9))),
        )
        for t in range(length)
        for i in range(n_series)
    ]
    return sorted(points, key=lambda p: int(p.series[1:]) % partitions)


def score_all(model, points: list[Point], batch: int):
    scorer = scorer_for(model)
    scored = []
    for start in range(0, len(points), batch):
        scored.extend(scorer.process(points[start : start + batch]).scored)
    scored.extend(scorer.flush())
    return [
        (p.series, p.timestamp, p.value, p.window_score, p.score, p.publish)
        for p in scored
    ]


@pytest.mark.parametrize(
    ("round_cost", "sequence_cost"),
    [(1.0, 1e9), (1e9, 1.0), (430.0, 400.0)],
    ids=["rounds only", "sequences only", "by cost"],
)
def test_routing_keeps_scores(echo_model, monkeypatch, round_cost, sequence_cost):
    points = batches_by_partition(40, 60, 4)
    expected = score_all(echo_model, points, batch=1)
    monkeypatch.setattr(stream.state, "ROUND_COST", round_cost)
    monkeypatch.setattr(stream.state, "SEQUENCE_COST", sequence_cost)
    assert score_all(echo_model, points, batch=300) == expected


@pytest.mark.parametrize(
    ("counts", "cutoff"),
    [
        ([2000], 0),
        ([8] * 250, 8),
        ([2] * 500 + [1000], 2),
        ([1] * 2000, 1),
        ([3, 3, 3], 0),
    ],
)
def test_sequence_cutoff(counts, cutoff):
    assert _sequence_cutoff(np.array([0, *counts])) == cutoff


@pytest.mark.parametrize(("item_cost", "cutoff"), [(0.0, 0), (20.0, 5)])
def test_sequence_cutoff_counts_items(item_cost, cutoff):
    # Two series with 5 items each: two sequences cost 400 against 500 for
    # five rounds, until each item of a sequence costs 20 more.
    counts = np.array([5, 0, 5])
    assert sequence_cutoff(counts, 100.0, 200.0, item_cost) == cutoff


def test_group_by_keeps_input_order():
    keys = np.array([2, 1, 2, 1, 3])
    groups = group_by(keys, np.array([10, 11, 12, 13, 14]))
    assert [g.tolist() for g in groups] == [[11, 13], [10, 12], [14]]
    assert group_by(np.array([], dtype=np.int64), np.array([], dtype=np.int64)) == []
