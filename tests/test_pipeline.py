"""The live pipeline driven directly: real video source, real tracker and filter, the model
replaced by the stand-in (fixed cost, well-formed outputs), a sink that keeps what it gets."""
from __future__ import annotations

import numpy as np
import pytest

from engines.stand_in import StandInPredictor
from realtime.capture import open_source
from realtime.filters import FilterSettings, MultiPersonFilter
from realtime.pipeline import STAGES, Pipeline
from engines.detection_schedule import DetectionSchedule
from engines.tracking import PersonTracker


class Collect:
    def __init__(self):
        self.results = []
        self.closed = False

    def send(self, result):
        self.results.append(result)

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def detector():
    from engines.detector import PersonDetector

    det = PersonDetector(static=False)
    yield det
    det.close()


def _run(media_dir, body_model, detector, predictor, filt=None, mesh_after_filter=False, max_frames=40,
         source=None, grace_s=1.0, redetect_every=0):
    source = source or open_source(str(media_dir / "street_walk_960x540.mp4"), pace=False, loop=True)
    sink = Collect()
    tracker = DetectionSchedule(detector, PersonTracker(grace_s=grace_s), redetect_every=redetect_every)
    pipe = Pipeline(source, predictor, tracker, filt, [sink], mesh_after_filter=mesh_after_filter)
    pipe.start(max_frames)
    pipe.wait(duration=60)
    pipe.stop()
    assert pipe.error is None, pipe.error
    assert sink.closed
    return pipe, sink.results


@pytest.mark.parametrize("asynchronous", [False, True])
def test_every_frame_in_order_with_stage_times(media_dir, body_model, detector, asynchronous):
    pred = StandInPredictor(body_model, cost_ms=2.0, asynchronous=asynchronous)
    pipe, results = _run(media_dir, body_model, detector, pred, max_frames=30)
    ids = [r.frame_id for r in results]
    assert len(ids) == 30 and ids == sorted(ids) and len(set(ids)) == 30  # lossless file reading: none dropped
    assert all(len(r.persons) == 1 for r in results)
    assert len({r.persons[0].track_id for r in results}) == 1  # one person, one id: joints were followed
    assert pipe.tracker.detector_calls == 1
    for r in results:
        stamps = [r.t_capture_ns] + [r.t_stages[s] for s in STAGES]
        assert stamps == sorted(stamps), r.t_stages
        assert (r.t_stages["infer"] - r.t_stages["track"]) / 1e6 >= 2.0  # the stand-in's cost is inside "infer"
    summary = pipe.summary()
    assert summary["frames_out"] == 30 and summary["frames_with_person"] == 30


class _Spy(StandInPredictor):
    """The stand-in, keeping what it predicted (before filtering) per call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.raw = []

    def launch(self, image, boxes):
        pending = super().launch(image, boxes)

        def finish():
            preds = pending.result()
            self.raw.append([p.person.params.copy() for p in preds])
            return preds

        return type(pending)(finish)


def _hand_mean(body_model):
    return (body_model.hand_mean_left, body_model.hand_mean_right)


def test_a_missed_frame_keeps_the_identity_and_the_filter_state(media_dir, body_model, detector):
    """One frame without a prediction: the detector finds the person again within the grace
    period, so the id and the smoothing go on (the frame after the miss is still smoothed)."""
    pred = _Spy(body_model, cost_ms=0.5, asynchronous=True, miss_calls={10})
    _, results = _run(media_dir, body_model, detector, pred, MultiPersonFilter(FilterSettings(), _hand_mean(body_model)),
                      max_frames=20)
    assert len(results) == 20 and results[10].persons == []
    ids = [r.persons[0].track_id if r.persons else None for r in results]
    assert ids[9] == ids[11] == ids[19] == ids[0]
    np.testing.assert_array_equal(results[0].persons[0].params.body_pose, pred.raw[0][0].body_pose)  # first: as is
    for k in (5, 11, 15):  # later frames are smoothed, the one after the miss too
        assert np.abs(results[k].persons[0].params.body_pose - pred.raw[k][0].body_pose).max() > 1e-4


def test_a_person_gone_longer_than_the_grace_period_comes_back_as_someone_new(tmp_path, media_dir, body_model):
    """Frames 0-5 show the skier, 6-17 a blank wall (1.2 s at 10 fps), 18-23 the skier again.
    The joints alone would follow a ghost on the wall (the model always predicts a body); the
    detector, every 2 frames, does not confirm it, so it is dropped; with a 0.5 s grace the
    returning person gets a new id and a fresh filter."""
    import cv2

    from realtime.capture import ImageFolderSource

    img = cv2.imread(str(media_dir / "coco_000785_skier.jpg"))
    blank = np.full_like(img, 200)
    for k in range(24):
        cv2.imwrite(str(tmp_path / f"{k:03d}.png"), blank if 6 <= k < 18 else img)
    from engines.detector import PersonDetector

    pred = _Spy(body_model, cost_ms=0.5, asynchronous=False)
    source = ImageFolderSource(tmp_path, fps=10.0, pace=False)
    with PersonDetector(static=False) as detector:  # a new video: a detector without earlier frames
        _, results = _run(media_dir, body_model, detector, pred, MultiPersonFilter(FilterSettings(), _hand_mean(body_model)),
                          max_frames=24, source=source, grace_s=0.5, redetect_every=2)
    assert len(results) == 24
    assert all(not r.persons for r in results[10:18])  # the ghost lasts at most two detector passes
    first, second = results[5].persons[0].track_id, results[18].persons[0].track_id
    assert all(r.persons[0].track_id == first for r in results[:6])
    assert second != first and all(r.persons[0].track_id == second for r in results[18:])
    k = sum(1 for r in results[:18] if r.persons)  # stand-in calls before frame 18 (one per frame with a box)
    np.testing.assert_array_equal(results[18].persons[0].params.body_pose, pred.raw[k][0].body_pose)  # fresh filter


def test_mesh_after_filter_is_the_mesh_of_the_filtered_parameters(media_dir, body_model, detector):
    pred = StandInPredictor(body_model, cost_ms=0.5, asynchronous=False, with_mesh=True)
    hand_mean = (body_model.hand_mean_left, body_model.hand_mean_right)
    _, results = _run(media_dir, body_model, detector, pred, MultiPersonFilter(FilterSettings(), hand_mean),
                      mesh_after_filter=True, max_frames=6)
    person = results[-1].persons[0]
    verts, joints = body_model.from_params(person.params.to_dict())
    np.testing.assert_allclose(person.vertices, verts, atol=1e-6)
    np.testing.assert_allclose(person.joints, joints, atol=1e-6)


def _crossing_clip(path, media_dir, frames: int = 48):
    """Two real people (the skier photo's person, and the same mirrored and smaller: further
    away) walk past each other on a plain background at 15 fps; the near one hides the far one
    for a few frames in the middle."""
    import cv2

    img = cv2.imread(str(media_dir / "coco_000785_skier.jpg"))
    near = img[10:425, 255:520]
    far = cv2.resize(near[:, ::-1], None, fx=0.8, fy=0.8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (960, 540))
    for k in range(frames):
        canvas = np.full((540, 960, 3), 235, np.uint8)
        xf = int(700 - 11 * k)  # far person: right to left
        xn = int(40 + 12 * k)   # near person: left to right, drawn last (in front)
        for patch, x, y in ((far, xf, 60), (near, xn, 100)):
            x0, x1 = max(x, 0), min(x + patch.shape[1], 960)
            if x1 > x0:
                canvas[y:y + patch.shape[0], x0:x1] = patch[:, x0 - x:x1 - x]
        writer.write(canvas)
    writer.release()
    return path


@pytest.mark.slow
def test_two_people_crossing_keep_their_ids(tmp_path, media_dir, body_model):
    """Real detector, real frames: after the crossing, the person who started on the left (near)
    is on the right with the same id, and the far person keeps theirs after being hidden."""
    from engines.detector import PersonDetector

    clip = _crossing_clip(tmp_path / "cross.avi", media_dir)
    sink = Collect()
    pred = StandInPredictor(body_model, cost_ms=0.5, asynchronous=False)
    with PersonDetector(max_people=2) as detector:
        tracker = DetectionSchedule(detector, PersonTracker(max_people=2, grace_s=1.5), redetect_every=3)
        pipe = Pipeline(open_source(str(clip), pace=False), pred, tracker, None, [sink])
        pipe.start()
        pipe.wait(duration=120)
        pipe.stop()
    assert pipe.error is None
    results = sink.results
    assert len(results) == 48

    def centre(p):
        return p.bbox_detector[0] + p.bbox_detector[2] / 2

    start = {p.track_id: centre(p) for p in results[1].persons}
    end = {p.track_id: centre(p) for p in results[-1].persons}
    assert len(start) == 2 and len(end) == 2, (start, end)
    near_id = min(start, key=start.get)   # starts on the left
    far_id = max(start, key=start.get)
    assert set(end) == {near_id, far_id}  # the same two ids at the end: nobody became someone new
    assert end[near_id] > end[far_id]     # and each id went where its person went
    seen = {p.track_id for r in results for p in r.persons}
    assert seen == {near_id, far_id}, seen


def test_status_line_fits_the_terminal_and_never_shows_nan(media_dir, body_model, detector):
    pred = StandInPredictor(body_model, cost_ms=0.5, asynchronous=False)
    source = open_source(str(media_dir / "street_walk_960x540.mp4"), pace=False, loop=True)
    pipe = Pipeline(source, pred, DetectionSchedule(detector, PersonTracker()), None, [])
    first = pipe.status_line(80)
    assert first.startswith("waiting for the first frame") and "nan" not in first
    pipe.start(10)
    pipe.wait(duration=60)
    pipe.stop()
    short, wide = pipe.status_line(80), pipe.status_line(200)
    assert len(short) <= 80 and "1 person" in short and "nan" not in short.lower()
    assert len(wide) > len(short) and "infer" in wide and "detector" in wide
