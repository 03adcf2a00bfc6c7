"""Feet on the floor: the floor plane, foot contacts, planted feet and a gravity-aligned root
(``mocap convert --ground``, on by default with ``--place floor``).

The camera is static (one floor for the take, shared by everyone in it); its tilt is unknown.

1. **Floor.** Each frame gives, per foot, two *sole points*: the ankle and the toe joint moved
   down by their rest height above the sole (:func:`sole_heights`). Where a foot stands, these
   lie on the floor. A plane ``n . p = d`` is fitted to the lowest, slowest of them by
   iterated least squares (points within a band of the plane and moving under a speed
   limit; the tilt is mildly pulled towards level, which only matters when the feet never
   span more than a few centimetres). Everyone's points are pooled (:func:`fit_floor`).
2. **Camera moved?** The plane is also fitted over windows of a few seconds; when a window's
   plane tilts or shifts away from the take's (``moved_angle`` degrees, ``moved_height``
   metres), the camera moved and each frame gets the floor of its own time (interpolated
   between the windows), with a note.
3. **Gravity-aligned frame.** Each frame is turned so that the floor normal is +y, and moved
   so that the floor is y = 0 (the pelvis starts above the origin, as ``--place floor``).
4. **Contacts** (:class:`ContactHysteresis`, also used live): a foot touches down when its
   lowest sole point is less than ``on_height`` above the floor and moves slower than
   ``on_speed``; it lifts off only above ``off_height`` or faster than ``off_speed``. Contacts
   shorter than ``min_contact`` seconds are dropped.
5. **Planting.** During a contact the ankle is pinned where it stood (the median over the
   contact) with the sole on the floor; the leg (hip and knee) is solved by two-bone IK and
   the foot keeps its orientation. The pin fades in and out over ``release`` seconds around
   the contact. Where a target is out of the leg's reach the root moves (smoothly) instead.
6. **No foot below the floor**, in any frame: a sole point below it lifts its leg by IK, and
   whatever remains lifts the root.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np

from engines.body_model import JOINT_NAMES

from ..rotations import axis_angle_to_quat, quat_between, quat_conj, quat_mul, quat_rotate
from .skeleton import FOOT_JOINTS, Skeleton

UP = np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True)
class Leg:
    hip: int
    knee: int
    ankle: int
    toe: int


LEGS = (Leg(*(JOINT_NAMES.index(f"left_{n}") for n in ("hip", "knee", "ankle", "foot"))),
        Leg(*(JOINT_NAMES.index(f"right_{n}") for n in ("hip", "knee", "ankle", "foot"))))


@dataclass(frozen=True)
class GroundSettings:
    on_height: float = 0.04
    off_height: float = 0.07
    on_speed: float = 0.35
    off_speed: float = 0.7
    min_contact: float = 0.1
    #: Offline, a foot's speed is its displacement over +-``speed_span`` seconds (less noisy).
    speed_span: float = 0.1
    release: float = 0.1
    #: Width (s) of the smoothing of the root's correction towards the planted feet, and its
    #: largest size (m): the root's leftover noise, not a step of the walk.
    root_sigma: float = 0.05
    root_limit: float = 0.08
    #: A contact whose ankle strays further than this (m) from its median position is dropped.
    max_travel: float = 0.2
    #: Floor fit: band (metres) around the plane whose points count, and their speed limit (m/s).
    band: float = 0.03
    still_speed: float = 0.5
    #: Camera-moved test: window length (s) and how far a window's floor may differ.
    window: float = 3.0
    moved_angle: float = 3.0
    moved_height: float = 0.05


def sole_heights(skeleton: Skeleton) -> np.ndarray:
    """Height above the sole, in the rest pose, of each leg's ankle and toe: (2, 2) metres."""
    sole_y = float(skeleton.rest[list(FOOT_JOINTS), 1].min()) - skeleton.sole_height
    return np.array([[skeleton.rest[leg.ankle, 1] - sole_y, skeleton.rest[leg.toe, 1] - sole_y] for leg in LEGS])


# ----------------------------------------------------------------------- leg kinematics
@dataclass
class LegPose:
    """World rotations (quaternions) and positions of one leg's chain, per frame."""

    pelvis_q: np.ndarray
    hip_q: np.ndarray
    knee_q: np.ndarray
    ankle_q: np.ndarray
    hip: np.ndarray
    knee: np.ndarray
    ankle: np.ndarray
    toe: np.ndarray


def leg_pose(skeleton: Skeleton, rotations: np.ndarray, root_position: np.ndarray, leg: Leg) -> LegPose:
    """Forward kinematics of one leg (the root's rotation is its world rotation)."""
    off = skeleton.offsets
    pelvis_q = rotations[:, 0]
    hip_q = quat_mul(pelvis_q, rotations[:, leg.hip])
    knee_q = quat_mul(hip_q, rotations[:, leg.knee])
    ankle_q = quat_mul(knee_q, rotations[:, leg.ankle])
    hip = root_position + quat_rotate(pelvis_q, off[leg.hip])
    knee = hip + quat_rotate(hip_q, off[leg.knee])
    ankle = knee + quat_rotate(knee_q, off[leg.ankle])
    toe = ankle + quat_rotate(ankle_q, off[leg.toe])
    return LegPose(pelvis_q, hip_q, knee_q, ankle_q, hip, knee, ankle, toe)


def two_bone_ik(pose: LegPose, target: np.ndarray):
    """Local rotations (hip, knee, ankle), each (F, 4), that put the ankle on ``target`` (F, 3)
    (or as close as the leg reaches): the knee bends in its current plane, the leg swings about
    the hip, and the foot keeps its world orientation."""
    h, k, a = pose.hip, pose.knee, pose.ankle
    l1 = np.linalg.norm(k - h, axis=-1)
    l2 = np.linalg.norm(a - k, axis=-1)
    reach = np.clip(np.linalg.norm(target - h, axis=-1), np.abs(l1 - l2) + 1e-4, (l1 + l2) * 0.9999)
    cur = np.linalg.norm(a - h, axis=-1)

    def knee_angle(c):
        return np.arccos(np.clip((l1 ** 2 + l2 ** 2 - c ** 2) / (2 * l1 * l2), -1.0, 1.0))

    delta = knee_angle(reach) - knee_angle(cur)
    axis = np.cross(h - k, a - k)
    norm = np.linalg.norm(axis, axis=-1, keepdims=True)
    fallback = -quat_rotate(pose.knee_q, np.array([1.0, 0.0, 0.0]))  # a straight leg bends as a knee does
    axis = np.where(norm > 1e-6, axis / np.maximum(norm, 1e-12), fallback)
    bend = axis_angle_to_quat(axis * delta[:, None])
    a1 = k + quat_rotate(bend, a - k)
    swing = quat_between(a1 - h, target - h)
    hip_w = quat_mul(swing, pose.hip_q)
    knee_w = quat_mul(swing, quat_mul(bend, pose.knee_q))
    return (quat_mul(quat_conj(pose.pelvis_q), hip_w), quat_mul(quat_conj(hip_w), knee_w),
            quat_mul(quat_conj(knee_w), pose.ankle_q))


# ----------------------------------------------------------------------- floor
@dataclass
class Floor:
    """The floor as a plane ``normal . p = height`` per frame, in the level-camera world frame."""

    normals: np.ndarray   # (T, 3) unit
    heights: np.ndarray   # (T,)
    #: The camera was found to move during the take (the plane changes over time).
    moved: bool = False
    #: False when too few sole points supported the fit (the fallback floor was used).
    fitted: bool = True
    notes: List[str] = field(default_factory=list)

    @property
    def tilt_degrees(self) -> float:
        """Largest angle between the floor normal and the level camera's up axis."""
        return float(np.degrees(np.arccos(np.clip(self.normals @ UP, -1.0, 1.0))).max())

    def at(self, n_frames: int) -> "Floor":
        """The floor over ``n_frames`` frames (a constant floor repeated)."""
        if len(self.normals) == n_frames:
            return self
        return replace(self, normals=np.repeat(self.normals[:1], n_frames, 0),
                       heights=np.repeat(self.heights[:1], n_frames))


def fit_plane(points: np.ndarray, speeds: np.ndarray, settings: GroundSettings = GroundSettings(),
              level_prior: float = 0.005) -> Optional[Tuple[np.ndarray, float, np.ndarray]]:
    """The floor plane (normal, height, centroid of the points it rests on) under sole points
    (M, 3) with speeds (M,); None when fewer than 8 still points lie near one plane."""
    pts = np.asarray(points, np.float64)
    still = np.asarray(speeds) < settings.still_speed
    if still.sum() < 8:
        return None
    normal, height = UP.copy(), float(np.percentile(pts[still] @ UP, 10))
    band = 2.0 * settings.band
    inliers = None
    for it in range(10):
        r = pts @ normal - height
        keep = still & (np.abs(r) < band)
        if keep.sum() < 8:
            return None
        p = pts[keep]
        # y = a x + b z + c in the level frame, the tilt (a, b) mildly pulled to 0
        c = p.mean(axis=0)
        q = p - c
        lam = len(p) * level_prior ** 2
        m = np.array([[q[:, 0] @ q[:, 0] + lam, q[:, 0] @ q[:, 2]], [q[:, 0] @ q[:, 2], q[:, 2] @ q[:, 2] + lam]])
        a, b = np.linalg.solve(m, np.array([q[:, 0] @ q[:, 1], q[:, 2] @ q[:, 1]]))
        normal = np.array([-a, 1.0, -b]) / math.sqrt(a * a + 1.0 + b * b)
        height = float(c @ normal)
        band = settings.band
        if inliers is not None and np.array_equal(inliers, keep):
            break
        inliers = keep
    return normal, height, pts[keep].mean(axis=0)


def sole_points(skeleton: Skeleton, rotations: np.ndarray, root_position: np.ndarray, fps: float):
    """Sole points (T, 2 legs, 2 [ankle, toe], 3) of a motion in its world frame, and their
    horizontal speeds (T, 2, 2) in m/s."""
    heights = sole_heights(skeleton)
    pts = np.empty((len(root_position), 2, 2, 3))
    for i, leg in enumerate(LEGS):
        pose = leg_pose(skeleton, rotations, root_position, leg)
        pts[:, i, 0] = pose.ankle - heights[i, 0] * UP
        pts[:, i, 1] = pose.toe - heights[i, 1] * UP
    return pts, point_speeds(pts, fps, max(1, int(round(0.1 * fps))))


def point_speeds(pts: np.ndarray, fps: float, span: int = 1) -> np.ndarray:
    """Horizontal speed (m/s) of points (T, ..., 3): displacement between ``span`` frames before
    and after each frame (fewer at the ends) over that time."""
    n = len(pts)
    if n < 2:
        return np.zeros(pts.shape[:-1])
    i = np.arange(n)
    a, b = np.clip(i - span, 0, n - 1), np.clip(i + span, 0, n - 1)
    shape = (n,) + (1,) * (pts.ndim - 1)
    v = (pts[b] - pts[a]) * fps / (b - a).reshape(shape)
    return np.linalg.norm(v[..., [0, 2]], axis=-1)


def fit_floor(takes: Sequence[Tuple[np.ndarray, np.ndarray]], fps: float, n_frames: int,
              settings: GroundSettings = GroundSettings()) -> Floor:
    """The floor under everyone's sole points: ``takes`` holds, per person, the sole points
    (T, 2, 2, 3) and speeds (T, 2, 2) of :func:`sole_points` (all on the same T frames)."""
    pts = np.concatenate([p.reshape(-1, 3) for p, _ in takes])
    spd = np.concatenate([s.reshape(-1) for _, s in takes])
    frame = np.concatenate([np.repeat(np.arange(len(p)), 4) for p, _ in takes])
    fit = fit_plane(pts, spd, settings)
    if fit is None:
        low = float(np.percentile(pts[:, 1], 5))
        return Floor(np.repeat(UP[None], n_frames, 0), np.full(n_frames, low), fitted=False,
                     notes=["the feet were never still on a floor: the floor is put under the lowest foot "
                            "positions (5th percentile), level, and no foot is planted"])
    normal, height, _ = fit
    floor = Floor(np.repeat(normal[None], n_frames, 0), np.full(n_frames, height))
    win = int(round(settings.window * fps))
    if n_frames < 2 * win:
        return floor
    centres, normals, heights, shifts = [], [], [], []
    for start in range(0, n_frames - win + 1, max(1, win // 2)):
        sel = (frame >= start) & (frame < start + win)
        f = fit_plane(pts[sel], spd[sel], settings)
        if f is None:
            continue
        centres.append(start + win / 2.0)
        normals.append(f[0])
        heights.append(f[1])
        shifts.append(abs(float(f[2] @ normal) - height))  # the window's floor, measured on the take's
    if len(centres) < 2:
        return floor
    normals_a, heights_a = np.array(normals), np.array(heights)
    angle = np.degrees(np.arccos(np.clip(normals_a @ normal, -1.0, 1.0)))
    shift = np.array(shifts)
    if angle.max() <= settings.moved_angle and shift.max() <= settings.moved_height:
        return floor
    t = np.arange(n_frames)
    per_frame = np.stack([np.interp(t, centres, normals_a[:, c]) for c in range(3)], axis=-1)
    per_frame /= np.linalg.norm(per_frame, axis=-1, keepdims=True)
    return Floor(per_frame, np.interp(t, centres, heights_a), moved=True,
                 notes=[f"the camera seems to move during the take (the floor turns by up to {angle.max():.1f} "
                        f"degrees and shifts by up to {100 * shift.max():.0f} cm between {settings.window:g} s "
                        f"windows): each frame is grounded on the floor of its own time"])


def gravity_rotation(floor: Floor) -> np.ndarray:
    """Per frame, the rotation (T, 4) that turns the floor normal onto +y."""
    return quat_between(floor.normals, np.broadcast_to(UP, floor.normals.shape))


# ----------------------------------------------------------------------- contacts
class ContactHysteresis:
    """One foot's contact state: touches down low and slow, lifts off high or fast."""

    def __init__(self, settings: GroundSettings = GroundSettings()):
        self.settings = settings
        self.down = False

    def step(self, height: float, speed: float) -> bool:
        s = self.settings
        if self.down:
            if height > s.off_height or speed > s.off_speed:
                self.down = False
        elif height < s.on_height and speed < s.on_speed:
            self.down = True
        return self.down


def runs(mask: np.ndarray) -> List[Tuple[int, int]]:
    """(start, end) index pairs (end exclusive) of the True runs of ``mask``."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def detect_contacts(heights: np.ndarray, speeds: np.ndarray, fps: float,
                    settings: GroundSettings = GroundSettings()) -> np.ndarray:
    """Contact (T,) of one foot from its lowest sole point's height and speed per frame."""
    state = ContactHysteresis(settings)
    out = np.array([state.step(float(h), float(v)) for h, v in zip(heights, speeds)], bool)
    shortest = max(1, int(round(settings.min_contact * fps)))
    for a, b in runs(out):
        if b - a < shortest:
            out[a:b] = False
    return out


# ----------------------------------------------------------------------- grounding a motion
@dataclass
class GroundReport:
    #: (T, 2) contacts of the left and right foot.
    contacts: np.ndarray
    #: Largest root correction (metres) made to reach a planted foot or keep feet above the floor.
    root_shift: float = 0.0
    notes: List[str] = field(default_factory=list)


def to_floor_frame(rotations: np.ndarray, root_position: np.ndarray, floor: Floor):
    """Rotations and root positions turned and moved into the floor frame (floor normal +y, y=0)."""
    g = gravity_rotation(floor.at(len(root_position)))
    rot = rotations.copy()
    rot[:, 0] = quat_mul(g, rotations[:, 0])
    root = quat_rotate(g, root_position)
    root[:, 1] -= floor.at(len(root_position)).heights
    return rot, root


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _pin_targets(ankle: np.ndarray, low: np.ndarray, contact: np.ndarray, ramp: int):
    """Ankle targets (T, 3) and pin weights (T,) of one foot: pinned over each contact at the
    contact's median position (sole on the floor), fading over ``ramp`` frames around it."""
    n = len(ankle)
    target = ankle.copy()
    weight = np.zeros(n)
    grounded = ankle - low[:, None] * UP  # the same ankle with its lowest sole point on the floor
    for a, b in runs(contact):
        anchor = np.median(ankle[a:b], axis=0)
        lo, hi = max(0, a - ramp), min(n, b + ramp)
        idx = np.arange(lo, hi)
        w = np.ones(len(idx))
        if ramp:
            w = np.where(idx < a, _smoothstep((idx - (a - ramp - 1)) / (ramp + 1)), w)
            w = np.where(idx >= b, _smoothstep(((b + ramp) - idx) / (ramp + 1)), w)
        pinned = grounded[idx].copy()
        pinned[:, [0, 2]] = anchor[[0, 2]]
        take = w > weight[idx]
        weight[idx] = np.where(take, w, weight[idx])
        target[idx] = np.where(take[:, None], ankle[idx] + w[:, None] * (pinned - ankle[idx]), target[idx])
    # never below the floor
    target[:, 1] = np.maximum(target[:, 1], grounded[:, 1])
    return target, weight


def _gaussian(values: np.ndarray, sigma_frames: float) -> np.ndarray:
    if sigma_frames <= 0 or len(values) < 2:
        return values
    r = int(math.ceil(3 * sigma_frames))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_frames) ** 2)
    k /= k.sum()
    padded = np.pad(values, [(r, r)] + [(0, 0)] * (values.ndim - 1), mode="edge")
    return np.stack([np.convolve(padded[:, c], k, mode="valid") for c in range(values.shape[1])], axis=1)


def ground_motion(skeleton: Skeleton, rotations: np.ndarray, root_position: np.ndarray, fps: float,
                  floor: Floor, settings: GroundSettings = GroundSettings(), plant: bool = True):
    """A motion (local rotations (T, 55, 4), root positions (T, 3), level-camera world) put in
    the floor frame, feet planted during contacts, no foot below the floor.

    Returns new ``(rotations, root_position, GroundReport)``.
    """
    rot, root = to_floor_frame(rotations, root_position, floor)
    n = len(root)
    heights = sole_heights(skeleton)
    report = GroundReport(contacts=np.zeros((n, 2), bool))
    span = max(1, int(round(settings.speed_span * fps)))

    def lowest(rot_, root_):
        """Per leg: ankle positions (T, 3), lowest sole height (T,), its horizontal speed (T,)."""
        out = []
        for i, leg in enumerate(LEGS):
            pose = leg_pose(skeleton, rot_, root_, leg)
            soles = np.stack([pose.ankle[:, 1] - heights[i, 0], pose.toe[:, 1] - heights[i, 1]], axis=-1)
            which = np.argmin(soles, axis=-1)
            pts = np.stack([pose.ankle, pose.toe], axis=1)
            speed = point_speeds(pts, fps, span)[np.arange(n), which]
            out.append((pose, soles.min(axis=-1), speed))
        return out

    legs = lowest(rot, root)
    if plant and floor.fitted and n > 1:
        for i, (pose, low, speed) in enumerate(legs):
            contact = detect_contacts(low, speed, fps, settings)
            for a, b in runs(contact):  # a foot that travels while "planted" was not planted
                xz = pose.ankle[a:b][:, [0, 2]]
                if np.linalg.norm(xz - np.median(xz, axis=0), axis=-1).max() > settings.max_travel:
                    contact[a:b] = False
            report.contacts[:, i] = contact
    ramp = int(round(settings.release * fps))
    if report.contacts.any():
        # the root follows the planted feet: where a foot stands, its drift (mostly the root's depth
        # noise) is taken off the root, smoothly; between contacts the correction is interpolated
        corr = np.zeros((n, 2))
        weight = np.zeros(n)
        for i, (pose, _, _) in enumerate(legs):
            for a, b in runs(report.contacts[:, i]):
                anchor = np.median(pose.ankle[a:b][:, [0, 2]], axis=0)
                corr[a:b] += anchor - pose.ankle[a:b][:, [0, 2]]
                weight[a:b] += 1.0
        have = weight > 0
        corr[have] /= weight[have, None]
        frames = np.arange(n)
        full = np.stack([np.interp(frames, frames[have], corr[have, c]) for c in range(2)], axis=-1)
        size = np.linalg.norm(full, axis=-1, keepdims=True)
        full = full * np.minimum(1.0, settings.root_limit / np.maximum(size, 1e-12))
        full = _gaussian(full, settings.root_sigma * fps)
        root = root.copy()
        root[:, [0, 2]] += full
        legs = lowest(rot, root)
    targets = [_pin_targets(pose.ankle, low, report.contacts[:, i], ramp) for i, (pose, low, _) in enumerate(legs)]
    # the root moves where a target is out of the leg's reach
    shift = np.zeros((n, 3))
    for (pose, _, _), (target, _) in zip(legs, targets):
        l1 = np.linalg.norm(pose.knee - pose.hip, axis=-1)
        l2 = np.linalg.norm(pose.ankle - pose.knee, axis=-1)
        d = target - pose.hip
        dist = np.linalg.norm(d, axis=-1)
        over = np.maximum(0.0, dist - 0.995 * (l1 + l2))
        shift += d / np.maximum(dist, 1e-9)[:, None] * over[:, None]
    if np.abs(shift).max() > 0:
        root = root + _gaussian(shift, 0.05 * fps)
        report.root_shift = float(np.linalg.norm(shift, axis=-1).max())
    for i, leg in enumerate(LEGS):
        target, _ = targets[i]
        pose = leg_pose(skeleton, rot, root, leg)
        move = np.linalg.norm(target - pose.ankle, axis=-1) > 1e-6
        if move.any():
            sub = LegPose(*(getattr(pose, f)[move] for f in LegPose.__dataclass_fields__))
            hip, knee, ankle = two_bone_ik(sub, target[move])
            rot[move, leg.hip], rot[move, leg.knee], rot[move, leg.ankle] = hip, knee, ankle
    # whatever the legs could not do: lift the root so no sole point is below the floor
    below = np.minimum(0.0, np.minimum(*[low for _, low, _ in lowest(rot, root)]))
    if below.min() < 0:
        root[:, 1] -= below
        report.root_shift = max(report.root_shift, float(-below.min()))
    return rot, root, report



def ground_motions(motions: Sequence, settings: GroundSettings = GroundSettings()) -> List[str]:
    """Ground the people of one take (:class:`~realtime.animation.motion.Motion` objects in the
    level-camera world, ``--place camera``, all at one frame rate over the same frames) on one
    shared floor, in place: each ends in the floor frame, its pelvis starting above the origin.
    Returns notes for the user."""
    if not motions:
        return []
    n = motions[0].n_frames
    fps = motions[0].fps
    soles = [sole_points(m.skeleton, m.rotations, m.root_position, fps) for m in motions]
    floor = fit_floor(soles, fps, n, settings)
    notes = list(floor.notes)
    if floor.fitted and floor.tilt_degrees > 1.0 and not floor.moved:
        notes.append(f"the floor is tilted by {floor.tilt_degrees:.1f} degrees in the camera's view: "
                     f"the take is turned so that the floor is level")
    for m in motions:
        rot, root, report = ground_motion(m.skeleton, m.rotations, m.root_position, fps, floor, settings,
                                          plant=floor.fitted)
        shift = np.array([-root[0, 0], 0.0, -root[0, 2]])
        m.rotations = rot
        m.root_position = root + shift
        m.offset = shift
        m.contacts = report.contacts
        if report.root_shift > 0.1:
            notes.append(f"person {m.person_id}: the root was moved by up to {100 * report.root_shift:.0f} cm "
                         f"to keep the feet on the floor")
    return notes


#: Below this share of frames with both feet in the detector's box, a person is not grounded.
MIN_FEET_IN_VIEW = 0.2


def feet_in_view(track, body) -> Optional[float]:
    """Share of a :class:`~realtime.animation.take.PersonTrack`'s samples whose ankles, projected
    with the sample's camera, fall inside its detector box (10 % margin); None when the source
    does not record the boxes (or records empty ones)."""
    from .motion import local_rotations

    view = getattr(track, "view", None)
    if view is None or not np.all(view[:, 2:4] > 1.0):
        return None
    rot = local_rotations(track.params, body.hand_mean)
    root = body.skeleton.rest[0] + track.params["transl"].reshape(len(track), 3)
    inside = np.ones(len(track), bool)
    x, y, w, h = (view[:, k] for k in range(4))
    for leg in LEGS:
        ankle = leg_pose(body.skeleton, rot, root, leg).ankle  # camera frame (the root's rotation is)
        z = np.maximum(ankle[:, 2], 1e-6)
        u = view[:, 4] * ankle[:, 0] / z + view[:, 6]
        v = view[:, 5] * ankle[:, 1] / z + view[:, 7]
        inside &= (u >= x - 0.1 * w) & (u <= x + 1.1 * w) & (v >= y - 0.1 * h) & (v <= y + 1.1 * h)
    return float(inside.mean())
