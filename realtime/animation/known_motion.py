"""Takes with known motion, for measuring smoothing and grounding against ground truth
(``scripts/bench_motion.py`` and the tests).

Each take is designed in a floor frame (y up, floor at y = 0, metres) on the skeleton of a body
model: foot paths with exactly planted stances (the legs solved by :func:`.grounding.two_bone_ik`
so the ankle is where the design puts it and the foot lies flat), a pelvis path, and smooth
upper-body, finger, jaw and expression motion. It is then seen by a static camera (position and
tilt chosen per take, optionally tilting mid-take) and written as SMPLer-X would output it:
official parameters in the OpenCV camera frame, hand poses relative to the hand mean.

:func:`add_estimator_noise` then adds noise shaped like a per-frame estimator's: rotation
noise of a few degrees on every joint, depth noise of a few percent along the camera ray, a
little image-plane noise, expression noise, and occasional one-frame outliers (a flipped limb,
swapped hands, a depth jump).

Names: ``walk`` (a curved walk, planted feet), ``squat``, ``turn`` (turning on planted feet),
``wave`` (hand waves), ``jump`` (no contact for a while).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from engines.body_model import JOINT_NAMES, NUM_EXPRESSION
from engines.types import PARAM_SHAPES, Person, SMPLXParams

from ..retarget import Q_CAM_TO_WORLD, cam_to_world_position
from ..rotations import (axis_angle_to_quat, quat_conj, quat_mul, quat_normalize, quat_rotate,
                         quat_to_axis_angle)
from .grounding import LEGS, leg_pose, sole_heights, two_bone_ik
from .skeleton import LEFT_HAND_START, Body

TAKES = ("walk", "squat", "turn", "wave", "jump")
J = {name: i for i, name in enumerate(JOINT_NAMES)}


@dataclass
class KnownTake:
    """A designed take in the floor frame and the camera that sees it."""

    name: str
    fps: float
    body: Body
    #: (T, 55, 4) local rotations; the root's in the floor frame.
    rotations: np.ndarray
    #: (T, 3) pelvis positions in the floor frame.
    root_position: np.ndarray
    expression: np.ndarray
    #: (T, 2) ground-truth contacts of the left and right foot.
    contacts: np.ndarray
    #: (T, 4) floor frame -> level camera rotation per frame, and (3,) the camera's position.
    camera_q: np.ndarray
    camera_position: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.2, 3.5]))

    @property
    def n_frames(self) -> int:
        return len(self.root_position)

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.n_frames) / self.fps

    def params(self) -> List[Dict[str, np.ndarray]]:
        """Official SMPLer-X parameters per frame (camera frame), float32."""
        n = self.n_frames
        root_cam = quat_mul(Q_CAM_TO_WORLD, quat_mul(self.camera_q, self.rotations[:, 0]))
        pelvis_level = quat_rotate(self.camera_q, self.root_position - self.camera_position)
        transl = pelvis_level * np.array([1.0, -1.0, -1.0]) - self.body.skeleton.rest[0]
        aa = quat_to_axis_angle(self.rotations)
        aa[:, 0] = quat_to_axis_angle(root_cam)
        hands = aa[:, LEFT_HAND_START:].reshape(n, 2, 15, 3) - self.body.hand_mean[None]
        out = []
        for k in range(n):
            d = {"global_orient": aa[k, 0], "body_pose": aa[k, 1:22], "jaw_pose": aa[k, J["jaw"]],
                 "leye_pose": np.zeros(3), "reye_pose": np.zeros(3), "left_hand_pose": hands[k, 0],
                 "right_hand_pose": hands[k, 1], "betas": self.body.betas, "expression": self.expression[k],
                 "transl": transl[k]}
            out.append({key: np.asarray(v, np.float32).reshape(PARAM_SHAPES[key]) for key, v in d.items()})
        return out


# ----------------------------------------------------------------------- design helpers
def _yaw(angle: np.ndarray) -> np.ndarray:
    angle = np.asarray(angle, np.float64)
    return axis_angle_to_quat(np.stack([np.zeros_like(angle), angle, np.zeros_like(angle)], axis=-1))


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    r = int(np.ceil(3 * sigma))
    if r < 1:
        return x
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(x, [(r, r)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    flat = pad.reshape(len(pad), -1)
    return np.stack([np.convolve(flat[:, c], k, mode="valid") for c in range(flat.shape[1])], 1).reshape(x.shape)


def _upper_body(t: np.ndarray, rng: np.random.Generator, wave: bool, arm_swing: np.ndarray) -> np.ndarray:
    """Axis-angle (T, 55, 3) for everything above the legs: arms down and swinging (or the right
    hand waving), a little spine and head motion, fingers curling, the jaw moving."""
    n = len(t)
    aa = np.zeros((n, 55, 3))
    aa[:, J["spine1"], 0] = 0.05 * np.sin(2 * np.pi * 0.4 * t)
    aa[:, J["spine2"], 1] = 0.08 * np.sin(2 * np.pi * 0.3 * t)
    aa[:, J["neck"], 1] = 0.15 * np.sin(2 * np.pi * 0.35 * t + 1.0)
    aa[:, J["head"], 0] = 0.1 * np.sin(2 * np.pi * 0.5 * t)
    aa[:, J["left_shoulder"]] = np.stack([0.35 * arm_swing, np.zeros(n), -1.2 + 0 * t], -1)
    aa[:, J["right_shoulder"]] = np.stack([-0.35 * arm_swing, np.zeros(n), 1.2 + 0 * t], -1)
    aa[:, J["left_elbow"], 1] = 0.3 + 0.1 * np.sin(2 * np.pi * 0.5 * t)
    aa[:, J["right_elbow"], 1] = -0.3 - 0.1 * np.sin(2 * np.pi * 0.5 * t)
    if wave:  # right arm up, the forearm waving at 1.5 Hz, the wrist following
        aa[:, J["right_shoulder"]] = np.stack([np.zeros(n), np.zeros(n), -0.3 + 0 * t], -1)
        aa[:, J["right_elbow"], 1] = -1.0 + 0.6 * np.sin(2 * np.pi * 1.5 * t)
        aa[:, J["right_wrist"], 2] = 0.4 * np.sin(2 * np.pi * 1.5 * t - 0.8)
    axes = rng.standard_normal((30, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    freq = rng.uniform(0.3, 1.5, 30)
    phase = rng.uniform(0, 2 * np.pi, 30)
    aa[:, LEFT_HAND_START:] = 0.4 * np.sin(2 * np.pi * freq * t[:, None] + phase)[..., None] * axes
    aa[:, J["jaw"], 0] = 0.12 + 0.1 * np.sin(2 * np.pi * 0.8 * t)
    return aa


def _solve_legs(body: Body, rot: np.ndarray, root: np.ndarray, ankle_targets: np.ndarray,
                foot_yaw: np.ndarray) -> None:
    """Hips, knees and ankles (in ``rot``, in place) that put each ankle on its target with the
    foot flat at its yaw."""
    for i, leg in enumerate(LEGS):
        rot[:, leg.hip] = axis_angle_to_quat(np.array([-0.2, 0.0, 0.0]))
        rot[:, leg.knee] = axis_angle_to_quat(np.array([0.4, 0.0, 0.0]))
        rot[:, leg.ankle] = [0.0, 0.0, 0.0, 1.0]
        pose = leg_pose(body.skeleton, rot, root, leg)
        rot[:, leg.ankle] = quat_mul(quat_conj(pose.knee_q), _yaw(foot_yaw[:, i]))
        pose = leg_pose(body.skeleton, rot, root, leg)
        rot[:, leg.hip], rot[:, leg.knee], rot[:, leg.ankle] = two_bone_ik(pose, ankle_targets[:, i])


def _feet_on_path(t: np.ndarray, start: float, step_time: float, footprints: np.ndarray, yaws: np.ndarray,
                  double_support: float = 0.12, lift: float = 0.07):
    """Ankle-floor positions (T, 2, 3), yaws (T, 2) and contacts (T, 2) of feet stepping on
    ``footprints`` (K, 3) alternately (even: left), footprint k landing at ``start + k * step_time``."""
    n = len(t)
    pos = np.zeros((n, 2, 3))
    yaw = np.zeros((n, 2))
    contact = np.zeros((n, 2), bool)
    land = start + np.arange(len(footprints)) * step_time
    land[:2] = -1.0  # the first two footprints are where the feet stand at the start
    for i in range(2):
        ks = np.arange(i, len(footprints), 2)
        for f, tt in enumerate(t):
            k = ks[0]
            for kk in ks:
                if land[kk] <= tt:
                    k = kk
            nxt = k + 2
            lift_t = (land[k + 1] if k + 1 < len(land) else np.inf) + double_support
            if nxt >= len(footprints) or tt < lift_t:
                pos[f, i], yaw[f, i], contact[f, i] = footprints[k], yaws[k], True
                continue
            u = _smoothstep((tt - lift_t) / (land[nxt] - lift_t))
            pos[f, i] = footprints[k] + u * (footprints[nxt] - footprints[k])
            pos[f, i, 1] += lift * np.sin(np.pi * u)
            yaw[f, i] = yaws[k] + u * (yaws[nxt] - yaws[k])
    return pos, yaw, contact


def _camera(n: int, fps: float, tilt_deg: float, tilt_to_deg: Optional[float]) -> np.ndarray:
    """Floor frame -> level camera: a pitch of ``tilt_deg`` (turning to ``tilt_to_deg`` over half a
    second in the middle of the take, when given)."""
    tilt = np.full(n, np.radians(tilt_deg))
    if tilt_to_deg is not None:
        u = _smoothstep((np.arange(n) / fps - (n / fps) / 2) / 0.5)
        tilt = tilt + u * np.radians(tilt_to_deg - tilt_deg)
    return axis_angle_to_quat(np.stack([tilt, np.zeros(n), np.zeros(n)], axis=-1))


def make_take(name: str, body: Body, fps: float = 30.0, seconds: Optional[float] = None, seed: int = 0,
              tilt_deg: float = 0.0, tilt_to_deg: Optional[float] = None,
              origin: Tuple[float, float] = (0.0, 0.0)) -> KnownTake:
    """One designed take (see the module docstring); ``origin`` (x, z) moves the person on the floor."""
    if name not in TAKES:
        raise ValueError(f"unknown take {name!r}: one of {TAKES}")
    rng = np.random.default_rng(seed)
    seconds = seconds or {"walk": 7.0, "squat": 5.0, "turn": 4.0, "wave": 4.0, "jump": 4.0}[name]
    n = int(round(seconds * fps))
    t = np.arange(n) / fps
    sk = body.skeleton
    heights = sole_heights(sk)
    ankle_h = heights[:, 0]
    leg_len = float(sk.rest[0, 1] - (sk.rest[LEGS[0].ankle, 1] - ankle_h[0]))  # pelvis over the sole at rest
    ox, oz = origin
    rot = np.zeros((n, 55, 4))
    aa = _upper_body(t, rng, wave=name == "wave", arm_swing=np.zeros(n))
    stand = np.array([[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]])  # left (+x) and right feet, standing
    feet = np.broadcast_to(stand, (n, 2, 3)).copy()
    foot_yaw = np.zeros((n, 2))
    contacts = np.ones((n, 2), bool)
    pelvis = np.zeros((n, 3))
    pelvis[:, 1] = 0.94 * leg_len
    yaw = np.zeros(n)
    if name == "walk":
        # a curved walk: footprints on an arc, alternating sides, 0.5 s per step
        step, radius = 0.42, 2.0
        k = np.arange(-1, 15)
        phi = -0.9 + k * step / radius
        centre = np.array([0.0, 0.0, -radius - 0.5])
        path = centre + radius * np.stack([np.sin(phi), np.zeros_like(phi), np.cos(phi)], -1)
        heading = np.stack([np.cos(phi), np.zeros_like(phi), -np.sin(phi)], -1)
        left = np.cross(np.array([0.0, 1.0, 0.0]), heading)
        side = np.where(k % 2 == 0, 0.1, -0.1)[:, None]
        footprints = path + side * left
        yaws = np.arctan2(heading[:, 0], heading[:, 2])
        # footprint 0 is the first step; -1 and the one before stand at the start
        feet, foot_yaw, contacts = _feet_on_path(t, 0.6, 0.5, footprints, yaws)
        swing = np.sin(np.pi * (t - 0.6) / 0.5) * (t > 0.6)
        aa = _upper_body(t, rng, wave=False, arm_swing=swing)
        mid = feet.mean(axis=1)
        pelvis[:, [0, 2]] = _gauss(mid[:, [0, 2]], 0.15 * fps)
        yaw = _gauss(foot_yaw.mean(axis=1), 0.1 * fps)
        pelvis[:, 1] = 0.93 * leg_len + 0.012 * np.cos(2 * np.pi * t / 0.5)
    elif name == "squat":
        pelvis[:, 1] = leg_len * (0.94 - 0.3 * (1 - np.cos(2 * np.pi * t / 2.5)) / 2)
        aa[:, J["spine1"], 0] = 0.2 * (1 - np.cos(2 * np.pi * t / 2.5)) / 2
    elif name == "turn":
        yaw = 0.7 * np.sin(2 * np.pi * t / 3.0)
    elif name == "jump":
        # crouch, take off at 1.5 s, 0.45 s in the air (a 25 cm jump), land, recover
        air = (t >= 1.5) & (t < 1.95)
        u = np.clip((t - 1.5) / 0.45, 0, 1)
        crouch = 0.12 * (np.exp(-0.5 * ((t - 1.3) / 0.15) ** 2) + np.exp(-0.5 * ((t - 2.15) / 0.15) ** 2))
        pelvis[:, 1] = 0.94 * leg_len - crouch + air * 0.25 * np.sin(np.pi * u)
        feet[:, :, 1] += (air * 0.25 * np.sin(np.pi * u))[:, None]
        contacts[air] = False
    pelvis[:, 0] += ox
    pelvis[:, 2] += oz
    feet[..., 0] += ox
    feet[..., 2] += oz
    if name != "walk":
        pelvis[:, [0, 2]] += np.array([0.0, -0.03])  # the pelvis a little behind the ankles
    feet_yaw_world = foot_yaw
    rot[:] = axis_angle_to_quat(aa)
    rot[:, 0] = _yaw(yaw)
    targets = feet + ankle_h[None, :, None] * np.array([0.0, 1.0, 0.0])
    _solve_legs(body, rot, pelvis, targets, feet_yaw_world)
    expression = 1.0 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6, NUM_EXPRESSION) * t[:, None]
                              + rng.uniform(0, 2 * np.pi, NUM_EXPRESSION))
    return KnownTake(name=name, fps=fps, body=body, rotations=quat_normalize(rot), root_position=pelvis,
                     expression=expression, contacts=contacts, camera_q=_camera(n, fps, tilt_deg, tilt_to_deg))


# ----------------------------------------------------------------------- estimator noise
@dataclass(frozen=True)
class NoiseModel:
    rotation_deg: float = 3.0
    hands_deg: float = 5.0
    depth: float = 0.03
    image_plane: float = 0.002
    expression: float = 0.15
    #: Per frame: probability of a flipped limb, of swapped hands, of a depth jump.
    flip_rate: float = 0.01
    swap_rate: float = 0.005
    jump_rate: float = 0.005


LIMBS = tuple(J[n] for n in ("left_elbow", "right_elbow", "left_knee", "right_knee", "left_shoulder",
                             "right_shoulder", "left_wrist", "right_wrist", "left_hip", "right_hip"))


def add_estimator_noise(frames: List[Dict[str, np.ndarray]], seed: int = 0, model: NoiseModel = NoiseModel()):
    """Noisy copies of official parameter frames and the frames that got an outlier."""
    rng = np.random.default_rng(seed)
    out, outliers = [], []
    for k, f in enumerate(frames):
        g = {key: np.array(v, np.float64) for key, v in f.items()}

        def jitter(aa, deg):
            q = axis_angle_to_quat(aa.reshape(-1, 3))
            noise = axis_angle_to_quat(rng.normal(0.0, np.radians(deg), q.shape[:-1] + (3,)))
            return quat_to_axis_angle(quat_mul(q, noise)).reshape(aa.shape)

        for key in ("global_orient", "body_pose", "jaw_pose"):
            g[key] = jitter(g[key], model.rotation_deg)
        for key in ("left_hand_pose", "right_hand_pose"):
            g[key] = jitter(g[key], model.hands_deg)
        tr = g["transl"].reshape(3)
        ray = tr * (1.0 + rng.normal(0.0, model.depth))
        ray[:2] += rng.normal(0.0, model.image_plane, 2) * tr[2]
        odd = False
        if rng.random() < model.flip_rate:
            j = LIMBS[rng.integers(len(LIMBS))]
            body = g["body_pose"].reshape(21, 3)
            axis = rng.standard_normal(3)
            body[j - 1] = quat_to_axis_angle(quat_mul(axis_angle_to_quat(body[j - 1]), axis_angle_to_quat(
                axis / np.linalg.norm(axis) * rng.uniform(np.radians(90), np.radians(170)))))
            odd = True
        if rng.random() < model.swap_rate:
            g["left_hand_pose"], g["right_hand_pose"] = g["right_hand_pose"].copy(), g["left_hand_pose"].copy()
            odd = True
        if rng.random() < model.jump_rate:
            ray *= 1.0 + rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.3)
            odd = True
        g["transl"] = ray.reshape(1, 3)
        g["expression"] = g["expression"] + rng.normal(0.0, model.expression, g["expression"].shape)
        out.append({key: v.astype(np.float32) for key, v in g.items()})
        if odd:
            outliers.append(k)
    return out, outliers


# ----------------------------------------------------------------------- running and measuring
def track_of(frames: List[Dict[str, np.ndarray]], fps: float, person_id: int = 0):
    """A :class:`~realtime.animation.take.PersonTrack` of parameter frames at ``fps``."""
    from .take import PersonTrack

    keys = frames[0].keys()
    return PersonTrack(person_id, np.arange(len(frames)) / fps,
                       {k: np.stack([f[k] for f in frames]).astype(np.float64) for k in keys})


def clean_joints(take: KnownTake) -> np.ndarray:
    """(T, 55, 3) joints of the designed take in the true floor frame."""
    from .skeleton import joint_positions

    return joint_positions(take.body.skeleton, take.rotations, take.root_position)


def run_raw(take: KnownTake, frames) -> np.ndarray:
    """Joints of the parameters as ``mocap convert --no-smooth --place camera`` reads them, put
    in the true floor frame with the true camera (the raw output gets the real floor for free)."""
    from .motion import build_motion
    from .skeleton import joint_positions

    m = build_motion(track_of(frames, take.fps), take.body, take.fps, take.times[-1], place="camera")
    j = joint_positions(m.skeleton, m.rotations, m.root_position)
    return take.camera_position + quat_rotate(quat_conj(take.camera_q)[:, None], j)


def run_offline(take: KnownTake, frames, smooth: bool = True, ground: bool = True):
    """Joints (T, 55, 3) of ``mocap convert --smooth --ground`` (its own floor frame) and the motion."""
    from .grounding import ground_motions
    from .motion import build_motion
    from .skeleton import joint_positions
    from .smoothing import SmoothSettings

    m = build_motion(track_of(frames, take.fps), take.body, take.fps, take.times[-1], place="camera",
                     smooth=SmoothSettings() if smooth else None)
    notes = ground_motions([m]) if ground else []
    return joint_positions(m.skeleton, m.rotations, m.root_position), m, notes


def run_live(take: KnownTake, frames, filter_settings=None, ground: bool = True):
    """Joints (T, 55, 3) of the live path: One-Euro filter, then the causal grounder, frame by
    frame at the capture times; and the mean milliseconds per frame the grounder took."""
    import time

    from ..filters import SMPLXFilter
    from ..grounding import LiveGrounder
    from ..retarget import RestModel
    from .motion import local_rotations
    from .skeleton import joint_positions

    body = take.body
    filt = SMPLXFilter(filter_settings, hand_mean=(body.hand_mean[0], body.hand_mean[1]))
    grounder = LiveGrounder(RestModel(body.skeleton.rest, body.hand_mean[0], body.hand_mean[1]),
                            body.skeleton.sole_height)
    rots, roots, spent = [], [], 0.0
    for k, f in enumerate(frames):
        t = k / take.fps
        params = filt(SMPLXParams.from_dict(f), t)
        person = _person(params)
        t0 = time.perf_counter()
        if ground:
            person = grounder([person], t)[0]
        spent += time.perf_counter() - t0
        d = {key: np.asarray(getattr(params, key), np.float64)[None] for key in
             ("global_orient", "body_pose", "jaw_pose", "left_hand_pose", "right_hand_pose")}
        q = local_rotations(d, body.hand_mean)[0]
        if ground:
            q[0] = person.grounded["root_quat"]
            roots.append(person.grounded["root_pos"])
        else:
            q[0] = quat_mul(Q_CAM_TO_WORLD, q[0])
            transl = np.asarray(params.transl, np.float64).reshape(3)
            roots.append(cam_to_world_position(body.skeleton.rest[0] + transl))
        rots.append(q)
    j = joint_positions(body.skeleton, np.array(rots), np.array(roots))
    if not ground:
        j = take.camera_position + quat_rotate(quat_conj(take.camera_q)[:, None], j)
    return j, 1000.0 * spent / len(frames), grounder


def _person(params: SMPLXParams) -> Person:
    z = np.zeros(4, np.float32)
    return Person(track_id=0, params=params, bbox=z, bbox_detector=z, focal=np.ones(2, np.float32),
                  princpt=np.zeros(2, np.float32))


def align_xz(joints: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``joints`` moved on the floor so their mean pelvis (x, z) is the reference's."""
    d = reference[:, 0].mean(axis=0) - joints[:, 0].mean(axis=0)
    d[1] = 0.0
    return joints + d


def lag_ms(joints: np.ndarray, reference: np.ndarray, fps: float, max_frames: float = 4.0) -> float:
    """The delay (ms) of ``joints`` behind ``reference``: the shift of the reference that fits best
    (least squares over every joint, 0.05-frame steps, linear interpolation)."""
    n = len(joints)
    t = np.arange(n, dtype=np.float64)
    flat_ref = reference.reshape(n, -1)
    flat = joints.reshape(n, -1)
    best, best_err = 0.0, np.inf
    m = int(np.ceil(max_frames)) + 1
    for s in np.arange(-max_frames, max_frames + 1e-9, 0.05):
        src = t - s
        ok = (src >= 0) & (src <= n - 1)
        ok[:m] = False
        ok[-m:] = False
        lo = np.floor(src[ok]).astype(int)
        w = (src[ok] - lo)[:, None]
        shifted = flat_ref[lo] * (1 - w) + flat_ref[np.minimum(lo + 1, n - 1)] * w
        err = float(np.mean((flat[ok] - shifted) ** 2))
        if err < best_err:
            best, best_err = s, err
    return 1000.0 * best / fps


def measure(joints: np.ndarray, take: KnownTake, reference: Optional[np.ndarray] = None) -> Dict[str, float]:
    """MPJPE (mm), acceleration error (mm/frame^2), foot skating (mm per contact frame), floor
    penetration and float (mm) of ``joints`` (T, 55, 3, its own floor frame: floor y = 0)
    against the designed take."""
    ref = clean_joints(take) if reference is None else reference
    out = align_xz(joints, ref)
    mpjpe = float(np.linalg.norm(out - ref, axis=-1).mean()) * 1000
    acc = lambda x: x[2:] - 2 * x[1:-1] + x[:-2]  # noqa: E731
    accel = float(np.linalg.norm(acc(out) - acc(ref), axis=-1).mean()) * 1000 if len(out) > 2 else 0.0
    heights = sole_heights(take.body.skeleton)
    skate, flt, soles = [], [], []
    for i, leg in enumerate(LEGS):
        both = take.contacts[1:, i] & take.contacts[:-1, i]
        for j in (leg.ankle, leg.toe):
            step = np.linalg.norm(np.diff(out[:, j][:, [0, 2]], axis=0), axis=-1)
            skate.append(step[both])
        sole = np.minimum(out[:, leg.ankle, 1] - heights[i, 0], out[:, leg.toe, 1] - heights[i, 1])
        soles.append(sole)
        flt.append(np.maximum(0.0, sole[take.contacts[:, i]]))
    lowest = np.minimum(*soles)
    return {"mpjpe_mm": mpjpe, "accel_mm": accel,
            "skate_mm": float(np.concatenate(skate).mean()) * 1000 if sum(map(len, skate)) else 0.0,
            "penetration_mm": float(np.maximum(0.0, -lowest).mean()) * 1000,
            "float_mm": float(np.concatenate(flt).mean()) * 1000 if sum(map(len, flt)) else 0.0}
