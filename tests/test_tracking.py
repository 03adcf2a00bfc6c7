"""Single-person tracker: detector on acquisition and loss, projected joints in between."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest

from engines.detector import Detection, iou_xywh
from realtime.tracking import PersonTracker, box_from_joints, fraction_inside

W, H = 640, 480
IMAGE = np.zeros((H, W, 3), np.uint8)

# Normalised (x, y) of a person standing upright, by SMPL-X joint id (y down, 0 = top of head).
_POSE = {
    0: (0, 0.50), 1: (0.06, 0.52), 2: (-0.06, 0.52), 3: (0, 0.44), 4: (0.07, 0.72), 5: (-0.07, 0.72),
    6: (0, 0.36), 7: (0.07, 0.93), 8: (-0.07, 0.93), 9: (0, 0.30), 10: (0.08, 0.97), 11: (-0.08, 0.97),
    12: (0, 0.17), 13: (0.04, 0.19), 14: (-0.04, 0.19), 15: (0, 0.08), 16: (0.11, 0.20), 17: (-0.11, 0.20),
    18: (0.15, 0.36), 19: (-0.15, 0.36), 20: (0.17, 0.50), 21: (-0.17, 0.50), 22: (0, 0.10),
    23: (0.02, 0.05), 24: (-0.02, 0.05), 55: (0, 0.06), 56: (-0.02, 0.05), 57: (0.02, 0.05),
    58: (-0.05, 0.06), 59: (0.05, 0.06), 60: (0.10, 0.99), 61: (0.11, 0.99), 62: (0.06, 0.98),
    63: (-0.10, 0.99), 64: (-0.11, 0.99), 65: (-0.06, 0.98),
}


def standing_joints(cx: float = 320.0, top: float = 60.0, height: float = 360.0) -> np.ndarray:
    """(144, 2) projected SMPL-X joints of an upright person ``height`` px tall."""
    norm = np.zeros((144, 2))
    norm[:, :] = (0.0, 0.07)  # face contour and the rest: around the face
    for j, xy in _POSE.items():
        norm[j] = xy
    norm[25:40] = (0.18, 0.55)  # left fingers
    norm[40:55] = (-0.18, 0.55)  # right fingers
    norm[66:71] = (0.18, 0.60)  # left fingertips
    norm[71:76] = (-0.18, 0.60)  # right fingertips
    return np.stack([cx + height * norm[:, 0], top + height * norm[:, 1]], axis=1).astype(np.float32)


class FakeDetector:
    """Returns the boxes it is given (one list per call, the last one repeats) and counts calls."""

    def __init__(self, boxes: List[Optional[list]]):
        self.boxes = boxes
        self.calls = 0

    def detect(self, image):
        box = self.boxes[min(self.calls, len(self.boxes) - 1)]
        self.calls += 1
        return [] if box is None else [Detection(np.array(box, np.float32), 0.9)]


PERSON_BOX = [265.0, 20.0, 110.0, 400.0]  # around standing_joints()


# --------------------------------------------------------------------------- box_from_joints


def test_box_from_joints_covers_pads_and_adds_headroom():
    joints = standing_joints()
    box = box_from_joints(joints, (W, H))
    x, y, w, h = box
    used = joints[:76]
    jx1, jy1 = used.min(axis=0)
    jx2, jy2 = used.max(axis=0)
    # Every joint inside, each side padded by at least 10 % of the joint extent.
    assert x <= jx1 - 0.1 * (jx2 - jx1) + 1e-3
    assert x + w >= jx2 + 0.1 * (jx2 - jx1) - 1e-3
    assert y + h >= jy2 + 0.1 * (jy2 - jy1) - 1e-3
    # Headroom: the joints stop at the eyes/ears (y = 60 + 0.05 * 360 = 78); the skull goes higher.
    assert y < 78 - 0.1 * (jy2 - jy1) - 20
    # Not absurdly large either.
    assert w < 1.6 * (jx2 - jx1) and h < 1.5 * (jy2 - jy1)
    assert box.dtype == np.float32


def test_box_from_joints_clips_and_follows_limbs_to_the_border():
    # Same person, image cut at the hips: the legs lie below the picture.
    joints = standing_joints(top=100.0, height=600.0)
    box = box_from_joints(joints, (W, 400))
    x, y, w, h = box
    assert x >= 0 and y >= 0 and x + w <= W and y + h == pytest.approx(400.0)
    # Near the left border: clipped at x = 0.
    box = box_from_joints(standing_joints(cx=15.0), (W, H))
    assert box[0] == pytest.approx(0.0) and box[2] > 0
    # Nothing in (or near) the picture: no box.
    assert box_from_joints(standing_joints(cx=5000.0), (W, H)) is None
    # Only the 55 kinematic joints: still works.
    assert box_from_joints(standing_joints()[:55], (W, H)) is not None
    with pytest.raises(ValueError):
        box_from_joints(np.zeros((10, 2)), (W, H))


def test_fraction_inside():
    assert fraction_inside(standing_joints(), (W, H)) == pytest.approx(1.0)
    assert fraction_inside(standing_joints(cx=5000.0), (W, H)) == 0.0
    half = fraction_inside(standing_joints(top=300.0), (W, H))
    assert 0.2 < half < 0.8


# --------------------------------------------------------------------------- tracker logic


def test_detector_runs_once_while_joints_keep_coming():
    det = FakeDetector([PERSON_BOX])
    tracker = PersonTracker(det)
    first = tracker.update(IMAGE)
    assert first is not None and first.source == "mediapipe"
    assert det.calls == 1 and tracker.detector_calls == 1 and tracker.track_id == 0
    for k in range(20):  # the person walks slowly to the right
        out = tracker.update(IMAGE, standing_joints(cx=320.0 + 3 * k))
        assert out is not None and out.source == "tracker"
        assert out.landmarks is None and out.score == pytest.approx(0.9)
        assert out.bbox_xywh[0] <= 320.0 + 3 * k - 0.17 * 360 <= out.bbox_xywh[0] + out.bbox_xywh[2]
    assert det.calls == 1 and tracker.detector_calls == 1
    assert tracker.frames == 21 and tracker.losses == 0 and tracker.track_id == 0 and tracker.tracking


def test_mark_lost_redetects_with_a_new_track_id():
    det = FakeDetector([PERSON_BOX])
    tracker = PersonTracker(det)
    tracker.update(IMAGE)
    tracker.update(IMAGE, standing_joints())
    tracker.mark_lost()
    assert not tracker.tracking and tracker.losses == 1
    tracker.mark_lost()  # already lost: not counted twice
    assert tracker.losses == 1
    out = tracker.update(IMAGE, standing_joints())  # joints of the lost track are ignored
    assert out.source == "mediapipe" and det.calls == 2
    assert tracker.track_id == 1
    out = tracker.update(IMAGE, standing_joints())
    assert out.source == "tracker" and det.calls == 2 and tracker.track_id == 1


def test_person_walking_out_of_the_picture_is_lost_and_reacquired():
    det = FakeDetector([PERSON_BOX, None, None, [20.0, 40.0, 100.0, 380.0]])
    tracker = PersonTracker(det)
    tracker.update(IMAGE)
    lost_at = None
    for k in range(1, 40):
        cx = 320.0 + 15 * k
        out = tracker.update(IMAGE, standing_joints(cx=cx))
        if det.calls > 1:
            lost_at = cx
            break
        assert out.source == "tracker" and tracker.track_id == 0
    assert lost_at is not None, "walking out of the image never lost the track"
    assert lost_at > W - 60, "lost while still well inside the picture"
    assert tracker.losses == 1 and "outside" in tracker.last_loss_reason
    assert out is None and not tracker.tracking
    assert tracker.update(IMAGE) is None  # nobody there: the detector runs every frame
    assert det.calls == 3
    out = tracker.update(IMAGE)  # someone enters on the left
    assert out is not None and tracker.track_id == 1 and det.calls == 4


def test_implausible_jump_is_a_loss():
    det = FakeDetector([PERSON_BOX, [400.0, 30.0, 120.0, 400.0]])
    tracker = PersonTracker(det, min_iou=0.3)
    tracker.update(IMAGE)
    tracker.update(IMAGE, standing_joints())
    out = tracker.update(IMAGE, standing_joints(cx=480.0))  # 160 px in one frame
    assert tracker.losses == 1 and "jump" in tracker.last_loss_reason
    assert det.calls == 2 and out.source == "mediapipe" and tracker.track_id == 1


@pytest.mark.parametrize("bad", ["degenerate", "nan", "tiny"])
def test_bad_joints_are_a_loss(bad):
    det = FakeDetector([PERSON_BOX])
    tracker = PersonTracker(det, min_box_size=24)
    tracker.update(IMAGE)
    joints = standing_joints()
    if bad == "degenerate":
        joints[:] = (320.0, 200.0)
    elif bad == "nan":
        joints[3] = np.nan
    else:
        joints = standing_joints(height=10.0)
    tracker.update(IMAGE, joints)
    assert tracker.losses == 1 and det.calls == 2 and tracker.track_id == 1


def test_nobody_found_keeps_searching():
    det = FakeDetector([None, None, PERSON_BOX])
    tracker = PersonTracker(det)
    assert tracker.update(IMAGE) is None and tracker.track_id == -1
    assert tracker.update(IMAGE, standing_joints()) is None  # joints without a track are ignored
    out = tracker.update(IMAGE)
    assert out is not None and tracker.track_id == 0 and det.calls == 3 and tracker.losses == 0


def test_small_detections_are_rejected():
    det = FakeDetector([[100.0, 100.0, 10.0, 30.0], PERSON_BOX])
    tracker = PersonTracker(det, min_box_size=24)
    assert tracker.update(IMAGE) is None
    assert tracker.update(IMAGE) is not None and tracker.track_id == 0


def test_periodic_redetection_keeps_the_track_id():
    det = FakeDetector([PERSON_BOX])
    tracker = PersonTracker(det, redetect_every=3)
    sources = []
    for k in range(10):
        out = tracker.update(IMAGE, None if k == 0 else standing_joints())
        sources.append(out.source)
    # Detector on frames 1, 4, 7, 10; the joints in between.
    assert det.calls == 4
    assert [i for i, s in enumerate(sources) if s == "mediapipe"] == [0, 3, 6, 9]
    assert tracker.track_id == 0 and tracker.losses == 0


def test_periodic_redetection_of_someone_else_keeps_following_the_joints():
    det = FakeDetector([PERSON_BOX, [0.0, 0.0, 60.0, 200.0]])
    tracker = PersonTracker(det, redetect_every=2)
    tracker.update(IMAGE)
    assert tracker.update(IMAGE, standing_joints()).source == "tracker"
    out = tracker.update(IMAGE, standing_joints())  # due: the detector sees someone else
    assert det.calls == 2 and out.source == "tracker" and tracker.track_id == 0 and tracker.losses == 0


def test_missed_frames_keep_identity_until_lost_after():
    det = FakeDetector([PERSON_BOX, None, None, [270.0, 25.0, 110.0, 395.0]])
    tracker = PersonTracker(det, lost_after=3)
    tracker.update(IMAGE)
    assert tracker.update(IMAGE) is None  # no joints (the model gave nobody), detector misses
    assert tracker.update(IMAGE) is None
    assert tracker.tracking and tracker.losses == 0
    out = tracker.update(IMAGE)  # seen again where it was: same person
    assert out is not None and tracker.track_id == 0 and tracker.losses == 0

    det = FakeDetector([PERSON_BOX, None])
    tracker = PersonTracker(det, lost_after=3)
    tracker.update(IMAGE)
    for _ in range(3):
        assert tracker.update(IMAGE) is None
    assert not tracker.tracking and tracker.losses == 1


def test_someone_else_appearing_without_joints_is_a_new_track():
    det = FakeDetector([PERSON_BOX, [0.0, 0.0, 80.0, 300.0]])
    tracker = PersonTracker(det)
    tracker.update(IMAGE)
    out = tracker.update(IMAGE)  # no joints; the detector finds someone far away
    assert out is not None and tracker.track_id == 1 and tracker.losses == 1


def test_empty_frame_is_skipped_without_a_loss():
    det = FakeDetector([PERSON_BOX])
    tracker = PersonTracker(det)
    tracker.update(IMAGE)
    assert tracker.update(None) is None
    assert tracker.update(np.zeros((0, 0, 3), np.uint8)) is None
    assert tracker.tracking and tracker.losses == 0 and det.calls == 1
    assert tracker.update(IMAGE, standing_joints()).source == "tracker"


def test_reset_and_argument_checks():
    det = FakeDetector([PERSON_BOX])
    tracker = PersonTracker(det)
    tracker.update(IMAGE)
    tracker.reset()
    assert not tracker.tracking and tracker.losses == 0 and tracker.last_box is None
    with pytest.raises(ValueError):
        PersonTracker(det, lost_after=0)
    with pytest.raises(ValueError):
        PersonTracker(det, redetect_every=-1)


# --------------------------------------------------------------------------- with the real detector


def _media(name: str) -> Path:
    env = os.environ.get("MOCAP_MEDIA_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "media"
    path = root / name
    if not path.is_file():
        pytest.skip(f"real test media not found: {path} (put shared/media beside the checkout or set MOCAP_MEDIA_DIR)")
    return path


def pose_to_smplx_joints(lm: np.ndarray) -> np.ndarray:
    """Stand-in SMPL-X joints (144, 2) from 33 Pose landmarks (as a model prediction would place them)."""
    p = lm[:, :2].astype(np.float64)
    mid = lambda a, b: (p[a] + p[b]) / 2.0  # noqa: E731
    hips, shoulders = mid(23, 24), mid(11, 12)
    j = np.repeat(p[0:1], 144, axis=0)  # face contour etc. at the nose
    j[0] = hips + (shoulders - hips) * 0.05
    j[1], j[2] = p[23], p[24]
    j[3], j[6], j[9] = (hips + (shoulders - hips) * t for t in (0.25, 0.5, 0.75))
    j[4], j[5], j[7], j[8] = p[25], p[26], p[27], p[28]
    j[10], j[11] = p[31], p[32]
    j[12] = shoulders
    j[13], j[14] = mid(11, 12) * 0.5 + p[11] * 0.5, mid(11, 12) * 0.5 + p[12] * 0.5
    j[15] = mid(7, 8)
    j[16], j[17], j[18], j[19], j[20], j[21] = p[11], p[12], p[13], p[14], p[15], p[16]
    j[22] = mid(9, 10)
    j[23], j[24] = p[2], p[5]
    j[25:40] = mid(15, 19)
    j[40:55] = mid(16, 20)
    j[55], j[56], j[57], j[58], j[59] = p[0], p[5], p[2], p[8], p[7]
    j[60], j[61], j[62] = p[31], p[31], p[29]
    j[63], j[64], j[65] = p[32], p[32], p[30]
    j[66:71] = p[19]
    j[71:76] = p[20]
    return j.astype(np.float32)


@pytest.mark.parametrize("name", ["coco_000785_skier.jpg", "mpii_004645041.jpg"])
def test_joint_box_matches_detector_box_on_real_photos(name):
    """Joints where the person really is give about the box the detector gives."""
    cv2 = pytest.importorskip("cv2")
    from engines.detector import PersonDetector

    image = cv2.imread(str(_media(name)))
    with PersonDetector(static=True) as det:
        found = det.detect(image)
    assert len(found) == 1
    joints = pose_to_smplx_joints(found[0].landmarks)
    box = box_from_joints(joints, (image.shape[1], image.shape[0]))
    assert iou_xywh(box, found[0].bbox_xywh) > 0.75, (box, found[0].bbox_xywh)


def test_tracker_with_real_detector_keeps_one_identity_through_a_clip():
    """Without joints the tracker re-detects every frame and keeps the id by overlap."""
    cv2 = pytest.importorskip("cv2")
    from engines.detector import PersonDetector

    cap = cv2.VideoCapture(str(_media("street_walk_960x540.mp4")))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) >= 5
    with PersonDetector(static=False) as det:
        tracker = PersonTracker(det)
        boxes = [tracker.update(frame) for frame in frames]
    assert all(b is not None for b in boxes)
    assert tracker.detector_calls == len(frames) and tracker.track_id == 0 and tracker.losses == 0
