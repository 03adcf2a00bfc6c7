"""Person identities over time: tracks as explicit state, matched to detections, followed by joints.

Running the detector costs 30-50 ms per person on this CPU. Once a person is found, the
previous frame's SMPL-X joints, projected into the full frame, give a good box for the next
frame (:func:`engines.geometry.box_from_joints`, padded like the detector's boxes, so
``process_bbox``'s 1.25 padding sees a similar box). :class:`PersonTracker` keeps one
:class:`Track` per person (``max_people`` tracked at most), each with its own id and a
:class:`TrackState`, the way ByteTrack does:

* **tracked**: the person is being followed. A track whose last prediction gave plausible
  joints gets its joint box. Joints are implausible when they are not finite, mostly outside
  the image (the person walked out), the joint box is degenerate or too small, or it jumped
  (IoU with the track's last box below ``min_iou``); the track is then **lost**.
* **Detections** (the tracker never runs the detector: :class:`engines.detection_schedule.
  DetectionSchedule` decides when, and hands them to :meth:`PersonTracker.step`) are matched to
  the tracked tracks' expected boxes (joint box, else last box moved by the track's velocity)
  by optimal assignment on IoU (:mod:`engines.matching`; ByteTrack's association without its
  second score tier: the detector's scores here are near 1). A track with neither a detection
  nor joints is lost; a track followed by its joints that ``confirm_passes`` detector passes in
  a row do not see is lost too (the model predicts a body even on an empty crop, so joints
  alone could follow a ghost). :attr:`PersonTracker.needs_detection` asks for a pass at once
  when someone was lost or nobody is tracked.
* **lost** tracks are kept for ``grace_s`` seconds, then **removed**: detections left over are
  matched to where the lost tracks went (last box moved by their velocity), which brings them
  back, tracked, with their id; and after the prediction a brand-new track whose 3-D root lies
  within ``relink_m`` metres of a recently lost track's last root takes that id instead (the
  allowance grows by ``WALK_SPEED`` per second hidden; :meth:`PersonTracker.observe`), so a
  person hidden for a moment comes back as themselves. Detections still left start new
  tracks, largest first. Ids are never given to anyone else; a new person gets a new id.

Identity is returned, never written into a person: :meth:`PersonTracker.identify` maps each
predicted box (its index in the frame's targets) to the id its person goes by, and the caller
builds the final :class:`engines.types.Person` with that id.
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .detector import Detection
from .geometry import DEFAULT_PAD, NUM_JOINTS, box_from_joints, fraction_inside, iou_xywh
from .matching import match_by_iou
from .types import Person

log = logging.getLogger(__name__)

#: Metres per second a hidden person may have moved for a re-link by root distance (a brisk walk).
WALK_SPEED = 1.5


class TrackState(enum.Enum):
    """Where a track is in its life: followed, kept for the grace period, or gone for good."""

    TRACKED = "tracked"
    LOST = "lost"
    REMOVED = "removed"


@dataclass(frozen=True)
class Target:
    """A person to predict in this frame: the track's id and box (xywh, full-frame pixels).
    The box's index in the frame's list of targets is the box index the predictor reports."""

    track_id: int
    bbox_xywh: np.ndarray
    score: float
    #: "detector" (a fresh detection) or "joints" (the previous prediction's joint box).
    source: str


@dataclass
class Track:
    """One person's track: id, state, last box and its motion, last joint box and 3-D root."""

    track_id: int
    box: np.ndarray
    score: float
    first_frame: int
    last_t: float
    state: TrackState = TrackState.TRACKED
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    joint_box: Optional[np.ndarray] = None
    root: Optional[np.ndarray] = None
    lost_at: Optional[float] = None
    lost_frame: int = 0
    #: Detector passes in a row that did not see this (joint-followed) track.
    unconfirmed: int = 0

    def expected_box(self) -> np.ndarray:
        return self.joint_box if self.joint_box is not None else self.box + self.velocity


class PersonTracker:
    """Tracks up to ``max_people`` people (see the module docstring for the rules); no detector,
    no threads: detections come in, targets and ids go out.

    Per frame: ``targets = tracker.step(t, detections)`` (``detections`` None when the detector
    did not run this frame), predict the targets' boxes, then ``ids = tracker.identify(targets,
    people, t, image_size)`` with ``people`` the predicted persons by box index; ``ids`` maps each
    box index to the id its person goes by. ``t`` is in seconds (capture time live, frame index /
    fps offline).
    """

    def __init__(self, max_people: int = 1, grace_s: float = 1.0, min_box_size: float = 24.0,
                 min_iou: float = 0.3, min_inside: float = 0.25, relink_m: float = 0.5,
                 pad: float = DEFAULT_PAD, confirm_passes: int = 2):
        if max_people < 1:
            raise ValueError("max_people must be >= 1")
        if grace_s < 0:
            raise ValueError("grace_s must be >= 0")
        self.max_people = int(max_people)
        self.grace_s = float(grace_s)
        self.min_box_size = float(min_box_size)
        self.min_iou = float(min_iou)
        self.min_inside = float(min_inside)
        self.relink_m = float(relink_m)
        self.pad = float(pad)
        self.confirm_passes = max(1, int(confirm_passes))
        self.frames = 0
        self.losses = 0
        self.relinks = 0
        #: Why the last loss happened (for logs and tests).
        self.last_loss_reason: Optional[str] = None
        self._next_id = 0
        # Tracks by state (as ByteTrack keeps them); removed tracks are forgotten.
        self._tracked: Dict[int, Track] = {}
        self._lost: Dict[int, Track] = {}
        self._need_detect = True

    # ------------------------------------------------------------------ state
    @property
    def track_ids(self) -> List[int]:
        """Ids of the people being followed now."""
        return sorted(self._tracked)

    @property
    def alive_ids(self) -> List[int]:
        """Ids followed now or lost less than ``grace_s`` ago (they may come back)."""
        return sorted(set(self._tracked) | set(self._lost))

    @property
    def needs_detection(self) -> bool:
        """True when this frame needs a detector pass at once: nobody is tracked, or someone
        was lost since the last frame."""
        return self._need_detect or not self._tracked

    def reset(self) -> None:
        """Forget everyone without counting losses (new video, new camera); ids keep counting."""
        for track in list(self._tracked.values()) + list(self._lost.values()):
            self._remove(track)
        self._need_detect = True

    # ------------------------------------------------------------------ per frame
    def skip(self, t: float) -> None:
        """A frame without an image: counted, lost tracks age, nothing else changes."""
        self.frames += 1
        self._expire(t)

    def step(self, t: float, detections: Optional[Sequence[Detection]] = None) -> List[Target]:
        """The people to predict in this frame (by track id), [] when nobody is tracked.
        ``detections``: this frame's detector pass (or a background pass that just came back),
        None when the detector did not run."""
        self.skip(t)
        if detections is not None:
            self._associate([d for d in detections
                             if d.bbox_xywh[2] >= self.min_box_size and d.bbox_xywh[3] >= self.min_box_size], t)
        self._need_detect = False
        return [Target(track.track_id, track.box.copy(), track.score,
                       "detector" if track.joint_box is None else "joints")
                for track in sorted(self._tracked.values(), key=lambda tr: tr.track_id)]

    def observe(self, targets: Sequence[Target], results: Sequence[Optional[Tuple[np.ndarray, np.ndarray]]],
                t: float, image_size: Tuple[int, int]) -> Dict[int, int]:
        """Learn from this frame's predictions: per target, None (nobody predicted) or
        ``(joints_2d, root)``, the projected joints (J, 2) and the camera-space root (3,).
        Returns {box index: the id its person goes by} (a new track may be re-linked to a
        lost one's id)."""
        ids = {}
        for index, (target, result) in enumerate(zip(targets, results)):
            ids[index] = target.track_id
            track = self._tracked.get(target.track_id)
            if track is None:
                continue
            if result is None:
                self._mark_lost(track, t, "no prediction")
                continue
            joints_2d, root = result
            joint_box, reason = self._check_joints(joints_2d, image_size, track.box)
            track.root = None if root is None else np.asarray(root, np.float64).reshape(3)
            track.last_t = t
            if joint_box is None:
                self._mark_lost(track, t, reason)
                continue
            track.velocity = 0.5 * track.velocity + 0.5 * (joint_box - track.box)
            track.joint_box = joint_box
            track.box = joint_box
            if track.first_frame == self.frames:  # new this frame: is it someone who was just lost?
                old = self._relink(track, t)
                if old is not None:
                    ids[index] = old
        self._drop_duplicates()
        return ids

    def identify(self, targets: Sequence[Target], people: Mapping[int, Person], t: float,
                 image_size: Tuple[int, int]) -> Dict[int, int]:
        """:meth:`observe` for this frame's predicted people, keyed by their box index (the
        target's position in ``targets``; a box the predictor skipped has no person): {box
        index: track id} for every box with a person."""
        results = [None if people.get(i) is None else (people[i].joints_2d, people[i].joints[0])
                   for i in range(len(targets))]
        ids = self.observe(targets, results, t, image_size)
        return {i: ids[i] for i in range(len(targets)) if people.get(i) is not None}

    # ------------------------------------------------------------------ state changes
    def _mark_tracked(self, track: Track) -> None:
        """A lost track found again."""
        del self._lost[track.track_id]
        track.state, track.lost_at = TrackState.TRACKED, None
        self._tracked[track.track_id] = track

    def _mark_lost(self, track: Track, t: float, reason: str) -> None:
        """The track was not seen this frame: it becomes lost (kept for the grace period)."""
        track.joint_box = None
        if self._tracked.pop(track.track_id, None) is not None:
            track.state, track.lost_at, track.lost_frame = TrackState.LOST, t, self.frames
            self._lost[track.track_id] = track
            self.losses += 1
            self.last_loss_reason = reason
            self._need_detect = True
            log.debug("track %d lost: %s", track.track_id, reason)

    def _remove(self, track: Track) -> None:
        """Gone for good: its id is never used again."""
        self._tracked.pop(track.track_id, None)
        self._lost.pop(track.track_id, None)
        track.state = TrackState.REMOVED

    # ------------------------------------------------------------------ internals
    def _associate(self, found: List[Detection], t: float) -> None:
        tracks = list(self._tracked.values())
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
                self._mark_lost(track, t, "not detected and no joints")
            elif track.unconfirmed >= self.confirm_passes:  # followed by its joints alone: a ghost?
                self._mark_lost(track, t, f"not seen by {track.unconfirmed} detector passes in a row")
        rest = [j for j in range(len(found)) if j not in used]
        lost = list(self._lost.values())
        expected = [tr.box + tr.velocity * (self.frames - tr.lost_frame + 1) for tr in lost]  # where they went
        for i, r, _ in match_by_iou(expected, [found[j].bbox_xywh for j in rest], self.min_iou):
            self._mark_tracked(lost[i])
            self._refresh(lost[i], found[rest[r]], t)
            used.add(rest[r])
        for det in sorted((d for j, d in enumerate(found) if j not in used), key=lambda d: -d.area):
            if len(self._tracked) >= self.max_people:
                break
            if any(iou_xywh(det.bbox_xywh, tr.box) > 0.5 for tr in self._tracked.values()):
                continue  # someone already followed
            track = Track(self._next_id, det.bbox_xywh.copy(), det.score, self.frames, t)
            self._next_id += 1
            self._tracked[track.track_id] = track
            log.debug("track %d started at %s", track.track_id, det.bbox_xywh)

    def _refresh(self, track: Track, det: Detection, t: float) -> None:
        track.velocity = 0.5 * track.velocity + 0.5 * (det.bbox_xywh - track.box)
        track.box = det.bbox_xywh.copy()
        track.score = det.score
        track.joint_box = None  # the detection wins this frame; joints of the next prediction follow
        track.unconfirmed = 0
        track.last_t = t

    def _expire(self, t: float) -> None:
        for track in [tr for tr in self._lost.values() if t - tr.lost_at > self.grace_s]:
            self._remove(track)

    def _relink(self, track: Track, t: float) -> Optional[int]:
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
        del self._tracked[track.track_id]
        self._remove(best)
        track.track_id = best.track_id
        track.first_frame = best.first_frame
        self._tracked[track.track_id] = track
        self.relinks += 1
        log.debug("track re-linked to %d (root %.2f m away)", best.track_id, best_d)
        return best.track_id

    def _drop_duplicates(self) -> None:
        """Two tracks on one person (boxes nearly coincide and the 3-D roots are within 0.2 m):
        the younger one goes. People crossing in front of each other differ in depth."""
        tracks = sorted(self._tracked.values(), key=lambda tr: tr.first_frame)
        for i, a in enumerate(tracks):
            for b in tracks[i + 1:]:
                if a.state is not TrackState.TRACKED or b.state is not TrackState.TRACKED:
                    continue
                same_place = a.root is not None and b.root is not None and np.linalg.norm(a.root - b.root) < 0.2
                if iou_xywh(a.box, b.box) > 0.7 and same_place:
                    self._remove(b)

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
