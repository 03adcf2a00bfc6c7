"""The tracker: detector on acquisition, loss and every N frames, projected joints in between,
identities that last through misses, crossings and short absences."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest

from engines.detection_schedule import DetectionSchedule
from engines.detector import Detection
from engines.geometry import box_from_joints, fraction_inside, iou_xywh
from engines.matching import assign, iou_matrix, match_by_iou
from engines.tracking import PersonTracker, TrackState

from .helpers import media_file

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
    """Returns the boxes it is given (one entry per call, the last one repeats) and counts calls.
    An entry is None (nobody), a box, or a list of boxes."""

    def __init__(self, boxes: List[Optional[list]]):
        self.boxes = boxes
        self.calls = 0

    def detect(self, image):
        entry = self.boxes[min(self.calls, len(self.boxes) - 1)]
        self.calls += 1
        if entry is None:
            return []
        boxes = entry if isinstance(entry[0], (list, tuple)) else [entry]
        return sorted((Detection(np.array(b, np.float32), 0.9) for b in boxes), key=lambda d: -d.area)


def box_joints(box) -> np.ndarray:
    """Standing joints that fill ``box`` (xywh)."""
    x, y, w, h = box
    return standing_joints(cx=x + w / 2.0, top=y + 0.05 * h, height=0.9 * h)


def tracking(detector, redetect_every: int = 0, background: bool = False, **tracker_args) -> DetectionSchedule:
    """A tracker fed by ``detector`` on the given schedule."""
    return DetectionSchedule(detector, PersonTracker(**tracker_args), redetect_every=redetect_every,
                             background=background)


class Clock:
    """Drives a tracker and its detection schedule frame by frame at ``fps``: ``step(joints_by_id)``
    observes the previous frame's predictions (None: the model gave nobody for that id) and returns
    this frame's targets; ``ids`` is what the tracker answered ({box index: id})."""

    def __init__(self, schedule: DetectionSchedule, fps: float = 30.0):
        self.schedule, self.tracker = schedule, schedule.tracker
        self.fps, self.frame, self.targets = fps, 0, []

    def step(self, predictions=None, root_by_id=None):
        t = self.frame / self.fps
        if self.targets:
            predictions = predictions or {}
            results = []
            for target in self.targets:
                joints = predictions.get(target.track_id, "same")
                if isinstance(joints, str):  # default: the joints where the target's box is
                    joints = box_joints(target.bbox_xywh)
                root = (root_by_id or {}).get(target.track_id, np.array([target.bbox_xywh[0] / 100.0, 0.0, 5.0]))
                results.append(None if joints is None else (joints, root))
            self.ids = self.tracker.observe(self.targets, results, t, (W, H))
        self.frame += 1
        self.targets = self.schedule.update(IMAGE, self.frame / self.fps)
        return self.targets


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
    clock = Clock(tracking(det))
    first = clock.step()
    assert [t.track_id for t in first] == [0] and first[0].source == "detector"
    for k in range(1, 8):
        targets = clock.step({0: standing_joints(cx=320.0 + 3 * k)})
        assert [t.track_id for t in targets] == [0] and targets[0].source == "joints"
        assert abs(targets[0].bbox_xywh[0] + targets[0].bbox_xywh[2] / 2 - (320.0 + 3 * k)) < 4
    assert det.calls == 1 and clock.tracker.losses == 0


def test_a_missed_prediction_keeps_the_id_when_the_detector_finds_the_person_again():
    det = FakeDetector([PERSON_BOX])
    clock = Clock(tracking(det, grace_s=1.0))
    clock.step()
    clock.step()
    targets = clock.step({0: None})  # the model gave nobody: lost, the detector runs
    assert [t.track_id for t in targets] == [0] and det.calls == 2
    assert clock.tracker.losses == 1


def test_gone_longer_than_the_grace_period_is_someone_new():
    det = FakeDetector([PERSON_BOX, None, None, None, None, None, PERSON_BOX])
    clock = Clock(tracking(det, grace_s=0.1), fps=30.0)  # 3 frames of grace
    clock.step()
    assert clock.step({0: None}) == []  # lost; nobody detected
    for _ in range(4):
        assert clock.step() == []
    targets = clock.step()
    assert [t.track_id for t in targets] == [1]  # ids are never reused


def test_person_walking_out_of_the_picture_is_lost_and_someone_entering_is_new():
    det = FakeDetector([PERSON_BOX, None, [20.0, 40.0, 100.0, 380.0]])
    clock = Clock(tracking(det, grace_s=0.0))
    clock.step()
    for cx in range(340, 660, 20):
        targets = clock.step({0: standing_joints(cx=float(cx))})
        assert [t.track_id for t in targets] == [0]
    assert clock.step({0: standing_joints(cx=700.0)}) == []  # mostly outside: lost
    assert "outside" in clock.tracker.last_loss_reason
    targets = clock.step()  # someone enters on the left
    assert [t.track_id for t in targets] == [1]


def test_implausible_jump_is_a_loss():
    det = FakeDetector([PERSON_BOX, None])
    clock = Clock(tracking(det, min_iou=0.3))
    clock.step()
    clock.step({0: standing_joints()})
    assert clock.step({0: standing_joints(cx=480.0)}) == []  # 160 px in one frame
    assert "jumped" in clock.tracker.last_loss_reason


@pytest.mark.parametrize("bad", ["nan", "tiny"])
def test_bad_joints_are_a_loss(bad):
    det = FakeDetector([PERSON_BOX, None])
    clock = Clock(tracking(det, min_box_size=24))
    clock.step()
    joints = standing_joints()
    if bad == "nan":
        joints[5] = np.nan
    else:
        joints = standing_joints(height=10.0)
    assert clock.step({0: joints}) == []
    assert clock.tracker.losses == 1


def test_small_detections_are_rejected():
    det = FakeDetector([[100.0, 100.0, 10.0, 30.0], PERSON_BOX])
    clock = Clock(tracking(det, min_box_size=24))
    assert clock.step() == []
    assert [t.track_id for t in clock.step()] == [0]


def test_periodic_redetection_keeps_the_id_and_refreshes_the_box():
    det = FakeDetector([PERSON_BOX])
    clock = Clock(tracking(det, redetect_every=3))
    sources = [t.source for k in range(7) for t in clock.step({0: standing_joints()} if k else None)]
    assert det.calls == 3 and sources.count("detector") == 3
    assert {t.track_id for t in clock.targets} == {0} and clock.tracker.losses == 0


def test_a_ghost_the_detector_never_confirms_is_dropped():
    """Joints alone keep a track alive; two detector passes that do not see it end it."""
    det = FakeDetector([PERSON_BOX, None])
    clock = Clock(tracking(det, redetect_every=2, confirm_passes=2))
    clock.step()
    alive = [len(clock.step({0: standing_joints()})) for _ in range(6)]
    assert alive[:2] == [1, 1] and alive[-1] == 0
    assert "detector passes" in clock.tracker.last_loss_reason


def test_two_people_get_two_ids_largest_first_and_max_people_bounds_the_work():
    big, small = [300.0, 20.0, 120.0, 420.0], [40.0, 100.0, 80.0, 280.0]
    det = FakeDetector([[small, big, [500.0, 50.0, 60.0, 200.0]]])
    clock = Clock(tracking(det, max_people=2, redetect_every=0))
    targets = clock.step()
    assert [t.track_id for t in targets] == [0, 1]
    assert iou_xywh(targets[0].bbox_xywh, big) > 0.99 and iou_xywh(targets[1].bbox_xywh, small) > 0.99


def test_crossing_people_keep_their_ids():
    """Two people walk past each other; their joints carry the ids through the crossing."""
    det = FakeDetector([[[100.0, 40.0, 110.0, 400.0], [430.0, 40.0, 110.0, 400.0]]])
    clock = Clock(tracking(det, max_people=2))
    targets = clock.step()
    left_id = [t.track_id for t in targets if t.bbox_xywh[0] < 300][0]
    right_id = [t.track_id for t in targets if t.bbox_xywh[0] > 300][0]
    roots = {left_id: np.array([-1.0, 0.0, 4.0]), right_id: np.array([1.0, 0.0, 6.0])}  # one walks in front
    for k in range(1, 21):
        a, b = 155.0 + 15 * k, 485.0 - 15 * k
        roots = {left_id: roots[left_id] + [0.1, 0, 0], right_id: roots[right_id] - [0.1, 0, 0]}
        targets = clock.step({left_id: standing_joints(cx=a), right_id: standing_joints(cx=b)}, roots)
    final = {t.track_id: t.bbox_xywh[0] + t.bbox_xywh[2] / 2 for t in targets}
    assert set(final) == {left_id, right_id}
    assert final[left_id] > 400 and final[right_id] < 250  # each id stayed with its person


def test_a_hidden_person_who_moved_is_relinked_by_root_distance():
    """Lost, then found somewhere the box cannot be matched: the 3-D root gives the id back."""
    det = FakeDetector([PERSON_BOX, None, None, [420.0, 20.0, 110.0, 400.0]])
    clock = Clock(tracking(det, grace_s=1.0, relink_m=0.5))
    clock.step()
    root = np.array([0.1, 0.2, 4.0])
    clock.step({0: standing_joints()}, {0: root})
    assert clock.step({0: None}) == []  # hidden
    assert clock.step() == []
    targets = clock.step()  # found 160 px away: a new track for now
    assert [t.track_id for t in targets] == [1]
    clock.step({1: standing_joints(cx=475.0)}, {1: root + np.array([0.3, 0.0, 0.0])})
    assert clock.ids == {0: 0} and clock.tracker.relinks == 1  # box 0's person is 0 again
    assert [t.track_id for t in clock.targets] == [0]


def test_background_passes_do_not_stall_frames_and_bring_newcomers():
    """Live: a periodic pass runs on the worker thread; frames go on meanwhile (followed by their
    joints), and the newcomer it finds joins a few frames later with a new id."""
    import time

    class SlowDetector(FakeDetector):
        def detect(self, image):
            time.sleep(0.15)
            return super().detect(image)

    det = SlowDetector([PERSON_BOX, [PERSON_BOX, [20.0, 40.0, 100.0, 380.0]]])
    tracker = tracking(det, max_people=2, redetect_every=2, background=True)
    try:
        clock = Clock(tracker)
        clock.step()  # nobody yet: this pass waits
        times, ids = [], []
        for _ in range(12):
            t0 = time.perf_counter()
            targets = clock.step({0: standing_joints()})
            times.append(time.perf_counter() - t0)
            ids.append(sorted(t.track_id for t in targets))
            time.sleep(0.03)
        assert max(times) < 0.1  # no frame waited for the 150 ms detector
        assert ids[0] == [0] and ids[-1] == [0, 1]  # the newcomer arrived from a background pass
    finally:
        tracker.close()


def test_match_by_iou_is_one_to_one_and_best_first():
    a = [np.array([0.0, 0, 10, 10]), np.array([5.0, 0, 10, 10])]
    b = [np.array([5.0, 0, 10, 10]), np.array([0.0, 0, 10, 10]), np.array([100.0, 0, 10, 10])]
    got = sorted((i, j) for i, j, _ in match_by_iou(a, b, 0.3))
    assert got == [(0, 1), (1, 0)]


# --------------------------------------------------------------------------- matching (pure)


def _interval_boxes(*spans):
    """xywh boxes of equal height from (x1, x2) spans: their IoU is the overlap of the spans."""
    return [np.array([a, 0.0, b - a, 10.0]) for a, b in spans]


def test_optimal_assignment_beats_greedy_on_a_constructed_case():
    """Tracks A0, A1 and detections B0, B1: A0-B0 is the single best pair (0.67), but taking it
    leaves A1 nothing above the threshold; A0-B1 (0.43) and A1-B0 (0.54) keep both people."""
    tracks = _interval_boxes((0, 10), (5, 15))
    found = _interval_boxes((2, 12), (-4, 6))
    scores = iou_matrix(tracks, found)
    np.testing.assert_allclose(scores, [[8 / 12, 6 / 14], [7 / 13, 1 / 19]])
    greedy_first = max((scores[i, j], i, j) for i in range(2) for j in range(2))
    assert greedy_first[1:] == (0, 0) and scores[1, 1] < 0.3  # greedy would match only A0-B0
    got = match_by_iou(tracks, found, 0.3)
    assert sorted((i, j) for i, j, _ in got) == [(0, 1), (1, 0)]
    assert sum(iou for _, _, iou in got) == pytest.approx(6 / 14 + 7 / 13)  # more than greedy's 8 / 12
    assert [iou for _, _, iou in got] == sorted((iou for _, _, iou in got), reverse=True)  # best first


def test_assign_keeps_only_admissible_pairs_of_any_shape():
    assert assign(np.zeros((0, 3)), 0.3) == [] and assign(np.zeros((2, 0)), 0.3) == []
    # Three tracks, one detection: the best admissible track gets it; nobody else is matched.
    assert assign(np.array([[0.2], [0.9], [0.5]]), 0.3) == [(1, 0, 0.9)]
    # Nothing above the threshold: no match at all (the solver's forced pairs are dropped).
    assert assign(np.array([[0.1, 0.2], [0.25, 0.0]]), 0.3) == []
    with pytest.raises(ValueError):
        assign(np.zeros(3), 0.3)


# --------------------------------------------------------------------------- track states (no detector)


def _dets(*boxes):
    return [Detection(np.array(b, np.float32), 0.9) for b in boxes]


def test_a_lost_track_comes_back_within_the_grace_period_and_is_removed_after_it():
    tracker = PersonTracker(grace_s=0.5)
    [target] = tracker.step(0.0, _dets(PERSON_BOX))
    track = tracker._tracked[target.track_id]
    assert track.state is TrackState.TRACKED and not tracker.needs_detection
    assert tracker.step(0.1, []) == []  # not detected, no joints: lost
    assert track.state is TrackState.LOST and tracker.needs_detection and tracker.alive_ids == [0]
    [back] = tracker.step(0.4, _dets(PERSON_BOX))  # within the grace period: the same id
    assert back.track_id == 0 and track.state is TrackState.TRACKED and tracker.losses == 1
    assert tracker.step(0.5, []) == [] and track.state is TrackState.LOST
    tracker.step(0.9, None)  # 0.4 s lost: still kept
    assert track.state is TrackState.LOST and tracker.alive_ids == [0]
    tracker.step(1.1, None)  # 0.6 s lost: removed, and its id is never given again
    assert track.state is TrackState.REMOVED and tracker.alive_ids == []
    [new] = tracker.step(1.2, _dets(PERSON_BOX))
    assert new.track_id == 1


def test_crossing_people_keep_their_ids_with_detections_alone():
    """Two people walk through each other, the detector sees both every frame and no joints come:
    the matching of where each was going keeps the ids (and never swaps them)."""
    tracker = PersonTracker(max_people=2)
    ids_left_mover = set()
    for k in range(30):
        a = [100.0 + 10 * k, 40.0, 100.0, 300.0]   # walks right
        b = [420.0 - 12 * k, 60.0, 90.0, 270.0]    # walks left, a little farther away
        targets = tracker.step(k / 30.0, _dets(a, b))
        assert len(targets) == 2
        mover = min(targets, key=lambda t: abs(t.bbox_xywh[0] - a[0]) + abs(t.bbox_xywh[1] - a[1]))
        ids_left_mover.add(mover.track_id)
    assert len(ids_left_mover) == 1 and tracker.losses == 0 and tracker.alive_ids == [0, 1]


def test_identify_answers_box_index_to_id_and_leaves_people_alone():
    """The tracker names boxes, it does not write into persons: {box index: id} for boxes with a person."""
    from engines.types import PARAM_SHAPES, PREDICTED_KEYS, Person, SMPLXParams

    tracker = PersonTracker(max_people=2)
    targets = tracker.step(0.0, _dets([40.0, 60.0, 100.0, 300.0], PERSON_BOX))
    assert [t.track_id for t in targets] == [0, 1]
    z = np.zeros(4)
    params = SMPLXParams.from_dict({k: np.zeros(PARAM_SHAPES[k]) for k in PREDICTED_KEYS})
    person = Person(None, params, z, z, z[:2], z[:2], joints=np.zeros((144, 3)),
                    joints_2d=box_joints(targets[1].bbox_xywh))
    ids = tracker.identify(targets, {1: person}, 0.03, (W, H))
    assert ids == {1: 1} and person.track_id is None
    assert tracker.track_ids == [1]  # box 0 had nobody: its track is lost


def test_empty_frame_is_skipped_without_a_loss():
    det = FakeDetector([PERSON_BOX])
    schedule = tracking(det)
    schedule.update(IMAGE, 0.0)
    assert schedule.update(None, 0.03) == []
    assert schedule.update(np.zeros((0, 0, 3), np.uint8), 0.06) == []
    assert schedule.tracker.track_ids == [0] and schedule.tracker.losses == 0 and det.calls == 1


def test_reset_and_argument_checks():
    det = FakeDetector([PERSON_BOX])
    schedule = tracking(det)
    schedule.update(IMAGE, 0.0)
    schedule.tracker.reset()
    tracker = schedule.tracker
    assert tracker.track_ids == [] and tracker.alive_ids == [] and tracker.losses == 0
    assert tracker.needs_detection
    with pytest.raises(ValueError):
        DetectionSchedule(det, PersonTracker(), redetect_every=-1)
    for bad in ({"max_people": 0}, {"grace_s": -1.0}):
        with pytest.raises(ValueError):
            PersonTracker(**bad)


# --------------------------------------------------------------------------- with the real detector


def _media(name: str) -> Path:
    return media_file(name)


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
    """Without joints (no prediction) the tracker re-detects every frame and keeps the id by overlap."""
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
        tracker = tracking(det)
        ids = []
        for k, frame in enumerate(frames):
            targets = tracker.update(frame, k / 5.0)
            ids.append([t.track_id for t in targets])
            tracker.identify(targets, {}, k / 5.0, (frame.shape[1], frame.shape[0]))
    assert ids == [[0]] * len(frames)
    assert tracker.detector_calls == len(frames)


@pytest.mark.parametrize("name,at_least,at_most", [
    ("coco_197388.jpg", 3, 5),          # five skiers, overlapping
    ("humanart_acrobatics.jpg", 2, 2),  # two acrobats, stacked
    ("posetrack_1280x720.mp4", 2, 3),   # three players, first frame
    ("coco_000785_skier.jpg", 1, 1),
    ("astronaut.png", 1, 1),
    ("mpii_004645041.jpg", 1, 1),       # one man beside a truck: no person in the engine bay
])
def test_real_detector_finds_several_people(name, at_least, at_most):
    cv2 = pytest.importorskip("cv2")
    from engines.detector import PersonDetector

    if name.endswith(".mp4"):
        cap = cv2.VideoCapture(str(_media(name)))
        ok, image = cap.read()
        cap.release()
        assert ok
    else:
        image = cv2.imread(str(_media(name)))
    with PersonDetector(max_people=8) as det:
        found = det.detect(image)
    assert at_least <= len(found) <= at_most, [d.bbox_xywh for d in found]
    areas = [d.area for d in found]
    assert areas == sorted(areas, reverse=True)  # largest first
    for i, a in enumerate(found):  # distinct people
        for b in found[i + 1:]:
            assert iou_xywh(a.bbox_xywh, b.bbox_xywh) < 0.5


def test_real_detector_with_max_people_one_is_the_largest_of_several():
    cv2 = pytest.importorskip("cv2")
    from engines.detector import PersonDetector

    image = cv2.imread(str(_media("coco_197388.jpg")))
    with PersonDetector(max_people=8) as many:
        everyone = many.detect(image)
    with PersonDetector(static=True, max_people=1) as one:
        single = one.detect(image)
    assert len(single) == 1 and iou_xywh(single[0].bbox_xywh, everyone[0].bbox_xywh) > 0.9
