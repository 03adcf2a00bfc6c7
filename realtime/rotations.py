"""Rotation conversions in numpy, vectorised over leading axes.

Quaternions are stored ``(x, y, z, w)`` (scipy's order): the project's one quaternion layout
(filters, VMC, exports). The network's own 6-D -> axis-angle conversion goes through a w-first
quaternion inside :func:`engines.geometry.rot6d_to_axis_angle`, a private step kept only to match
the official code's arithmetic. Axis-angle vectors are rotation vectors (axis * angle, radians).
Matrices act on column vectors.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-12


def axis_angle_to_quat(aa: np.ndarray) -> np.ndarray:
    aa = np.asarray(aa, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(half)/angle, with its limit 0.5 - angle^2/48 near zero
    small = angle < 1e-6
    k = np.where(small, 0.5 - angle**2 / 48.0, np.sin(half) / np.where(small, 1.0, angle))
    return np.concatenate([aa * k, np.cos(half)], axis=-1)


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    q = q * np.where(q[..., 3:4] < 0, -1.0, 1.0)  # shortest rotation: w >= 0
    v = q[..., :3]
    s = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, q[..., 3:4])
    small = s < 1e-9
    k = np.where(small, 2.0 / np.maximum(q[..., 3:4], _EPS), angle / np.where(small, 1.0, s))
    return v * k


def quat_normalize(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), _EPS)


def quat_conj(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([-q[..., :3], q[..., 3:]], axis=-1)


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` (apply ``b`` first, then ``a``)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ], axis=-1)


def quat_align(q: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Flip ``q`` onto the hemisphere of ``reference`` (q and -q are the same rotation)."""
    q = np.asarray(q, dtype=np.float64)
    dot = np.sum(q * reference, axis=-1, keepdims=True)
    return np.where(dot < 0, -q, q)


def quat_slerp(a: np.ndarray, b: np.ndarray, t) -> np.ndarray:
    """Shortest-path spherical interpolation from ``a`` (t=0) to ``b`` (t=1)."""
    a = quat_normalize(a)
    b = quat_align(quat_normalize(b), a)
    t = np.asarray(t, dtype=np.float64)
    if t.ndim and t.shape[-1] != 1:
        t = t[..., None]
    dot = np.clip(np.sum(a * b, axis=-1, keepdims=True), -1.0, 1.0)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    near = sin_theta < 1e-6
    safe = np.where(near, 1.0, sin_theta)
    wa = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    wb = np.where(near, t, np.sin(t * theta) / safe)
    return quat_normalize(wa * a + wb * b)


def quat_angle(q: np.ndarray) -> np.ndarray:
    """Rotation angle (radians, in [0, pi]) of unit quaternions."""
    q = np.asarray(q, dtype=np.float64)
    return 2.0 * np.arctan2(np.linalg.norm(q[..., :3], axis=-1), np.abs(q[..., 3]))


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = np.moveaxis(quat_normalize(q), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def matrix_to_euler_zyx(m: np.ndarray) -> np.ndarray:
    """Angles ``(z, y, x)`` (radians) with ``m = Rz(z) @ Ry(y) @ Rx(x)``.

    This is the order of a BVH channel list ``Zrotation Yrotation Xrotation``. At the
    singularity (``y = ±90°``) ``x`` is set to 0.
    """
    m = np.asarray(m, dtype=np.float64)
    sy = np.clip(-m[..., 2, 0], -1.0, 1.0)
    y = np.arcsin(sy)
    cy = np.sqrt(m[..., 2, 1] ** 2 + m[..., 2, 2] ** 2)
    regular = cy > 1e-9
    x = np.where(regular, np.arctan2(m[..., 2, 1], m[..., 2, 2]), 0.0)
    z = np.where(regular, np.arctan2(m[..., 1, 0], m[..., 0, 0]), np.arctan2(-m[..., 0, 1], m[..., 1, 1]))
    return np.stack([z, y, x], axis=-1)


def euler_zyx_continuous(angles: np.ndarray) -> np.ndarray:
    """Make a sequence of ZYX Euler triples (T, ..., 3) continuous over its first axis.

    Each frame gets, of the equivalent triples ``(z, y, x)`` and ``(z + pi, pi - y, x + pi)``
    plus multiples of 2*pi, the one closest to the previous frame, so that players which
    interpolate Euler angles never turn the long way round.
    """
    a = np.array(angles, dtype=np.float64, copy=True)
    two_pi = 2.0 * np.pi
    for t in range(1, a.shape[0]):
        z, y, x = a[t][..., 0], a[t][..., 1], a[t][..., 2]
        cands = np.stack([a[t], np.stack([z + np.pi, np.pi - y, x + np.pi], axis=-1)])
        cands = cands + two_pi * np.round((a[t - 1] - cands) / two_pi)
        cost = np.sum((cands - a[t - 1]) ** 2, axis=-1)
        a[t] = np.where((cost[1] < cost[0])[..., None], cands[1], cands[0])
    return a


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Unit quaternions (x, y, z, w) of rotation matrices (..., 3, 3) (Shepperd's method: the
    largest of w, x, y, z is computed first, so it is accurate for every angle)."""
    m = np.asarray(m, dtype=np.float64)
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cand = np.stack([tr, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], axis=-1)
    k = np.argmax(cand, axis=-1)
    q = np.empty(m.shape[:-2] + (4,))
    # w largest
    s = np.sqrt(np.maximum(1.0 + tr, _EPS)) * 2.0
    qw = np.stack([(m[..., 2, 1] - m[..., 1, 2]) / s, (m[..., 0, 2] - m[..., 2, 0]) / s,
                   (m[..., 1, 0] - m[..., 0, 1]) / s, 0.25 * s], axis=-1)
    s = np.sqrt(np.maximum(1.0 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], _EPS)) * 2.0
    qx = np.stack([0.25 * s, (m[..., 0, 1] + m[..., 1, 0]) / s, (m[..., 0, 2] + m[..., 2, 0]) / s,
                   (m[..., 2, 1] - m[..., 1, 2]) / s], axis=-1)
    s = np.sqrt(np.maximum(1.0 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], _EPS)) * 2.0
    qy = np.stack([(m[..., 0, 1] + m[..., 1, 0]) / s, 0.25 * s, (m[..., 1, 2] + m[..., 2, 1]) / s,
                   (m[..., 0, 2] - m[..., 2, 0]) / s], axis=-1)
    s = np.sqrt(np.maximum(1.0 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2], _EPS)) * 2.0
    qz = np.stack([(m[..., 0, 2] + m[..., 2, 0]) / s, (m[..., 1, 2] + m[..., 2, 1]) / s, 0.25 * s,
                   (m[..., 1, 0] - m[..., 0, 1]) / s], axis=-1)
    q = np.where((k == 0)[..., None], qw, np.where((k == 1)[..., None], qx, np.where((k == 2)[..., None], qy, qz)))
    return quat_normalize(q)


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectors ``v`` (..., 3) rotated by unit quaternions ``q`` (..., 4)."""
    q = np.asarray(q, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    u = q[..., :3]
    t = 2.0 * np.cross(u, v)
    return v + q[..., 3:4] * t + np.cross(u, t)


def quat_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The shortest rotation taking direction ``a`` (..., 3) onto direction ``b`` (..., 3)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), _EPS)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), _EPS)
    c = np.cross(a, b)
    d = np.sum(a * b, axis=-1, keepdims=True)
    # opposite directions: a half turn about any axis normal to a
    helper = np.where(np.abs(a[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    ortho = np.cross(a, helper)
    opposite = d < -1.0 + 1e-9
    q = np.where(opposite, np.concatenate([ortho, np.zeros_like(d)], axis=-1), np.concatenate([c, 1.0 + d], axis=-1))
    return quat_normalize(q)
