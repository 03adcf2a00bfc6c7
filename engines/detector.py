"""Person detection: full-body boxes of every person in a frame (or of one).

The official SMPLer-X demo feeds the model a full-body person box from a Faster
R-CNN (xyxy converted to xywh) and pads it by 1.25 later in ``process_bbox``.
Here the box comes from mediapipe's bundled Pose model (``model_complexity=1``,
the only variant whose files ship in the ``mediapipe==0.10.21`` wheel): the 33
landmarks it returns are turned into a box that resembles a detector box, i.e.
it covers the whole visible person, top of the head and feet included.

How the box is built (:func:`landmarks_box`):

* only landmarks with a visibility above ``visibility_threshold`` that lie inside
  the image are used (Pose extrapolates legs that are out of the picture);
* Pose stops at the eyes and ears, so a head square around the face centre is
  added (half size from the ear distance, shoulder width and torso length);
* the bounds are padded on every side (:func:`engines.geometry.pad_and_clip_box`) and clipped to
  the image.

The same head and padding rules are used by the tracker for boxes built from the
projected SMPL-X joints, so both give the model similar crops.

Several people (``max_people > 1``): mediapipe's Pose solution returns one person per
call, so the detector calls it repeatedly on the same frame, each time covering the boxes of
the people already found with grey (:func:`cover_person`), until nobody more is found
or ``max_people`` are found; a box that is a person found before, or a false person stitched
from that person's limbs and someone else, is dropped (:func:`_same_or_merged`), and each
person after the first must be found again by Pose on a crop of the untouched frame
(:meth:`PersonDetector._confirmed`), which removes people seen in the leftovers. People facing
away from the camera are often missed: Pose's detector looks for a face. ``max_people == 1``
keeps the one-call path (and mediapipe's own frame-to-frame tracking when ``static=False``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .geometry import (
    DEFAULT_PAD,
    containment_xywh,
    grow_along_bones,
    head_radius,
    head_square,
    iou_xywh,
    pad_and_clip_box,
    points_in_image,
)

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install mediapipe==0.10.21"

#: Number of Pose landmarks (BlazePose topology).
NUM_LANDMARKS = 33
#: Pose landmark ids used by the box rules.
LM_NOSE = 0
LM_FACE = tuple(range(0, 11))  # nose, eyes, ears, mouth
LM_LEFT_EAR, LM_RIGHT_EAR = 7, 8
LM_LEFT_SHOULDER, LM_RIGHT_SHOULDER = 11, 12
LM_LEFT_HIP, LM_RIGHT_HIP = 23, 24
#: Landmarks whose mean visibility is the detection score: face, shoulders, hips.
SCORE_LANDMARKS = LM_FACE + (LM_LEFT_SHOULDER, LM_RIGHT_SHOULDER, LM_LEFT_HIP, LM_RIGHT_HIP)

#: Body bones of the Pose topology (torso, arms, hands, legs, feet) used to follow limbs.
POSE_BONES = (
    (11, 12), (11, 23), (12, 24), (23, 24),
    (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
    (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
    (23, 25), (25, 27), (27, 29), (27, 31), (29, 31),
    (24, 26), (26, 28), (28, 30), (28, 32), (30, 32),
)

#: Model files of ``Pose(model_complexity=1)`` inside the mediapipe package.
POSE_MODEL_FILES = (
    "modules/pose_detection/pose_detection.tflite",
    "modules/pose_landmark/pose_landmark_full.tflite",
)



class DetectorUnavailable(RuntimeError):
    """mediapipe (or its bundled pose model) is not installed."""


@dataclass
class Detection:
    """One person box in full-frame pixels.

    ``landmarks`` holds the 33 Pose landmarks as (x, y, visibility) in pixels
    when the box came from mediapipe, else None.
    """

    bbox_xywh: np.ndarray
    score: float
    landmarks: Optional[np.ndarray] = None
    source: str = "mediapipe"  # "mediapipe" | "manual" | "tracker"

    def __post_init__(self) -> None:
        self.bbox_xywh = np.asarray(self.bbox_xywh, dtype=np.float32).reshape(4)
        self.score = float(self.score)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(NUM_LANDMARKS, 3)

    @property
    def xyxy(self) -> np.ndarray:
        """The box as (x1, y1, x2, y2)."""
        x, y, w, h = self.bbox_xywh
        return np.array([x, y, x + w, y + h], dtype=np.float32)

    @property
    def area(self) -> float:
        return float(max(self.bbox_xywh[2], 0.0) * max(self.bbox_xywh[3], 0.0))

    @property
    def center(self) -> np.ndarray:
        x, y, w, h = self.bbox_xywh
        return np.array([x + w / 2.0, y + h / 2.0], dtype=np.float32)


# --------------------------------------------------------------------------- boxes (geometry: engines.geometry)


def landmarks_box(
    landmarks: np.ndarray,
    image_size: Tuple[int, int],
    visibility_threshold: float = 0.5,
    pad: float = DEFAULT_PAD,
    min_visible: int = 4,
    limb_threshold: float = 0.3,
) -> Optional[np.ndarray]:
    """Full-body xywh box from 33 Pose landmarks (x, y, visibility) in pixels.

    Starts from the landmarks inside the image with a visibility above
    ``visibility_threshold``; follows the limbs to neighbours inside the image
    with a visibility above ``limb_threshold`` and to the border where a limb
    leaves the picture (Pose extrapolates those landmarks, which are not used);
    adds headroom above the eyes and ears, pads and clips. None when fewer than
    ``min_visible`` landmarks pass the first test.
    """
    lm = np.asarray(landmarks, dtype=np.float64).reshape(NUM_LANDMARKS, 3)
    xy, vis = lm[:, :2], lm[:, 2]
    inside = points_in_image(xy, image_size)
    use = (vis > visibility_threshold) & inside
    if int(use.sum()) < min_visible:
        return None
    use, border = grow_along_bones(xy, use, POSE_BONES, image_size, can_extend=vis > limb_threshold)
    pts = [xy[use], border]
    face = [i for i in LM_FACE if use[i]]
    if face:
        ears = (LM_LEFT_EAR, LM_RIGHT_EAR)
        center = xy[list(ears)].mean(axis=0) if all(use[i] for i in ears) else xy[face].mean(axis=0)
        radius = head_radius(xy[LM_LEFT_EAR], xy[LM_RIGHT_EAR], xy[LM_LEFT_SHOULDER],
                             xy[LM_RIGHT_SHOULDER], xy[LM_LEFT_HIP], xy[LM_RIGHT_HIP])
        pts.append(head_square(center, radius))
    allp = np.concatenate(pts, axis=0)
    x1, y1 = allp.min(axis=0)
    x2, y2 = allp.max(axis=0)
    return pad_and_clip_box(x1, y1, x2, y2, image_size, pad=pad)


def _same_or_merged(new: Sequence[float], old: Sequence[float]) -> bool:
    """True when a box found after covering ``old`` is that person again (overlap), or a false
    person stitched from ``old``'s leftovers and someone else (it contains most of ``old``)."""
    return (iou_xywh(new, old) > 0.5 or containment_xywh(new, old) > 0.85
            or containment_xywh(old, new) > 0.7)


def largest_first(detections: Iterable[Detection], limit: Optional[int] = None) -> List[Detection]:
    """Detections by decreasing box area (the official demo keeps the largest), at most ``limit``."""
    ordered = sorted(detections, key=lambda d: -d.area)
    return ordered if limit is None else ordered[:limit]


def cover_person(image: np.ndarray, box_xywh: Sequence[float]) -> None:
    """Paint a found person's box grey (in place) so that the next Pose call looks for somebody
    else (covering only the landmarks' outline lets Pose find the same person again from the
    parts left visible)."""
    x, y, w, h = (int(float(v)) for v in box_xywh)
    image[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)] = 127


# --------------------------------------------------------------------------- mediapipe


def missing_model_files(package_dir: Path) -> List[Path]:
    """Files of ``Pose(model_complexity=1)`` absent from the mediapipe package at ``package_dir``."""
    return [Path(package_dir) / rel for rel in POSE_MODEL_FILES if not (Path(package_dir) / rel).is_file()]


def _import_pose_solution():
    """Import ``mediapipe.solutions.pose``, checking the bundled model files; raises DetectorUnavailable."""
    try:
        import mediapipe as mp
    except ImportError as exc:
        raise DetectorUnavailable(
            f"The person detector needs mediapipe with its bundled Pose model: {INSTALL_HINT} ({exc})"
        ) from exc
    solutions = getattr(mp, "solutions", None)
    pose = getattr(solutions, "pose", None) if solutions is not None else None
    if pose is None:
        version = getattr(mp, "__version__", "?")
        raise DetectorUnavailable(
            f"mediapipe {version} has no mp.solutions.pose (newer releases dropped it and download "
            f"models at run time): {INSTALL_HINT}"
        )
    package_dir = Path(getattr(mp, "__file__", "") or ".").parent
    missing = missing_model_files(package_dir)
    if missing:
        raise DetectorUnavailable(
            "mediapipe's Pose model files are missing ("
            + ", ".join(str(p) for p in missing)
            + f"); reinstall the wheel that bundles them: {INSTALL_HINT}"
        )
    return pose


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Bring a grey, BGR or BGRA uint8 image to contiguous BGR."""
    from .media import to_bgr

    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"detect() needs a uint8 image, got {img.dtype}")
    try:
        return to_bgr(img)
    except ValueError:
        raise ValueError(f"detect() needs an (H, W, 3) BGR image, got shape {img.shape}") from None


class PersonDetector:
    """mediapipe Pose (``model_complexity=1``) as a person box detector.

    ``max_people``: 1 (one Pose call; ``static=False`` lets mediapipe follow the person from
    frame to frame, faster for video) or more (repeated calls on the frame with the people
    found so far covered, always in static mode; see the module docstring). ``min_score`` is
    mediapipe's detection confidence and the lowest accepted :attr:`Detection.score` (mean
    visibility of face, shoulders and hips). Boxes smaller than ``min_box_size`` pixels on
    either side are rejected. :meth:`detect` returns people by decreasing box area.
    """

    def __init__(self, min_score: float = 0.5, static: bool = False,
                 visibility_threshold: float = 0.5, pad: float = DEFAULT_PAD,
                 min_box_size: float = 16.0, max_people: int = 1):
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        if int(max_people) < 1:
            raise ValueError(f"max_people must be >= 1, got {max_people}")
        pose = _import_pose_solution()
        self.min_score = float(min_score)
        self.max_people = int(max_people)
        self.static = bool(static) or self.max_people > 1
        self.visibility_threshold = float(visibility_threshold)
        self.pad = float(pad)
        self.min_box_size = float(min_box_size)
        #: Pose calls made (several per frame when looking for several people).
        self.pose_calls = 0
        self._pose = pose.Pose(
            static_image_mode=self.static,
            model_complexity=1,
            smooth_landmarks=True,
            enable_segmentation=False,
            # several people: let Pose propose less certain people too; the landmark score
            # (min_score) still decides (partly hidden people come out of Pose less sure)
            min_detection_confidence=self.min_score if self.max_people == 1 else min(self.min_score, 0.3),
            min_tracking_confidence=self.min_score,
        )
        log.debug("mediapipe Pose ready (static=%s, min_score=%.2f, max_people=%d)",
                  self.static, self.min_score, self.max_people)

    def detect(self, image: Optional[np.ndarray], max_people: Optional[int] = None) -> List[Detection]:
        """Person boxes in a BGR uint8 frame, largest first; [] when nobody is found."""
        if self._pose is None:
            raise RuntimeError("PersonDetector is closed")
        if image is None or np.asarray(image).size == 0:
            return []
        import cv2

        limit = self.max_people if max_people is None else max(1, min(int(max_people), self.max_people))
        rgb = cv2.cvtColor(_as_bgr(image), cv2.COLOR_BGR2RGB)
        if limit == 1:
            det = self._one(rgb)
            return [det] if det is not None else []
        original = rgb.copy()
        found: List[Detection] = []
        misses = 0
        for _ in range(2 * limit):  # bounded: a covered person found again counts as a miss
            det = self._one(rgb)
            if det is None:
                break
            cover_person(rgb, det.bbox_xywh)
            if any(_same_or_merged(det.bbox_xywh, k.bbox_xywh) for k in found) or (
                    found and not self._confirmed(original, det)):
                misses += 1
                if misses >= 2:
                    break
                continue
            found.append(det)
            if len(found) >= limit:
                break
        return largest_first(found, limit)

    def _confirmed(self, rgb: np.ndarray, det: Detection) -> bool:
        """A person found on a partly covered frame is kept only if Pose, run again on a crop of
        the untouched frame around them, finds the same person (IoU >= 0.3): covering can make
        Pose see a body in the leftovers (an engine bay beside a man, say)."""
        x, y, w, h = (float(v) for v in det.bbox_xywh)
        height, width = rgb.shape[:2]
        x0, y0 = int(max(0.0, x - 0.25 * w)), int(max(0.0, y - 0.15 * h))
        x1, y1 = int(min(width, x + 1.25 * w)), int(min(height, y + 1.15 * h))
        if x1 - x0 < self.min_box_size or y1 - y0 < self.min_box_size:
            return False
        again = self._one(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
        if again is None:
            return False
        box = again.bbox_xywh + np.array([x0, y0, 0.0, 0.0], np.float32)
        return iou_xywh(box, det.bbox_xywh) >= 0.3

    def _one(self, rgb: np.ndarray) -> Optional[Detection]:
        """One Pose call on an RGB frame: the most prominent person, or None."""
        height, width = rgb.shape[:2]
        rgb.flags.writeable = False
        try:
            result = self._pose.process(rgb)
        finally:
            rgb.flags.writeable = True
        self.pose_calls += 1
        if result.pose_landmarks is None:
            return None
        landmarks = np.array(
            [[p.x * width, p.y * height, p.visibility] for p in result.pose_landmarks.landmark],
            dtype=np.float32,
        )
        score = float(np.mean(landmarks[list(SCORE_LANDMARKS), 2]))
        if score < self.min_score:
            log.debug("pose rejected: score %.2f < %.2f", score, self.min_score)
            return None
        box = landmarks_box(landmarks, (width, height), self.visibility_threshold, self.pad)
        if box is None or box[2] < self.min_box_size or box[3] < self.min_box_size:
            log.debug("pose rejected: box %s too small or no visible landmarks", box)
            return None
        return Detection(bbox_xywh=box, score=score, landmarks=landmarks, source="mediapipe")

    def close(self) -> None:
        """Release the mediapipe graph (safe to call twice)."""
        if self._pose is not None:
            self._pose.close()
            self._pose = None

    def __enter__(self) -> "PersonDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
