"""`mocap live` on a video source -> real VMC (UDP) and ZMQ receivers; recording -> `mocap replay`."""
import threading

import numpy as np
import pytest
import zmq

from realtime.cli import main
from realtime.codec import unpack
from tests.test_vmc import Receiver, type_tags

UNITY_BONES = {"Hips", "Spine", "Chest", "UpperChest", "Neck", "Head", "Jaw", "LeftShoulder", "RightShoulder",
               "LeftUpperArm", "RightUpperArm", "LeftLowerArm", "RightLowerArm", "LeftHand", "RightHand",
               "LeftUpperLeg", "RightUpperLeg", "LeftLowerLeg", "RightLowerLeg", "LeftFoot", "RightFoot",
               "LeftToes", "RightToes"} | {f"{s}{f}{p}" for s in ("Left", "Right")
                                           for f in ("Thumb", "Index", "Middle", "Ring", "Little")
                                           for p in ("Proximal", "Intermediate", "Distal")}


class ZmqCollector(threading.Thread):
    def __init__(self, endpoint):
        super().__init__(daemon=True)
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.RCVTIMEO, 200)
        self.sock.connect(endpoint)
        self.messages = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.messages.append(unpack(self.sock.recv()))
            except zmq.Again:
                continue

    def close(self):
        self.stop.set()
        self.join(5)
        self.sock.close(0)


def _vmc_frames(rcv):
    """Decode everything received so far; frames split at /VMC/Ext/T."""
    rcv.sock.settimeout(0.5)
    try:
        while True:
            rcv.collect(1)
    except OSError:
        pass
    return rcv.frames()


def _free_tcp_endpoint():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"tcp://127.0.0.1:{port}"


@pytest.mark.slow
def test_live_streams_and_recording_replays(tmp_path, media_dir, s32_ckpt, smplx_dir):
    clip = media_dir / "posetrack_1280x720.mp4"
    rcv = Receiver()
    endpoint = _free_tcp_endpoint()
    sub = ZmqCollector(endpoint)
    sub.start()
    rec = tmp_path / "rec"
    summary = tmp_path / "summary.json"
    try:
        rc = main(["live", "--source", str(clip), "--no-pace", "--engine", "torch", "--viewer", "none",
                   "--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir),
                   "--osc", f"127.0.0.1:{rcv.port}", "--zmq", endpoint, "--record", str(rec),
                   "--summary-json", str(summary)])
        assert rc == 0
        live_frames = _vmc_frames(rcv)
        sub.stop.wait(0.5)
        live_zmq = list(sub.messages)
    finally:
        sub.close()
    # every thread of the pipeline is gone
    assert not [t for t in threading.enumerate() if t.name in ("mocap-engine", "vmc-sink") and t.is_alive()]

    import json

    s = json.loads(summary.read_text())
    assert s["frames_out"] == 5 and s["dropped"] == 0  # lossless file reading with --no-pace
    assert s["frames_with_person"] == 5  # a football player is found in every frame
    assert len(live_frames) == 5
    for msgs in live_frames:
        assert sum(m.address == "/VMC/Ext/T" for m in msgs) == 1
        bones = {m.params[0]: m.params[1:] for m in msgs if m.address == "/VMC/Ext/Bone/Pos"}
        assert UNITY_BONES <= set(bones)
        for vals in bones.values():
            assert len(vals) == 7 and all(isinstance(v, float) for v in vals)
            assert np.linalg.norm(vals[3:]) == pytest.approx(1.0, abs=1e-5)
        assert any(m.address == "/VMC/Ext/Root/Pos" for m in msgs)
        blends = [m.address for m in msgs if m.address.startswith("/VMC/Ext/Blend")]
        assert blends[-1] == "/VMC/Ext/Blend/Apply" and "/VMC/Ext/Blend/Val" in blends
        for m in msgs:
            assert set(type_tags(m.dgram)[1:]) <= set("fis")
    # ZMQ: at least the frames after the subscriber joined, every field decodes
    assert len(live_zmq) >= 3
    for msg in live_zmq:
        assert msg["schema"].startswith("smplerx-mocap/")
        for person in msg["persons"]:
            assert np.asarray(person["body_pose"]).shape == (21, 3)
            assert np.asarray(person["left_hand_pose"]).shape == (15, 3)
            assert np.asarray(person["betas"]).shape == (1, 10)

    # replay the recording to fresh receivers: same parameters arrive, frame by frame
    rcv2 = Receiver()
    endpoint2 = _free_tcp_endpoint()
    sub2 = ZmqCollector(endpoint2)
    sub2.start()
    try:
        assert main(["replay", str(rec), "--osc", f"127.0.0.1:{rcv2.port}", "--zmq", endpoint2,
                     "--body-models", str(smplx_dir), "--speed", "0.25"]) == 0
        replay_frames = _vmc_frames(rcv2)
        sub2.stop.wait(0.5)
        replay_zmq = list(sub2.messages)
    finally:
        sub2.close()
        rcv.close()
        rcv2.close()
    assert len(replay_frames) == 5

    def bones_of(frames):
        return [{m.params[0]: np.array(m.params[1:]) for m in f if m.address == "/VMC/Ext/Bone/Pos"} for f in frames]

    for a, b in zip(bones_of(live_frames), bones_of(replay_frames)):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_allclose(a[name], b[name], atol=1e-6, err_msg=name)
    live_by_id = {m["frame_id"]: m for m in live_zmq}
    matched = [m for m in replay_zmq if m["frame_id"] in live_by_id]
    assert matched
    for m in matched:
        for pa, pb in zip(m["persons"], live_by_id[m["frame_id"]]["persons"]):
            np.testing.assert_array_equal(np.asarray(pa["body_pose"]), np.asarray(pb["body_pose"]))


@pytest.mark.slow
def test_live_several_people_two_avatars_and_zmq_ids(tmp_path, media_dir, smplx_dir):
    """`mocap live --max-people 3` on the PoseTrack clip (three players): ZMQ carries several people
    per frame with distinct, lasting ids; each of two --osc targets drives one of them."""
    import torch

    from engines.checkpoints import write_random_checkpoint

    extra = {"body_regressor.cam_out.0.weight": torch.zeros(3, 384),  # joints follow the players
             "body_regressor.cam_out.0.bias": torch.tensor([0.0, 0.0, 1.0])}
    ckpt = write_random_checkpoint(tmp_path / "centred.pth.tar", "s32", seed=2, extra=extra)
    clip = media_dir / "posetrack_1280x720.mp4"
    receivers = [Receiver(), Receiver()]
    endpoint = _free_tcp_endpoint()
    sub = ZmqCollector(endpoint)
    sub.start()
    try:
        import time

        time.sleep(0.3)  # let the subscriber connect before the first frame
        assert main(["live", "--source", str(clip), "--no-pace", "--engine", "torch", "--viewer", "none",
                     "--checkpoint", str(ckpt), "--body-models", str(smplx_dir), "--max-people", "3",
                     "--osc", f"127.0.0.1:{receivers[0].port}", "--osc", f"127.0.0.1:{receivers[1].port}",
                     "--zmq", endpoint]) == 0
        vmc = [_vmc_frames(r) for r in receivers]
        sub.stop.wait(0.5)
        messages = list(sub.messages)
    finally:
        sub.close()
        for r in receivers:
            r.close()
    assert len(messages) >= 3
    ids_per_frame = [[p["track_id"] for p in m["persons"]] for m in messages]
    assert all(len(ids) == len(set(ids)) for ids in ids_per_frame)
    assert max(len(ids) for ids in ids_per_frame) >= 2, ids_per_frame
    assert len({i for ids in ids_per_frame for i in ids}) <= 4  # ids last: no new id every frame

    def performers(frames):
        return {m.params[1] for f in frames for m in f if m.address == "/SMPLX/frame"}

    first, second = performers(vmc[0]), performers(vmc[1])
    assert len(first) == 1 and len(second) == 1 and first != second  # one person per avatar, never swapped


def test_live_missing_source_is_a_clear_error(tmp_path, capsys, s32_ckpt, smplx_dir):
    assert main(["live", "--source", str(tmp_path / "nope.mp4"), "--viewer", "none",
                 "--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir), "--engine", "torch"]) == 2
    assert "not found" in capsys.readouterr().err


def test_live_synthetic_source_runs_bounded(tmp_path, s32_ckpt, smplx_dir):
    assert main(["live", "--source", "synthetic:320x240@15", "--max-frames", "3", "--viewer", "none",
                 "--osc", "none", "--zmq", "none", "--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir),
                 "--engine", "torch", "--filter", "body.min_cutoff=2.0"]) == 0


def test_live_bad_filter_setting_leaves_no_recording_behind(tmp_path, capsys, s32_ckpt, smplx_dir):
    """A typo in --filter is reported before any sink opens: no recorder thread keeps running and the
    recording directory stays usable for the corrected command."""
    rec = tmp_path / "rec"
    args = ["live", "--source", "synthetic:320x240@15", "--max-frames", "2", "--viewer", "none",
            "--osc", "none", "--zmq", "none", "--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir),
            "--engine", "torch", "--record", str(rec)]
    assert main(args + ["--filter", "body.nope=1"]) == 2
    assert "body.nope" in capsys.readouterr().err
    assert not [t for t in threading.enumerate() if t.name == "recorder" and t.is_alive()]
    assert main(args) == 0  # the same directory still records

    from realtime.recording import load_recording

    assert len(load_recording(rec).frames) == 2


def test_live_preview_without_display_is_a_clear_error(capsys, monkeypatch, s32_ckpt, smplx_dir):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["live", "--source", "synthetic:320x240@15", "--max-frames", "2", "--viewer", "preview",
                 "--osc", "none", "--zmq", "none", "--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir),
                 "--engine", "torch"]) == 2
    err = capsys.readouterr().err
    assert "no display" in err and "--viewer none" in err
    assert not [t for t in threading.enumerate() if t.name == "mocap-engine" and t.is_alive()]


def test_open3d_loop_clears_the_mesh_when_nobody_is_left():
    from types import SimpleNamespace

    from realtime import live
    from realtime.slot import LatestSlot
    from engines.types import PARAM_SHAPES, FrameResult, Person, SMPLXParams

    class FakeViewer:
        def __init__(self):
            self.updates = []

        def update(self, vertices, **frame):
            self.updates.append(vertices)
            self.frames = getattr(self, "frames", []) + [frame]

        def step(self):
            return True

    loop = live._Open3DLoop.__new__(live._Open3DLoop)
    loop.viewer = FakeViewer()
    status = {"in_fps": 30.0, "out_fps": 29.0, "dropped": 0, "track_ms": 0.5, "infer_ms": 4.0, "filter_ms": 0.8,
              "detector_calls": 1}
    pipe = SimpleNamespace(latest=LatestSlot(), status=lambda: status)
    params = SMPLXParams.from_dict({k: np.zeros(s, np.float32) for k, s in PARAM_SHAPES.items()})
    person = Person(0, params, np.zeros(4), np.zeros(4), np.ones(2), np.ones(2), vertices=np.ones((10, 3)))
    pipe.latest.put(FrameResult(0, 0, (64, 48), [person]))
    assert loop(pipe)
    assert len(loop.viewer.updates[-1]) == 1
    assert loop.viewer.frames[-1]["ids"] == [0] and any("FPS in 30.0" in line for line in loop.viewer.frames[-1]["lines"])
    pipe.latest.put(FrameResult(1, 0, (64, 48), []))
    assert loop(pipe)
    assert loop.viewer.updates[-1] == []  # the person left: the viewer shows nobody
    assert loop(pipe) and len(loop.viewer.updates) == 2  # nothing new: no update


def test_known_pose_through_replay_arrives_as_unity_rotations(tmp_path, smplx_dir):
    """A person facing the camera (root 180 deg about x) with the left elbow bent 90 deg about
    SMPL-X +y, written as an official result folder and sent with `mocap replay`."""
    import json
    import math

    from engines.types import PARAM_SHAPES

    d = tmp_path / "official"
    (d / "smplx").mkdir(parents=True)
    (d / "meta").mkdir()
    params = {k: np.zeros(s, np.float32) for k, s in PARAM_SHAPES.items()}
    params["global_orient"][0] = (math.pi, 0.0, 0.0)
    params["body_pose"][17] = (0.0, math.pi / 2, 0.0)  # body_pose row = joint id - 1; left_elbow is 18
    params["transl"][0] = (0.0, 0.2, 3.0)
    for f in (1, 2):
        np.savez(d / "smplx" / f"{f:05d}_0.npz", **params)
        (d / "meta" / f"{f:05d}_0.json").write_text(json.dumps(
            {"focal": [1000.0, 1000.0], "princpt": [320.0, 240.0], "bbox": [0, 0, 640, 480],
             "bbox_detector": [0, 0, 640, 480]}))
    rcv = Receiver()
    try:
        assert main(["replay", str(d), "--osc", f"127.0.0.1:{rcv.port}", "--zmq", "none",
                     "--body-models", str(smplx_dir), "--fps", "20"]) == 0
        frames = _vmc_frames(rcv)
    finally:
        rcv.close()
    assert len(frames) == 2
    s = math.sqrt(0.5)
    for msgs in frames:
        bones = {m.params[0]: np.array(m.params[1:]) for m in msgs if m.address == "/VMC/Ext/Bone/Pos"}
        root = [np.array(m.params[1:]) for m in msgs if m.address == "/VMC/Ext/Root/Pos"][0]

        def same(q, e):
            return abs(abs(float(np.dot(q, e))) - 1.0) < 1e-5

        # 90 deg about +y is (0, sin45, 0, cos45); Unity's X mirror negates y and z
        assert same(bones["LeftLowerArm"][3:], [0.0, -s, 0.0, s])
        assert same(bones["RightLowerArm"][3:], [0.0, 0.0, 0.0, 1.0])
        # camera frame -> Y-up world is R_x(180); the person facing the camera ends upright:
        # the root/hips rotation composes to the identity
        from scipy.spatial.transform import Rotation

        total = Rotation.from_quat(root[3:]) * Rotation.from_quat(bones["Hips"][3:])
        assert total.magnitude() < 1e-4


def test_filter_clock_uses_the_file_timeline():
    """Lossless file reading runs at the processing rate; the filter must see the video's own times."""
    from realtime.pipeline import _filter_time
    from engines.types import Frame

    img = np.zeros((2, 2, 3), np.uint8)
    assert _filter_time(Frame(3, 5_000_000_000, img, source_time=0.1)) == pytest.approx(0.1)
    assert _filter_time(Frame(3, 5_000_000_000, img, source_time=None)) == pytest.approx(5.0)
