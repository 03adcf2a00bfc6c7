"""One person's take as an animation: constant frame rate, export world frame.

**World frame** (what every writer starts from): y up, metres, right-handed; a person who
stood upright facing the camera stands upright facing +z (SMPL-X's own model frame, and
glTF's). SMPLer-X's ``global_orient`` and ``transl`` are in the OpenCV camera frame (x right,
y down, z forward); the camera frame is turned into the world by a half turn about x:
``R_world = Rx(180) @ R_cam``, ``p_world = Rx(180) @ p_cam``. The camera is assumed level.

**Placement** (``place``):

* ``"floor"`` (default): the take is shifted (one constant offset for the whole take) so that
  the pelvis starts above the origin and the floor is y = 0: the floor is taken where the feet
  are lowest (5th percentile over the take of the lowest ankle/foot joint, less the rest
  pose's sole height). Root motion relative to that start is kept as it was.
* ``"camera"``: no shift: the camera sits at the origin looking down -z (as a glTF camera).

**Joints**: local rotations for all 55 joints as quaternions (x, y, z, w). The root's is its
world orientation; finger rotations are absolute (the SMPL-X hand mean added, as the ``smplx``
layer does with ``flat_hand_mean=False``); eye rotations are zero (SMPLer-X does not predict
them). The root position is the pelvis joint's world position.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from engines.body_model import NUM_BETAS, NUM_EXPRESSION, NUM_JOINTS

from ..retarget import Q_CAM_TO_WORLD, cam_to_world_position
from ..rotations import axis_angle_to_quat, quat_align, quat_mul, quat_to_axis_angle
from . import resample
from .smoothing import SmoothSettings, smooth_take
from .skeleton import FOOT_JOINTS, JAW, LEFT_HAND_START, RIGHT_HAND_START, Body, Skeleton, joint_positions
from .take import PersonTrack

PLACEMENTS = ("floor", "camera")
#: Percentile of the per-frame lowest foot height taken as the floor.
FLOOR_PERCENTILE = 5.0


@dataclass
class Motion:
    """One person's animation, ready for the writers."""

    person_id: int
    fps: float
    skeleton: Skeleton
    #: (T, 55, 4) local joint rotations, quaternions (x, y, z, w); the root's is world.
    rotations: np.ndarray
    #: (T, 3) pelvis position in the world, metres.
    root_position: np.ndarray
    #: (T, 10) SMPL-X expression coefficients.
    expression: np.ndarray
    betas: np.ndarray
    #: The constant offset added to every position (world frame) by the placement.
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    #: (T,) True where the pose is held (the person was not seen), not interpolated.
    held: Optional[np.ndarray] = None
    #: (T, 2) left / right foot contacts when the take was grounded (:mod:`.grounding`), else None.
    contacts: Optional[np.ndarray] = None

    @property
    def n_frames(self) -> int:
        return int(self.rotations.shape[0])

    @property
    def duration(self) -> float:
        return (self.n_frames - 1) / self.fps

    def joint_positions(self) -> np.ndarray:
        """(T, 55, 3) world joint positions."""
        return joint_positions(self.skeleton, self.rotations, self.root_position)

    def axis_angle(self) -> np.ndarray:
        """(T, 55, 3) local joint rotations as rotation vectors."""
        return quat_to_axis_angle(self.rotations)


def local_rotations(params, hand_mean: np.ndarray) -> np.ndarray:
    """(N, 55, 4) camera-frame local rotations from official parameters (N samples)."""
    n = params["global_orient"].shape[0]
    aa = np.zeros((n, NUM_JOINTS, 3))
    aa[:, 0] = params["global_orient"].reshape(n, 3)
    aa[:, 1:22] = params["body_pose"].reshape(n, 21, 3)
    aa[:, JAW] = params["jaw_pose"].reshape(n, 3)
    aa[:, LEFT_HAND_START:LEFT_HAND_START + 15] = params["left_hand_pose"].reshape(n, 15, 3) + hand_mean[0]
    aa[:, RIGHT_HAND_START:RIGHT_HAND_START + 15] = params["right_hand_pose"].reshape(n, 15, 3) + hand_mean[1]
    q = axis_angle_to_quat(aa)
    for t in range(1, n):  # keep each joint on one hemisphere over time (slerp takes the short way anyway)
        q[t] = quat_align(q[t], q[t - 1])
    return q


def settled_betas(track: PersonTrack) -> np.ndarray:
    """The take's body shape: the per-coefficient median over the person's frames."""
    return np.median(track.params["betas"].reshape(len(track), NUM_BETAS), axis=0)


def build_motion(track: PersonTrack, body: Body, fps: float, duration: float, place: str = "floor",
                 max_gap: float = resample.MAX_GAP, smooth: Optional[SmoothSettings] = None,
                 report: Optional[List[str]] = None) -> Motion:
    """Resample ``track`` to ``fps`` over ``[0, duration]`` and put it in the world frame.

    ``smooth``: smooth the samples first (:mod:`.smoothing`, on their own timestamps), its
    notes appended to ``report``."""
    if place not in PLACEMENTS:
        raise ValueError(f"place must be one of {PLACEMENTS}, got {place!r}")
    out_t = resample.frame_times(duration, fps)
    p = resample.plan(track.times, out_t, max_gap)
    samples = local_rotations(track.params, body.hand_mean)
    transl = track.params["transl"].reshape(len(track), 3)
    expression = track.params["expression"].reshape(len(track), NUM_EXPRESSION)
    if smooth is not None:
        samples, transl, expression, smoothed = smooth_take(track.times, samples, transl, expression, smooth, max_gap)
        if report is not None:
            report.extend(smoothed.lines(track.person_id))
    rotations = resample.slerp(samples, p)  # camera frame, a new array
    transl = resample.lerp(transl, p)
    expression = resample.lerp(expression, p)
    rotations[:, 0] = quat_mul(Q_CAM_TO_WORLD, rotations[:, 0])  # the root, into the world frame
    root = cam_to_world_position(body.skeleton.rest[0] + transl)  # pelvis (J0 + transl), into the world frame
    motion = Motion(person_id=track.person_id, fps=float(fps), skeleton=body.skeleton, rotations=rotations,
                    root_position=root, expression=expression, betas=body.betas, held=p.held)
    return place_on_floor(motion) if place == "floor" else motion


def place_on_floor(motion: Motion) -> Motion:
    """``--place floor`` without grounding: one constant shift, the pelvis starting above the
    origin and the floor (the 5th percentile of the lowest foot joint, less the sole) at y = 0."""
    joints = joint_positions(motion.skeleton, motion.rotations, motion.root_position)
    lowest = joints[:, list(FOOT_JOINTS), 1].min(axis=1)
    floor = float(np.percentile(lowest, FLOOR_PERCENTILE)) - motion.skeleton.sole_height
    root = motion.root_position
    offset = np.array([-root[0, 0], -floor, -root[0, 2]])
    motion.root_position = root + offset
    motion.offset = motion.offset + offset
    return motion


def describe_gaps(track: PersonTrack, duration: float, max_gap: float = resample.MAX_GAP) -> List[str]:
    """Human-readable held spans of one person (empty when they were seen throughout)."""
    spans = resample.gaps(track.times, duration, max_gap)
    if not spans:
        return []
    total = sum(b - a for a, b in spans)
    shown = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in spans[:4]) + (" ..." if len(spans) > 4 else "")
    return [f"person {track.person_id} was not seen for {total:.2f} s in all ({shown}): "
            f"the last seen pose is held there"]
