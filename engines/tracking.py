"""Person identities over time: detect, then follow each person with the model's own joints.

Running the detector costs 30-50 ms per person on this CPU. Once a person is found, the
previous frame's SMPL-X joints, projected into the full frame, give a good box for the next
frame (:func:`box_from_joints`, padded like the detector's boxes in :mod:`engines.detector`,
so ``process_bbox``'s 1.25 padding sees a similar box). :class:`PersonTracker` keeps one
track per person (``max_people`` at most), each with its own id:

* **Following**: a track whose last prediction gave plausible joints gets its joint box.
  Joints are implausible when they are not finite, mostly outside the image (the person
  walked out), the joint box is degenerate or too small, or it jumped (IoU with the track's
  last box below ``min_iou``); the track then counts as missed.
* **Detecting** runs when a track was missed, every ``redetect_every`` frames (so that
  newcomers are found when fewer than ``max_people`` are tracked; 0 = only on a miss), and
  while nobody is tracked. A track followed by its joints that ``confirm_passes`` detector
  passes in a row do not see is dropped (the model predicts a body even on an empty crop, so
  joints alone could follow a ghost). Detections are matched to the tracks' expected boxes (joint box,
  else last box moved by the track's velocity) greedily by IoU, highest first (ByteTrack's
  association without its second score tier: the detector's scores here are near 1).
* **Lost tracks** are kept for ``grace_s`` seconds: a detection overlapping a lost track's
  expected box brings it back with its id, and after the prediction a brand-new track whose
  3-D root lies within ``relink_m`` metres of a recently lost track's last root takes that
  id instead (the allowance grows by ``WALK_SPEED`` per second hidden; :meth:`PersonTracker.observe`),
  so a person hidden for a moment comes back as
  themselves. Ids are never given to anyone else; a new person gets a new id.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .body_model import NUM_JOINTS, PARENTS
from .detector import (
    DEFAULT_PAD,
    Detection,
    grow_along_bones,
    head_radius,
    head_square,
    iou_xywh,
    pad_and_clip_box,
    points_in_image,
)
from .types import Person

log = logging.getLogger(__name__)

# SMPL-X joint ids (the 144-joint output of the ``smplx`` layer with face contour).
J_PELVIS, J_LEFT_HIP, J_RIGHT_HIP = 0, 1, 2
J_LEFT_ANKLE, J_RIGHT_ANKLE = 7, 8
J_HEAD = 15
J_LEFT_SHOULDER, J_RIGHT_SHOULDER = 16, 17
J_NOSE, J_RIGHT_EYE, J_LEFT_EYE, J_RIGHT_EAR, J_LEFT_EAR = 55, 56, 57, 58, 59
#: Joints the box is built from: 55 kinematic + nose/eyes/ears, toes/heels, fingertips.
NUM_BOX_JOINTS = 76
#: Body joints (no fingers) whose share inside the image decides "mostly outside".
BODY_JOINTS = tuple(range(0, 22)) + tuple(range(55, 66))
HEAD_JOINTS = (J_HEAD, J_NOSE, J_RIGHT_EYE, J_LEFT_EYE, J_RIGHT_EAR, J_LEFT_EAR)

#: Parent of each extra keypoint 55..75 (face to head, toes/heels to ankles, tips to last phalanx).
_EXTRA_PARENTS = {
    55: J_HEAD, 56: J_HEAD, 57: J_HEAD, 58: J_HEAD, 59: J_HEAD,
    60: J_LEFT_ANKLE, 61: J_LEFT_ANKLE, 62: J_LEFT_ANKLE,
    63: J_RIGHT_ANKLE, 64: J_RIGHT_ANKLE, 65: J_RIGHT_ANKLE,
    66: 39, 67: 27, 68: 30, 69: 36, 70: 33,  # left thumb, index, middle, ring, pinky tips
    71: 54, 72: 42, 73: 45, 74: 51, 75: 48,  # right thumb, index, middle, ring, pinky tips
}
#: Bones of the box joints (SMPL-X kinematic tree plus the extra keypoints).
SMPLX_BONES: Tuple[Tuple[int, int], ...] = tuple(
    [(int(PARENTS[j]), j) for j in range(1, NUM_JOINTS)] + sorted((p, c) for c, p in _EXTRA_PARENTS.items())
)


def box_from_joints(
    joints_2d: np.ndarray,
    image_size: Tuple[int, int],
    pad: float = DEFAULT_PAD,
    near: float = 0.05,
) -> Optional[np.ndarray]:
    """Detector-like xywh box around projected SMPL-X joints, or None.

    Uses the 55 kinematic joints and the face, feet and fingertip keypoints
    (ids 55-75, when present) that lie inside the image or within ``near`` (a
    fraction of the image size) of it; where a bone leaves the picture the
    border crossing counts too. Headroom above the head joints, padding and
    clipping follow :func:`engines.detector.landmarks_box`. ``image_size`` is
    (width, height). None when no joint is usable or the box is empty.
    """
    pts = np.asarray(joints_2d, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < NUM_JOINTS:
        raise ValueError(f"joints_2d must be (J >= {NUM_JOINTS}, 2), got {pts.shape}")
    n = min(pts.shape[0], NUM_BOX_JOINTS)
    pts = pts[:n]
    used = points_in_image(pts, image_size, margin=near)
    if not used.any():
        return None
    bones = [(a, b) for a, b in SMPLX_BONES if a < n and b < n]
    _, border = grow_along_bones(pts, used, bones, image_size, can_extend=np.zeros(n, bool))
    parts = [pts[used].astype(np.float32), border]
    head = [j for j in HEAD_JOINTS if j < n and used[j]]
    if head:
        ears = (J_LEFT_EAR, J_RIGHT_EAR)
        center = pts[list(ears)].mean(axis=0) if all(j < n and used[j] for j in ears) else pts[head].mean(axis=0)
        radius = head_radius(
            pts[J_LEFT_EAR] if n > J_LEFT_EAR else pts[J_HEAD],
            pts[J_RIGHT_EAR] if n > J_RIGHT_EAR else pts[J_HEAD],
            pts[J_LEFT_SHOULDER], pts[J_RIGHT_SHOULDER], pts[J_LEFT_HIP], pts[J_RIGHT_HIP],
        )
        if np.isfinite(radius):
            parts.append(head_square(center, radius))
    allp = np.concatenate(parts, axis=0)
    allp = allp[np.isfinite(allp).all(axis=1)]
    if len(allp) == 0:
        return None
    x1, y1 = allp.min(axis=0)
    x2, y2 = allp.max(axis=0)
    return pad_and_clip_box(float(x1), float(y1), float(x2), float(y2), image_size, pad=pad)


def fraction_inside(joints_2d: np.ndarray, image_size: Tuple[int, int],
                    ids: Sequence[int] = BODY_JOINTS) -> float:
    """Share of the body joints (``ids`` that exist) that lie inside the image."""
    pts = np.asarray(joints_2d, dtype=np.float64)
    ids = [i for i in ids if i < pts.shape[0]]
    if not ids:
        return 0.0
    return float(points_in_image(pts[ids], image_size).mean())


#: Metres per second a hidden person may have moved for a re-link by root distance (a brisk walk).
WALK_SPEED = 1.5


@dataclass
class Target:
    """A person to predict in this frame: the track's id and box (xywh, full-frame pixels)."""

    track_id: int
    bbox_xywh: np.ndarray
    score: float
    #: "detector" (a fresh detection) or "joints" (the previous prediction's joint box).
    source: str


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    score: float
    first_frame: int
    last_t: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    joint_box: Optional[np.ndarray] = None
    root: Optional[np.ndarray] = None
    lost_at: Optional[float] = None
    lost_frame: int = 0
    misses: int = 0
    #: Detector passes in a row that did not see this (joint-followed) track.
    unconfirmed: int = 0

    def expected_box(self) -> np.ndarray:
        return self.joint_box if self.joint_box is not None else self.box + self.velocity


def match_by_iou(boxes_a: Sequence[np.ndarray], boxes_b: Sequence[np.ndarray],
                 min_iou: float) -> List[Tuple[int, int, float]]:
    """Greedy one-to-one matching of two box lists by IoU, highest first: [(i, j, iou)]."""
    pairs = sorted(((iou_xywh(a, b), i, j) for i, a in enumerate(boxes_a) for j, b in enumerate(boxes_b)),
                   reverse=True)
    used_a, used_b, out = set(), set(), []
    for iou, i, j in pairs:
        if iou < min_iou:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j, iou))
    return out


class PersonTracker:
    """Tracks up to ``max_people`` people (see the module docstring for the rules).

    Per frame: ``targets = tracker.update(image, t)``, predict the targets' boxes, then
    ``ids = tracker.observe(targets, results, t)`` with, per target, None (nobody predicted) or
    ``(joints_2d, root)``: the projected joints (J, 2) and the camera-space root (3,). ``ids``
    maps each target's id to the id its person is finally given (a re-linked track).
    ``t`` is in seconds (capture time live, frame index / fps offline).
    """

    def __init__(self, detector, max_people: int = 1, redetect_every: int = 0, grace_s: float = 1.0,
                 min_box_size: float = 24.0, min_iou: float = 0.3, min_inside: float = 0.25,
                 relink_m: float = 0.5, pad: float = DEFAULT_PAD, confirm_passes: int = 2,
                 background: bool = False):
        if redetect_every < 0:
            raise ValueError("redetect_every must be >= 0")
        if max_people < 1:
            raise ValueError("max_people must be >= 1")
        if grace_s < 0:
            raise ValueError("grace_s must be >= 0")
        self.detector = detector
        self.max_people = int(max_people)
        self.redetect_every = int(redetect_every)
        self.grace_s = float(grace_s)
        self.min_box_size = float(min_box_size)
        self.min_iou = float(min_iou)
        self.min_inside = float(min_inside)
        self.relink_m = float(relink_m)
        self.pad = float(pad)
        self.confirm_passes = max(1, int(confirm_passes))
        self.frames = 0
        self.detector_calls = 0
        self.losses = 0
        self.relinks = 0
        #: Why the last loss happened (for logs and tests).
        self.last_loss_reason: Optional[str] = None
        self._next_id = 0
        self._active: Dict[int, _Track] = {}
        self._lost: Dict[int, _Track] = {}
        self._since_detect = 0
        self._need_detect = True
        #: Periodic passes (newcomers, confirmations) run on a worker thread while tracking goes on,
        #: so that a slow multi-person pass does not stall the frames; passes the tracker needs at
        #: once (nobody tracked, someone lost) still wait. All detector calls go through the worker.
        self._worker = None
        self._pending = None
        if background:
            from concurrent.futures import ThreadPoolExecutor

            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector")

    def close(self) -> None:
        """Stop the background detector thread (if any); the tracker keeps working synchronously."""
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
            self._worker = None
            self._pending = None

    # ------------------------------------------------------------------ state
    @property
    def track_ids(self) -> List[int]:
        """Ids of the people being followed now."""
        return sorted(self._active)

    @property
    def alive_ids(self) -> List[int]:
        """Ids followed now or lost less than ``grace_s`` ago (they may come back)."""
        return sorted(set(self._active) | set(self._lost))

    def reset(self) -> None:
        """Forget everyone without counting losses (new video, new camera); ids keep counting."""
        self._active.clear()
        self._lost.clear()
        self._need_detect = True

    # ------------------------------------------------------------------ per frame
    def update(self, image: np.ndarray, t: float) -> List[Target]:
        """The people to predict in this frame (by track id), [] when nobody is found."""
        self.frames += 1
        self._since_detect += 1
        self._expire(t)
        if image is None or np.asarray(image).ndim < 2 or np.asarray(image).size == 0:
            return []
        due = self.redetect_every > 0 and self._since_detect >= self.redetect_every
        urgent = self._need_detect or not self._active
        if self._pending is not None and self._pending.done():  # a background pass came back
            found, self._pending = self._pending.result(), None
            self._associate(found, t)
        elif urgent:
            self._wait_for_pending()
            self._detect_and_associate(image, t)
        elif due and self._worker is not None:
            if self._pending is None:
                self.detector_calls += 1
                self._since_detect = 0
                self._pending = self._worker.submit(self._run_detector, np.array(image, copy=True))
        elif due:
            self._detect_and_associate(image, t)
        targets = []
        for track in sorted(self._active.values(), key=lambda tr: tr.track_id):
            box = track.box
            source = "detector" if track.joint_box is None else "joints"
            targets.append(Target(track.track_id, box.copy(), track.score, source))
        self._need_detect = False
        return targets

    def observe(self, targets: Sequence[Target], results: Sequence[Optional[Tuple[np.ndarray, np.ndarray]]],
                t: float, image_size: Tuple[int, int]) -> Dict[int, int]:
        """Learn from this frame's predictions (one per target, None when it failed)."""
        ids = {}
        for target, result in zip(targets, results):
            track = self._active.get(target.track_id)
            ids[target.track_id] = target.track_id
            if track is None:
                continue
            if result is None:
                self._miss(track, t, "no prediction")
                continue
            joints_2d, root = result
            joint_box, reason = self._check_joints(joints_2d, image_size, track.box)
            track.root = None if root is None else np.asarray(root, np.float64).reshape(3)
            track.last_t = t
            if joint_box is None:
                self._miss(track, t, reason)
                continue
            track.velocity = 0.5 * track.velocity + 0.5 * (joint_box - track.box)
            track.joint_box = joint_box
            track.box = joint_box
            track.misses = 0
            if track.first_frame == self.frames:  # new this frame: is it someone who was just lost?
                old = self._relink(track, t)
                if old is not None:
                    ids[target.track_id] = old
        self._drop_duplicates()
        return ids

    def learn(self, targets: Sequence[Target], people: Dict[int, Person], t: float,
              image_size: Tuple[int, int]) -> None:
        """:meth:`observe` for this frame's people, keyed by the index of their target's box (as the
        predictor numbers them in ``track_id``), then each person's ``track_id`` set to its track's id."""
        results = [None if people.get(i) is None else (people[i].joints_2d, people[i].joints[0])
                   for i in range(len(targets))]
        ids = self.observe(targets, results, t, image_size)
        for i, target in enumerate(targets):
            if people.get(i) is not None:
                people[i].track_id = ids.get(target.track_id, target.track_id)

    # ------------------------------------------------------------------ internals
    def _run_detector(self, image: np.ndarray) -> List[Detection]:
        return [d for d in self.detector.detect(image)
                if d.bbox_xywh[2] >= self.min_box_size and d.bbox_xywh[3] >= self.min_box_size]

    def _wait_for_pending(self) -> None:
        """An urgent pass is due: a background one still running is left to finish and dropped."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def _detect_and_associate(self, image: np.ndarray, t: float) -> None:
        self.detector_calls += 1
        self._since_detect = 0
        if self._worker is not None:  # the detector belongs to the worker thread
            found = self._worker.submit(self._run_detector, image).result()
        else:
            found = self._run_detector(image)
        self._associate(found, t)

    def _associate(self, found: List[Detection], t: float) -> None:
        tracks = list(self._active.values())
        matches = match_by_iou([tr.expected_box() for tr in tracks], [d.bbox_xywh for d in found], self.min_iou)
        used = set()
        for i, j, _ in matches:
            self._refresh(tracks[i], found[j], t)
            used.add(j)
        matched_tracks = {i for i, _, _ in matches}
        for i, track in enumerate(tracks):
            if i in matched_tracks:
                continue
            track.unconfirmed += 1
            if track.joint_box is None:
                self._miss(track, t, "not detected and no joints")
            elif track.unconfirmed >= self.confirm_passes:  # followed by its joints alone: a ghost?
                self._miss(track, t, f"not seen by {track.unconfirmed} detector passes in a row")
        rest = [j for j in range(len(found)) if j not in used]
        lost = list(self._lost.values())
        expected = [tr.box + tr.velocity * (self.frames - tr.lost_frame + 1) for tr in lost]  # where they went
        for i, r, _ in match_by_iou(expected, [found[j].bbox_xywh for j in rest], self.min_iou):
            track = lost[i]
            del self._lost[track.track_id]
            self._active[track.track_id] = track
            track.lost_at = None
            self._refresh(track, found[rest[r]], t)
            used.add(rest[r])
        for det in sorted((d for j, d in enumerate(found) if j not in used), key=lambda d: -d.area):
            if len(self._active) >= self.max_people:
                break
            if any(iou_xywh(det.bbox_xywh, tr.box) > 0.5 for tr in self._active.values()):
                continue  # someone already followed
            track = _Track(self._next_id, det.bbox_xywh.copy(), det.score, self.frames, t)
            self._next_id += 1
            self._active[track.track_id] = track
            log.debug("track %d started at %s", track.track_id, det.bbox_xywh)

    def _refresh(self, track: _Track, det: Detection, t: float) -> None:
        track.velocity = 0.5 * track.velocity + 0.5 * (det.bbox_xywh - track.box)
        track.box = det.bbox_xywh.copy()
        track.score = det.score
        track.joint_box = None  # the detection wins this frame; joints of the next prediction follow
        track.misses = 0
        track.unconfirmed = 0
        track.last_t = t

    def _miss(self, track: _Track, t: float, reason: str) -> None:
        """The track was not seen this frame: it becomes lost (kept for the grace period)."""
        track.joint_box = None
        if self._active.pop(track.track_id, None) is not None:
            track.lost_at = t
            track.lost_frame = self.frames
            self._lost[track.track_id] = track
            self.losses += 1
            self.last_loss_reason = reason
            self._need_detect = True
            log.debug("track %d lost: %s", track.track_id, reason)

    def _expire(self, t: float) -> None:
        for tid in [tid for tid, tr in self._lost.items() if t - tr.lost_at > self.grace_s]:
            del self._lost[tid]

    def _relink(self, track: _Track, t: float) -> Optional[int]:
        """A lost track whose last root is near this new track's root (``relink_m`` plus what a
        person can walk in the time they were hidden): give the new one its id."""
        if track.root is None:
            return None
        best, best_d = None, float("inf")
        for old in self._lost.values():
            if old.root is None:
                continue
            d = float(np.linalg.norm(old.root - track.root))
            if d <= self.relink_m + WALK_SPEED * max(0.0, t - old.lost_at) and d < best_d:
                best, best_d = old, d
        if best is None:
            return None
        del self._active[track.track_id]
        del self._lost[best.track_id]
        track.track_id = best.track_id
        track.first_frame = best.first_frame
        self._active[track.track_id] = track
        self.relinks += 1
        log.debug("track re-linked to %d (root %.2f m away)", best.track_id, best_d)
        return best.track_id

    def _drop_duplicates(self) -> None:
        """Two tracks on one person (boxes nearly coincide and the 3-D roots are within 0.2 m):
        the younger one goes. People crossing in front of each other differ in depth."""
        tracks = sorted(self._active.values(), key=lambda tr: tr.first_frame)
        for i, a in enumerate(tracks):
            for b in tracks[i + 1:]:
                if a.track_id not in self._active or b.track_id not in self._active:
                    continue
                same_place = a.root is not None and b.root is not None and np.linalg.norm(a.root - b.root) < 0.2
                if iou_xywh(a.box, b.box) > 0.7 and same_place:
                    del self._active[b.track_id]

    def _check_joints(self, joints_2d: np.ndarray, size: Tuple[int, int],
                      previous: Optional[np.ndarray]) -> Tuple[Optional[np.ndarray], str]:
        """The joint box when it is plausible, else (None, why)."""
        joints = np.asarray(joints_2d, dtype=np.float64)
        if not np.isfinite(joints[: min(len(joints), NUM_JOINTS)]).all():
            return None, "joints are not finite"
        inside = fraction_inside(joints, size)
        if inside < self.min_inside:
            return None, f"joints mostly outside the image ({inside:.0%} inside)"
        box = box_from_joints(joints, size, pad=self.pad)
        if box is None or box[2] < self.min_box_size or box[3] < self.min_box_size:
            return None, f"joint box degenerate or too small ({box})"
        if previous is not None:
            iou = iou_xywh(box, previous)
            if iou < self.min_iou:
                return None, f"joint box jumped (IoU {iou:.2f} < {self.min_iou:.2f})"
        return box, ""
