"""Offline, zero-lag smoothing of one person's take (``mocap convert --smooth``).

A take is smoothed as a whole, looking both ways in time, so nothing lags: every sample is
replaced by the value at its own time of a **local quadratic fit** to its neighbours, weighted by
a Gaussian of their time distance (width ``sigma`` seconds per group, see :class:`SmoothSettings`).
The fit uses the samples' own timestamps, so a variable frame rate or dropped frames need no
resampling first; it never reaches across a gap longer than ``max_gap`` (the person was not seen).
A symmetric fit of a quadratic is exact for motion up to constant acceleration, so a step or a
peak keeps its timing (it is rounded, not delayed).

* **Rotations** (root, body, jaw, fingers; local, camera frame) are smoothed on SO(3): around
  each sample the neighbours are taken into its tangent space (``log(q_i^-1 q_j)``), fitted
  there and mapped back (``q_i exp(v)``); two passes, the second around the first's result.
* **Translation** is smoothed along the camera ray: the image-plane direction ``(x/z, y/z)``
  with the ``translation`` width and the depth (as ``log z``) with the wider ``depth`` width.
  A monocular estimate's error is mostly along the ray (its scale), so depth noise is removed
  without blurring the image-plane motion, which is measured well.
* **Expression** coefficients as plain numbers.
* **One-frame outliers** (a flipped limb, a swapped hand, a depth jump) are found first and
  replaced, not averaged in: per joint (and for the ray position and each expression
  coefficient) the median of the five samples around each sample, in the sample's tangent
  space, is compared with the sample; a sample further than ``outlier_sigmas`` robust standard
  deviations of that joint's residuals (and than the group's floor, e.g. 20 degrees) is replaced
  by that median before the fit.

Betas are not smoothed here: the take's settled betas (a median) are used for the whole take.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from engines.body_model import NUM_JOINTS

from ..rotations import axis_angle_to_quat, quat_conj, quat_mul, quat_to_axis_angle
from .skeleton import JAW, LEFT_HAND_START

#: Joint groups of the 55 local rotations (the eyes, never predicted, go with the body).
ROTATION_GROUPS: Dict[str, np.ndarray] = {
    "root": np.array([0]),
    "body": np.array([j for j in range(1, LEFT_HAND_START) if j != JAW]),
    "jaw": np.array([JAW]),
    "hands": np.arange(LEFT_HAND_START, NUM_JOINTS),
}
#: Samples processed together (bounds memory on long takes).
_CHUNK = 2048


@dataclass(frozen=True)
class SmoothSettings:
    """Gaussian widths (seconds) of the local fits, and the outlier rule."""

    root: float = 0.1
    body: float = 0.1
    hands: float = 0.1
    jaw: float = 0.1
    #: Image-plane direction of the root (x/z, y/z).
    translation: float = 0.1
    #: Depth along the camera ray: the noisiest axis of a monocular estimate, smoothed most
    #: (and with a local line, not a quadratic: it lets less of the noise through).
    depth: float = 0.25
    expression: float = 0.1
    #: A sample is an outlier when its distance to the median of its five neighbours exceeds
    #: ``outlier_sigmas`` robust standard deviations of that signal and the floor below.
    outlier_sigmas: float = 6.0
    #: Floors of the outlier rule: rotations (radians), ray direction (x/z, y/z), depth (log z),
    #: expression coefficients.
    outlier_angle: float = 0.35
    outlier_direction: float = 0.04
    outlier_depth: float = 0.08
    outlier_expression: float = 1.0

    def __post_init__(self) -> None:
        for name in ("root", "body", "hands", "jaw", "translation", "depth", "expression"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"smoothing width {name} must be >= 0 seconds, got {getattr(self, name)}")


@dataclass
class SmoothReport:
    """What the smoother changed."""

    #: Outlier samples replaced, per group ("root", "body", "jaw", "hands", "translation", "expression").
    outliers: Dict[str, int] = field(default_factory=dict)
    #: (N,) True where any signal of the sample was replaced as an outlier.
    outlier_samples: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def lines(self, person_id: int) -> List[str]:
        total = int(self.outlier_samples.sum())
        if not total:
            return []
        parts = ", ".join(f"{n} {g}" for g, n in self.outliers.items() if n)
        return [f"person {person_id}: {total} frame(s) held a one-frame outlier ({parts}): replaced by "
                f"their neighbours' median before smoothing"]


# ----------------------------------------------------------------------- the local fit
def segments(times: np.ndarray, max_gap: float) -> np.ndarray:
    """Segment number of each sample: a new segment after every gap longer than ``max_gap``."""
    times = np.asarray(times, np.float64)
    return np.concatenate([[0], np.cumsum(np.diff(times) > max_gap + 1e-9)]).astype(np.int64)


def _neighbours(times: np.ndarray, seg: np.ndarray, radius: float, k_min: int = 0):
    """Index offsets -K..K around every sample: ``idx`` (N, W) clipped indices, ``valid`` (N, W)
    (inside the take, the same segment and within ``radius`` seconds) and ``dt`` (N, W)."""
    n = len(times)
    i = np.arange(n)
    reach = np.searchsorted(times, times + radius, side="right") - 1 - i
    back = i - np.searchsorted(times, times - radius, side="left")
    k = int(max(k_min, reach.max(initial=0), back.max(initial=0)))
    offsets = np.arange(-k, k + 1)
    raw = i[:, None] + offsets[None, :]
    idx = np.clip(raw, 0, n - 1)
    dt = times[idx] - times[:, None]
    valid = (raw >= 0) & (raw < n) & (seg[idx] == seg[:, None]) & (np.abs(dt) <= radius + 1e-12)
    return idx, valid, dt


def local_fit_rows(times: np.ndarray, seg: np.ndarray, sigma: float, order: int = 2):
    """The linear smoother of a Gaussian-weighted local polynomial fit: value at sample i =
    ``sum_w rows[i, w] * x[idx[i, w]]``. ``sigma`` 0 gives the identity."""
    times = np.asarray(times, np.float64)
    n = len(times)
    if sigma <= 0 or n == 1:
        return np.arange(n)[:, None], np.ones((n, 1))
    idx, valid, dt = _neighbours(times, seg, 3.0 * sigma)
    w = np.exp(-0.5 * (dt / sigma) ** 2) * valid
    x = np.stack([(dt / sigma) ** p for p in range(order + 1)], axis=-1)  # (N, W, P)
    a = np.einsum("nwp,nw,nwq->npq", x, w, x)
    ridge = 1e-6 * w.sum(axis=1)[:, None, None] * np.eye(order + 1)[None]
    ridge[:, 0, 0] = 0.0  # the constant term is always determined (the sample itself)
    # too few samples for the fit's order (an edge, a short segment): the ridge keeps it defined
    b = np.einsum("nwp,nw->npw", x, w)
    rows = np.linalg.solve(a + ridge + 1e-12 * np.eye(order + 1)[None], b)[:, 0, :]
    return idx, rows


def smooth_vectors(values: np.ndarray, idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Vectors (N, ...) through the smoother ``(idx, rows)``."""
    v = np.asarray(values, np.float64)
    return np.einsum("nw,nw...->n...", rows, v[idx])


def smooth_rotations(quats: np.ndarray, idx: np.ndarray, rows: np.ndarray, passes: int = 2) -> np.ndarray:
    """Unit quaternions (N, J, 4) smoothed on SO(3): each sample's neighbours are fitted in its
    tangent space and mapped back; ``passes`` times, around the previous pass's result."""
    q = np.asarray(quats, np.float64)
    ref = q.copy()
    for _ in range(passes):
        out = np.empty_like(ref)
        for s in range(0, len(q), _CHUNK):
            sl = slice(s, s + _CHUNK)
            rel = quat_to_axis_angle(quat_mul(quat_conj(ref[sl])[:, None], q[idx[sl]]))  # (n, W, J, 3)
            tangent = np.einsum("nw,nwjc->njc", rows[sl], rel)
            out[sl] = quat_mul(ref[sl], axis_angle_to_quat(tangent))
        ref = out
    return ref


# ----------------------------------------------------------------------- outliers
def _median5(rel: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-component median over axis 1 of the valid entries (the centre always counts)."""
    shape = (valid.shape[0], valid.shape[1]) + (1,) * (rel.ndim - 2)
    masked = np.where(valid.reshape(shape), rel, np.nan)
    return np.nanmedian(masked, axis=1)


def _flag(residual: np.ndarray, enough: np.ndarray, floor: float, sigmas: float) -> np.ndarray:
    """Samples of ``residual`` (N, K) beyond ``sigmas`` robust deviations of their column and ``floor``."""
    scale = 1.4826 * np.median(residual[enough], axis=0) if enough.any() else np.zeros(residual.shape[1])
    return enough[:, None] & (residual > np.maximum(floor, sigmas * scale))


def rotation_outliers(quats: np.ndarray, seg: np.ndarray, floor: float, sigmas: float):
    """Outliers of rotations (N, J, 4): mask (N, J) and the neighbours' median (N, J, 4)."""
    n = len(quats)
    times = np.arange(n, dtype=np.float64)
    idx, valid, _ = _neighbours(times, seg, 2.0, k_min=2)
    q = np.asarray(quats, np.float64)
    med = np.empty(q.shape[:2] + (3,))
    for s in range(0, n, _CHUNK):
        sl = slice(s, s + _CHUNK)
        rel = quat_to_axis_angle(quat_mul(quat_conj(q[sl])[:, None], q[idx[sl]]))
        med[sl] = _median5(rel, valid[sl])
    enough = valid.sum(axis=1) >= 4
    mask = _flag(np.linalg.norm(med, axis=-1), enough, floor, sigmas)
    return mask, quat_mul(q, axis_angle_to_quat(med))


def vector_outliers(values: np.ndarray, seg: np.ndarray, floor: float, sigmas: float):
    """Outliers of vectors (N, K) taken as K independent signals: mask (N, K) and replacements."""
    v = np.asarray(values, np.float64)
    idx, valid, _ = _neighbours(np.arange(len(v), dtype=np.float64), seg, 2.0, k_min=2)
    med = _median5(v[idx] - v[:, None], valid)
    enough = valid.sum(axis=1) >= 4
    mask = _flag(np.abs(med), enough, floor, sigmas)
    return mask, v + med


# ----------------------------------------------------------------------- the take
def to_ray(transl: np.ndarray) -> np.ndarray:
    """Camera-frame positions (N, 3) as ``(x/z, y/z, log z)`` (z > 0)."""
    z = transl[:, 2]
    return np.stack([transl[:, 0] / z, transl[:, 1] / z, np.log(z)], axis=-1)


def from_ray(u: np.ndarray) -> np.ndarray:
    z = np.exp(u[:, 2])
    return np.stack([u[:, 0] * z, u[:, 1] * z, z], axis=-1)


def smooth_take(times: np.ndarray, rotations: np.ndarray, transl: np.ndarray, expression: np.ndarray,
                settings: SmoothSettings = SmoothSettings(), max_gap: float = 0.5
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, SmoothReport]:
    """Smooth one person's samples (see the module docstring).

    ``times`` (N,) seconds, increasing; ``rotations`` (N, 55, 4) local quaternions (x, y, z, w),
    the root's in the camera frame; ``transl`` (N, 3) camera frame, metres; ``expression`` (N, E).
    Returns new arrays and a :class:`SmoothReport`.
    """
    times = np.asarray(times, np.float64)
    n = len(times)
    q = np.array(rotations, np.float64, copy=True)
    transl = np.asarray(transl, np.float64)
    expression = np.asarray(expression, np.float64)
    report = SmoothReport(outlier_samples=np.zeros(n, bool))
    if n < 2:
        return q, transl.copy(), expression.copy(), report
    seg = segments(times, max_gap)
    s = settings
    rows_cache: Dict[float, tuple] = {}

    def rows(sigma: float, order: int = 2):
        if (sigma, order) not in rows_cache:
            rows_cache[sigma, order] = local_fit_rows(times, seg, sigma, order)
        return rows_cache[sigma, order]

    for group, joints in ROTATION_GROUPS.items():
        mask, median = rotation_outliers(q[:, joints], seg, s.outlier_angle, s.outlier_sigmas)
        sub = q[:, joints]
        sub[mask] = median[mask]
        report.outliers[group] = int(mask.sum())
        report.outlier_samples |= mask.any(axis=1)
        q[:, joints] = smooth_rotations(sub, *rows(getattr(s, group)))

    if np.all(transl[:, 2] > 1e-3):  # in front of the camera: along the ray
        u = to_ray(transl)
        mask_dir, med_dir = vector_outliers(u[:, :2], seg, s.outlier_direction, s.outlier_sigmas)
        mask_z, med_z = vector_outliers(u[:, 2:], seg, s.outlier_depth, s.outlier_sigmas)
        bad = mask_dir.any(axis=1) | mask_z[:, 0]
        u[bad] = np.concatenate([med_dir, med_z], axis=1)[bad]
        u[:, :2] = smooth_vectors(u[:, :2], *rows(s.translation))
        u[:, 2] = smooth_vectors(u[:, 2], *rows(s.depth, 1))
        transl_out = from_ray(u)
    else:  # a behind-the-camera value is garbage anyway: plain x, y / z smoothing
        mask, med = vector_outliers(transl, seg, 0.3, s.outlier_sigmas)
        bad = mask.any(axis=1)
        t = transl.copy()
        t[bad] = med[bad]
        transl_out = np.concatenate([smooth_vectors(t[:, :2], *rows(s.translation)),
                                     smooth_vectors(t[:, 2:], *rows(s.depth, 1))], axis=1)
    report.outliers["translation"] = int(bad.sum())
    report.outlier_samples |= bad

    mask, med = vector_outliers(expression, seg, s.outlier_expression, s.outlier_sigmas)
    e = expression.copy()
    e[mask] = med[mask]
    report.outliers["expression"] = int(mask.any(axis=1).sum())
    report.outlier_samples |= mask.any(axis=1)
    expression_out = smooth_vectors(e, *rows(s.expression))
    return q, transl_out, expression_out, report
