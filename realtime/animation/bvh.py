"""BVH: the 55-joint SMPL-X hierarchy with a root position channel and rotations for every joint.

* Axes and units: y up, metres, the person faces +z (Blender's importer, by default
  ``forward -Z, up Y``, turns this into its z-up world with the person facing -y).
* Rest pose: the SMPL-X T-pose of the take's body; every joint's rest frame is aligned with
  the world, so a joint's channels are its SMPL-X local rotation.
* ``pelvis``: ``OFFSET 0 0 0`` and channels ``Xposition Yposition Zposition Zrotation
  Yrotation Xrotation``: the position channels are the pelvis' world position (readers that
  add the offset and readers that do not agree); every other joint: ``Zrotation Yrotation
  Xrotation``, degrees, ``R = Rz @ Ry @ Rx``, made continuous over time.
* Leaf joints end in an ``End Site`` a few centimetres further along their bone.
* ``Frame Time`` is ``1 / fps``.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import List

import numpy as np

from ..rotations import euler_zyx_continuous, matrix_to_euler_zyx, quat_to_matrix
from .motion import Motion
from .skeleton import Skeleton

END_SITE_LENGTH = 0.03  # metres, for leaf joints


def _end_site(skeleton: Skeleton, j: int) -> np.ndarray:
    direction = skeleton.rest[j] - skeleton.rest[int(skeleton.parents[j])]
    norm = np.linalg.norm(direction)
    return direction / norm * END_SITE_LENGTH if norm > 1e-9 else np.array([0.0, END_SITE_LENGTH, 0.0])


def hierarchy(skeleton: Skeleton) -> str:
    """The ``HIERARCHY`` section."""
    lines: List[str] = ["HIERARCHY"]

    def fmt(v) -> str:
        return " ".join(f"{float(x):.6f}" for x in v)

    def joint(j: int, depth: int) -> None:
        pad = "\t" * depth
        if j == 0:
            lines.append(f"ROOT {skeleton.names[0]}")
            lines.append("{")
            lines.append(f"\tOFFSET {fmt((0.0, 0.0, 0.0))}")
            lines.append("\tCHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation")
        else:
            lines.append(f"{pad}JOINT {skeleton.names[j]}")
            lines.append(f"{pad}{{")
            lines.append(f"{pad}\tOFFSET {fmt(skeleton.offsets[j])}")
            lines.append(f"{pad}\tCHANNELS 3 Zrotation Yrotation Xrotation")
        children = skeleton.children(j)
        for c in children:
            joint(c, depth + 1)
        if not children:
            lines.append(f"{pad}\tEnd Site")
            lines.append(f"{pad}\t{{")
            lines.append(f"{pad}\t\tOFFSET {fmt(_end_site(skeleton, j))}")
            lines.append(f"{pad}\t}}")
        lines.append(f"{pad}}}")

    joint(0, 0)
    return "\n".join(lines) + "\n"


def _joint_order(skeleton: Skeleton) -> List[int]:
    """Joints in the order the hierarchy lists them (depth first), which the channels follow."""
    order: List[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for c in skeleton.children(j):
            visit(c)

    visit(0)
    return order


def motion_table(motion: Motion) -> np.ndarray:
    """(T, 3 + 3 * 55) channel values in hierarchy order (metres, degrees)."""
    order = _joint_order(motion.skeleton)
    euler = matrix_to_euler_zyx(quat_to_matrix(motion.rotations[:, order]))
    euler = np.degrees(euler_zyx_continuous(euler))
    return np.concatenate([motion.root_position, euler.reshape(motion.n_frames, -1)], axis=1)


def write_bvh(motion: Motion, path: Path, mesh=None) -> None:
    """Write ``motion`` as BVH to ``path`` (``mesh`` is not needed)."""
    table = motion_table(motion)
    buf = io.StringIO()
    buf.write(hierarchy(motion.skeleton))
    buf.write("MOTION\n")
    buf.write(f"Frames: {motion.n_frames}\n")
    buf.write(f"Frame Time: {1.0 / motion.fps:.8f}\n")
    np.savetxt(buf, table, fmt="%.6f", delimiter=" ")
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(buf.getvalue())
