"""Single-person tracking: detect once, then follow the person with the model's own joints.

Running the detector every frame costs 30-50 ms on this CPU. Once a person is
found, the previous frame's SMPL-X joints, projected into the full frame, give
a good box for the next frame (:func:`box_from_joints`, padded like the
detector box in :mod:`engines.detector`, so ``process_bbox``'s 1.25 padding sees
a similar box). The detector runs again only when the track is lost:

* the joint box is degenerate or too small,
* the joints are mostly outside the image (the person walked out),
* the joint box jumps implausibly (IoU with the previous box below ``min_iou``),
* the caller reports a low-confidence prediction through :meth:`PersonTracker.mark_lost`,

or every ``redetect_every`` frames when that is set. ``track_id`` stays the same
while the person is followed and increments only when a person is acquired
after a loss.
"""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np

from engines.body_model import NUM_JOINTS, PARENTS
from engines.detector import (
    DEFAULT_PAD,
    Detection,
    grow_along_bones,
    head_radius,
    head_square,
    iou_xywh,
    largest,
    pad_and_clip_box,
    points_in_image,
)

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


class PersonTracker:
    """Follows one person: detector on acquisition, projected joints in between.

    ``redetect_every``: run the detector every N frames even while tracking (0:
    only when the track is lost). ``min_box_size``: boxes narrower or lower than
    this (pixels) are rejected. ``lost_after``: consecutive frames in which the
    followed person is not found (no joints and no detection) before the
    identity is dropped; a detection overlapping the last box within that
    window keeps the ``track_id``. ``min_iou``: smallest IoU between consecutive
    boxes that still counts as the same person. ``min_inside``: smallest share
    of body joints inside the image.
    """

    def __init__(self, detector, redetect_every: int = 0, min_box_size: float = 24.0,
                 lost_after: int = 5, min_iou: float = 0.3, min_inside: float = 0.25,
                 pad: float = DEFAULT_PAD):
        if redetect_every < 0:
            raise ValueError("redetect_every must be >= 0")
        if lost_after < 1:
            raise ValueError("lost_after must be >= 1")
        self.detector = detector
        self.redetect_every = int(redetect_every)
        self.min_box_size = float(min_box_size)
        self.lost_after = int(lost_after)
        self.min_iou = float(min_iou)
        self.min_inside = float(min_inside)
        self.pad = float(pad)
        #: Id of the current (or last) person; -1 before the first acquisition.
        self.track_id = -1
        self.frames = 0
        self.detector_calls = 0
        self.losses = 0
        #: Why the last loss happened (for logs and tests).
        self.last_loss_reason: Optional[str] = None
        self._next_id = 0
        self._tracking = False
        self._box: Optional[np.ndarray] = None
        self._score = 0.0
        self._misses = 0
        self._since_detect = 0

    # ------------------------------------------------------------------ state

    @property
    def tracking(self) -> bool:
        """True while a person is being followed (its identity is alive)."""
        return self._tracking

    @property
    def last_box(self) -> Optional[np.ndarray]:
        """The last box handed out (xywh), None before the first or after a loss."""
        return None if self._box is None else self._box.copy()

    def mark_lost(self, reason: str = "marked lost by caller") -> None:
        """Drop the current person (e.g. low prediction confidence); the next update re-detects."""
        if self._tracking:
            self._lose(reason)

    def reset(self) -> None:
        """Forget the person without counting a loss (new video, new camera)."""
        self._tracking = False
        self._box = None
        self._misses = 0

    # ------------------------------------------------------------------ update

    def update(self, image: np.ndarray, previous_joints_2d: Optional[np.ndarray] = None) -> Optional[Detection]:
        """The box for this frame, or None when nobody is found.

        ``previous_joints_2d`` are the previous prediction's joints projected into
        the full frame (J, 2); pass None when the previous frame gave no person.
        """
        self.frames += 1
        self._since_detect += 1
        if image is None or np.asarray(image).ndim < 2 or np.asarray(image).size == 0:
            log.debug("empty frame %d skipped", self.frames)
            return None
        height, width = np.asarray(image).shape[:2]
        size = (int(width), int(height))
        if self._tracking:
            joint_box = None
            if previous_joints_2d is not None:
                joint_box, reason = self._check_joints(previous_joints_2d, size)
                if joint_box is None:
                    self._lose(reason)
            if self._tracking:
                return self._follow(image, joint_box)
        return self._acquire(image)

    # ------------------------------------------------------------------ internals

    def _check_joints(self, joints_2d: np.ndarray, size: Tuple[int, int]) -> Tuple[Optional[np.ndarray], str]:
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
        if self._box is not None:
            iou = iou_xywh(box, self._box)
            if iou < self.min_iou:
                return None, f"joint box jumped (IoU {iou:.2f} < {self.min_iou:.2f})"
        return box, ""

    def _follow(self, image: np.ndarray, joint_box: Optional[np.ndarray]) -> Optional[Detection]:
        """Tracking: use the joint box, refreshing it with the detector when due or when there are no joints."""
        due = self.redetect_every > 0 and self._since_detect >= self.redetect_every
        if joint_box is not None and not due:
            return self._emit(Detection(joint_box, self._score, None, "tracker"))
        detections = self._detect(image)
        reference = joint_box if joint_box is not None else self._box
        match, iou = self._best_match(detections, reference)
        if match is not None and iou >= self.min_iou:
            return self._emit(match)
        if joint_box is not None:  # the detector missed or saw someone else: keep following
            return self._emit(Detection(joint_box, self._score, None, "tracker"))
        if detections:  # the followed person is gone and somebody else is in view
            self._lose(f"detection does not overlap the last box (IoU {iou:.2f})")
            return self._start(largest(detections))
        self._misses += 1
        if self._misses >= self.lost_after:
            self._lose(f"not found for {self._misses} frames")
        return None

    def _acquire(self, image: np.ndarray) -> Optional[Detection]:
        """Searching: run the detector and start a new track on the largest person."""
        det = largest(self._detect(image))
        return None if det is None else self._start(det)

    def _start(self, det: Detection) -> Detection:
        self.track_id = self._next_id
        self._next_id += 1
        self._tracking = True
        log.debug("track %d acquired at %s", self.track_id, det.bbox_xywh)
        return self._emit(det)

    def _emit(self, det: Detection) -> Detection:
        self._box = det.bbox_xywh.copy()
        if det.source != "tracker":
            self._score = det.score
        self._misses = 0
        return det

    def _detect(self, image: np.ndarray) -> List[Detection]:
        self.detector_calls += 1
        self._since_detect = 0
        found = self.detector.detect(image)
        return [d for d in found if d.bbox_xywh[2] >= self.min_box_size and d.bbox_xywh[3] >= self.min_box_size]

    @staticmethod
    def _best_match(detections: Sequence[Detection], reference: Optional[np.ndarray]) -> Tuple[Optional[Detection], float]:
        if reference is None or not detections:
            return None, 0.0
        scored = [(iou_xywh(d.bbox_xywh, reference), d) for d in detections]
        iou, det = max(scored, key=lambda t: t[0])
        return det, iou

    def _lose(self, reason: str) -> None:
        log.debug("track %d lost: %s", self.track_id, reason)
        self.losses += 1
        self.last_loss_reason = reason
        self._tracking = False
        self._box = None
        self._misses = 0
