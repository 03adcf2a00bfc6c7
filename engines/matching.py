"""Association of two box lists: pure functions from boxes to a score matrix to matches.

The tracker matches the boxes it expects (its tracks) with the boxes the detector found. Each
pair is scored by IoU; a pair below the threshold may not be matched. Among the admissible
pairs the matching is optimal: one-to-one, with the largest total IoU
(``scipy.optimize.linear_sum_assignment``), so that one high-IoU pair cannot take a box that
two people need (a greedy, highest-first matching would; see the tests).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from .geometry import iou_xywh


def iou_matrix(boxes_a: Sequence[Sequence[float]], boxes_b: Sequence[Sequence[float]]) -> np.ndarray:
    """(len(a), len(b)) IoU of every pair of xywh boxes."""
    out = np.zeros((len(boxes_a), len(boxes_b)), np.float64)
    for i, a in enumerate(boxes_a):
        for j, b in enumerate(boxes_b):
            out[i, j] = iou_xywh(a, b)
    return out


def assign(scores: np.ndarray, min_score: float) -> List[Tuple[int, int, float]]:
    """One-to-one pairs (row, column, score) with score >= ``min_score`` whose total score is the
    largest possible; the best pair first. Rows or columns left over are unmatched."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D matrix, got shape {scores.shape}")
    if scores.size == 0:
        return []
    admissible = scores >= min_score
    # Inadmissible pairs cost 0 and admissible ones -score: any assignment the solver returns,
    # less its inadmissible pairs, is a matching of the largest total score.
    rows, cols = linear_sum_assignment(np.where(admissible, -scores, 0.0))
    pairs = [(int(i), int(j), float(scores[i, j])) for i, j in zip(rows, cols) if admissible[i, j]]
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def match_by_iou(boxes_a: Sequence[Sequence[float]], boxes_b: Sequence[Sequence[float]],
                 min_iou: float) -> List[Tuple[int, int, float]]:
    """Optimal one-to-one matching of two xywh box lists by IoU: [(i, j, iou)], best first."""
    return assign(iou_matrix(boxes_a, boxes_b), min_iou)
