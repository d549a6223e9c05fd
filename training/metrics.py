"""Ranking metrics for per-point anomaly scores, in numpy.

Labels are binary here; callers turn label probabilities into classes with a
threshold (``TrainConfig.positive_label_threshold``).
"""

from dataclasses import dataclass

import numpy as np


def _ranked_counts(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted true and false positives at each distinct score, highest first.

    Returns (thresholds, true_positives, false_positives); predicting "anomalous"
    for scores >= thresholds[k] gives the counts at index k.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(
            f"scores and labels must be 1-D of equal shape, got {scores.shape} and {labels.shape}"
        )
    w = (
        np.ones_like(scores)
        if weights is None
        else np.asarray(weights, dtype=np.float64)
    )
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    true_positives = np.cumsum(w[order] * labels[order])
    false_positives = np.cumsum(w[order] * ~labels[order])
    # The last index of each run of equal scores: ties are decided together.
    last = np.concatenate([np.flatnonzero(np.diff(ranked)), [ranked.size - 1]])
    return ranked[last], true_positives[last], false_positives[last]


def average_precision(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """Compute average precision: sum over thresholds of (R_k - R_{k-1}) * P_k.

    The same step-wise definition as scikit-learn's average_precision_score, with
    optional sample weights. Returns NaN when there is no positive.
    """
    if np.asarray(scores).size == 0:
        return float("nan")
    _, tp, fp = _ranked_counts(scores, labels, weights)
    if tp[-1] <= 0:
        return float("nan")
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    recall_step = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(recall_step * precision))


@dataclass(frozen=True)
class ThresholdChoice:
    """The alert threshold with the best F1 and the scores it achieves."""

    threshold: float  # alert when score >= threshold
    f1: float
    precision: float
    recall: float


def best_f1_threshold(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> ThresholdChoice:
    """Find the score threshold that maximises F1. Raises ValueError without positives."""
    thresholds, tp, fp = _ranked_counts(scores, labels, weights)
    if tp.size == 0 or tp[-1] <= 0:
        raise ValueError("cannot choose a threshold: the labels contain no positive")
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1))
    return ThresholdChoice(
        threshold=float(thresholds[best]),
        f1=float(f1[best]),
        precision=float(precision[best]),
        recall=float(recall[best]),
    )


def precision_recall_at(
    scores: np.ndarray, labels: np.ndarray, threshold: float
) -> tuple[float, float, float]:
    """Return (precision, recall, F1) of alerting when score >= threshold.

    Precision is NaN when nothing is alerted, recall is NaN without positives.
    """
    alerts = np.asarray(scores) >= threshold
    labels = np.asarray(labels, dtype=bool)
    tp = float(np.sum(alerts & labels))
    precision = tp / alerts.sum() if alerts.any() else float("nan")
    recall = tp / labels.sum() if labels.any() else float("nan")
    if tp == 0:
        return precision, recall, 0.0
    return precision, recall, 2 * precision * recall / (precision + recall)
