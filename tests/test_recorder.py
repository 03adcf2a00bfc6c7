"""Recorder (crash-safe), load_recording, and replay into real ZMQ / OSC receivers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest

from engines.synthetic import synthetic_rest_joints
from realtime.replay import load_timeline, replay
from realtime.retarget import RestModel
from realtime.sinks.osc_vmc import VMCSink
from realtime.recording import FRAMES_FILE, load_recording, read_records
from realtime.sinks.recorder import Recorder
from realtime.sinks.zmq_pub import ZMQSink
from engines.types import PARAM_SHAPES, PREDICTED_KEYS, FrameResult, Person, SMPLXParams

from .test_vmc import Receiver
from .test_zmq import subscriber, wait_joined

REPO = Path(__file__).resolve().parents[1]
FRAME_NS = 33_333_333


def params_for(i: int, k: int = 0) -> SMPLXParams:
    rng = np.random.default_rng(1000 * i + k)
    return SMPLXParams.from_dict({key: rng.standard_normal(PARAM_SHAPES[key]).astype(np.float32) * 0.3
                                  for key in PREDICTED_KEYS})


def result_for(i: int, n_persons: int = 1, image: bool = False) -> FrameResult:
    persons = [Person(track_id=k + 1, params=params_for(i, k), bbox=np.array([1, 2, 30, 40], np.float32) + i,
                      bbox_detector=np.array([2, 3, 20, 30], np.float32), focal=np.array([900.0, 901.0], np.float32),
                      princpt=np.array([160.0, 120.0], np.float32)) for k in range(n_persons)]
    img = None
    if image:
        img = np.zeros((240, 320, 3), np.uint8)
        img[:, : 10 * (i + 1)] = 255
    return FrameResult(frame_id=i, t_capture_ns=5_000_000_000 + i * FRAME_NS, image_size=(320, 240),
                       persons=persons, t_stages={"infer": 5_000_000_000 + i * FRAME_NS + 7_000_000}, image=img)


def assert_same_person(a: Person, b: Person):
    assert a.track_id == b.track_id
    for key in PREDICTED_KEYS:
        np.testing.assert_array_equal(getattr(a.params, key), getattr(b.params, key), err_msg=key)
    np.testing.assert_array_equal(a.bbox, b.bbox)
    np.testing.assert_array_equal(a.focal, b.focal)
    np.testing.assert_array_equal(a.princpt, b.princpt)


class ListSink:
    """Collects what it is sent (a real Sink, in memory)."""

    def __init__(self):
        self.results = []

    def send(self, result):
        self.results.append(result)

    def close(self):
        pass


def make_recording(directory: Path, n: int = 6, **kw) -> list:
    sent = [result_for(i, n_persons=1 + i % 2, image=kw.get("save_video", False)) for i in range(n)]
    with Recorder(directory, fps=30.0, source="unit test", **kw) as rec:
        for r in sent:
            rec.send(r)
    return sent


# --------------------------------------------------------------------------- recording

def test_record_and_load_exactly(tmp_path):
    sent = make_recording(tmp_path / "rec", n=6, save_video=True)
    rec = load_recording(tmp_path / "rec")
    assert not rec.truncated and len(rec) == 6
    assert rec.meta["complete"] is True and rec.meta["num_frames"] == 6
    assert rec.meta["image_size"] == [320, 240] and rec.meta["fps"] == 30.0
    assert rec.meta["source"] == "unit test" and "tool_version" in rec.meta and "start_time" in rec.meta
    for s, r in zip(sent, rec.frames):
        assert r.frame_id == s.frame_id and r.t_capture_ns == s.t_capture_ns and r.t_stages == s.t_stages
        assert len(r.persons) == len(s.persons)
        for a, b in zip(s.persons, r.persons):
            assert_same_person(a, b)
    img = rec.load_image(3)
    assert img is not None and img.shape == (240, 320, 3)
    assert img[:, :30].mean() > 200 and img[:, 60:].mean() < 50  # frame 3's own picture
    assert not list((tmp_path / "rec" / "video").glob("*.tmp"))


def test_meta_written_at_start_and_existing_recording_refused(tmp_path):
    rec = Recorder(tmp_path / "r", fps=25.0, source="cam0", image_size=(640, 480))
    try:
        meta = json.loads((tmp_path / "r" / "meta.json").read_text())
        assert meta["complete"] is False and meta["image_size"] == [640, 480] and meta["source"] == "cam0"
    finally:
        rec.close()
    with pytest.raises(FileExistsError):
        Recorder(tmp_path / "r")


def test_truncated_tail_is_tolerated(tmp_path):
    make_recording(tmp_path / "rec", n=4)
    path = tmp_path / "rec" / FRAMES_FILE
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) - 40, len(data) - 200):
        path.write_bytes(data[:cut])
        rec = load_recording(tmp_path / "rec")
        assert rec.truncated and len(rec) == 3
    path.write_bytes(data + b"\x07\x00")  # a torn header
    assert len(load_recording(path)) == 4
    corrupt = bytearray(data)
    corrupt[-5] ^= 0xFF  # flipped bits in the last record: caught by the CRC
    path.write_bytes(bytes(corrupt))
    rec = load_recording(tmp_path / "rec")
    assert rec.truncated and len(rec) == 3


@pytest.mark.slow
def test_killed_recorder_leaves_a_readable_file(tmp_path):
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from realtime.sinks.recorder import Recorder
        from tests.test_recorder import result_for
        rec = Recorder({str(out)!r}, save_video=True, fps=30.0, fsync_every=5)
        i = 0
        while True:
            rec.send(result_for(i, n_persons=1 + i % 2, image=True))
            i += 1
            time.sleep(0.002)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=str(REPO))
    try:
        deadline = time.monotonic() + 60
        n = 0
        while n < 25:
            assert proc.poll() is None, "recorder subprocess died on its own"
            assert time.monotonic() < deadline, "recorder subprocess wrote too little"
            time.sleep(0.05)
            if (out / FRAMES_FILE).is_file():
                n = len(read_records(out / FRAMES_FILE)[0])
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    rec = load_recording(out)
    assert len(rec) >= 25
    assert rec.meta["complete"] is False
    for i, f in enumerate(rec.frames):
        assert f.frame_id == i
        expected = result_for(i, n_persons=1 + i % 2)
        for a, b in zip(expected.persons, f.persons):
            assert_same_person(a, b)
    # every JPEG a record points to is whole
    for i in range(len(rec)):
        if rec.image_paths[i] is not None:
            img = rec.load_image(i)
            assert img is not None and img.shape == (240, 320, 3)


# --------------------------------------------------------------------------- replay

def test_replay_recording_into_zmq(tmp_path):
    sent = make_recording(tmp_path / "rec", n=5)
    sink = ZMQSink("tcp://127.0.0.1:*")
    sub = subscriber(sink.last_endpoint)
    try:
        wait_joined(sink, sub)
        stats = replay(tmp_path / "rec", [sink], speed=2.0)
        assert stats.frames_sent == 5
        msgs = [msgpack.unpackb(sub.recv(), raw=False) for _ in range(5)]
    finally:
        sub.close(0)
        sink.close()
    assert [m["frame_id"] for m in msgs] == [0, 1, 2, 3, 4]
    for s, m in zip(sent, msgs):
        assert len(m["persons"]) == len(s.persons)
        for p, d in zip(s.persons, m["persons"]):
            for key in PREDICTED_KEYS:
                np.testing.assert_array_equal(np.asarray(d[key], np.float32), getattr(p.params, key))
        # restamped with the replay clock, stage offsets kept
        assert m["t_stages"]["infer"] - m["t_capture_ns"] == 7_000_000


def test_replay_recording_into_vmc(tmp_path):
    sent = make_recording(tmp_path / "rec", n=4)
    rest = RestModel(synthetic_rest_joints(), np.zeros((15, 3)), np.zeros((15, 3)))
    rcv = Receiver()
    try:
        sink = VMCSink("127.0.0.1", rcv.port, rest=rest)
        try:
            replay(tmp_path / "rec", [sink], speed=1.0)
        finally:
            sink.close()
        assert sink.sent >= 1 and sink.sent + sink.dropped == 4
        rcv.collect(sink.sent)
    finally:
        rcv.close()
    by_frame = {}
    for m in rcv.messages():
        if m.address == "/SMPLX/body_pose":
            by_frame.setdefault(m.params[0], {})[m.params[1]] = np.asarray(m.params[2:], np.float32)
    assert len(by_frame) == sink.sent
    for fid, persons in by_frame.items():
        for p in sent[fid].persons:
            np.testing.assert_array_equal(persons[p.track_id], p.params.body_pose.reshape(-1))


def write_official(directory: Path, frames=(1, 2, 4), persons=(0, 1)):
    (directory / "smplx").mkdir(parents=True)
    (directory / "meta").mkdir()
    expected = {}
    for f in frames:
        for k in persons:
            p = params_for(f, k).to_dict(with_eyes=True)
            np.savez(directory / "smplx" / f"{f:05d}_{k}.npz", **p)
            meta = {"focal": [5000.0, 5000.0], "princpt": [320.0, 240.0], "bbox": [1.0, 2.0, 3.0, 4.0],
                    "bbox_detector": [5.0, 6.0, 7.0, 8.0]}
            (directory / "meta" / f"{f:05d}_{k}.json").write_text(json.dumps(meta))
            expected[(f, k)] = p
    return expected


def test_replay_official_directory(tmp_path):
    expected = write_official(tmp_path / "out")
    sink = ListSink()
    stats = replay(tmp_path / "out", [sink], speed=4.0, fps=30.0)
    assert stats.frames_sent == 4  # frames 1..4, frame 3 empty (nobody detected)
    assert [r.frame_id for r in sink.results] == [1, 2, 3, 4]
    assert sink.results[2].persons == []
    for r in sink.results:
        assert r.image_size == (640, 480)
        for p in r.persons:
            e = expected[(r.frame_id, p.track_id)]
            for key in PREDICTED_KEYS:
                np.testing.assert_array_equal(getattr(p.params, key), e[key])
            np.testing.assert_array_equal(p.bbox_detector, [5, 6, 7, 8])
            np.testing.assert_array_equal(p.focal, [5000, 5000])


def test_replay_loop_stops_on_event(tmp_path):
    write_official(tmp_path / "out", frames=(0, 1), persons=(0,))
    stop = threading.Event()
    sink = ListSink()

    class Stopper(ListSink):
        def send(self, result):
            super().send(result)
            if len(self.results) >= 5:
                stop.set()

    stats = replay(tmp_path / "out" / "smplx", [sink, Stopper()], speed=20.0, loop=True, stop_event=stop)
    assert stats.frames_sent == 5 and stats.loops >= 2
    assert [r.frame_id for r in sink.results] == [0, 1, 0, 1, 0]


def test_replay_bad_input_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        replay(tmp_path / "nowhere", [ListSink()])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        replay(tmp_path / "empty", [ListSink()])
    (tmp_path / "bad" / "smplx").mkdir(parents=True)
    (tmp_path / "bad" / "smplx" / "00001_0.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="00001_0.npz"):
        replay(tmp_path / "bad", [ListSink()])
    with pytest.raises(ValueError):
        replay(tmp_path / "bad", [ListSink()], speed=0)


def test_replay_reads_image_results_one_frame_per_image(tmp_path):
    """mocap image results (``<image name>_<person>``) replay as one frame per image, in name order,
    through the same reader as mocap convert (realtime.results)."""
    out = tmp_path / "photos"
    write_official(out, frames=(1, 2), persons=(0,))
    for old, new in (("00001", "beach"), ("00002", "alley")):
        for sub, ext in (("smplx", "npz"), ("meta", "json")):
            (out / sub / f"{old}_0.{ext}").rename(out / sub / f"{new}_0.{ext}")
    sink = ListSink()
    assert replay(out, [sink], speed=20.0, fps=30.0).frames_sent == 2
    assert [r.frame_id for r in sink.results] == [1, 2]
    # alley (frame 2's parameters) comes first in name order
    np.testing.assert_array_equal(sink.results[0].persons[0].params.body_pose, params_for(2, 0).body_pose)
    np.testing.assert_array_equal(sink.results[1].persons[0].params.body_pose, params_for(1, 0).body_pose)


def test_result_reader_checks_every_shape(tmp_path):
    """A result file with a wrong array shape is skipped by replay and convert alike, with its name."""
    from realtime.animation.take import load_take

    expected = write_official(tmp_path / "out", frames=(1, 2), persons=(0,))
    bad = dict(expected[(2, 0)], body_pose=np.zeros(20, np.float32))
    np.savez(tmp_path / "out" / "smplx" / "00002_0.npz", **bad)
    timeline = load_timeline(tmp_path / "out", fps=30.0)
    problems = timeline.problems
    assert len(problems) == 1 and "00002_0.npz" in problems[0] and "body_pose has shape (20,)" in problems[0]
    take = load_take(tmp_path / "out", fps=30.0)
    assert len(take.persons[0]) == 1 and "1 unreadable result file(s) skipped: 00002_0.npz" in take.notes[0]
