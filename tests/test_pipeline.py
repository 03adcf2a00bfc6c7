"""The live pipeline driven directly: real video source, real tracker and filter, the model
replaced by the stand-in (fixed cost, well-formed outputs), a sink that keeps what it gets."""
from __future__ import annotations

import numpy as np
import pytest

from engines.stand_in import StandInPredictor
from realtime.capture import open_source
from realtime.filters import FilterSettings, SMPLXFilter
from realtime.pipeline import STAGES, Pipeline
from realtime.tracking import PersonTracker


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


def _run(media_dir, body_model, detector, predictor, filt=None, mesh_after_filter=False, max_frames=40):
    source = open_source(str(media_dir / "street_walk_960x540.mp4"), pace=False, loop=True)
    sink = Collect()
    tracker = PersonTracker(detector)
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


def test_filter_restarts_after_a_frame_without_the_person(media_dir, body_model, detector):
    """The frame after a miss starts a new track: the filter passes its input through unchanged,
    while the frames before it are smoothed (differ from the raw prediction)."""
    raw = []

    class Spy(StandInPredictor):
        def launch(self, image, boxes):
            pending = super().launch(image, boxes)
            return type(pending)(lambda: _keep(pending.result()))

    def _keep(preds):
        raw.append([p.person.params.copy() for p in preds])
        return preds

    pred = Spy(body_model, cost_ms=0.5, asynchronous=True, miss_calls={10})
    hand_mean = (body_model.hand_mean_left, body_model.hand_mean_right)
    _, results = _run(media_dir, body_model, detector, pred, SMPLXFilter(FilterSettings(), hand_mean), max_frames=20)
    assert len(results) == 20 and results[10].persons == []
    ids = [r.persons[0].track_id if r.persons else None for r in results]
    assert ids[9] != ids[11] and ids[11] == ids[19]  # a new identity after the miss
    for k in (11, 0):  # first frame of each track: passed through exactly
        np.testing.assert_array_equal(results[k].persons[0].params.body_pose, raw[k][0].body_pose)
    for k in (5, 15):  # inside a track: smoothed
        assert np.abs(results[k].persons[0].params.body_pose - raw[k][0].body_pose).max() > 1e-4


def test_mesh_after_filter_is_the_mesh_of_the_filtered_parameters(media_dir, body_model, detector):
    pred = StandInPredictor(body_model, cost_ms=0.5, asynchronous=False, with_mesh=True)
    hand_mean = (body_model.hand_mean_left, body_model.hand_mean_right)
    _, results = _run(media_dir, body_model, detector, pred, SMPLXFilter(FilterSettings(), hand_mean),
                      mesh_after_filter=True, max_frames=6)
    person = results[-1].persons[0]
    verts, joints = body_model.from_params(person.params.to_dict())
    np.testing.assert_allclose(person.vertices, verts, atol=1e-6)
    np.testing.assert_allclose(person.joints, joints, atol=1e-6)
