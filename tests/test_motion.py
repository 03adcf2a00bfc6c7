"""Smoothing and grounding against ground truth: takes with known motion (designed SMPL-X parameters
on the synthetic body model, seen by a known camera) plus estimator-like noise; each rule on its own,
the aims on whole takes, bad input, and the live causal path."""
from __future__ import annotations

import numpy as np
import pytest

from engines.types import FrameResult, Person, SMPLXParams
from realtime.animation.convert import convert
from realtime.animation.grounding import (LEGS, UP, Floor, fit_floor, ground_motion, ground_motions, runs,
                                          sole_heights, sole_points)
from realtime.animation.known_motion import (NoiseModel, add_estimator_noise, align_xz, clean_joints, lag_ms,
                                             make_take, measure, run_live, run_offline, run_raw, track_of)
from realtime.animation.motion import build_motion
from realtime.animation.skeleton import joint_positions, open_body_model, shaped_body
from realtime.animation.smoothing import smooth_take
from realtime.codec import pack, result_from_dict, result_to_dict, unpack
from realtime.filters import FilterSettings
from realtime.rotations import axis_angle_to_quat, quat_angle, quat_conj, quat_mul, quat_rotate

from .takes import write_recording

#: The live settings measured in docs/motion.md (One-Euro with lag compensation).
LOW_LAG = FilterSettings().with_overrides(["predict=true", "body.beta=1.5", "hands.beta=1.5", "root.beta=1"])


@pytest.fixture(scope="module")
def body(smplx_dir):
    return shaped_body(open_body_model(smplx_dir), np.zeros(10))


def _soles(joints, body):
    """Lowest sole point height (T, 2) of each foot."""
    h = sole_heights(body.skeleton)
    return np.stack([np.minimum(joints[:, leg.ankle, 1] - h[i, 0], joints[:, leg.toe, 1] - h[i, 1])
                     for i, leg in enumerate(LEGS)], axis=1)


# ----------------------------------------------------------------------------- each rule on its own

def test_planted_foot_stays_within_2mm(body):
    """A standing take whose root slides 3 cm back and forth (as a noisy root estimate does): after
    grounding each planted ankle stays within 2 mm of one spot."""
    take = make_take("squat", body)
    t = take.times
    root = take.root_position.copy()
    root[:, 0] += 0.03 * np.sin(2 * np.pi * 0.7 * t)
    root[:, 2] += 0.02 * np.sin(2 * np.pi * 1.1 * t + 1.0)
    before = joint_positions(body.skeleton, take.rotations, root)
    floor = Floor(np.repeat(UP[None], len(t), 0), np.zeros(len(t)))
    rot, root_out, report = ground_motion(body.skeleton, take.rotations, root, take.fps, floor)
    after = joint_positions(body.skeleton, rot, root_out)
    for i, leg in enumerate(LEGS):
        assert report.contacts[:, i].mean() > 0.9
        for a, b in runs(report.contacts[:, i]):
            ankle = after[a:b, leg.ankle]
            spread = np.linalg.norm(ankle - np.median(ankle, axis=0), axis=-1).max()
            assert spread < 0.002, f"leg {i}: ankle moves {spread * 1000:.2f} mm while planted"
        slid = np.linalg.norm(before[:, leg.ankle] - np.median(before[:, leg.ankle], axis=0), axis=-1).max()
        assert slid > 0.02  # the input did slide
    assert _soles(after, body).min() > -1e-6  # and no foot went below the floor


@pytest.mark.parametrize("tilt", [8.0, -12.0])
def test_floor_tilted_by_a_known_angle_is_found_within_a_degree(body, tilt):
    take = make_take("walk", body, tilt_deg=tilt)
    noisy, _ = add_estimator_noise(take.params(), seed=3, model=NoiseModel(rotation_deg=2.0, depth=0.01))
    from realtime.animation.smoothing import SmoothSettings

    m = build_motion(track_of(noisy, take.fps), body, take.fps, take.times[-1], place="camera",
                     smooth=SmoothSettings())
    floor = fit_floor([sole_points(m.skeleton, m.rotations, m.root_position, m.fps)], m.fps, m.n_frames)
    true_normal = quat_rotate(take.camera_q[0], UP)
    error = np.degrees(np.arccos(np.clip(floor.normals[0] @ true_normal, -1, 1)))
    assert abs(floor.tilt_degrees - abs(tilt)) < 1.0 and error < 1.0, (floor.tilt_degrees, error)
    assert not floor.moved


def test_outlier_frame_is_replaced_not_averaged_in():
    t = np.arange(40) / 30.0
    aa = np.zeros((40, 55, 3))
    aa[:, 18, 1] = 0.6 * np.sin(2 * np.pi * 0.4 * t)  # an elbow moving
    clean = axis_angle_to_quat(aa)
    bad = aa.copy()
    bad[20, 18] = [2.2, 0.5, 0.0]  # a flipped forearm for one frame
    transl = np.stack([0.1 * t, 0.2 + 0 * t, 3.0 + 0 * t], axis=-1)
    transl_bad = transl.copy()
    transl_bad[11] *= 1.25  # a one-frame depth jump
    q, tr, _, report = smooth_take(t, axis_angle_to_quat(bad), transl_bad, np.zeros((40, 10)))
    err = np.degrees(quat_angle(quat_mul(quat_conj(q[:, 18]), clean[:, 18])))
    assert report.outliers["body"] == 1 and report.outliers["translation"] == 1
    assert err.max() < 1.0  # the outlier frame and its neighbours: as if it never happened
    assert np.abs(tr - transl).max() < 0.005
    q_raw, _, _, _ = smooth_take(t, axis_angle_to_quat(bad), transl, np.zeros((40, 10)),
                                 settings=__import__("realtime.animation.smoothing", fromlist=["x"]).SmoothSettings(
                                     outlier_angle=10.0, outlier_sigmas=1e9))
    leaked = np.degrees(quat_angle(quat_mul(quat_conj(q_raw[:, 18]), clean[:, 18]))).max()
    assert leaked > 10 * err.max()  # without the rule it would have been averaged into its neighbours


def test_step_response_keeps_its_timing_on_irregular_timestamps():
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.02, 0.05, 80))  # a variable frame rate
    step_at = t[40] - 0.01
    angle = np.where(t >= step_at, 0.5, 0.0)
    aa = np.zeros((80, 55, 3))
    aa[:, 5, 0] = angle
    depth = 3.0 + np.where(t >= step_at, 0.4, 0.0)
    transl = np.stack([0 * t, 0 * t, depth], axis=-1)
    q, tr, _, _ = smooth_take(t, axis_angle_to_quat(aa), transl, np.zeros((80, 10)))
    got = 2 * np.arctan2(q[:, 5, 0], q[:, 5, 3])
    for signal, lo, hi in ((got, 0.0, 0.5), (tr[:, 2], 3.0, 3.4)):
        mid = (lo + hi) / 2
        k = np.flatnonzero(signal >= mid)[0]  # first sample past half way
        crossing = t[k - 1] + (mid - signal[k - 1]) / (signal[k] - signal[k - 1]) * (t[k] - t[k - 1])
        assert abs(crossing - (t[39] + t[40]) / 2) < 0.6 * (t[40] - t[39])  # half way between the samples
        assert abs(signal[0] - lo) < 0.02 * (hi - lo) and abs(signal[-1] - hi) < 0.02 * (hi - lo)


# ----------------------------------------------------------------------------- the aims on known takes

def _aims(body, name, live: bool):
    take = make_take(name, body, tilt_deg=5.0)
    noisy, outliers = add_estimator_noise(take.params(), seed=7)
    assert outliers  # the noise has one-frame outliers in it
    raw = measure(run_raw(take, noisy), take)
    off_j, motion, _ = run_offline(take, noisy)
    off = measure(off_j, take)
    assert off["accel_mm"] * 5 <= raw["accel_mm"], (raw, off)
    assert off["mpjpe_mm"] <= raw["mpjpe_mm"]
    assert off["skate_mm"] < 5.0 and off["penetration_mm"] < 1.0
    if live:
        live_j, _, _ = run_live(take, noisy, LOW_LAG)
        lv = measure(live_j, take)
        ref = clean_joints(take)
        assert lv["accel_mm"] * 3 <= raw["accel_mm"], (raw, lv)
        assert lag_ms(align_xz(live_j, ref), ref, take.fps) < 1000 / 30
    return raw, off


def test_aims_met_on_a_noisy_walk(body):
    _aims(body, "walk", live=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["squat", "turn", "wave"])
def test_aims_met_on_the_other_known_takes(body, name):
    _aims(body, name, live=True)


# ----------------------------------------------------------------------------- bad input

def test_jump_keeps_the_flight_and_never_sinks(body):
    take = make_take("jump", body)
    noisy, _ = add_estimator_noise(take.params(), seed=2, model=NoiseModel(flip_rate=0, swap_rate=0, jump_rate=0))
    joints, motion, _ = run_offline(take, noisy)
    soles = _soles(joints, body)
    air = ~take.contacts[:, 0]
    assert soles.min() > -1e-3  # never below the floor
    takeoff = np.flatnonzero(air)[0]
    late = air.copy()
    late[takeoff:takeoff + 3] = False  # the hysteresis lets go within 0.1 s of the take-off
    assert not motion.contacts[late].any()  # no foot planted in the air
    peak = np.argmax(take.root_position[:, 1])
    assert soles[peak].min() > 0.15  # the jump is kept, not pulled down to the floor
    assert np.percentile(soles[take.contacts[:, 0]].min(axis=1), 50) < 0.01  # and it lands on the floor


def test_camera_tilting_mid_take_is_noticed_and_each_part_grounded(body):
    take = make_take("walk", body, seconds=9.0, tilt_deg=0.0, tilt_to_deg=10.0)
    noisy, _ = add_estimator_noise(take.params(), seed=4, model=NoiseModel(depth=0.01, flip_rate=0, swap_rate=0,
                                                                           jump_rate=0))
    joints, motion, notes = run_offline(take, noisy)
    assert any("camera seems to move" in n for n in notes), notes
    low = _soles(joints, body).min(axis=1)
    n = len(low)
    for part in (slice(0, n // 3), slice(2 * n // 3, n)):  # before and after the tilt
        assert abs(np.median(low[part])) < 0.02
    assert low.min() > -1e-3


def test_two_people_stand_on_the_same_floor(body):
    a = make_take("walk", body, tilt_deg=6.0, seed=1)
    b = make_take("squat", body, tilt_deg=6.0, seed=2, seconds=a.n_frames / a.fps, origin=(1.5, -0.5))
    ms = []
    for take, seed in ((a, 1), (b, 2)):
        noisy, _ = add_estimator_noise(take.params(), seed=seed)
        from realtime.animation.smoothing import SmoothSettings

        ms.append(build_motion(track_of(noisy, take.fps, person_id=seed), body, take.fps, take.times[-1],
                               place="camera", smooth=SmoothSettings()))
    ground_motions(ms)
    for m, take in zip(ms, (a, b)):
        soles = _soles(joint_positions(m.skeleton, m.rotations, m.root_position), body)
        assert soles.min() > -1e-3
        assert abs(np.median(soles[take.contacts].ravel())) < 0.015


def test_one_frame_and_feet_out_of_view_give_one_line_notes(tmp_path, body, smplx_dir):
    take = make_take("wave", body, seconds=1.0)
    frames = take.params()
    one = write_recording(tmp_path / "one", {0: frames[:1]}, [0.0])
    report = convert(one, tmp_path / "one.npz", body_models=smplx_dir)
    assert any("single frame" in w for w in report.warnings) and report.files[0].frames == 1
    # upper body only: the detector box ends at the hips, so the feet project below it
    from realtime.sinks.recorder import Recorder

    with Recorder(tmp_path / "upper", fps=30.0, source="test") as rec:
        for k, f in enumerate(frames):
            p = Person(track_id=3, params=SMPLXParams.from_dict(f), bbox=np.zeros(4, np.float32),
                       bbox_detector=np.array([200, 0, 240, 200], np.float32),
                       focal=np.array([1000.0, 1000.0], np.float32), princpt=np.array([320.0, 240.0], np.float32))
            rec.send(FrameResult(frame_id=k, t_capture_ns=1_000_000_000 + int(k * 1e9 / 30), image_size=(640, 480),
                                 persons=[p]))
    report = convert(tmp_path / "upper", tmp_path / "upper.bvh", body_models=smplx_dir)
    assert sum("upper body" in w and "not grounded" in w for w in report.warnings) == 1
    assert all("\n" not in w for w in report.warnings)


def test_convert_flags(tmp_path, body, smplx_dir, capsys):
    from realtime.cli import main

    take = make_take("squat", body, seconds=1.5)
    noisy, _ = add_estimator_noise(take.params(), seed=5)
    rec = write_recording(tmp_path / "rec", {0: noisy}, list(take.times))
    assert main(["convert", str(rec), "--out", str(tmp_path / "raw.npz"), "--no-smooth", "--no-ground",
                 "--body-models", str(smplx_dir)]) == 0
    assert main(["convert", str(rec), "--out", str(tmp_path / "smooth.npz"), "--body-models", str(smplx_dir)]) == 0
    raw, smooth = np.load(tmp_path / "raw.npz"), np.load(tmp_path / "smooth.npz")
    jitter = lambda x: np.abs(np.diff(x, 2, axis=0)).mean()  # noqa: E731
    assert jitter(smooth["poses"]) * 3 < jitter(raw["poses"])
    assert main(["convert", str(rec), "--out", str(tmp_path / "x.npz"), "--place", "camera", "--ground",
                 "--body-models", str(smplx_dir)]) == 2
    assert "--place floor" in capsys.readouterr().err


# ----------------------------------------------------------------------------- live

def test_live_grounder_learns_the_floor_and_relearns_when_the_camera_moves(body):
    take = make_take("squat", body, seconds=10.0, tilt_deg=0.0, tilt_to_deg=15.0)
    frames, _ = add_estimator_noise(take.params(), seed=6, model=NoiseModel(rotation_deg=1.0, depth=0.005,
                                                                            flip_rate=0, swap_rate=0, jump_rate=0))
    joints, ms, grounder = run_live(take, frames)
    assert len(grounder.floor.relearned) >= 1 and 5.0 < grounder.floor.relearned[0] < 7.5  # the tilt is at 5 s
    normal = grounder.floor.current()[0]
    true_normal = quat_rotate(take.camera_q[-1], UP)
    assert np.degrees(np.arccos(np.clip(normal @ true_normal, -1, 1))) < 3.0
    low = _soles(joints, body).min(axis=1)
    assert low.min() > -1e-3  # never below its floor
    assert abs(np.median(low[-30:])) < 0.02 and abs(np.median(low[60:140])) < 0.02
    assert ms < 20.0


def test_grounded_root_goes_over_zmq_and_vmc(body):
    from realtime.retarget import smplx_to_unity

    take = make_take("wave", body, seconds=0.5)
    params = SMPLXParams.from_dict(take.params()[0])
    grounded = {"version": 1, "root_pos": [0.1, 0.9, -0.2], "root_quat": [0.0, 0.0, 0.0, 1.0],
                "contacts": [True, False], "floor": [0.0, 1.0, 0.0, -1.1], "floor_state": "fitted"}
    z = np.zeros(4, np.float32)
    person = Person(track_id=1, params=params, bbox=z, bbox_detector=z, focal=np.ones(2, np.float32),
                    princpt=np.zeros(2, np.float32), grounded=grounded)
    back = result_from_dict(unpack(pack(result_to_dict(FrameResult(0, 1, (640, 480), [person])))))
    got = back.persons[0].grounded
    assert got["version"] == 1 and got["contacts"] == [True, False] and got["floor_state"] == "fitted"
    np.testing.assert_allclose(got["root_pos"], grounded["root_pos"], atol=1e-6)
    np.testing.assert_allclose(back.persons[0].params.transl, params.transl)  # raw values stay
    rest = body.skeleton.rest
    pose = smplx_to_unity(params, rest, body.hand_mean[0], body.hand_mean[1], grounded=grounded)
    raw = smplx_to_unity(params, rest, body.hand_mean[0], body.hand_mean[1])
    hips_height = rest[0, 1] - rest[:, 1].min()
    np.testing.assert_allclose(pose.root_pos, [-0.1, 0.9 - hips_height, -0.2], atol=1e-9)  # Unity mirrors x
    assert np.linalg.norm(raw.root_pos - pose.root_pos) > 0.5
    # with no grounding the message has no field (older subscribers see what they saw)
    plain = result_to_dict(FrameResult(0, 1, (640, 480), [Person(1, params, z, z, z[:2], z[:2])]))
    assert "grounded" not in plain["persons"][0]


@pytest.mark.slow
def test_pipeline_sends_the_grounded_root_to_vmc_and_zmq(media_dir, body_model, tmp_path):
    """The live pipeline with --ground: a real clip, tracker and filter, the model replaced by the stand-in;
    every result's person carries the grounded root, the recording keeps it, and the VMC sink's Root/Pos
    is the grounded one (a real UDP socket on 127.0.0.1)."""
    import socket

    from engines.detector import PersonDetector
    from engines.stand_in import StandInPredictor
    from engines.detection_schedule import DetectionSchedule
    from engines.tracking import PersonTracker
    from realtime.capture import open_source
    from realtime.filters import MultiPersonFilter
    from realtime.grounding import LiveGrounder
    from realtime.pipeline import Pipeline
    from realtime.recording import load_recording
    from realtime.sinks.osc_vmc import VMCSink
    from realtime.sinks.recorder import Recorder

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5.0)
    detector = PersonDetector(static=False)
    source = open_source(str(media_dir / "street_walk_960x540.mp4"), pace=False, loop=True)
    sinks = [VMCSink("127.0.0.1", rx.getsockname()[1], body_model), Recorder(tmp_path / "rec", fps=30.0)]
    pipe = Pipeline(source, StandInPredictor(body_model, cost_ms=1.0), DetectionSchedule(detector, PersonTracker()),
                    MultiPersonFilter(hand_mean=(body_model.hand_mean_left, body_model.hand_mean_right)), sinks,
                    grounder=LiveGrounder.from_body_model(body_model))
    try:
        pipe.start(20)
        pipe.wait(duration=60)
    finally:
        pipe.stop()
        detector.close()
    assert pipe.error is None, pipe.error
    rec = load_recording(tmp_path / "rec")
    grounded = [p.grounded for f in rec.frames for p in f.persons]
    assert len(grounded) == 20 and all(g is not None and g["version"] == 1 for g in grounded)
    last = np.asarray(grounded[-1]["root_pos"])
    datagrams = []
    try:
        while True:
            datagrams.append(rx.recv(65536))
    except socket.timeout:
        pass
    finally:
        rx.close()
    from pythonosc.osc_bundle import OscBundle
    from pythonosc.osc_message import OscMessage

    from realtime.retarget import RestModel, smplx_to_unity

    roots = []
    for d in datagrams:
        msgs = list(OscBundle(d)) if OscBundle.dgram_is_bundle(d) else [OscMessage(d)]
        roots += [np.asarray(m.params[1:4]) for m in msgs if m.address == "/VMC/Ext/Root/Pos"]
    assert roots
    rest = RestModel.from_body_model(body_model)
    first = rest.joints(rec.frames[0].persons[0].params.betas)  # the sink keeps the first frame's bone lengths
    expected = [smplx_to_unity(p.params, first, rest.hand_mean_left, rest.hand_mean_right,
                               grounded=p.grounded).root_pos for f in rec.frames for p in f.persons]
    raw = [smplx_to_unity(p.params, first, rest.hand_mean_left, rest.hand_mean_right).root_pos
           for f in rec.frames for p in f.persons]
    assert min(np.abs(r - e).max() for r, e in zip(raw, expected)) > 0.05  # grounded differs from raw
    for got in roots:  # every Root/Pos sent is the grounded root of one of the frames
        assert min(np.abs(got - e).max() for e in expected) < 1e-4
    assert np.isfinite(last).all()


def test_batch_export_flags_enter_the_results_identity_only_with_exports():
    from realtime.batch.options import BatchOptions

    plain = BatchOptions(checkpoint="c").results_identity()
    assert "export_smooth" not in plain  # folders made before the flags existed still match
    raw = BatchOptions(checkpoint="c", exports=("bvh",), export_smooth=False, export_ground=False).results_identity()
    smooth = BatchOptions(checkpoint="c", exports=("bvh",)).results_identity()
    assert raw != smooth and smooth["export_smooth"] and smooth["export_ground"]


@pytest.mark.slow
def test_mocap_live_ground_records_the_grounded_root(tmp_path, media_dir, s32_ckpt, smplx_dir):
    """`mocap live --ground` end to end (random-weight network, real clip): the recording holds the
    versioned grounded field next to the raw parameters."""
    from realtime.cli import main
    from realtime.recording import load_recording

    rec = tmp_path / "rec"
    assert main(["live", "--source", str(media_dir / "posetrack_1280x720.mp4"), "--no-pace", "--engine", "torch",
                 "--viewer", "none", "--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir),
                 "--osc", "none", "--zmq", "none", "--max-frames", "3", "--ground", "--record", str(rec)]) == 0
    persons = [p for f in load_recording(rec).frames for p in f.persons]
    assert persons and all(p.grounded is not None and p.grounded["version"] == 1 for p in persons)
    assert all(p.grounded["floor_state"] == "learning" for p in persons)  # 3 frames: still learning the floor
