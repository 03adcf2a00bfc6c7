"""Live, causal grounding (``mocap live --ground``): a floor learned from the feet, foot
contacts, and a root trajectory on that floor, without looking ahead.

Per frame and person (after the One-Euro filter), from the root and the legs only:

1. **Sole points**: each foot's ankle and toe moved down by their rest height above the sole
   (:func:`realtime.animation.grounding.sole_heights`), in the level-camera world.
2. **Floor**: for the first ``learn_seconds`` the still sole points are collected (everyone's:
   one camera, one floor) and a plane is fitted (:func:`realtime.animation.grounding.fit_plane`,
   the offline rule). Until then a level floor under the lowest sole point seen so far is used
   (``floor_state`` "learning").
3. **Camera moved**: a foot that stands still stands on the floor. When the median height of
   the lowest still sole over the last ``moved_window`` seconds is more than
   ``moved_height`` off the floor, or the plane fitted to the last ``recheck_seconds`` of still
   points turns more than ``moved_angle`` degrees away from the learned one, the camera has moved:
   the floor is learned again (the old one is used meanwhile).
4. **Contacts**: the offline hysteresis (:class:`realtime.animation.grounding.ContactHysteresis`)
   on the lowest sole point's height and horizontal speed (from the previous frame).
5. **Grounded root** in the floor frame (floor normal +y, floor at y = 0): the root orientation
   turned by the floor's tilt; the pelvis moved horizontally so a planted foot stays where it
   touched down (the correction fades with ``release`` seconds after lift-off) and vertically so
   the lowest planted sole is on the floor; no sole ever below it.

The result goes on each person as ``grounded`` (a dict, version 1: ``root_pos``, ``root_quat``
(x, y, z, w), ``contacts`` [left, right], ``floor`` [nx, ny, nz, d] in the level-camera world,
``floor_state``). Only the root changes: joint rotations stay as filtered. The cost is compute
only (no frame of delay): see docs/motion.md for the measured milliseconds.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from engines.types import Person, SMPLXParams

from .animation.grounding import LEGS, UP, ContactHysteresis, GroundSettings, fit_plane, sole_heights
from .animation.skeleton import FOOT_JOINTS, Skeleton
from .retarget import Q_CAM_TO_WORLD, RestModel, cam_to_world_position
from .rotations import axis_angle_to_quat, quat_between, quat_mul, quat_to_matrix

log = logging.getLogger(__name__)

GROUNDED_VERSION = 1


@dataclass(frozen=True)
class LiveGroundSettings:
    contacts: GroundSettings = field(default_factory=GroundSettings)
    learn_seconds: float = 3.0
    release: float = 0.3
    #: A planted foot's anchor drifts towards where the foot is measured with this time constant
    #: (s), so that corrections cannot pile up over a long walk.
    anchor_leak: float = 1.0
    #: A foot's speed is its displacement over the last ``speed_window`` seconds (less noisy than
    #: from one frame to the next; a touch-down is seen up to half of it later).
    speed_window: float = 0.15
    moved_window: float = 1.0
    moved_height: float = 0.08
    moved_angle: float = 6.0
    recheck_seconds: float = 3.0


def sole_height_of(body_model) -> float:
    """Height of the lowest foot joint above the sole in the rest pose (template shape)."""
    layer = body_model.layer
    verts = layer.v_template.detach().cpu().numpy().astype(np.float64)
    joints = layer.J_regressor.detach().cpu().numpy().astype(np.float64) @ verts
    return max(0.0, float(joints[list(FOOT_JOINTS), 1].min() - verts[:, 1].min()))


class FloorLearner:
    """The floor shared by everyone in view, learned and re-learned from still sole points."""

    def __init__(self, settings: LiveGroundSettings):
        self.settings = settings
        self.plane: Optional[Tuple[np.ndarray, float]] = None  # fitted (normal, height)
        self.lowest: Optional[float] = None                    # provisional: level, under the lowest sole
        self.started: Optional[float] = None
        self.points: List[np.ndarray] = []
        self.speeds: List[np.ndarray] = []
        self.recent: Deque[Tuple[float, np.ndarray, np.ndarray]] = deque()
        self.still_heights: Deque[Tuple[float, float]] = deque()
        self.relearned: List[float] = []
        self._since_check = 0

    @property
    def state(self) -> str:
        return "fitted" if self.plane is not None and self.started is None else "learning"

    def current(self) -> Tuple[np.ndarray, float]:
        if self.plane is not None:
            return self.plane
        return UP.copy(), (self.lowest if self.lowest is not None else 0.0)

    def relearn(self, t: float) -> None:
        self.started = t
        self.points, self.speeds = [], []
        self.lowest = None
        self.still_heights.clear()
        self.recent.clear()
        self.relearned.append(t)
        log.info("grounding: the camera seems to have moved at t=%.2f s: learning the floor again", t)

    def observe(self, t: float, points: np.ndarray, speeds: np.ndarray) -> None:
        s = self.settings
        pts = points.reshape(-1, 3)
        spd = speeds.reshape(-1)
        if self.started is None and self.plane is None:
            self.started = t
        if self.started is not None:  # learning
            self.points.append(pts)
            self.speeds.append(spd)
            low = float(pts[:, 1].min())
            self.lowest = low if self.lowest is None else min(self.lowest, low)
            if t - self.started >= s.learn_seconds:
                fit = fit_plane(np.concatenate(self.points), np.concatenate(self.speeds), s.contacts)
                if fit is not None:
                    self.plane = (fit[0], fit[1])
                    self.started = None
                    self.points, self.speeds = [], []
                elif t - self.started > 4 * s.learn_seconds:  # nothing still to learn from: keep looking
                    self.started = t
                    self.points, self.speeds = [], []
            return
        self.recent.append((t, pts, spd))
        while self.recent and t - self.recent[0][0] > s.recheck_seconds:
            self.recent.popleft()
        self._since_check += 1
        if self._since_check >= 15 and len(self.recent) > 10 and t - self.recent[0][0] > 0.9 * s.recheck_seconds:
            self._since_check = 0
            fit = fit_plane(np.concatenate([p for _, p, _ in self.recent]),
                            np.concatenate([v for _, _, v in self.recent]), s.contacts)
            if fit is not None:
                angle = math.degrees(math.acos(float(np.clip(fit[0] @ self.plane[0], -1.0, 1.0))))
                if angle > s.moved_angle:
                    self.relearn(t)

    def still_height(self, t: float, height: float) -> None:
        """The height above the floor of the lowest still sole: a sustained offset means the camera moved."""
        if self.state != "fitted":
            return
        s = self.settings
        self.still_heights.append((t, height))
        while self.still_heights and t - self.still_heights[0][0] > s.moved_window:
            self.still_heights.popleft()
        if len(self.still_heights) >= 15 and t - self.still_heights[0][0] >= 0.8 * s.moved_window:
            if abs(float(np.median([h for _, h in self.still_heights]))) > s.moved_height:
                self.relearn(t)


#: Rows of body_pose (joint - 1) of each leg's hip, knee and ankle, left then right.
_LEG_POSE_ROWS = [j - 1 for leg in LEGS for j in (leg.hip, leg.knee, leg.ankle)]


@dataclass
class _Track:
    skeleton: Skeleton
    contacts: Tuple[ContactHysteresis, ContactHysteresis]
    #: (2, 4, 3) rest offsets of each leg's hip, knee, ankle and toe; (2, 2) sole heights.
    offsets: np.ndarray = None
    soles: np.ndarray = None
    t: Optional[float] = None
    history: Deque[Tuple[float, np.ndarray]] = field(default_factory=deque)
    anchors: List[Optional[np.ndarray]] = field(default_factory=lambda: [None, None])
    shift_xz: np.ndarray = field(default_factory=lambda: np.zeros(2))
    shift_y: float = 0.0


class LiveGrounder:
    """Causal grounding of every tracked person on one learned floor (see the module docstring).

    ``rest``: :class:`realtime.retarget.RestModel` (bone lengths from each person's first betas);
    ``sole_height``: :func:`sole_height_of` the body model.
    """

    def __init__(self, rest: RestModel, sole_height: float, settings: LiveGroundSettings = LiveGroundSettings()):
        self.rest = rest
        self.sole_height = float(sole_height)
        self.settings = settings
        self.floor = FloorLearner(settings)
        self._tracks: Dict[int, _Track] = {}

    @classmethod
    def from_body_model(cls, body_model, settings: LiveGroundSettings = LiveGroundSettings()) -> "LiveGrounder":
        return cls(RestModel.from_body_model(body_model), sole_height_of(body_model), settings)

    def reset(self) -> None:
        self.floor = FloorLearner(self.settings)
        self._tracks.clear()

    def _track(self, person: Person) -> _Track:
        tr = self._tracks.get(person.track_id)
        if tr is None:
            sk = Skeleton(rest=self.rest.joints(person.params.betas), sole_height=self.sole_height)
            c = self.settings.contacts
            off = sk.offsets
            tr = self._tracks[person.track_id] = _Track(
                sk, (ContactHysteresis(c), ContactHysteresis(c)),
                offsets=np.array([[off[leg.hip], off[leg.knee], off[leg.ankle], off[leg.toe]] for leg in LEGS]),
                soles=sole_heights(sk))
        return tr

    def __call__(self, persons: Sequence[Person], t: float, keep: Iterable[int] = ()) -> List[Person]:
        """Copies of ``persons`` (one frame at ``t`` seconds) with ``grounded`` set."""
        seen = {p.track_id for p in persons}
        observed = [(p, *self._observe(p, t)) for p in persons]
        out = [dataclasses.replace(p, grounded=self._ground(p, t, rot, pelvis, feet, spd))
               for p, rot, pelvis, feet, spd in observed]
        kept = seen | set(keep)
        for tid in [i for i in self._tracks if i not in kept]:
            del self._tracks[tid]
        return out

    def _observe(self, person: Person, t: float):
        """Root rotation, pelvis and sole points in the level-camera world; feeds the floor."""
        tr = self._track(person)
        p: SMPLXParams = person.params
        body = np.asarray(p.body_pose, np.float64).reshape(21, 3)
        # the root and the two legs only, as matrices (a few numpy calls per frame)
        aa = np.concatenate([np.asarray(p.global_orient, np.float64).reshape(1, 3), body[_LEG_POSE_ROWS]])
        q = axis_angle_to_quat(aa)
        q[0] = quat_mul(Q_CAM_TO_WORLD, q[0])
        m = quat_to_matrix(q)
        pelvis = cam_to_world_position(tr.skeleton.rest[0] + np.asarray(p.transl, np.float64).reshape(3))
        off = tr.offsets
        feet = np.empty((2, 2, 3))
        for i in range(2):
            hip_r = m[0] @ m[1 + 3 * i]
            knee_r = hip_r @ m[2 + 3 * i]
            ankle_r = knee_r @ m[3 + 3 * i]
            hip = pelvis + m[0] @ off[i, 0]
            knee = hip + hip_r @ off[i, 1]
            feet[i, 0] = knee + knee_r @ off[i, 2]
            feet[i, 1] = feet[i, 0] + ankle_r @ off[i, 3]
        pts = feet - tr.soles[..., None] * UP  # sole points, level-camera world
        while tr.history and t - tr.history[0][0] > self.settings.speed_window:
            tr.history.popleft()
        if tr.history and t > tr.history[0][0]:
            t0, p0 = tr.history[0]
            spd = np.linalg.norm((pts - p0)[..., [0, 2]], axis=-1) / (t - t0)
        else:
            spd = np.full((2, 2), np.inf)  # no speed yet: not "still"
        tr.history.append((t, pts))
        self.floor.observe(t, pts, np.where(np.isfinite(spd), spd, 1e3))
        return q[0], pelvis, feet, spd

    def _ground(self, person: Person, t: float, root_q: np.ndarray, pelvis: np.ndarray, feet: np.ndarray,
                spd: np.ndarray) -> dict:
        tr = self._tracks[person.track_id]
        s = self.settings
        normal, height = self.floor.current()
        g = quat_between(normal, UP)
        q = quat_mul(g, root_q)
        gm = quat_to_matrix(g)
        pel = gm @ pelvis - height * UP
        # sole points (2, 2, 3) in the floor frame: the joints turned, then down by their height over the sole
        soles = feet @ gm.T - (height + tr.soles)[..., None] * UP
        dt = 0.0 if tr.t is None else max(0.0, t - tr.t)
        low_idx = np.argmin(soles[..., 1], axis=1)
        low = soles[np.arange(2), low_idx]           # (2, 3) each foot's lowest sole point
        speed = spd[np.arange(2), low_idx]
        leak = 1.0 - math.exp(-dt / s.anchor_leak) if s.anchor_leak > 0 else 0.0
        contact = [tr.contacts[i].step(float(low[i, 1]), float(speed[i]) if np.isfinite(speed[i]) else 1e3)
                   for i in range(2)]
        targets = []
        for i in range(2):
            if contact[i]:
                if tr.anchors[i] is None:  # touch-down: the foot stays where it appears now
                    tr.anchors[i] = low[i, [0, 2]] + tr.shift_xz
                else:
                    tr.anchors[i] = tr.anchors[i] + leak * (low[i, [0, 2]] - tr.anchors[i])
                targets.append(tr.anchors[i] - low[i, [0, 2]])
            else:
                tr.anchors[i] = None
        still = speed < s.contacts.still_speed
        if still.any():  # a still foot stands on the floor: far from it for a while, the camera moved
            self.floor.still_height(t, float(low[still, 1].min()))
        if targets:
            tr.shift_xz = np.mean(targets, axis=0)
            tr.shift_y = -min(float(low[i, 1]) for i in range(2) if contact[i])
        else:
            fade = math.exp(-dt / s.release) if s.release > 0 else 0.0
            tr.shift_xz = tr.shift_xz * fade
            tr.shift_y = tr.shift_y * fade
        tr.shift_y = max(tr.shift_y, -float(low[:, 1].min()))  # no sole below the floor
        tr.t = t
        pos = pel + np.array([tr.shift_xz[0], tr.shift_y, tr.shift_xz[1]])
        return {"version": GROUNDED_VERSION, "root_pos": pos.tolist(), "root_quat": q.tolist(),
                "contacts": [bool(c) for c in contact], "floor": [*map(float, normal), float(height)],
                "floor_state": self.floor.state}
