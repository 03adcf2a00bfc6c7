"""ZMQ PUB output: a real SUB socket on 127.0.0.1 decodes every field."""
from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest
import zmq

from realtime.codec import SCHEMA, result_from_dict
from realtime.sinks.zmq_pub import ZMQSink
from engines.types import PARAM_SHAPES, PREDICTED_KEYS, FrameResult, Person, SMPLXParams


def random_person(rng, track_id: int) -> Person:
    params = SMPLXParams.from_dict({k: rng.standard_normal(PARAM_SHAPES[k]).astype(np.float32) for k in PREDICTED_KEYS})
    return Person(track_id=track_id, params=params, bbox=rng.uniform(0, 500, 4).astype(np.float32),
                  bbox_detector=rng.uniform(0, 500, 4).astype(np.float32),
                  focal=np.array([5000.0, 5000.0], np.float32), princpt=np.array([320.0, 240.0], np.float32))


def make_result(fid: int, n_persons: int = 2, seed: int = 0) -> FrameResult:
    rng = np.random.default_rng(seed + fid + 1)
    t = time.perf_counter_ns()
    return FrameResult(frame_id=fid, t_capture_ns=t, image_size=(640, 480),
                       persons=[random_person(rng, 10 + i) for i in range(n_persons)],
                       t_stages={"detect": t + 1000, "infer": t + 5000})


def subscriber(endpoint: str, topic: bytes = b"") -> zmq.Socket:
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    time.sleep(0.3)  # slow joiner: let the subscription reach the publisher
    return sub


def wait_joined(sink: ZMQSink, sub: zmq.Socket, multipart: bool = False) -> None:
    """Publish probe frames (id -1) until one arrives, then drain: a loaded machine
    can take longer than the fixed sleep for the subscription to propagate."""
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    for _ in range(100):
        sink.send(make_result(-1, n_persons=0))
        if poller.poll(100):
            break
    else:
        raise AssertionError("subscriber never joined")
    while poller.poll(200):
        parts = sub.recv_multipart()
        assert msgpack.unpackb(parts[-1], raw=False)["frame_id"] == -1


def test_every_field_decodes():
    sink = ZMQSink("tcp://127.0.0.1:*")
    sub = subscriber(sink.last_endpoint)
    wait_joined(sink, sub)
    probes = sink.sent
    try:
        sent = [make_result(i) for i in range(3)]
        msgs = []
        for r in sent:  # one at a time: the PUB queue is deliberately tiny (drops when full)
            sink.send(r)
            msgs.append(msgpack.unpackb(sub.recv(), raw=False))
    finally:
        sub.close(0)
        sink.close()
    for r, m in zip(sent, msgs):
        assert set(m) == {"schema", "frame_id", "t_capture_ns", "t_stages", "t_send_ns", "image_size", "persons"}
        assert m["schema"] == SCHEMA
        assert m["frame_id"] == r.frame_id and m["t_capture_ns"] == r.t_capture_ns
        assert m["t_stages"] == r.t_stages
        assert isinstance(m["t_send_ns"], int) and m["t_send_ns"] >= r.t_capture_ns
        assert m["image_size"] == [640, 480]
        assert len(m["persons"]) == 2
        for p, d in zip(r.persons, m["persons"]):
            assert d["track_id"] == p.track_id
            np.testing.assert_array_equal(np.asarray(d["bbox"], np.float32), p.bbox)
            np.testing.assert_array_equal(np.asarray(d["bbox_detector"], np.float32), p.bbox_detector)
            np.testing.assert_array_equal(np.asarray(d["focal"], np.float32), p.focal)
            np.testing.assert_array_equal(np.asarray(d["princpt"], np.float32), p.princpt)
            for k in PREDICTED_KEYS:
                arr = np.asarray(d[k], np.float32)
                assert arr.shape == PARAM_SHAPES[k], k
                np.testing.assert_array_equal(arr, getattr(p.params, k))
    back = result_from_dict(msgs[0])
    np.testing.assert_array_equal(back.persons[1].params.body_pose, sent[0].persons[1].params.body_pose)
    assert sink.sent - probes == 3


def test_topic_prefix_and_empty_frame():
    sink = ZMQSink("tcp://127.0.0.1:*", topic="mocap")
    sub = subscriber(sink.last_endpoint, b"mocap")
    wait_joined(sink, sub)
    try:
        sink.send(make_result(5, n_persons=0))
        topic, payload = sub.recv_multipart()
    finally:
        sub.close(0)
        sink.close()
    assert topic == b"mocap"
    m = msgpack.unpackb(payload, raw=False)
    assert m["frame_id"] == 5 and m["persons"] == []


def test_no_subscriber_never_blocks_and_close_is_idempotent():
    sink = ZMQSink("tcp://127.0.0.1:*", sndhwm=1)
    for i in range(50):
        sink.send(make_result(i, n_persons=1))
    sink.close()
    sink.close()
    sink.send(make_result(99))  # after close: ignored
    assert sink.sent + sink.dropped == 50


def test_bind_conflict_is_a_clear_error():
    a = ZMQSink("tcp://127.0.0.1:*")
    try:
        with pytest.raises(OSError, match="127.0.0.1"):
            ZMQSink(a.last_endpoint)
    finally:
        a.close()
