"""Pose and mesh error metrics, as the official SMPLer-X test code computes them.

Every function takes metres and returns millimetres where it returns an error. The
alignment is the official one (``common/utils/transforms.py``): Procrustes with scale
(Umeyama, the covariance divided by the point count, the reflection fixed by flipping the
last singular value and the last row of V), or a translation that moves one regressed
joint of the prediction onto the same joint of the ground truth.

Temporal figures (not part of the official protocol): acceleration error as in VIBE/TCMR
(mean over frames and joints of the norm of the difference of second finite differences,
mm/frame^2) and jitter (mean norm of the third finite difference, mm/frame^3).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def rigid_transform(a: np.ndarray, b: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
    """Scale ``c``, rotation ``R`` and translation ``t`` that best map points ``a`` (N, 3) onto
    ``b`` (N, 3) in the least-squares sense: ``b ~ c * R @ a + t`` (official ``rigid_transform_3D``)."""
    n = a.shape[0]
    centroid_a = a.mean(axis=0)
    centroid_b = b.mean(axis=0)
    h = (a - centroid_a).T @ (b - centroid_b) / n
    u, s, v = np.linalg.svd(h)
    r = v.T @ u.T
    if np.linalg.det(r) < 0:
        s[-1] = -s[-1]
        v[2] = -v[2]
        r = v.T @ u.T
    var_a = np.var(a, axis=0).sum()
    c = 1.0 / var_a * np.sum(s)
    t = -(c * r) @ centroid_a + centroid_b
    return c, r, t


def rigid_align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` moved onto ``b`` by the best similarity transform (Procrustes, official ``rigid_align``)."""
    c, r, t = rigid_transform(a, b)
    return ((c * r) @ a.T).T + t


def point_errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point pair (N,), in the input unit."""
    return np.sqrt(np.sum((a - b) ** 2, axis=1))


def mean_error_mm(pred: np.ndarray, gt: np.ndarray, valid: Optional[np.ndarray] = None) -> float:
    """Mean point distance in millimetres (inputs in metres), over ``valid`` points if given."""
    err = point_errors(pred, gt)
    if valid is not None:
        err = err[valid]
        if err.size == 0:  # the official ``[valid].mean()`` of nothing: NaN (kept, so means stay official)
            return float("nan")
    return float(err.mean() * 1000)


def pa_error_mm(pred: np.ndarray, gt: np.ndarray, valid: Optional[np.ndarray] = None) -> float:
    """Mean distance after Procrustes alignment of all points (PA-MPJPE / PA-MPVPE), mm.
    The alignment uses every point; ``valid`` only selects which errors are averaged (official)."""
    return mean_error_mm(rigid_align(pred, gt), gt, valid)


def translated_onto(pred: np.ndarray, pred_anchor: np.ndarray, gt_anchor: np.ndarray) -> np.ndarray:
    """``pred`` shifted so that its anchor point lands on the ground truth's (pelvis/wrist/neck alignment)."""
    return pred - pred_anchor[None, :] + gt_anchor[None, :]


def second_difference(seq: np.ndarray) -> np.ndarray:
    """x[t-1] - 2 x[t] + x[t+1] over the first axis (T-2, ...)."""
    seq = np.asarray(seq, np.float64)
    return seq[:-2] - 2 * seq[1:-1] + seq[2:]


def third_difference(seq: np.ndarray) -> np.ndarray:
    """x[t+3] - 3 x[t+2] + 3 x[t+1] - x[t] over the first axis (T-3, ...)."""
    seq = np.asarray(seq, np.float64)
    return seq[3:] - 3 * seq[2:-1] + 3 * seq[1:-2] - seq[:-3]


def acceleration_error_norms(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """||accel_gt - accel_pred|| per frame and point (T-2, N), in the input unit per frame^2."""
    return np.linalg.norm(second_difference(gt) - second_difference(pred), axis=-1)


def jerk_norms(seq: np.ndarray) -> np.ndarray:
    """||third difference|| per frame and point (T-3, N), in the input unit per frame^3."""
    return np.linalg.norm(third_difference(seq), axis=-1)


def acceleration_error_mm(pred: np.ndarray, gt: np.ndarray) -> float:
    """Acceleration error (VIBE): mean over frames and points of ||accel_gt - accel_pred||, mm/frame^2.
    ``pred``/``gt``: (T, N, 3) metres, consecutive frames of one person; needs T >= 3."""
    if len(pred) < 3:
        raise ValueError("the acceleration error needs at least 3 consecutive frames")
    return float(acceleration_error_norms(pred, gt).mean() * 1000)


def jitter_mm(seq: np.ndarray) -> float:
    """Jitter: mean norm of the third finite difference (jerk per frame^3) of (T, N, 3) metres, in
    mm/frame^3; needs T >= 4. Multiply by fps^3 for mm/s^3."""
    if len(seq) < 4:
        raise ValueError("jitter needs at least 4 consecutive frames")
    return float(jerk_norms(seq).mean() * 1000)
