"""VMC / OSC output: retargeting maths and the real UDP stream on 127.0.0.1."""
from __future__ import annotations

import dataclasses
import math
import socket
import struct

import numpy as np
import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from scipy.spatial.transform import Rotation

from engines.body_model import JOINT_NAMES
from realtime.retarget import (SMPLX_TO_UNITY, UNITY_BONE_NAMES, RestModel, Retargeter,
                               jaw_open_value, smplx_to_unity)
from realtime.sinks.osc_vmc import VMCSink
from engines.types import PARAM_SHAPES, PREDICTED_KEYS, FrameResult, Person, SMPLXParams

EXPECTED_BONES = {
    "Hips", "LeftUpperLeg", "RightUpperLeg", "Spine", "LeftLowerLeg", "RightLowerLeg", "Chest",
    "LeftFoot", "RightFoot", "UpperChest", "LeftToes", "RightToes", "Neck", "LeftShoulder",
    "RightShoulder", "Head", "LeftUpperArm", "RightUpperArm", "LeftLowerArm", "RightLowerArm",
    "LeftHand", "RightHand", "Jaw", "LeftEye", "RightEye",
} | {f"{s}{f}{p}" for s in ("Left", "Right") for f in ("Thumb", "Index", "Middle", "Ring", "Little")
     for p in ("Proximal", "Intermediate", "Distal")}


# --------------------------------------------------------------------------- fixtures / helpers

@pytest.fixture(scope="session")
def rest(body_model):
    return RestModel.from_body_model(body_model)


def zero_params(**overrides) -> SMPLXParams:
    d = {k: np.zeros(PARAM_SHAPES[k], np.float32) for k in PREDICTED_KEYS}
    for k, v in overrides.items():
        d[k] = np.asarray(v, np.float32).reshape(PARAM_SHAPES[k])
    return SMPLXParams.from_dict(d)


def facing_params(**overrides) -> SMPLXParams:
    """A person upright and facing the camera, 3 m in front of it."""
    base = {"global_orient": [math.pi, 0, 0], "transl": [0.0, 0.2, 3.0]}
    base.update(overrides)
    return zero_params(**base)


def person(params: SMPLXParams, track_id: int = 0) -> Person:
    return Person(track_id=track_id, params=params, bbox=np.array([10, 20, 100, 200], np.float32),
                  bbox_detector=np.array([12, 22, 90, 190], np.float32),
                  focal=np.array([1000.0, 1000.0], np.float32), princpt=np.array([320.0, 240.0], np.float32))


def frame(fid: int, *persons) -> FrameResult:
    return FrameResult(frame_id=fid, t_capture_ns=1000 + fid, image_size=(640, 480), persons=list(persons))


def same_rotation(q, expected, atol=1e-5) -> bool:
    q, expected = np.asarray(q, np.float64), np.asarray(expected, np.float64)
    return np.allclose(q, expected, atol=atol) or np.allclose(q, -expected, atol=atol)


def mirror_q_by_hand(q_xyzw):
    """X-mirror of a quaternion: axis (ax, ay, az) -> (ax, -ay, -az), angle kept."""
    x, y, z, w = q_xyzw
    return np.array([x, -y, -z, w])


def type_tags(dgram: bytes) -> str:
    """The OSC type-tag string of an encoded message, parsed by hand."""
    end = dgram.index(b"\x00")
    start = (end + 4) & ~3
    tag_end = dgram.index(b"\x00", start)
    return dgram[start:tag_end].decode("ascii")


class Receiver:
    """A real UDP socket on 127.0.0.1 (ephemeral port) decoding every datagram."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.settimeout(5.0)
        self.port = self.sock.getsockname()[1]
        self.datagrams = []  # list of (raw bytes, [OscMessage...], is_bundle)

    def collect(self, n_frames: int):
        """Receive until ``n_frames`` /VMC/Ext/T messages have arrived."""
        seen_t = 0
        while seen_t < n_frames:
            data, _ = self.sock.recvfrom(65536)
            if OscBundle.dgram_is_bundle(data):
                msgs = list(OscBundle(data))
                assert all(isinstance(m, OscMessage) for m in msgs)
                self.datagrams.append((data, msgs, True))
            else:
                msgs = [OscMessage(data)]
                self.datagrams.append((data, msgs, False))
            seen_t += sum(m.address == "/VMC/Ext/T" for m in msgs)
        return self

    def messages(self):
        return [m for _, msgs, _ in self.datagrams for m in msgs]

    def frames(self):
        """Messages split into frames at each /VMC/Ext/T (inclusive)."""
        out, cur = [], []
        for m in self.messages():
            cur.append(m)
            if m.address == "/VMC/Ext/T":
                out.append(cur)
                cur = []
        return out

    def close(self):
        self.sock.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


# --------------------------------------------------------------------------- retargeting

def test_bone_table_matches_spec():
    assert len(UNITY_BONE_NAMES) == 55
    assert set(UNITY_BONE_NAMES) == EXPECTED_BONES
    assert SMPLX_TO_UNITY["left_collar"] == "LeftShoulder"
    assert SMPLX_TO_UNITY["left_shoulder"] == "LeftUpperArm"
    assert SMPLX_TO_UNITY["right_elbow"] == "RightLowerArm"
    assert SMPLX_TO_UNITY["spine3"] == "UpperChest"
    assert SMPLX_TO_UNITY["left_foot"] == "LeftToes"
    assert SMPLX_TO_UNITY["left_pinky1"] == "LeftLittleProximal"
    assert SMPLX_TO_UNITY["left_ring3"] == "LeftRingDistal"
    assert SMPLX_TO_UNITY["right_thumb2"] == "RightThumbIntermediate"
    assert SMPLX_TO_UNITY["right_index1"] == "RightIndexProximal"
    assert SMPLX_TO_UNITY["left_eye_smplhf"] == "LeftEye"
    assert UNITY_BONE_NAMES[JOINT_NAMES.index("jaw")] == "Jaw"


def test_rest_model_matches_body_model(body_model, rest):
    betas = np.linspace(-1.5, 2.0, 10).astype(np.float32)
    np.testing.assert_allclose(rest.joints(betas), body_model.rest_joints(betas), atol=1e-5)
    np.testing.assert_allclose(rest.hand_mean_left, body_model.hand_mean_left, atol=1e-7)


def test_identity_pose_gives_identity_bones_and_mirrored_hand_mean(rest):
    pose = smplx_to_unity(zero_params(), rest.joints(), rest.hand_mean_left, rest.hand_mean_right)
    assert set(pose.bones) == EXPECTED_BONES
    for name in UNITY_BONE_NAMES[:25]:
        assert same_rotation(pose.bones[name][1], [0, 0, 0, 1]), name
    assert np.abs(rest.hand_mean_left).max() > 0.01  # the synthetic hand mean is not zero
    for side, mean, base in (("left", rest.hand_mean_left, 25), ("right", rest.hand_mean_right, 40)):
        for k in range(15):
            expected = mirror_q_by_hand(Rotation.from_rotvec(mean[k]).as_quat())
            name = UNITY_BONE_NAMES[base + k]
            assert same_rotation(pose.bones[name][1], expected), (side, name)
            assert not same_rotation(pose.bones[name][1], [0, 0, 0, 1])


def test_left_elbow_90_about_y(rest):
    body = np.zeros((21, 3), np.float32)
    body[JOINT_NAMES.index("left_elbow") - 1] = [0.0, math.pi / 2, 0.0]
    pose = smplx_to_unity(zero_params(body_pose=body), rest.joints(), rest.hand_mean_left, rest.hand_mean_right)
    # By hand: 90° about +y is (0, sin 45°, 0, cos 45°); the X mirror negates y and z.
    s = math.sqrt(0.5)
    assert same_rotation(pose.bones["LeftLowerArm"][1], [0.0, -s, 0.0, s])
    assert same_rotation(pose.bones["RightLowerArm"][1], [0, 0, 0, 1])


def test_hand_pose_adds_to_mean(rest):
    lh = np.zeros((15, 3), np.float32)
    lh[0] = [0.0, 0.0, 0.3]
    pose = smplx_to_unity(zero_params(left_hand_pose=lh), rest.joints(), rest.hand_mean_left, rest.hand_mean_right)
    expected = mirror_q_by_hand(Rotation.from_rotvec(lh[0] + rest.hand_mean_left[0]).as_quat())
    assert same_rotation(pose.bones["LeftIndexProximal"][1], expected)


def test_camera_facing_person_is_upright(rest):
    params = facing_params()
    joints = rest.joints()
    for mode in ("root", "hips"):
        pose = smplx_to_unity(params, joints, rest.hand_mean_left, rest.hand_mean_right, root_motion=mode)
        carrier = pose.root_quat if mode == "root" else pose.bones["Hips"][1]
        assert same_rotation(carrier, [0, 0, 0, 1]), mode
        up = Rotation.from_quat(carrier).apply([0.0, 1.0, 0.0])
        np.testing.assert_allclose(up, [0, 1, 0], atol=1e-6)
        # The pelvis lands at the mirrored R_x(180°)(J0 + transl) in both modes.
        pelvis_cam = joints[0] + np.array([0.0, 0.2, 3.0])
        expected = np.array([-pelvis_cam[0], -pelvis_cam[1], -pelvis_cam[2]])
        hips_world = pose.root_pos + Rotation.from_quat(pose.root_quat).apply(pose.bones["Hips"][0])
        np.testing.assert_allclose(hips_world, expected, atol=1e-6)
    root_pose = smplx_to_unity(params, joints, rest.hand_mean_left, rest.hand_mean_right)
    assert root_pose.bones["Hips"][0][1] > 0.5  # hips above the floor point the root stands on


def test_positions_are_mirrored_rest_offsets(rest):
    joints = rest.joints()
    pose = smplx_to_unity(zero_params(), joints, rest.hand_mean_left, rest.hand_mean_right)
    i = JOINT_NAMES.index("left_elbow")
    off = joints[i] - joints[JOINT_NAMES.index("left_shoulder")]
    np.testing.assert_allclose(pose.bones["LeftLowerArm"][0], [-off[0], off[1], off[2]], atol=1e-9)
    assert pose.bones["LeftLowerArm"][0][0] < 0  # the avatar's left is Unity's -X
    zero = smplx_to_unity(zero_params(), joints, rest.hand_mean_left, rest.hand_mean_right, zero_positions=True)
    assert np.all(zero.bones["LeftLowerArm"][0] == 0)


def test_translation_mirrored_and_recentred(rest):
    rt = Retargeter(rest, recenter=True)
    first = rt(facing_params())
    np.testing.assert_allclose(first.root_pos, 0.0, atol=1e-9)
    moved = rt(facing_params(transl=[0.1, 0.2, 2.5]))
    # camera +x (performer's left) -> Unity -x; closer to the camera -> Unity +z (forward).
    np.testing.assert_allclose(moved.root_pos, [-0.1, 0.0, 0.5], atol=1e-6)
    cam = Retargeter(rest, recenter=False)(facing_params(transl=[0.1, 0.2, 2.5]))
    assert cam.root_pos[0] == pytest.approx(-(0.1 + rest.joints()[0][0]), abs=1e-6)
    assert cam.root_pos[2] == pytest.approx(-(2.5 + rest.joints()[0][2]), abs=1e-6)


def test_jaw_open_value():
    assert jaw_open_value([0.25, 0, 0], 0.5) == pytest.approx(0.5, abs=1e-6)
    assert jaw_open_value([1.0, 0, 0], 0.5) == 1.0
    assert jaw_open_value([-0.2, 0, 0], 0.5) == 0.0
    assert jaw_open_value([0.0, 0.3, 0], 0.5) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        jaw_open_value([0.1, 0, 0], 0.0)


# --------------------------------------------------------------------------- the UDP stream

def _check_stream(rcv: Receiver, n_frames: int):
    frames = rcv.frames()
    assert len(frames) == n_frames
    for msgs in frames:
        assert sum(m.address == "/VMC/Ext/T" for m in msgs) == 1
        assert msgs[-1].address == "/VMC/Ext/T"
        assert isinstance(msgs[-1].params[0], float)
    for data, msgs, is_bundle in rcv.datagrams:
        for m in msgs:
            tags = type_tags(m.dgram)
            assert tags.startswith(",") and set(tags[1:]) <= set("fis"), (m.address, tags)
    return frames


def test_vmc_stream_over_udp(receiver, rest):
    body = np.zeros((21, 3), np.float32)
    body[JOINT_NAMES.index("left_elbow") - 1] = [0.0, math.pi / 2, 0.0]
    params = facing_params(body_pose=body, jaw_pose=[0.25, 0.0, 0.0])
    sink = VMCSink("127.0.0.1", receiver.port, rest=rest)
    n = 3
    try:
        for i in range(n):
            sink.send(frame(i, person(params)))
            receiver.collect(1)  # wait for each frame so the latest-only slot drops nothing
    finally:
        sink.close()
    frames = _check_stream(receiver, n)
    assert sink.sent == n and sink.dropped == 0

    for msgs in frames:
        addrs = [m.address for m in msgs]
        bones = {m.params[0]: m.params[1:] for m in msgs if m.address == "/VMC/Ext/Bone/Pos"}
        assert set(bones) == EXPECTED_BONES
        for name, vals in bones.items():
            assert len(vals) == 7 and all(isinstance(v, float) for v in vals)
            assert np.linalg.norm(vals[3:]) == pytest.approx(1.0, abs=1e-5), name
        root = [m for m in msgs if m.address == "/VMC/Ext/Root/Pos"]
        assert len(root) == 1 and root[0].params[0] == "root" and len(root[0].params) == 8
        assert same_rotation(root[0].params[4:], [0, 0, 0, 1])  # camera-facing person arrives upright
        s = math.sqrt(0.5)
        assert same_rotation(bones["LeftLowerArm"][3:], [0, -s, 0, s])
        blend_idx = [i for i, a in enumerate(addrs) if a == "/VMC/Ext/Blend/Val"]
        apply_idx = addrs.index("/VMC/Ext/Blend/Apply")
        assert blend_idx and apply_idx > max(blend_idx)
        blends = {m.params[0]: m.params[1] for m in msgs if m.address == "/VMC/Ext/Blend/Val"}
        assert blends["A"] == pytest.approx(0.5, abs=1e-5) and blends["JawOpen"] == pytest.approx(0.5, abs=1e-5)
        ok = [m for m in msgs if m.address == "/VMC/Ext/OK"]
        assert len(ok) == 1 and ok[0].params == [1, 3, 0]
        raw = {m.address: m.params for m in msgs if m.address.startswith("/SMPLX/")}
        assert raw["/SMPLX/frame"][2:] == [0, 1]
        np.testing.assert_array_equal(np.asarray(raw["/SMPLX/body_pose"][2:], np.float32), body.reshape(-1))
        np.testing.assert_array_equal(np.asarray(raw["/SMPLX/transl"][2:], np.float32), params.transl.reshape(-1))
        assert raw["/SMPLX/camera"][2:] == [1000.0, 1000.0, 320.0, 240.0, 10.0, 20.0, 100.0, 200.0]
    frame_ids = [next(m.params[0] for m in msgs if m.address == "/SMPLX/frame") for msgs in frames]
    assert frame_ids == list(range(n))
    # Blend/Apply travels in the same bundle as the values (non-split mode).
    blend_bundles = [msgs for _, msgs, b in receiver.datagrams if b and msgs[-1].address == "/VMC/Ext/Blend/Apply"]
    assert len(blend_bundles) == n and all(len(b) == 3 for b in blend_bundles)


@pytest.mark.parametrize("max_bytes", [1400, 500])
def test_split_bundles_stay_under_limit(receiver, rest, max_bytes):
    sink = VMCSink("127.0.0.1", receiver.port, rest=rest, split_bundles=True, max_bundle_bytes=max_bytes)
    try:
        sink.send(frame(7, person(facing_params()), person(facing_params(), track_id=4)))
        receiver.collect(1)
    finally:
        sink.close()
    _check_stream(receiver, 1)
    assert all(len(d) <= max_bytes for d, _, _ in receiver.datagrams)
    bone_bundles = [msgs for _, msgs, b in receiver.datagrams if b and any(m.address == "/VMC/Ext/Bone/Pos" for m in msgs)]
    assert len(bone_bundles) >= 3  # ~4.5 KB of bones cannot fit fewer
    names = [m.params[0] for msgs in bone_bundles for m in msgs if m.address == "/VMC/Ext/Bone/Pos"]
    assert sorted(names) == sorted(EXPECTED_BONES)
    raw_tracks = {m.params[1] for m in receiver.messages() if m.address == "/SMPLX/body_pose"}
    assert raw_tracks == {0, 4}


def test_empty_frame_sends_ok0_and_one_t(receiver, rest):
    sink = VMCSink("127.0.0.1", receiver.port, rest=rest)
    try:
        sink.send(frame(0))
        receiver.collect(1)
    finally:
        sink.close()
    frames = _check_stream(receiver, 1)
    assert [m.address for m in frames[0]] == ["/VMC/Ext/OK", "/VMC/Ext/T"]
    assert frames[0][0].params == [0]


def test_no_receiver_never_raises(rest):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens on this port any more
    sink = VMCSink("127.0.0.1", port, rest=rest, split_bundles=True)
    for i in range(5):
        sink.send(frame(i, person(facing_params())))
    sink.send(frame(5))
    sink.close()
    sink.send(frame(6, person(facing_params())))  # after close: ignored, no error
    assert sink.received == 6
    assert sink.sent + sink.dropped == 6


def test_needs_rest_data():
    with pytest.raises(ValueError):
        VMCSink("127.0.0.1", 39539)


def test_encoded_floats_are_float32(rest):
    sink = VMCSink("127.0.0.1", 9, rest=rest)
    try:
        grams = sink.build_datagrams(frame(0, person(facing_params())))
    finally:
        sink.close()
    for d in grams:
        msgs = list(OscBundle(d)) if OscBundle.dgram_is_bundle(d) else [OscMessage(d)]
        for m in msgs:
            assert "d" not in type_tags(m.dgram)
    t = OscMessage(grams[-1])
    assert t.address == "/VMC/Ext/T" and type_tags(t.dgram) == ",f"
    assert struct.unpack(">f", t.dgram[-4:])[0] == pytest.approx(t.params[0])


def test_new_track_takes_new_bone_lengths(rest):
    """Bone lengths freeze on a performer's first frame and are taken again for a new track id."""
    from pythonosc.osc_bundle import OscBundle
    from pythonosc.osc_message import OscMessage

    sink = VMCSink("127.0.0.1", 9, rest=rest)  # nobody listens: build only
    try:
        def left_forearm(result):
            for dgram in sink.build_datagrams(result):
                msgs = list(OscBundle(dgram)) if OscBundle.dgram_is_bundle(dgram) else [OscMessage(dgram)]
                for m in msgs:
                    if m.address == "/VMC/Ext/Bone/Pos" and m.params[0] == "LeftLowerArm":
                        return np.array(m.params[1:4])
            raise AssertionError("no LeftLowerArm")

        tall = facing_params(betas=np.full((1, 10), 3.0))
        first = left_forearm(frame(0, person(facing_params(), track_id=0)))
        same_track = left_forearm(frame(1, person(tall, track_id=0)))
        new_track = left_forearm(frame(2, person(tall, track_id=1)))
    finally:
        sink.close()
    np.testing.assert_allclose(same_track, first)          # frozen for the same performer
    assert not np.allclose(new_track, first)                # re-taken for the new one
    expected = rest.joints(tall.betas)
    i, p = JOINT_NAMES.index("left_elbow"), JOINT_NAMES.index("left_shoulder")
    off = expected[i] - expected[p]
    np.testing.assert_allclose(new_track, [-off[0], off[1], off[2]], atol=1e-5)


# --------------------------------------------------------------------------- several avatars

def sized_person(track_id: int, height: float, t: float = 0.0) -> Person:
    p = person(facing_params(transl=[t, 0.2, 3.0]), track_id)
    return dataclasses.replace(p, bbox=np.array([10, 20, height / 2, height], np.float32))


def timed_frame(fid: int, seconds: float, *persons) -> FrameResult:
    return FrameResult(frame_id=fid, t_capture_ns=int(seconds * 1e9), image_size=(640, 480), persons=list(persons))


def _raw_track(frame_msgs) -> object:
    """The track id in a frame's raw /SMPLX/frame message, or None (OK 0: nobody)."""
    for m in frame_msgs:
        if m.address == "/SMPLX/frame":
            return m.params[1]
    assert [m.address for m in frame_msgs] == ["/VMC/Ext/OK", "/VMC/Ext/T"] and frame_msgs[0].params == [0]
    return None


def test_each_target_gets_one_performer_and_keeps_it(rest):
    """Two avatars on two real UDP ports: the larger person drives the first, the other the second;
    when sizes swap nobody swaps avatars; a short absence leaves that avatar empty and then gives
    the same person back; after release_s the slot takes whoever is left."""
    from realtime.sinks.osc_vmc import PerformerRouter

    receivers = [Receiver(), Receiver()]
    router = PerformerRouter(2, release_s=1.0)
    sinks = [VMCSink("127.0.0.1", r.port, rest=rest, router=router, slot=k) for k, r in enumerate(receivers)]
    script = [
        (0.0, [sized_person(3, 400), sized_person(7, 200)]),
        (0.1, [sized_person(3, 150), sized_person(7, 420)]),   # sizes swap: assignment sticks
        (0.2, [sized_person(7, 420)]),                          # 3 hidden for a moment
        (0.5, [sized_person(7, 420), sized_person(3, 150)]),   # 3 is back in time: same avatar
        (0.6, [sized_person(7, 420)]),
        (2.0, [sized_person(7, 420), sized_person(9, 300)]),   # 3 gone for good: 9 takes avatar 0
    ]
    got = [[], []]
    try:
        for fid, (t, people) in enumerate(script):
            result = timed_frame(fid, t, *people)
            for sink in sinks:
                sink.send(result)
            for k, r in enumerate(receivers):
                r.collect(1)  # this frame's datagrams (the sink sends one frame at a time here)
                got[k].append(_raw_track(r.frames()[-1]))
    finally:
        for sink in sinks:
            sink.close()
        for r in receivers:
            r.close()
    assert got[0] == [3, 3, None, 3, None, 9]
    assert got[1] == [7, 7, 7, 7, 7, 7]


def test_pinned_performer_drives_the_first_avatar(rest):
    from realtime.sinks.osc_vmc import PerformerRouter

    router = PerformerRouter(1, pinned=7)
    small, big = sized_person(7, 100), sized_person(3, 400)
    assert router.person_for(0, timed_frame(0, 0.0, big)) is None  # waits for the pinned id
    assert router.person_for(0, timed_frame(1, 0.1, big, small)).track_id == 7
