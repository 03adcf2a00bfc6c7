"""The live pipeline driven directly: real video source, real tracker and filter, the model
replaced by the stand-in (fixed cost, well-formed outputs), a sink that keeps what it gets."""
from __future__ import annotations

import numpy as np
import pytest

from engines.stand_in import StandInPredictor
from realtime.capture import open_source
from realtime.filters import FilterSettings, MultiPersonFilter
from realtime.pipeline import STAGES, Pipeline
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
    tracker = PersonTracker(detector, grace_s=grace_s, redetect_every=redetect_every)
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
