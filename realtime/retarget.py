"""SMPL-X parameters → Unity Humanoid pose (VMC protocol, VRM0 convention).

The receiver is assumed to be a VRM0-normalised rig: T-pose rest with every rest
rotation the identity, which is also the SMPL-X rest convention, so local
(parent-relative) joint rotations map 1:1 once the handedness is fixed.

Conversion (docs/streaming.md, section 2):

1. SMPLer-X gives ``global_orient`` and ``transl`` in the OpenCV camera frame
   (x right, y down, z forward). They are rotated into a Y-up world by
   ``R_x(180°)``: ``R_w = R_x · R_cam``, ``p_w = R_x · p_cam``.
2. Unity is left-handed: X is mirrored. Positions ``(x, y, z) → (−x, y, z)``,
   quaternions ``(x, y, z, w) → (x, −y, −z, w)``. Local joint rotations only
   need this mirror.
3. Finger rotations are ``pose + hand_mean`` (added in axis-angle, as the smplx
   layer does for ``flat_hand_mean=False``).
4. Bone positions are the rest-pose local offsets ``rest[j] − rest[parent]``,
   mirrored. ``Hips`` is positioned relative to the avatar root, which sits on the
   floor under the pelvis (the floor being the lowest rest joint, i.e. the toes).

Where the body's global motion goes (``root_motion``):

* ``"root"`` (default): ``/VMC/Ext/Root/Pos`` carries the body orientation and
  the position of the floor point under the pelvis; ``Hips`` keeps its rest offset
  and the identity rotation.
* ``"hips"``: the root stays at the origin with the identity rotation; ``Hips``
  carries the pelvis position and the body orientation.

Both place the pelvis at the same Unity-space point. Quaternions are ``(x, y, z, w)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from engines.body_model import JOINT_NAMES, NUM_BETAS, NUM_JOINTS, PARENTS

from .rotations import axis_angle_to_quat, quat_mul, quat_normalize
from engines.types import SMPLXParams

_FINGERS_SMPLX = ("index", "middle", "pinky", "ring", "thumb")
_FINGERS_UNITY = {"index": "Index", "middle": "Middle", "pinky": "Little", "ring": "Ring", "thumb": "Thumb"}
_PHALANX_UNITY = ("Proximal", "Intermediate", "Distal")


def _build_bone_names() -> Tuple[str, ...]:
    body = [
        "Hips", "LeftUpperLeg", "RightUpperLeg", "Spine", "LeftLowerLeg", "RightLowerLeg", "Chest",
        "LeftFoot", "RightFoot", "UpperChest", "LeftToes", "RightToes", "Neck", "LeftShoulder",
        "RightShoulder", "Head", "LeftUpperArm", "RightUpperArm", "LeftLowerArm", "RightLowerArm",
        "LeftHand", "RightHand", "Jaw", "LeftEye", "RightEye",
    ]
    for side in ("Left", "Right"):
        for finger in _FINGERS_SMPLX:
            for phalanx in _PHALANX_UNITY:
                body.append(f"{side}{_FINGERS_UNITY[finger]}{phalanx}")
    return tuple(body)


#: Unity ``HumanBodyBones`` name of each SMPL-X kinematic joint (index = SMPL-X joint id).
UNITY_BONE_NAMES: Tuple[str, ...] = _build_bone_names()
#: SMPL-X joint name → Unity bone name.
SMPLX_TO_UNITY: Dict[str, str] = dict(zip(JOINT_NAMES, UNITY_BONE_NAMES))

assert len(UNITY_BONE_NAMES) == NUM_JOINTS == len(set(UNITY_BONE_NAMES))

#: R_x(180°) as a quaternion (x, y, z, w): camera (y down, z forward) → Y-up world.
Q_CAM_TO_WORLD = np.array([1.0, 0.0, 0.0, 0.0])
_IDENTITY_Q = np.array([0.0, 0.0, 0.0, 1.0])

ROOT_MOTION_MODES = ("root", "hips")


def mirror_position(p: np.ndarray) -> np.ndarray:
    """Right-handed Y-up → Unity left-handed: ``(x, y, z) → (−x, y, z)``."""
    p = np.array(p, dtype=np.float64, copy=True)
    p[..., 0] *= -1.0
    return p


def mirror_quat(q: np.ndarray) -> np.ndarray:
    """Right-handed Y-up → Unity left-handed: ``(x, y, z, w) → (x, −y, −z, w)``."""
    q = np.array(q, dtype=np.float64, copy=True)
    q[..., 1:3] *= -1.0
    return q


def cam_to_world_position(p: np.ndarray) -> np.ndarray:
    """``R_x(180°) · p``: ``(x, y, z) → (x, −y, −z)``."""
    p = np.array(p, dtype=np.float64, copy=True)
    p[..., 1:3] *= -1.0
    return p


def jaw_open_value(jaw_pose: np.ndarray, max_angle: float = 0.5) -> float:
    """Mouth opening in [0, 1] from the jaw's rotation about its local x axis.

    The twist about x of the jaw rotation (swing-twist decomposition) is taken,
    positive = mouth opening in SMPL-X, and mapped linearly so ``max_angle``
    radians (and more) gives 1.0; closing rotations give 0.
    """
    if max_angle <= 0:
        raise ValueError(f"max_angle must be > 0, got {max_angle}")
    q = axis_angle_to_quat(np.asarray(jaw_pose, dtype=np.float64).reshape(3))
    if q[3] < 0:
        q = -q
    twist = 2.0 * np.arctan2(q[0], q[3])
    return float(np.clip(twist / max_angle, 0.0, 1.0))


@dataclass
class RestModel:
    """What the retargeting needs from the body model.

    ``joints_template`` (55, 3) are the rest joints for zero betas and
    ``joints_shapedirs`` (B, 55, 3) their (exactly linear) change per beta, so the
    rest joints for any betas are cheap to get without the full body model.
    """

    joints_template: np.ndarray
    hand_mean_left: np.ndarray
    hand_mean_right: np.ndarray
    joints_shapedirs: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.joints_template = np.asarray(self.joints_template, np.float64).reshape(NUM_JOINTS, 3)
        self.hand_mean_left = np.asarray(self.hand_mean_left, np.float64).reshape(15, 3)
        self.hand_mean_right = np.asarray(self.hand_mean_right, np.float64).reshape(15, 3)
        if self.joints_shapedirs is not None:
            self.joints_shapedirs = np.asarray(self.joints_shapedirs, np.float64).reshape(-1, NUM_JOINTS, 3)

    @classmethod
    def from_body_model(cls, body_model) -> "RestModel":
        """Sample ``body_model.rest_joints`` at zero betas and at each unit beta."""
        template = np.asarray(body_model.rest_joints(None), np.float64)
        dirs = np.stack([
            np.asarray(body_model.rest_joints(np.eye(NUM_BETAS, dtype=np.float32)[i]), np.float64) - template
            for i in range(NUM_BETAS)
        ])
        return cls(template, body_model.hand_mean_left, body_model.hand_mean_right, dirs)

    def joints(self, betas: Optional[np.ndarray] = None) -> np.ndarray:
        """Rest joints (55, 3) for ``betas`` (None or no shape basis: the template)."""
        if betas is None or self.joints_shapedirs is None:
            return self.joints_template
        b = np.asarray(betas, np.float64).reshape(-1)[: len(self.joints_shapedirs)]
        return self.joints_template + np.einsum("b,bjk->jk", b, self.joints_shapedirs[: len(b)])


@dataclass
class UnityPose:
    """One avatar pose in Unity space (left-handed, Y up, metres)."""

    #: Unity bone name → (local position (3,), local rotation quaternion (4,) x, y, z, w).
    bones: Dict[str, Tuple[np.ndarray, np.ndarray]]
    root_pos: np.ndarray
    root_quat: np.ndarray
    #: Blendshape name → value in [0, 1].
    blend: Dict[str, float] = field(default_factory=dict)


def _root_offset(rest_joints: np.ndarray) -> np.ndarray:
    """Pelvis rest position relative to the floor point below it (model frame, Y up)."""
    pelvis = rest_joints[0]
    floor_y = float(np.min(rest_joints[:, 1]))
    return np.array([0.0, pelvis[1] - floor_y, 0.0])


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vector ``v`` by unit quaternion ``q``."""
    qv = np.concatenate([v, [0.0]])
    return quat_mul(quat_mul(q, qv), q * np.array([-1.0, -1.0, -1.0, 1.0]))[:3]


def smplx_to_unity(
    params: SMPLXParams,
    rest_joints: np.ndarray,
    hand_mean_left: np.ndarray,
    hand_mean_right: np.ndarray,
    *,
    root_motion: str = "root",
    origin: Optional[np.ndarray] = None,
    zero_positions: bool = False,
    jaw_open_max: float = 0.5,
    blend_names: Tuple[str, ...] = ("A", "JawOpen"),
    grounded: Optional[dict] = None,
) -> UnityPose:
    """Convert one person's SMPL-X parameters to a Unity Humanoid pose.

    Args:
        params: axis-angle parameters in the OpenCV camera frame.
        rest_joints: (55, 3) rest-pose joints for the person's betas (model frame).
        hand_mean_left, hand_mean_right: (15, 3) SMPL-X hand means (axis-angle).
        root_motion: ``"root"`` (Root/Pos carries the body's motion) or ``"hips"``.
        origin: Unity-space point subtracted from the carried position (e.g. the
            first frame's root position to re-centre); None = camera at the origin.
        zero_positions: send zero local positions for every bone except ``Hips``
            (for receivers that mishandle bone positions).
        jaw_open_max: jaw opening angle (rad) that maps to blend value 1.0.
        blend_names: blendshape names that receive the jaw-opening value.
        grounded: the live grounder's root (:mod:`realtime.grounding`, ``Person.grounded``):
            when given, the body orientation and pelvis position come from it (the floor frame:
            y up, floor at y = 0) instead of the camera-frame ``global_orient`` / ``transl``.
    """
    if root_motion not in ROOT_MOTION_MODES:
        raise ValueError(f"root_motion must be one of {ROOT_MOTION_MODES}, got {root_motion!r}")
    rest = np.asarray(rest_joints, np.float64).reshape(NUM_JOINTS, 3)

    # Local rotations (axis-angle, SMPL-X frame) of the 55 joints; the root is handled apart.
    local_aa = np.zeros((NUM_JOINTS, 3))
    local_aa[1:22] = np.asarray(params.body_pose, np.float64).reshape(21, 3)
    local_aa[22] = np.asarray(params.jaw_pose, np.float64).reshape(3)
    local_aa[25:40] = np.asarray(params.left_hand_pose, np.float64).reshape(15, 3) + np.asarray(hand_mean_left, np.float64).reshape(15, 3)
    local_aa[40:55] = np.asarray(params.right_hand_pose, np.float64).reshape(15, 3) + np.asarray(hand_mean_right, np.float64).reshape(15, 3)
    local_q = mirror_quat(quat_normalize(axis_angle_to_quat(local_aa)))

    # Root: camera frame → Y-up world → Unity.
    if grounded is not None:
        q_world = quat_normalize(np.asarray(grounded["root_quat"], np.float64).reshape(4))
        pelvis_world = np.asarray(grounded["root_pos"], np.float64).reshape(3)
    else:
        q_cam = axis_angle_to_quat(np.asarray(params.global_orient, np.float64).reshape(3))
        q_world = quat_normalize(quat_mul(Q_CAM_TO_WORLD, q_cam))
        # Pelvis position in the camera frame: SMPL-X applies the global rotation about
        # the rest pelvis and then adds transl, so the pelvis lands at J0 + transl.
        pelvis_world = cam_to_world_position(rest[0] + np.asarray(params.transl, np.float64).reshape(3))
    hips_offset = _root_offset(rest)
    root_world = pelvis_world - _rotate(q_world, hips_offset)
    offset = np.zeros(3) if origin is None else np.asarray(origin, np.float64).reshape(3)

    offsets = np.zeros((NUM_JOINTS, 3))
    if not zero_positions:
        offsets[1:] = rest[1:] - rest[PARENTS[1:]]
    offsets = mirror_position(offsets)

    if root_motion == "root":
        root_pos = mirror_position(root_world) - offset
        root_quat = mirror_quat(q_world)
        hips = (mirror_position(hips_offset), _IDENTITY_Q.copy())
    else:
        root_pos = np.zeros(3)
        root_quat = _IDENTITY_Q.copy()
        hips = (mirror_position(pelvis_world) - offset, mirror_quat(q_world))

    bones: Dict[str, Tuple[np.ndarray, np.ndarray]] = {UNITY_BONE_NAMES[0]: hips}
    for j in range(1, NUM_JOINTS):
        bones[UNITY_BONE_NAMES[j]] = (offsets[j], local_q[j])

    jaw = jaw_open_value(params.jaw_pose, jaw_open_max)
    return UnityPose(bones=bones, root_pos=root_pos, root_quat=root_quat,
                     blend={name: jaw for name in blend_names})


class Retargeter:
    """Stateful wrapper of :func:`smplx_to_unity`: shape handling and re-centring.

    Args:
        rest: the :class:`RestModel` (from ``RestModel.from_body_model(bm)``).
        root_motion: ``"root"`` or ``"hips"`` (see the module docstring).
        recenter: ``False``: the camera is the origin; ``True``: the first frame's
            carried position becomes the origin (the avatar starts at 0, 0, 0).
        shape: ``"first"`` freezes bone lengths from the first frame's betas,
            ``"frame"`` follows every frame's betas, ``"template"`` ignores betas.
    """

    SHAPE_MODES = ("first", "frame", "template")

    def __init__(self, rest: RestModel, *, root_motion: str = "root", recenter: bool = False,
                 zero_positions: bool = False, jaw_open_max: float = 0.5,
                 blend_names: Tuple[str, ...] = ("A", "JawOpen"), shape: str = "first"):
        if root_motion not in ROOT_MOTION_MODES:
            raise ValueError(f"root_motion must be one of {ROOT_MOTION_MODES}, got {root_motion!r}")
        if shape not in self.SHAPE_MODES:
            raise ValueError(f"shape must be one of {self.SHAPE_MODES}, got {shape!r}")
        if jaw_open_max <= 0:
            raise ValueError(f"jaw_open_max must be > 0, got {jaw_open_max}")
        self.rest = rest
        self.root_motion = root_motion
        self.recenter = recenter
        self.zero_positions = zero_positions
        self.jaw_open_max = jaw_open_max
        self.blend_names = tuple(blend_names)
        self.shape = shape
        self._origin: Optional[np.ndarray] = None
        self._frozen_joints: Optional[np.ndarray] = None

    def reset(self) -> None:
        """Forget the re-centring origin and the frozen shape."""
        self._origin = None
        self._frozen_joints = None

    def reset_shape(self) -> None:
        """Forget the frozen bone lengths (a new performer); keep the re-centring origin."""
        self._frozen_joints = None

    def _rest_joints(self, params: SMPLXParams) -> np.ndarray:
        if self.shape == "template":
            return self.rest.joints(None)
        if self.shape == "frame":
            return self.rest.joints(params.betas)
        if self._frozen_joints is None:
            self._frozen_joints = self.rest.joints(params.betas)
        return self._frozen_joints

    def __call__(self, params: SMPLXParams, grounded: Optional[dict] = None) -> UnityPose:
        rest = self._rest_joints(params)
        kwargs = dict(root_motion=self.root_motion, zero_positions=self.zero_positions,
                      jaw_open_max=self.jaw_open_max, blend_names=self.blend_names, grounded=grounded)
        if self.recenter and self._origin is None:
            first = smplx_to_unity(params, rest, self.rest.hand_mean_left, self.rest.hand_mean_right,
                                   root_motion="root", **{k: v for k, v in kwargs.items() if k != "root_motion"})
            self._origin = first.root_pos.copy()
        return smplx_to_unity(params, rest, self.rest.hand_mean_left, self.rest.hand_mean_right,
                              origin=self._origin, **kwargs)
