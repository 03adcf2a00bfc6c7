"""Synthetic stand-ins for files that cannot be downloaded here.

* :func:`write_synthetic_smplx` writes an ``SMPLX_NEUTRAL.npz`` with the real array
  names, shapes and kinematic tree, and a crude tube-shaped "person" so that renders
  show a body-like silhouette. It is **not** the SMPL-X model: shapes, pose
  correctives and landmarks are random (expressions, as in SMPL-X, move only the head).
  Use it for tests and benchmarks only.
* :func:`synthetic_take` makes a smooth whole-body take in SMPLer-X's output layout.
* Random-weight checkpoints in the official layout live in
  :mod:`engines.checkpoints` (``write_random_checkpoint``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from .body_model import NUM_JOINTS, NUM_VERTICES, PARENTS

NUM_FACES = 20908

# Rough rest positions (metres; SMPL-X frame: y up, the person faces +z, their left is +x).
_BODY = {
    0: (0.0, 0.0, 0.0), 1: (0.06, -0.09, 0.0), 2: (-0.06, -0.09, 0.0), 3: (0.0, 0.11, -0.01),
    4: (0.10, -0.47, 0.0), 5: (-0.10, -0.47, 0.0), 6: (0.0, 0.24, 0.0), 7: (0.09, -0.87, -0.03),
    8: (-0.09, -0.87, -0.03), 9: (0.0, 0.30, 0.01), 10: (0.11, -0.93, 0.10), 11: (-0.11, -0.93, 0.10),
    12: (0.0, 0.51, -0.01), 13: (0.07, 0.42, 0.0), 14: (-0.07, 0.42, 0.0), 15: (0.0, 0.60, 0.02),
    16: (0.17, 0.45, -0.01), 17: (-0.17, 0.45, -0.01), 18: (0.43, 0.43, -0.03), 19: (-0.43, 0.43, -0.03),
    20: (0.68, 0.43, -0.03), 21: (-0.68, 0.43, -0.03), 22: (0.0, 0.57, 0.05), 23: (0.03, 0.66, 0.08),
    24: (-0.03, 0.66, 0.08),
}


def synthetic_rest_joints() -> np.ndarray:
    j = np.zeros((NUM_JOINTS, 3), np.float64)
    for i, p in _BODY.items():
        j[i] = p
    # fingers: index, middle, pinky, ring, thumb (3 joints each), left then right
    offsets_z = {0: 0.02, 1: 0.0, 2: -0.04, 3: -0.02, 4: 0.04}
    for side, wrist, base in ((1.0, 20, 25), (-1.0, 21, 40)):
        for f in range(5):
            for k in range(3):
                jid = base + 3 * f + k
                x = j[wrist, 0] + side * (0.08 + 0.025 * k if f < 4 else 0.03 + 0.025 * k)
                j[jid] = (x, j[wrist, 1] - (0.02 if f == 4 else 0.0), j[wrist, 2] + offsets_z[f])
    return j


def _tube(p0, p1, radius, rings, sides):
    axis = p1 - p0
    length = np.linalg.norm(axis) + 1e-9
    a = axis / length
    helper = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(a, helper)
    u /= np.linalg.norm(u)
    v = np.cross(a, u)
    ang = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    verts = []
    for t in np.linspace(0.0, 1.0, rings):
        c = p0 + t * axis
        verts.append(c + radius * (np.cos(ang)[:, None] * u + np.sin(ang)[:, None] * v))
    verts = np.concatenate(verts, 0)
    faces = []
    for r in range(rings - 1):
        for s in range(sides):
            a0, a1 = r * sides + s, r * sides + (s + 1) % sides
            b0, b1 = a0 + sides, a1 + sides
            faces += [(a0, b0, a1), (a1, b0, b1)]
    return verts, np.asarray(faces, np.int64)


def write_synthetic_smplx(path: Union[str, Path], seed: int = 0) -> Path:
    """Write a synthetic ``SMPLX_NEUTRAL.npz`` (real keys and shapes) and return its path.

    ``path`` may be a directory (the file goes to ``path/smplx/SMPLX_NEUTRAL.npz``) or a file.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path / "smplx" / "SMPLX_NEUTRAL.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    joints = synthetic_rest_joints()

    verts, faces, weights_idx, joint_rings = [], [], [], {}
    n = 0
    for child in range(1, NUM_JOINTS):
        parent = int(PARENTS[child])
        finger = child >= 25
        radius = 0.008 if finger else (0.06 if child in (3, 6, 9) else 0.045 if child in (1, 2, 4, 5, 12, 15) else 0.035)
        if child in (23, 24):
            radius = 0.01
        rings, sides = (3, 6) if finger else (8, 12)
        v, f = _tube(joints[parent], joints[child], radius, rings, sides)
        verts.append(v)
        faces.append(f + n)
        weights_idx += [parent] * len(v)
        joint_rings.setdefault(parent, np.arange(n, n + sides))
        joint_rings[child] = np.arange(n + (rings - 1) * sides, n + rings * sides)
        n += len(v)
    head_v, head_f = _tube(joints[15] + np.array([0, -0.02, 0]), joints[15] + np.array([0, 0.22, 0]), 0.09, 8, 12)
    verts.append(head_v)
    face_vertices = np.arange(n, n + len(head_v))  # expressions move only these, as SMPL-X's move only the face
    faces.append(head_f + n)
    weights_idx += [15] * len(head_v)
    n += len(head_v)

    verts = np.concatenate(verts, 0)
    faces = np.concatenate(faces, 0)
    if n > NUM_VERTICES or len(faces) > NUM_FACES:
        raise AssertionError("synthetic mesh too large")
    pad = NUM_VERTICES - n
    verts = np.concatenate([verts, np.repeat(joints[:1], pad, 0)], 0)
    weights_idx += [0] * pad
    faces = np.concatenate([faces, np.repeat(faces[:1], NUM_FACES - len(faces), 0)], 0)

    weights = np.zeros((NUM_VERTICES, NUM_JOINTS), np.float64)
    weights[np.arange(NUM_VERTICES), weights_idx] = 1.0
    j_reg = np.zeros((NUM_JOINTS, NUM_VERTICES), np.float64)
    for j in range(NUM_JOINTS):
        ring = joint_rings[j]
        j_reg[j, ring] = 1.0 / len(ring)

    kintree = np.stack([PARENTS.copy(), np.arange(NUM_JOINTS)]).astype(np.int64)
    kintree[0, 0] = 4294967295  # as in the released files (uint32 -1)
    comps = np.linalg.qr(rng.standard_normal((45, 45)))[0]
    shapedirs = rng.standard_normal((NUM_VERTICES, 3, 400)) * 1e-3
    body_only = np.ones(NUM_VERTICES, bool)
    body_only[face_vertices] = False
    shapedirs[body_only, :, 300:] = 0.0
    np.savez(
        path,
        v_template=verts.astype(np.float64),
        f=faces.astype(np.uint32),
        shapedirs=shapedirs.astype(np.float32),
        posedirs=(rng.standard_normal((NUM_VERTICES, 3, 486)) * 1e-4).astype(np.float32),
        J_regressor=j_reg,
        weights=weights,
        kintree_table=kintree,
        hands_componentsl=comps,
        hands_componentsr=comps.copy(),
        hands_meanl=rng.standard_normal(45) * 0.1,
        hands_meanr=rng.standard_normal(45) * 0.1,
        lmk_faces_idx=rng.integers(0, NUM_FACES, 51).astype(np.int64),
        lmk_bary_coords=np.full((51, 3), 1.0 / 3.0),
        dynamic_lmk_faces_idx=rng.integers(0, NUM_FACES, (79, 17)).astype(np.int64),
        dynamic_lmk_bary_coords=np.full((79, 17, 3), 1.0 / 3.0),
    )
    return path


def synthetic_take(n_frames: int, fps: float = 30.0, seed: int = 0):
    """A smooth whole-body take as SMPLer-X would output it (official keys and shapes, camera frame).

    A person about 3 m in front of a level camera, upright and facing it, turning, walking
    sideways and to and fro, moving every body joint, both hands (poses relative to the hand
    mean, as predicted), the jaw and the expression; betas constant. Returns a list of dicts
    (one per frame) of float32 arrays. For tests and benchmarks.
    """
    from .types import PARAM_SHAPES

    rng = np.random.default_rng(seed)
    axes = rng.standard_normal((51, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    freq = rng.uniform(0.2, 0.8, 51)
    phase = rng.uniform(0, 2 * np.pi, 51)
    betas = (rng.standard_normal(10) * 0.5).astype(np.float32)
    expr_phase = rng.uniform(0, 2 * np.pi, 10)
    out = []
    for k in range(n_frames):
        t = k / fps
        yaw = 0.6 * np.sin(2 * np.pi * 0.25 * t)
        # Rx(180) @ Ry(yaw) (upright, facing the camera, turning) is a half turn about (cos, 0, sin)(yaw/2)
        global_orient = np.pi * np.array([np.cos(yaw / 2), 0.0, np.sin(yaw / 2)])
        amp = 0.35 * np.sin(2 * np.pi * freq * t + phase)
        joint_aa = axes * amp[:, None]
        params = {
            "global_orient": global_orient,
            "body_pose": joint_aa[:21],
            "left_hand_pose": joint_aa[21:36] * 1.2,
            "right_hand_pose": joint_aa[36:51] * 1.2,
            "jaw_pose": np.array([0.15 + 0.12 * np.sin(2 * np.pi * 0.7 * t), 0.0, 0.0]),
            "leye_pose": np.zeros(3), "reye_pose": np.zeros(3),
            "betas": betas,
            "expression": 1.2 * np.sin(2 * np.pi * 0.3 * t + expr_phase),
            "transl": np.array([0.6 * np.sin(2 * np.pi * 0.2 * t), 0.25 + 0.05 * np.sin(2 * np.pi * 0.5 * t),
                                3.0 + 0.5 * np.cos(2 * np.pi * 0.15 * t)]),
        }
        out.append({key: np.asarray(v, np.float32).reshape(PARAM_SHAPES[key]) for key, v in params.items()})
    return out
