"""Several streams on one predictor (`mocap live` with several --source values): real video files,
real detectors and trackers, real ZMQ sockets on 127.0.0.1; the network replaced by the 2 ms
stand-in (which counts its calls) or, end to end, a random-weight S32 through the CLI."""
from __future__ import annotations

import time

import pytest

from engines.detection_schedule import DetectionSchedule
from engines.detector import PersonDetector
from engines.errors import UserError
from engines.stand_in import StandInPredictor
from realtime.capture import open_source
from realtime.multistream import MultiPipeline, StreamLane, stream_specs
from realtime.pipeline import Pipeline
from realtime.sinks.targets import StreamTargets
from realtime.sinks.zmq_pub import ZMQSink
from engines.tracking import PersonTracker
from tests.test_live import ZmqCollector, _free_tcp_endpoint


class CountingStandIn(StandInPredictor):
    """The stand-in, recording how many frames each batched call carried."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.frames_per_call = []
        self.single_calls = 0

    def launch(self, image_bgr, bboxes):
        self.single_calls += 1
        return super().launch(image_bgr, bboxes)

    def launch_many(self, frames):
        self.frames_per_call.append(len(frames))
        return super().launch_many(frames)


def _lane(name, source, max_people, sinks):
    detector = PersonDetector(static=False, max_people=max_people)
    tracker = DetectionSchedule(detector, PersonTracker(max_people=max_people), redetect_every=10)
    return StreamLane(name, Pipeline(source, None, tracker, None, sinks)), detector


def _drive(predictor, lanes, max_frames, timeout=90):
    for lane in lanes:
        if lane.pipe is not None:
            lane.pipe.predictor = predictor
    multi = MultiPipeline(predictor, lanes).start(max_frames)
    multi.wait(duration=timeout)
    multi.stop()
    assert multi.error is None, multi.error
    return multi


@pytest.mark.parametrize("asynchronous", [False, True])
def test_two_streams_own_people_own_ids_own_zmq_one_call_per_round(media_dir, body_model, asynchronous):
    endpoints = [_free_tcp_endpoint(), _free_tcp_endpoint()]
    subs = [ZmqCollector(e) for e in endpoints]
    sinks = [ZMQSink(e) for e in endpoints]
    for s in subs:
        s.start()
    time.sleep(0.3)  # let the subscribers connect before the first frame
    walk = open_source(str(media_dir / "street_walk_960x540.mp4"), pace=False, loop=True)
    players = open_source(str(media_dir / "posetrack_1280x720.mp4"), pace=False, loop=True)
    (a, det_a), (b, det_b) = _lane("walk", walk, 1, [sinks[0]]), _lane("players", players, 3, [sinks[1]])
    pred = CountingStandIn(body_model, cost_ms=2.0, asynchronous=asynchronous)
    try:
        multi = _drive(pred, [a, b], max_frames=20)
        time.sleep(0.5)
        got = [list(s.messages) for s in subs]
    finally:
        for s in subs:
            s.close()
        det_a.close()
        det_b.close()
    # each endpoint carries its own stream: its own frame size, its own people, its own ids
    assert got[0] and got[1]
    assert {tuple(m["image_size"]) for m in got[0]} == {(960, 540)}
    assert {tuple(m["image_size"]) for m in got[1]} == {(1280, 720)}
    ids_walk = {p["track_id"] for m in got[0] for p in m["persons"]}
    ids_players = [[p["track_id"] for p in m["persons"]] for m in got[1]]
    assert len(ids_walk) == 1  # one walker, one id, kept by its own tracker
    assert max(len(ids) for ids in ids_players) >= 2 and all(len(ids) == len(set(ids)) for ids in ids_players)
    assert a.pipe.stats.frames_out == 20 and b.pipe.stats.frames_out == 20
    # one batched call per round: no single-frame calls, every call covers the streams that had a frame
    # (a stream whose next frame is still decoding is left for the next round, never waited for)
    s = multi.summary()
    assert pred.single_calls == 0
    assert len(pred.frames_per_call) == pred.calls <= s["rounds"]
    assert sum(pred.frames_per_call) == a.pipe.stats.frames_with_person + b.pipe.stats.frames_with_person
    assert max(pred.frames_per_call) == 2 and pred.calls < sum(pred.frames_per_call), pred.frames_per_call
    assert s["crops_per_call_max"] >= 3  # the walker and at least two players in one forward


def test_a_failing_stream_stops_alone(tmp_path, media_dir, body_model, capsys):
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)  # a header, then garbage
    good = open_source(str(media_dir / "street_walk_960x540.mp4"), pace=False, loop=True)
    bad = open_source(str(corrupt), pace=False)
    (a, det_a), (b, det_b) = _lane("good", good, 1, []), _lane("broken", bad, 1, [])
    pred = CountingStandIn(body_model, cost_ms=2.0)
    try:
        multi = _drive(pred, [a, b], max_frames=15)
    finally:
        det_a.close()
        det_b.close()
    assert a.problem is None and a.pipe.stats.frames_out == 15
    assert b.problem and "\n" not in b.problem and b.pipe.stats.frames_out == 0
    assert "stream broken stopped" in capsys.readouterr().err
    assert [e.get("problem") for e in multi.summary()["streams"]] == [None, b.problem]


def test_stream_specs_per_source_rule():
    base = StreamTargets()
    specs = stream_specs(["a.mp4", "b.mp4"], base, None, None, None)
    assert [s.streams.osc for s in specs] == [["127.0.0.1:39539"], ["127.0.0.1:39540"]]
    assert [s.streams.zmq for s in specs] == ["tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556"]
    specs = stream_specs(["a.mp4", "b.mp4"], base, ["none"], ["tcp://127.0.0.1:6000", "none"], ["r1", "r2"])
    assert [s.streams.osc for s in specs] == [["none"], ["none"]]
    assert [s.streams.zmq for s in specs] == ["tcp://127.0.0.1:6000", "none"]
    assert [str(s.record) for s in specs] == ["r1", "r2"]
    with pytest.raises(UserError, match="--osc given 3 times for 2 --source"):
        stream_specs(["a", "b"], base, ["h:1", "h:2", "h:3"], None, None)
    with pytest.raises(UserError, match="--record given 1 times"):
        stream_specs(["a", "b"], base, None, None, ["r"])
    with pytest.raises(UserError, match="streams 1 and 2 both use --zmq"):
        stream_specs(["a", "b"], base, None, ["tcp://127.0.0.1:6000", "tcp://127.0.0.1:6000"], None)


@pytest.mark.slow
def test_cli_several_sources_one_missing_one_corrupt(tmp_path, media_dir, s32_ckpt, smplx_dir, capsys):
    """`mocap live` with four --source values (the real network, random weights): the missing and the
    corrupt file stop with one line each; the two good videos run to --max-frames, each on its own
    ZMQ endpoint and into its own recording."""
    import json

    from realtime.cli import main

    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"not a video at all" * 100)
    endpoints = [_free_tcp_endpoint(), _free_tcp_endpoint()]
    subs = [ZmqCollector(e) for e in endpoints]
    for sub in subs:
        sub.start()
    time.sleep(0.3)
    try:
        code = main(["live", "--source", str(media_dir / "street_walk_960x540.mp4"), "--source", str(tmp_path / "gone.mp4"),
                     "--source", str(corrupt), "--source", str(media_dir / "posetrack_1280x720.mp4"),
                     "--no-pace", "--max-frames", "4", "--viewer", "none", "--osc", "none",
                     "--zmq", endpoints[0], "--zmq", "none", "--zmq", "none", "--zmq", endpoints[1],
                     "--record", str(tmp_path / "t1"), "--record", str(tmp_path / "t2"),
                     "--record", str(tmp_path / "t3"), "--record", str(tmp_path / "t4"),
                     "--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir), "--engine", "torch",
                     "--summary-json", str(tmp_path / "summary.json")])
        time.sleep(0.3)
        messages = [list(sub.messages) for sub in subs]
    finally:
        for sub in subs:
            sub.close()
    out = capsys.readouterr()
    assert code == 1  # two streams stopped on a problem: the exit code says so
    assert "gone.mp4) not started: input not found" in out.err
    assert "broken.mp4" in out.out and "stopped:" in out.out
    assert len(messages[0]) == 4 and {tuple(m["image_size"]) for m in messages[0]} == {(960, 540)}
    assert len(messages[1]) == 4 and {tuple(m["image_size"]) for m in messages[1]} == {(1280, 720)}
    assert (tmp_path / "t1").is_dir() and (tmp_path / "t4").is_dir()
    assert not (tmp_path / "t2").exists() and not (tmp_path / "t3").exists()  # nothing left for a failed stream
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["frames_out"] for s in summary["streams"] if "frames_out" in s][:1] == [4]
    assert ["problem" in s for s in summary["streams"]] == [False, True, True, False]
    assert summary["streams"][3]["frames_out"] == 4


@pytest.mark.parametrize("device_path", [False, True])
def test_launch_many_equals_each_frame_alone(media_dir, s32_net, body_model, device_path):
    """The real network (random weights): one batched call over two frames of different sizes gives
    what a call per frame gives, person for person (the CPU path and the device path)."""
    import cv2
    import numpy as np

    from engines.backends.torch_backend import TorchEngine
    from engines.inference import Predictor

    pred = Predictor(TorchEngine(s32_net), body_model, with_mesh=False, device_path=device_path)
    skier = cv2.imread(str(media_dir / "coco_000785_skier.jpg"))
    street = cv2.imread(str(media_dir / "mpii_004645041.jpg"))
    frames = [(skier, [(280.0, 44.0, 220.0, 348.0)]), (street, []),
              (street, [(500.0, 100.0, 300.0, 500.0), (2000.0, 2000.0, 10.0, 10.0), (100.0, 200.0, 150.0, 400.0)])]
    together = pred.launch_many(frames).result()
    alone = [pred.predict(image, boxes) for image, boxes in frames]
    assert [len(p) for p in together] == [len(p) for p in alone] == [1, 0, 2]  # the box off the frame is skipped
    for got, ref in zip(together, alone):
        for a, b in zip(got, ref):
            assert a.box_index == b.box_index
            np.testing.assert_allclose(a.person.joints, b.person.joints, rtol=1e-4, atol=1e-4)
            for k, v in b.person.params.to_dict().items():
                np.testing.assert_allclose(a.person.params.to_dict()[k], v, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(a.lhand_bbox, b.lhand_bbox, rtol=1e-4, atol=1e-2)


def test_out_of_gpu_memory_is_one_line_naming_the_batch(media_dir, body_model):
    """The batched call running out of GPU memory (raised as torch raises it; no GPU here) ends the
    run with one line naming the streams and the largest batch, and every stream is closed."""
    import torch

    class OutOfMemoryAt(CountingStandIn):
        def launch_many(self, frames):
            if self.calls >= 3:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super().launch_many(frames)

    sources = [open_source(str(media_dir / name), pace=False, loop=True)
               for name in ("street_walk_960x540.mp4", "posetrack_1280x720.mp4")]
    (a, det_a), (b, det_b) = _lane("1", sources[0], 1, []), _lane("2", sources[1], 2, [])
    pred = OutOfMemoryAt(body_model, cost_ms=1.0)
    for lane in (a, b):
        lane.pipe.predictor = pred
    multi = MultiPipeline(pred, [a, b]).start(50)
    try:
        multi.wait(duration=60)
    finally:
        multi.stop()
        det_a.close()
        det_b.close()
    assert isinstance(multi.error, UserError)
    msg = str(multi.error)
    assert msg.startswith("out of GPU memory with 2 streams (up to ") and "\n" not in msg, msg
    assert "--max-people" in msg
    assert a.pipe.stats.frames_out < 50 and not multi.running
    assert all(s.finished.is_set() for s in sources)  # the sources were stopped


def test_no_stream_waits_for_a_slow_one(media_dir, body_model):
    """A 2 fps camera-like stream beside a video read as fast as it goes: rounds go on without the slow
    stream's frames (the fast stream gets far more frames through than the slow one has)."""
    fast = open_source(str(media_dir / "street_walk_960x540.mp4"), pace=False, loop=True)
    slow = open_source("synthetic:320x240@2")
    (a, det_a), (b, det_b) = _lane("fast", fast, 1, []), _lane("slow", slow, 1, [])
    pred = CountingStandIn(body_model, cost_ms=2.0)
    for lane in (a, b):
        lane.pipe.predictor = pred
    multi = MultiPipeline(pred, [a, b]).start()
    try:
        multi.wait(duration=60, on_tick=lambda: a.pipe.stats.frames_out < 30)
    finally:
        multi.stop()
        det_a.close()
        det_b.close()
    assert multi.error is None and a.problem is None and b.problem is None
    assert a.pipe.stats.frames_out >= 30
    assert 1 <= b.pipe.stats.frames_out < a.pipe.stats.frames_out / 2, (a.pipe.stats.frames_out, b.pipe.stats.frames_out)
