"""Resampling irregular samples (capture timestamps) to a constant frame rate.

Rules (the README's "Animate a character" states them too):

* Output frame ``k`` is at ``k / fps`` seconds from the start of the take, up to the frame
  nearest the end of the take.
* Between two samples at most ``max_gap`` seconds apart, rotations are interpolated by
  slerp and vectors linearly.
* Across a longer gap (the person was not seen), the last seen pose is **held** until the
  person is seen again; before the first and after the last sighting the nearest pose is
  held. Held spans are reported by :func:`gaps`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ..rotations import quat_slerp

#: Default longest span (seconds) that is interpolated; longer gaps hold the last pose.
MAX_GAP = 0.5


def frame_times(duration: float, fps: float) -> np.ndarray:
    """Times of the output frames: ``k / fps`` from 0 to the frame nearest ``duration`` (a take
    captured at about ``fps`` keeps its number of frames despite timestamp jitter)."""
    n = int(np.floor(max(0.0, duration) * fps + 0.5)) + 1
    return np.arange(n, dtype=np.float64) / fps


@dataclass(frozen=True)
class Plan:
    """For each output time: the two samples it lies between and the weight of the second."""

    lo: np.ndarray      # (K,) int
    hi: np.ndarray      # (K,) int
    weight: np.ndarray  # (K,) float in [0, 1]
    held: np.ndarray    # (K,) bool: pose held (gap, or outside the sightings), not interpolated


def plan(times: np.ndarray, out_times: np.ndarray, max_gap: float = MAX_GAP) -> Plan:
    """How to resample samples at ``times`` (increasing) onto ``out_times``."""
    times = np.asarray(times, np.float64)
    out_times = np.asarray(out_times, np.float64)
    n = len(times)
    eps = 1e-9
    hi = np.clip(np.searchsorted(times, out_times - eps, side="left"), 0, n - 1)
    lo = np.clip(hi - 1, 0, n - 1)
    exact = np.abs(times[hi] - out_times) <= eps
    lo = np.where(exact, hi, lo)
    span = times[hi] - times[lo]
    weight = np.where(span > 0, (out_times - times[lo]) / np.where(span > 0, span, 1.0), 0.0)
    before = out_times < times[0] - eps
    after = out_times > times[-1] + eps
    gap = (span > max_gap + eps) & ~exact
    held = before | after | gap
    weight = np.where(held, 0.0, np.clip(weight, 0.0, 1.0))
    lo = np.where(before, 0, np.where(after, n - 1, lo))
    hi = np.where(held, lo, hi)
    return Plan(lo=lo, hi=hi, weight=weight, held=held)


def lerp(values: np.ndarray, p: Plan) -> np.ndarray:
    """Vectors (N, ...) resampled linearly."""
    w = p.weight.reshape((-1,) + (1,) * (values.ndim - 1))
    return values[p.lo] * (1.0 - w) + values[p.hi] * w


def slerp(quats: np.ndarray, p: Plan) -> np.ndarray:
    """Quaternions (N, ..., 4), x-y-z-w, resampled by shortest-path slerp."""
    w = p.weight.reshape((-1,) + (1,) * (quats.ndim - 1))
    return quat_slerp(quats[p.lo], quats[p.hi], w)


def gaps(times: np.ndarray, duration: float, max_gap: float = MAX_GAP) -> List[Tuple[float, float]]:
    """Spans (start, end) in seconds where the pose is held: before the first sighting, between
    sightings more than ``max_gap`` apart, after the last sighting."""
    times = np.asarray(times, np.float64)
    out: List[Tuple[float, float]] = []
    if times[0] > 1e-9:
        out.append((0.0, float(times[0])))
    d = np.diff(times)
    for i in np.flatnonzero(d > max_gap + 1e-9):
        out.append((float(times[i]), float(times[i + 1])))
    if duration - times[-1] > 1e-9:
        out.append((float(times[-1]), float(duration)))
    return out
