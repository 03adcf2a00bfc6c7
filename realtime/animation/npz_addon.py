"""npz for the SMPL-X Blender add-ons (the official one and Meshcapade's): "Add Animation".

Arrays (AMASS layout, which both add-ons read):

* ``poses`` (T, 165): axis-angle per joint in SMPL-X order: global orientation, 21 body
  joints, jaw, left eye, right eye, 15 left-hand, 15 right-hand joints. Hand rotations are
  **absolute** (the hand mean added), which the add-ons expect with their default
  "Hand pose reference: Flat".
* ``trans`` (T, 3) metres, ``betas`` (10,), ``gender`` ``"neutral"`` (a str),
  ``mocap_frame_rate`` (the file's constant frame rate), ``expression`` (T, 10) (the add-ons
  do not animate it; other tools may).

Frame: **z up**, the AMASS convention, which the add-ons' default "Format: AMASS" turns into
Blender's z-up world unchanged (they put the poses on a y-up rig and turn its root by -90
degrees about x). ``global_orient`` and ``trans`` follow the ``smplx`` layer's meaning in that
frame: the pelvis is at ``J0 + trans``, ``J0`` being the rest pelvis of the body shape, and
the body turns about it. With "Format: SMPL-X" the add-ons read y-up files instead, which this
file is not: use the default.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..rotations import quat_mul, quat_to_axis_angle
from .motion import Motion

#: Rx(+90) as a quaternion (x, y, z, w): y-up world -> z-up (y goes to z).
Q_YUP_TO_ZUP = np.array([np.sin(np.pi / 4), 0.0, 0.0, np.cos(np.pi / 4)])
ZUP_FROM_YUP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def addon_arrays(motion: Motion) -> dict:
    """The add-on npz arrays of ``motion``."""
    q = motion.rotations.copy()
    q[:, 0] = quat_mul(Q_YUP_TO_ZUP, q[:, 0])
    poses = quat_to_axis_angle(q).reshape(motion.n_frames, -1)
    trans = motion.root_position @ ZUP_FROM_YUP.T - motion.skeleton.rest[0]
    return {
        "poses": poses.astype(np.float64),
        "trans": trans.astype(np.float64),
        "betas": np.asarray(motion.betas, np.float64).reshape(-1),
        "gender": np.array("neutral"),
        "mocap_frame_rate": np.array(float(motion.fps)),
        "expression": np.asarray(motion.expression, np.float64),
        "surface_model_type": np.array("smplx"),
    }


def write_npz(motion: Motion, path: Path, mesh=None) -> None:
    """Write ``motion`` as an add-on npz to ``path`` (``mesh`` is not needed)."""
    with open(path, "wb") as f:
        np.savez(f, **addon_arrays(motion))
