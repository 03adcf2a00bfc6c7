"""Person detector (mediapipe Pose, bundled model) on real photos and clips, plus box helpers."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from .helpers import media_file  # noqa: E402
from engines.detector import (  # noqa: E402
    INSTALL_HINT,
    DetectorUnavailable,
    PersonDetector,
    landmarks_box,
    missing_model_files,
)
from engines.geometry import iou_xywh, pad_and_clip_box  # noqa: E402


def load_image(name: str) -> np.ndarray:
    path = media_file(name)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"could not read {path}"
    return image


def load_clip(name: str) -> list:
    path = media_file(name)
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    assert frames, f"no frames decoded from {path}"
    return frames


@pytest.fixture(scope="module")
def static_detector():
    with PersonDetector(static=True) as det:
        yield det


def box_contains(box, x, y) -> bool:
    bx, by, bw, bh = (float(v) for v in box)
    return bx <= x <= bx + bw and by <= y <= by + bh


def assert_inside_image(box, image):
    h, w = image.shape[:2]
    x, y, bw, bh = (float(v) for v in box)
    assert bw > 0 and bh > 0
    assert x >= 0 and y >= 0, box
    assert x + bw <= w + 1e-3 and y + bh <= h + 1e-3, (box, (w, h))


def single(dets):
    assert len(dets) == 1, f"expected one person, got {dets}"
    det = dets[0]
    assert det.source == "mediapipe"
    assert det.bbox_xywh.dtype == np.float32 and det.bbox_xywh.shape == (4,)
    assert det.landmarks is not None and det.landmarks.shape == (33, 3)
    assert 0.5 <= det.score <= 1.0
    return det


def visible_landmarks(det, image, thr=0.5):
    h, w = image.shape[:2]
    lm = det.landmarks
    keep = (lm[:, 2] > thr) & (lm[:, 0] >= 0) & (lm[:, 0] <= w) & (lm[:, 1] >= 0) & (lm[:, 1] <= h)
    return lm[keep, :2]


# Points clearly on the person, read off the photos by eye (x, y in pixels).
SKIER_POINTS = [(370, 50), (285, 183), (480, 380), (360, 365)]  # hat top, left glove, boots
MPII_POINTS = [(830, 205), (665, 225), (895, 605), (930, 460), (830, 700)]  # head top, raised hand, hand, shirt, legs
ASTRONAUT_POINTS = [(220, 25), (70, 300), (200, 500), (330, 300)]  # hair top, suit both sides, suit bottom


@pytest.mark.parametrize("name, points", [
    ("coco_000785_skier.jpg", SKIER_POINTS),
    ("mpii_004645041.jpg", MPII_POINTS),
])
def test_full_body_person_is_boxed(static_detector, name, points):
    image = load_image(name)
    det = single(static_detector.detect(image))
    box = det.bbox_xywh
    assert_inside_image(box, image)
    assert box[3] > box[2], f"a standing person's box should be tall: {box}"
    vis = visible_landmarks(det, image)
    assert len(vis) >= 15
    centre = vis.mean(axis=0)
    assert box_contains(box, *centre)
    for x, y in vis:
        assert box_contains(box, x, y), (x, y, box)
    for x, y in points:
        assert box_contains(box, x, y), f"person point {(x, y)} outside box {box}"
    # Not the whole picture either: the person covers well under half of these images.
    h, w = image.shape[:2]
    assert box[2] * box[3] < 0.5 * w * h


def test_upper_body_box_stays_in_image(static_detector):
    image = load_image("astronaut.png")
    det = single(static_detector.detect(image))
    h, w = image.shape[:2]
    # Pose extrapolates the legs far below this upper-body portrait ...
    assert det.landmarks[:, 1].max() > h
    # ... but the box is clipped to the image, reaches its bottom (the torso goes on) and has headroom.
    box = det.bbox_xywh
    assert_inside_image(box, image)
    assert box[1] + box[3] > 0.95 * h
    eyes_y = det.landmarks[1:7, 1].min()
    assert box[1] < eyes_y - 60, "no headroom above the eyes"
    for x, y in ASTRONAUT_POINTS:
        assert box_contains(box, x, y), f"person point {(x, y)} outside box {box}"


def test_blank_and_empty_frames_give_no_detection(static_detector):
    assert static_detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert static_detector.detect(np.zeros((0, 0, 3), np.uint8)) == []
    assert static_detector.detect(None) == []


def test_grey_input_is_accepted_and_bad_dtype_rejected(static_detector):
    image = load_image("coco_000785_skier.jpg")
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    det = single(static_detector.detect(grey))
    assert box_contains(det.bbox_xywh, 370, 200)
    with pytest.raises(ValueError):
        static_detector.detect(image.astype(np.float32))


def test_tracking_mode_follows_a_panned_sequence():
    """A camera pan over the skier photo: found in every frame, box moves with the pan."""
    image = load_image("coco_000785_skier.jpg")
    crop_w, crop_h = 520, 400
    offsets = [(int(dx), int(dy)) for dx, dy in zip(np.linspace(0, 120, 10), np.linspace(0, 25, 10))]
    boxes = []
    with PersonDetector(static=False) as det:
        for dx, dy in offsets:
            frame = np.ascontiguousarray(image[dy:dy + crop_h, dx:dx + crop_w])
            found = det.detect(frame)
            assert len(found) == 1, f"person lost at pan offset {(dx, dy)}"
            assert_inside_image(found[0].bbox_xywh, frame)
            x, y, w, h = found[0].bbox_xywh
            boxes.append((x + dx, y + dy, w, h))  # back in photo coordinates
    boxes = np.array(boxes)
    # The person does not move in the photo, so the boxes agree once mapped back.
    for box in boxes[1:]:
        assert iou_xywh(box, boxes[0]) > 0.7, (box, boxes[0])


def test_tracking_mode_finds_walker_in_every_clip_frame():
    frames = load_clip("street_walk_960x540.mp4")
    with PersonDetector(static=False) as det:
        boxes = []
        for i, frame in enumerate(frames):
            found = det.detect(frame)
            assert len(found) == 1, f"nobody found in frame {i}"
            assert_inside_image(found[0].bbox_xywh, frame)
            boxes.append(found[0].bbox_xywh)
    for prev, cur in zip(boxes, boxes[1:]):
        assert iou_xywh(prev, cur) > 0.5, "the box jumped between consecutive frames"


def test_close_and_context_manager():
    det = PersonDetector(static=True)
    with det:
        pass
    with pytest.raises(RuntimeError):
        det.detect(np.full((64, 64, 3), 128, np.uint8))
    det.close()  # twice is fine


def test_missing_mediapipe_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` fail
    with pytest.raises(DetectorUnavailable, match="pip install mediapipe==0.10.21"):
        PersonDetector()


def test_mediapipe_without_model_files_is_reported(monkeypatch, tmp_path):
    fake = types.ModuleType("mediapipe")
    fake.__file__ = str(tmp_path / "__init__.py")
    fake.solutions = types.SimpleNamespace(pose=types.SimpleNamespace(Pose=None))
    monkeypatch.setitem(sys.modules, "mediapipe", fake)
    assert len(missing_model_files(tmp_path)) == 2
    with pytest.raises(DetectorUnavailable) as err:
        PersonDetector()
    assert INSTALL_HINT in str(err.value) and "pose_landmark_full.tflite" in str(err.value)


def test_newer_mediapipe_without_solutions_is_reported(monkeypatch, tmp_path):
    fake = types.ModuleType("mediapipe")
    fake.__file__ = str(tmp_path / "__init__.py")
    fake.__version__ = "1.2.2"
    monkeypatch.setitem(sys.modules, "mediapipe", fake)
    with pytest.raises(DetectorUnavailable, match="0.10.21"):
        PersonDetector()


def test_installed_mediapipe_has_its_pose_model():
    import mediapipe

    assert missing_model_files(Path(mediapipe.__file__).parent) == []


# --------------------------------------------------------------------------- helpers


def test_pad_and_clip_box_values():
    # 100 x 200 bounds: 10 % per side (10 px and 20 px), 4 % of 200 = 8 < 10.
    box = pad_and_clip_box(100, 100, 200, 300, (1000, 1000))
    np.testing.assert_allclose(box, [90, 80, 120, 240])
    # A thin box gets the minimum margin: 4 % of 200 = 8 px instead of 10 % of 10 = 1 px.
    box = pad_and_clip_box(100, 100, 110, 300, (1000, 1000))
    np.testing.assert_allclose(box, [92, 80, 26, 240])
    # Clipped at the image border.
    box = pad_and_clip_box(5, 5, 105, 205, (100, 150))
    np.testing.assert_allclose(box, [0, 0, 100, 150])
    assert pad_and_clip_box(-50, -50, -20, -20, (100, 100)) is None
    assert pad_and_clip_box(10, 10, 5, 20, (100, 100)) is None


def test_iou():
    assert iou_xywh([0, 0, 10, 10], [0, 0, 10, 10]) == pytest.approx(1.0)
    assert iou_xywh([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(50 / 150)
    assert iou_xywh([0, 0, 10, 10], [20, 20, 5, 5]) == 0.0
    assert iou_xywh([0, 0, 0, 10], [0, 0, 10, 10]) == 0.0


def standing_landmarks(cx=300.0, top=100.0, height=400.0, vis=1.0):
    """33 synthetic Pose landmarks of a person standing upright (x, y, visibility)."""
    s = height
    xy = {
        0: (0, 0.05), 1: (0.02, 0.03), 2: (0.03, 0.03), 3: (0.04, 0.03), 4: (-0.02, 0.03), 5: (-0.03, 0.03),
        6: (-0.04, 0.03), 7: (0.06, 0.04), 8: (-0.06, 0.04), 9: (0.02, 0.08), 10: (-0.02, 0.08),
        11: (0.12, 0.18), 12: (-0.12, 0.18), 13: (0.15, 0.35), 14: (-0.15, 0.35), 15: (0.16, 0.5),
        16: (-0.16, 0.5), 17: (0.17, 0.54), 18: (-0.17, 0.54), 19: (0.16, 0.55), 20: (-0.16, 0.55),
        21: (0.14, 0.53), 22: (-0.14, 0.53), 23: (0.08, 0.52), 24: (-0.08, 0.52), 25: (0.09, 0.72),
        26: (-0.09, 0.72), 27: (0.09, 0.92), 28: (-0.09, 0.92), 29: (0.08, 0.95), 30: (-0.08, 0.95),
        31: (0.12, 0.97), 32: (-0.12, 0.97),
    }
    lm = np.array([[cx + s * xy[i][0], top + s * xy[i][1], vis] for i in range(33)], np.float32)
    return lm


def test_landmarks_box_headroom_padding_and_visibility():
    lm = standing_landmarks()
    box = landmarks_box(lm, (1000, 1000))
    x, y, w, h = box
    lx, ly = lm[:, 0], lm[:, 1]
    # Headroom: well above the eyes (the landmarks stop there); padding below the feet.
    assert y < ly[1:7].min() - 0.1 * 400
    assert y + h > ly.max() + 0.05 * (ly.max() - ly.min())
    assert x < lx.min() and x + w > lx.max()
    # A hand with low visibility (occluded, hallucinated far out) is ignored ...
    far = lm.copy()
    far[16:23:2, 0] -= 150  # right wrist and hand landmarks far to the left, still in the image
    far[16:23:2, 2] = 0.05
    far_box = landmarks_box(far, (1000, 1000))
    assert far_box[0] >= box[0]
    for hx, hy in far[16:23:2, :2]:
        assert hx < far_box[0], "an invisible hand widened the box"
    np.testing.assert_allclose(far_box[[1, 3]], box[[1, 3]], atol=1e-3)
    # ... and so is a body whose legs leave the picture: the box ends at the border.
    small = landmarks_box(lm, (1000, 420))
    assert small[1] + small[3] == pytest.approx(420.0)
    # Too few visible landmarks: no box.
    assert landmarks_box(standing_landmarks(vis=0.1), (1000, 1000)) is None


def test_limb_leaving_the_picture_extends_box_to_border():
    lm = standing_landmarks()
    # Legs extrapolated below a 360-px image with low visibility; hips (y=308) visible.
    lm[25:, 2] = 0.1
    box = landmarks_box(lm, (1000, 360))
    assert box[1] + box[3] == pytest.approx(360.0)
    # Same legs inside a tall image but not visible: the box stops near the hips.
    box_tall = landmarks_box(lm, (1000, 1000))
    assert box_tall[1] + box_tall[3] < 0.8 * 400 + 100


