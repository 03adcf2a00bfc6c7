"""The SMPL-X skeleton and skinned rest mesh that every export writes.

Joint names and parents come from :mod:`engines.body_model` (the first 55 names of the
``smplx`` package's ``JOINT_NAMES``): the same names in every format. Rest joints and the
rest mesh come from the user's SMPL-X model with the take's betas, in the SMPL-X model
frame: y up, the person faces +z, their left is +x, metres.

:func:`joint_positions` is the forward kinematics of the exported skeleton (local joint
rotations and a root position per frame -> world joint positions); it is what an animation
tool computes from our files, and what :mod:`realtime.animation.motion` uses to place the
take on the floor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from engines.body_model import JOINT_NAMES, NUM_BETAS, NUM_EXPRESSION, NUM_JOINTS, PARENTS
from engines.errors import UserError

from ..rotations import quat_to_matrix

#: Joints whose lowest point over a take marks the floor (ankles and feet).
FOOT_JOINTS = tuple(JOINT_NAMES.index(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot"))
#: The first finger joint of each hand (25..39 left, 40..54 right): hand poses cover 15 joints each.
LEFT_HAND_START = JOINT_NAMES.index("left_index1")
RIGHT_HAND_START = JOINT_NAMES.index("right_index1")
JAW = JOINT_NAMES.index("jaw")
EXPRESSION_NAMES = tuple(f"Exp{i:03d}" for i in range(NUM_EXPRESSION))


@dataclass(frozen=True)
class Skeleton:
    """The 55 SMPL-X joints at rest (T-pose) for one body shape."""

    #: Rest joint positions (55, 3), model frame, metres.
    rest: np.ndarray
    #: Height of the lowest foot joint above the sole in the rest pose (metres).
    sole_height: float
    names: Tuple[str, ...] = JOINT_NAMES
    parents: np.ndarray = field(default_factory=PARENTS.copy)

    @property
    def offsets(self) -> np.ndarray:
        """Each joint's rest position relative to its parent (the root's: its rest position)."""
        off = self.rest - self.rest[np.maximum(self.parents, 0)]
        off[0] = self.rest[0]
        return off

    def children(self, j: int) -> Tuple[int, ...]:
        return tuple(int(c) for c in np.flatnonzero(self.parents == j))


@dataclass(frozen=True)
class RestMesh:
    """The skinned SMPL-X mesh at rest for one body shape (what GLB and FBX carry)."""

    vertices: np.ndarray         # (10475, 3) float64, model frame
    faces: np.ndarray            # (F, 3) int64
    weights: np.ndarray          # (10475, 55) skinning weights, rows sum to 1
    expression_dirs: np.ndarray  # (10475, 3, 10) vertex offset per unit expression coefficient


@dataclass(frozen=True)
class Body:
    """What the exports need from the user's SMPL-X model for one take."""

    skeleton: Skeleton
    mesh: RestMesh
    #: SMPL-X hand mean pose (2, 15, 3) axis-angle, left then right: SMPLer-X's hand poses are relative to it.
    hand_mean: np.ndarray
    betas: np.ndarray
    model_path: Path


def open_body_model(body_models: Optional[Union[str, Path]] = None):
    """The user's SMPL-X model (:class:`engines.body_model.BodyModel`), or a :class:`UserError`."""
    from engines.body_model import BodyModel, BodyModelNotFound

    try:
        return BodyModel(body_models)
    except (BodyModelNotFound, ValueError) as exc:
        raise UserError(str(exc)) from None


def shaped_body(model, betas: np.ndarray) -> Body:
    """Rest joints and rest mesh of ``model`` (a ``BodyModel``) shaped by ``betas`` (10,)."""
    layer = model.layer
    betas = np.asarray(betas, np.float64).reshape(NUM_BETAS)
    v_template = layer.v_template.detach().cpu().numpy().astype(np.float64)
    shapedirs = layer.shapedirs.detach().cpu().numpy().astype(np.float64)[:, :, :NUM_BETAS]
    vertices = v_template + shapedirs @ betas
    j_reg = layer.J_regressor.detach().cpu().numpy().astype(np.float64)
    rest = j_reg @ vertices
    feet_low = float(rest[list(FOOT_JOINTS), 1].min())
    skeleton = Skeleton(rest=rest, sole_height=max(0.0, feet_low - float(vertices[:, 1].min())))
    mesh = RestMesh(
        vertices=vertices,
        faces=np.asarray(model.faces, np.int64),
        weights=layer.lbs_weights.detach().cpu().numpy().astype(np.float64),
        expression_dirs=layer.expr_dirs.detach().cpu().numpy().astype(np.float64)[:, :, :NUM_EXPRESSION],
    )
    hand_mean = np.stack([model.hand_mean_left, model.hand_mean_right]).astype(np.float64)
    return Body(skeleton=skeleton, mesh=mesh, hand_mean=hand_mean, betas=betas, model_path=model.path)


def joint_transforms(skeleton: Skeleton, rotations: np.ndarray, root_position: np.ndarray):
    """World rotation matrices (T, 55, 3, 3) and positions (T, 55, 3) of every joint.

    ``rotations`` (T, 55, 4): local joint rotations as quaternions (x, y, z, w), the root's
    being its world orientation; ``root_position`` (T, 3): the root joint's world position.
    """
    local = quat_to_matrix(rotations)
    t = local.shape[0]
    world_r = np.empty((t, NUM_JOINTS, 3, 3))
    world_p = np.empty((t, NUM_JOINTS, 3))
    world_r[:, 0] = local[:, 0]
    world_p[:, 0] = root_position
    offsets = skeleton.offsets
    for j in range(1, NUM_JOINTS):  # parents come before their children
        p = int(skeleton.parents[j])
        world_r[:, j] = world_r[:, p] @ local[:, j]
        world_p[:, j] = world_p[:, p] + world_r[:, p] @ offsets[j]
    return world_r, world_p


def joint_positions(skeleton: Skeleton, rotations: np.ndarray, root_position: np.ndarray) -> np.ndarray:
    """World joint positions (T, 55, 3): forward kinematics of the exported skeleton."""
    return joint_transforms(skeleton, rotations, root_position)[1]
