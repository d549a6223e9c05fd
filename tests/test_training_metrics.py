"""Average precision and threshold choice against hand-computed cases."""

import math

import numpy as np
import pytest

from training.metrics import average_precision, best_f1_threshold, precision_recall_at


def test_average_precision_known_example():
    # The example of scikit-learn's average_precision_score documentation.
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    assert average_precision(scores, labels) == pytest.approx(0.8333333333)


def test_average_precision_perfect_and_worst():
    labels = np.array([1, 1, 0, 0, 0])
    assert average_precision(np.array([0.9, 0.8, 0.3, 0.2, 0.1]), labels) == 1.0
    worst = average_precision(np.array([0.1, 0.2, 0.7, 0.8, 0.9]), labels)
    # Positives ranked 4th and 5th: (1/4 + 2/5) / 2.
    assert worst == pytest.approx((0.25 + 0.4) / 2)


def test_average_precision_ties_count_together():
    # All scores equal: one threshold, precision = base rate.
    labels = np.array([1, 0, 0, 0])
    assert average_precision(np.full(4, 0.5), labels) == pytest.approx(0.25)


def test_average_precision_weights_equal_duplicates():
    scores = np.array([0.9, 0.6, 0.5, 0.2])
    labels = np.array([1, 0, 1, 0])
    weighted = average_precision(scores, labels, np.array([1.0, 3.0, 1.0, 2.0]))
    repeated = average_precision(
        np.repeat(scores, [1, 3, 1, 2]), np.repeat(labels, [1, 3, 1, 2])
    )
    assert weighted == pytest.approx(repeated)


def test_average_precision_without_positives_is_nan():
    assert math.isnan(average_precision(np.array([0.2, 0.3]), np.array([0, 0])))


def test_best_f1_threshold_hand_case():
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2])
    labels = np.array([1, 1, 0, 1, 0])
    choice = best_f1_threshold(scores, labels)
    # score >= 0.8: P = 1, R = 2/3, F1 = 0.8; score >= 0.3: P = 3/4, R = 1, F1 = 6/7.
    assert choice.threshold == pytest.approx(0.3)
    assert choice.f1 == pytest.approx(6 / 7)
    assert choice.precision == pytest.approx(0.75)
    assert choice.recall == pytest.approx(1.0)


def test_best_f1_threshold_without_positives_raises():
    with pytest.raises(ValueError, match="no positive"):
        best_f1_threshold(np.array([0.1, 0.2]), np.array([0, 0]))


def test_precision_recall_at_threshold():
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2])
    labels = np.array([1, 1, 0, 1, 0])
    precision, recall, f1 = precision_recall_at(scores, labels, 0.75)
    assert precision == pytest.approx(1.0)
    assert recall == pytest.approx(2 / 3)
    assert f1 == pytest.approx(0.8)
