"""mocap convert without third-party animation software: reading takes, resampling, world frame,
the add-on npz (checked with the smplx package), BVH and GLB structure, bad input."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from engines.errors import UserError
from realtime.animation import convert as convert_mod
from realtime.animation.convert import convert
from realtime.animation.motion import build_motion, settled_betas
from realtime.animation.resample import frame_times, lerp, plan, slerp
from realtime.animation.skeleton import FOOT_JOINTS, open_body_model, shaped_body
from realtime.animation.take import load_take
from realtime.cli import main
from realtime.rotations import euler_zyx_continuous, matrix_to_euler_zyx, quat_to_matrix

from .takes import FPS, known_take, to_blender, world_reference, write_recording, write_results

N = 45  # frames of the known take (1.5 s at 30 fps)


@pytest.fixture(scope="module")
def frames():
    return known_take(N)


@pytest.fixture(scope="module")
def recording(tmp_path_factory, frames):
    return write_recording(tmp_path_factory.mktemp("take") / "rec", {3: frames}, [k / FPS for k in range(N)])


@pytest.fixture(scope="module")
def reference(body_model, frames):
    return world_reference(body_model, frames)


def motion_of(path, smplx_dir, place="camera", fps=FPS):
    take = load_take(path)
    track = next(iter(take.persons.values()))
    body = shaped_body(open_body_model(smplx_dir), settled_betas(track))
    return build_motion(track, body, fps, take.duration, place=place)


# ----------------------------------------------------------------------------- rotations and resampling

def test_euler_zyx_against_scipy_and_continuous():
    from scipy.spatial.transform import Rotation

    q = Rotation.random(200, random_state=1).as_quat()
    zyx = matrix_to_euler_zyx(quat_to_matrix(q))
    np.testing.assert_allclose(Rotation.from_euler("ZYX", zyx).as_matrix(), quat_to_matrix(q), atol=1e-9)
    # a joint spinning steadily about z through +-180 degrees: the angles must not jump by 360
    angles = np.linspace(0, 4 * np.pi, 300)
    spin = Rotation.from_rotvec(np.column_stack([0.3 * np.sin(angles), 0.2 + 0 * angles, angles])).as_matrix()
    e = euler_zyx_continuous(matrix_to_euler_zyx(spin))
    assert np.abs(np.diff(e, axis=0)).max() < 0.3
    np.testing.assert_allclose(Rotation.from_euler("ZYX", e).as_matrix(), spin, atol=1e-9)


def test_resample_matches_scipy_slerp_and_interp():
    from scipy.spatial.transform import Rotation, Slerp

    rng = np.random.default_rng(2)
    times = np.cumsum(rng.uniform(0.02, 0.06, 40))
    times -= times[0]
    rot = Rotation.from_rotvec(np.cumsum(rng.normal(0, 0.15, (40, 3)), axis=0))
    vec = rng.normal(size=(40, 3))
    out_t = frame_times(times[-1], 30.0)
    p = plan(times, out_t, max_gap=0.5)
    assert not p.held.any()
    ours = slerp(rot.as_quat(), p)
    theirs = Slerp(times, rot)(out_t)
    np.testing.assert_allclose(quat_to_matrix(ours), theirs.as_matrix(), atol=1e-9)
    expect = np.column_stack([np.interp(out_t, times, vec[:, c]) for c in range(3)])
    np.testing.assert_allclose(lerp(vec, p), expect, atol=1e-12)


def test_resample_holds_across_long_gaps_and_outside_sightings():
    times = np.array([0.2, 0.3, 0.4, 1.5, 1.6])
    values = np.arange(5.0)[:, None]
    out_t = frame_times(2.0, 10.0)  # 0.0, 0.1, ... 2.0
    p = plan(times, out_t, max_gap=0.5)
    got = lerp(values, p)[:, 0]
    np.testing.assert_allclose(got[:3], 0.0)             # before the first sighting: its pose
    q = plan(times, np.array([0.25, 0.35]), max_gap=0.5)
    np.testing.assert_allclose(lerp(values, q)[:, 0], [0.5, 1.5])  # between samples: interpolated
    assert got[3] == pytest.approx(1.0)                  # 0.3 s: a sample
    np.testing.assert_allclose(got[5:15], 2.0)           # 0.5 .. 1.4 s: the gap holds the pose at 0.4 s
    assert got[15] == pytest.approx(3.0) and got[16] == pytest.approx(4.0)
    np.testing.assert_allclose(got[17:], 4.0)           # after the last sighting
    assert p.held[5:15].all() and not p.held[15:17].any()


# ----------------------------------------------------------------------------- takes, world frame, placement

def test_recording_take_with_two_people(tmp_path, frames):
    other = known_take(10, seed=5)
    seen = [None] * 3 + other[3:8] + [None] * 2
    rec = write_recording(tmp_path / "rec", {3: frames[:10], 7: seen}, [k / FPS for k in range(10)])
    take = load_take(rec)
    assert take.kind == "recording" and sorted(take.persons) == [3, 7]
    assert take.duration == pytest.approx(9 / FPS, abs=1e-6)
    np.testing.assert_allclose(take.persons[7].times, np.arange(3, 8) / FPS, atol=1e-6)
    np.testing.assert_allclose(take.persons[7].params["transl"][:, 0], np.stack([f["transl"] for f in other[3:8]])[:, 0])


def test_motion_is_smplx_forward_kinematics_in_the_world_frame(recording, smplx_dir, reference):
    m = motion_of(recording, smplx_dir, place="camera")
    assert m.n_frames == N and m.rotations.shape == (N, 55, 4)
    np.testing.assert_allclose(m.joint_positions(), reference, atol=1e-5)


def test_floor_placement_stands_the_take_on_the_floor(recording, smplx_dir, reference):
    cam = motion_of(recording, smplx_dir, place="camera")
    m = motion_of(recording, smplx_dir, place="floor")
    shift = m.joint_positions() - cam.joint_positions()
    np.testing.assert_allclose(shift, np.broadcast_to(m.offset, shift.shape), atol=1e-9)  # one constant shift
    assert m.root_position[0, 0] == pytest.approx(0, abs=1e-9) and m.root_position[0, 2] == pytest.approx(0, abs=1e-9)
    joints = m.joint_positions()
    feet = joints[:, list(FOOT_JOINTS), 1].min(axis=1)
    assert np.percentile(feet, 5) == pytest.approx(m.skeleton.sole_height, abs=1e-6)
    head, pelvis = joints[:, 15], joints[:, 0]
    assert (head[:, 1] - pelvis[:, 1] > 0.4).all()  # upright throughout
    assert 1.0 < (head[:, 1] - feet).max() < 2.5     # human-sized, metres


def test_results_folder_take_with_gaps_and_video_rate(tmp_path, frames, smplx_dir):
    seen = list(frames[:20])
    for k in range(5, 7):
        seen[k] = None      # a short miss: interpolated
    for k in range(10, 17):
        seen[k] = None      # 0.27 s: still interpolated at the default 0.5 s
    folder = write_results(tmp_path / "res", {0: seen}, fps=25.0)
    take = load_take(folder)
    assert take.frame_rate == 25.0 and take.duration == pytest.approx(19 / 25.0)
    np.testing.assert_allclose(take.persons[0].times[:6], [0, 1 / 25, 2 / 25, 3 / 25, 4 / 25, 7 / 25])
    bare = write_results(tmp_path / "bare", {0: seen}, fps=None)
    with pytest.raises(UserError, match="--fps"):
        load_take(bare)
    assert load_take(bare, fps=50.0).duration == pytest.approx(19 / 50.0)
    report = convert(folder, tmp_path / "gap.bvh", body_models=smplx_dir, max_gap=0.1)
    assert any("not seen" in w and "held" in w for w in report.warnings)
    assert report.files[0].frames == 20 and report.files[0].fps == 25.0


# ----------------------------------------------------------------------------- formats

def test_addon_npz_is_smplx_in_the_zup_frame(recording, smplx_dir, reference, tmp_path, frames):
    """Forward kinematics of the npz through the smplx package (absolute hands: flat_hand_mean=True),
    read in the add-on's z-up frame, gives the input's joints."""
    import smplx
    import torch

    out = tmp_path / "take.npz"
    convert(recording, out, body_models=smplx_dir, place="camera", smooth=False)
    d = np.load(out)
    assert str(d["gender"]) == "neutral" and d["gender"].dtype.kind == "U"
    assert d["poses"].shape == (N, 165) and d["trans"].shape == (N, 3) and d["betas"].shape == (10,)
    assert d["expression"].shape == (N, 10) and float(d["mocap_frame_rate"]) == FPS
    np.testing.assert_allclose(d["betas"], frames[0]["betas"].ravel(), atol=1e-6)
    np.testing.assert_allclose(d["expression"], np.stack([f["expression"].ravel() for f in frames]), atol=1e-6)
    layer = smplx.SMPLX(str(smplx_dir / "smplx" / "SMPLX_NEUTRAL.npz"), num_betas=10, num_expression_coeffs=10,
                        use_pca=False, flat_hand_mean=True, use_face_contour=True)
    pose = torch.as_tensor(d["poses"], dtype=torch.float32)
    with torch.no_grad():
        res = layer(global_orient=pose[:, :3], body_pose=pose[:, 3:66], jaw_pose=pose[:, 66:69],
                    leye_pose=pose[:, 69:72], reye_pose=pose[:, 72:75], left_hand_pose=pose[:, 75:120],
                    right_hand_pose=pose[:, 120:165], transl=torch.as_tensor(d["trans"], dtype=torch.float32),
                    betas=torch.as_tensor(d["betas"], dtype=torch.float32).expand(N, 10),
                    expression=torch.as_tensor(d["expression"], dtype=torch.float32))
    np.testing.assert_allclose(res.joints[:, :55].numpy(), to_blender(reference), atol=2e-5)


def test_bvh_structure(recording, smplx_dir, tmp_path):
    from engines.body_model import JOINT_NAMES, PARENTS

    out = tmp_path / "take.bvh"
    convert(recording, out, body_models=smplx_dir)
    text = out.read_text()
    head, motion = text.split("MOTION\n")
    names = [line.split()[1] for line in head.splitlines() if line.strip().split()[:1] in (["ROOT"], ["JOINT"])]
    assert sorted(names) == sorted(JOINT_NAMES) and names[0] == "pelvis"
    leaves = [j for j in range(55) if j not in set(PARENTS.tolist())]
    assert head.count("End Site") == len(leaves) == 15  # feet, jaw, eyes and the ten fingertips
    lines = motion.strip().splitlines()
    assert lines[0] == f"Frames: {N}" and float(lines[1].split(":")[1]) == pytest.approx(1 / FPS, abs=1e-8)
    table = np.loadtxt(lines[2:])
    assert table.shape == (N, 3 + 3 * 55)


def test_glb_structure(recording, smplx_dir, tmp_path, frames):
    import pygltflib

    from engines.body_model import JOINT_NAMES

    out = tmp_path / "take.glb"
    convert(recording, out, body_models=smplx_dir, smooth=False, ground=False)
    g = pygltflib.GLTF2.load(str(out))
    prim = g.meshes[0].primitives[0]
    assert g.accessors[prim.attributes.POSITION].count == 10475
    assert len(prim.targets) == 10 and g.meshes[0].extras["targetNames"][0] == "Exp000"
    assert [g.nodes[j].name for j in g.skins[0].joints] == list(JOINT_NAMES)
    anim = g.animations[0]
    paths = [(c.target.node, c.target.path) for c in anim.channels]
    assert sum(p == "rotation" for _, p in paths) == 55 and (0, "translation") in paths
    weights = next(c for c in anim.channels if c.target.path == "weights")
    sampler = anim.samplers[weights.sampler]
    times = g.accessors[sampler.input]
    assert times.count == N and times.max[0] == pytest.approx((N - 1) / FPS, rel=1e-6)
    blob = g.binary_blob()
    view = g.bufferViews[g.accessors[sampler.output].bufferView]
    w = np.frombuffer(blob[view.byteOffset:view.byteOffset + view.byteLength], np.float32).reshape(N, 10)
    np.testing.assert_allclose(w, np.stack([f["expression"].ravel() for f in frames]), atol=1e-6)


def test_skin_influences_keep_the_strongest_weights_normalised():
    from realtime.animation.gltf import skin_influences

    rng = np.random.default_rng(3)
    w = np.zeros((500, 55))
    for i in range(500):
        cols = rng.choice(55, rng.integers(1, 8), replace=False)
        w[i, cols] = rng.uniform(0.05, 1.0, len(cols))
    w /= w.sum(1, keepdims=True)
    idx, wt = skin_influences(w)
    assert idx.shape == (500, 8) and wt.dtype == np.float32
    assert np.abs(wt.sum(1, dtype=np.float64) - 1).max() < 1e-6
    dense = np.zeros_like(w)
    for k in range(8):  # unused slots point at joint 0 with weight 0 and add nothing
        dense[np.arange(500), idx[:, k]] += wt[:, k]
    np.testing.assert_allclose(dense, w, atol=1e-6)  # at most 7 influences here: nothing dropped


# ----------------------------------------------------------------------------- command line and bad input

def test_cli_several_people_one_file_each_and_person(tmp_path, frames, smplx_dir, capsys):
    rec = write_recording(tmp_path / "rec", {1: frames[:6], 4: known_take(6, seed=9)}, [k / FPS for k in range(6)])
    assert main(["convert", str(rec), "--to", "bvh", "--out", str(tmp_path / "o.bvh"), "--body-models",
                 str(smplx_dir)]) == 0
    assert sorted(p.name for p in tmp_path.glob("o*.bvh")) == ["o_1.bvh", "o_4.bvh"]
    assert main(["convert", str(rec), "--out", str(tmp_path / "only.npz"), "--person", "4", "--body-models",
                 str(smplx_dir)]) == 0
    assert (tmp_path / "only.npz").is_file() and not (tmp_path / "only_4.npz").exists()
    capsys.readouterr()
    assert main(["convert", str(rec), "--out", str(tmp_path / "x.glb"), "--person", "9", "--body-models",
                 str(smplx_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no person 9" in err and "1, 4" in err


def test_cli_bad_input_gives_one_line_errors(tmp_path, recording, smplx_dir, capsys):
    cases = [
        (["convert", str(tmp_path / "missing"), "--out", str(tmp_path / "a.bvh")], "does not exist"),
        (["convert", str(tmp_path), "--out", str(tmp_path / "a.bvh")], "neither a recording"),
        (["convert", str(recording), "--out", str(tmp_path / "a.txt")], "cannot tell the format"),
        (["convert", str(recording), "--to", "glb", "--out", str(tmp_path / "a.bvh")], "does not end in .glb"),
        (["convert", str(recording), "--out", str(tmp_path / "no" / "dir" / "a.bvh")], "no such folder"),
        (["convert", str(recording), "--out", str(tmp_path / "a.bvh"), "--body-models", str(tmp_path / "none")],
         "smpl-x.is.tue.mpg.de"),
        (["convert", str(recording), "--out", str(tmp_path / "a.bvh"), "--fps", "-3"], "--fps must be > 0"),
    ]
    for argv, message in cases:
        assert main(argv + (["--body-models", str(smplx_dir)] if "--body-models" not in argv else [])) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, (argv, err)
    assert not list(tmp_path.glob("a.*")) and not list(tmp_path.glob(".*partial*"))


def test_truncated_and_empty_recordings(tmp_path, frames, smplx_dir, capsys):
    rec = write_recording(tmp_path / "rec", {0: frames[:12]}, [k / FPS for k in range(12)])
    data = (rec / "frames.bin").read_bytes()
    (rec / "frames.bin").write_bytes(data[:-40])  # a crash mid-record
    assert main(["convert", str(rec), "--out", str(tmp_path / "t.bvh"), "--body-models", str(smplx_dir)]) == 0
    out = capsys.readouterr()
    assert "11 of 12 frames are intact" in out.err and "1 are lost" in out.err
    assert "Frames: 11" in (tmp_path / "t.bvh").read_text()
    empty = tmp_path / "empty"
    write_recording(empty, {0: []}, [])
    assert main(["convert", str(empty), "--out", str(tmp_path / "e.bvh"), "--body-models", str(smplx_dir)]) == 2
    assert "no intact frame" in capsys.readouterr().err
    nobody = write_recording(tmp_path / "nobody", {0: [None] * 3}, [0, 0.1, 0.2])
    assert main(["convert", str(nobody), "--out", str(tmp_path / "n.bvh"), "--body-models", str(smplx_dir)]) == 2
    assert "nobody was seen" in capsys.readouterr().err


def test_single_frame_take_warns_and_writes_a_still_pose(tmp_path, frames, smplx_dir, capsys):
    folder = write_results(tmp_path / "img", {0: frames[:1]}, fps=None)
    assert main(["convert", str(folder), "--out", str(tmp_path / "still.glb"), "--body-models", str(smplx_dir)]) == 0
    out = capsys.readouterr()
    assert "single frame" in out.err and "1 frame(s)" in out.out
    import pygltflib

    g = pygltflib.GLTF2.load(str(tmp_path / "still.glb"))
    assert g.accessors[g.animations[0].samplers[0].input].count == 1


def test_recording_resampled_to_a_constant_rate(tmp_path, smplx_dir):
    rng = np.random.default_rng(4)
    times = np.cumsum(np.r_[0, rng.uniform(0.03, 0.07, 29)])  # ~20 fps with jitter
    take = known_take(30, seed=2)
    rec = write_recording(tmp_path / "rec", {0: take}, times, fps=None)
    report = convert(rec, tmp_path / "r.bvh", body_models=smplx_dir, fps=24.0)
    expected = int(round(times[-1] * 24.0)) + 1
    assert report.files[0].frames == expected and report.files[0].fps == 24.0
    assert f"Frames: {expected}" in (tmp_path / "r.bvh").read_text()


def test_a_failing_write_leaves_nothing_half_written(tmp_path, recording, smplx_dir, monkeypatch):
    target = tmp_path / "keep.bvh"
    target.write_text("previous file")

    def broken(motion, path, mesh=None):
        with open(path, "w") as f:
            f.write("HIERARCHY\nROOT pel")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(convert_mod.FORMATS, "bvh", convert_mod.Format(".bvh", broken, needs_mesh=False))
    with pytest.raises(UserError, match="No space left"):
        convert(recording, target, body_models=smplx_dir, overwrite=True)
    assert target.read_text() == "previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bvh"]


def test_out_refuses_an_existing_file_and_takes_a_folder(tmp_path, recording, smplx_dir):
    """An existing file is never replaced without --overwrite; a folder is a folder: the file goes in it."""
    target = tmp_path / "mine.bvh"
    target.write_text("the user's own file")
    with pytest.raises(UserError, match="already exists: pass --overwrite"):
        convert(recording, target, body_models=smplx_dir)
    assert target.read_text() == "the user's own file"
    convert(recording, target, body_models=smplx_dir, overwrite=True)
    assert target.read_text().startswith("HIERARCHY")
    folder = tmp_path / "exports"
    folder.mkdir()
    with pytest.raises(UserError, match="is a folder: pass --to"):
        convert(recording, folder, body_models=smplx_dir)
    report = convert(recording, folder, to="bvh", body_models=smplx_dir)
    assert [w.path for w in report.files] == [folder / f"{Path(recording).name}.bvh"]
    assert (folder / f"{Path(recording).name}.bvh").read_text().startswith("HIERARCHY")


def test_fbx_without_blender_names_the_extra(tmp_path, recording, smplx_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bpy", None)  # as if bpy were not installed
    assert main(["convert", str(recording), "--out", str(tmp_path / "a.fbx"), "--body-models", str(smplx_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "smplerx-mocap[blender]" in err and "bpy" in err
    assert not os.listdir(tmp_path)


def test_video_info_round_trip(tmp_path):
    from realtime.results import VIDEO_INFO_FILE, read_video_info, write_video_info

    write_video_info(tmp_path, 29.97, 120, "clip.mp4")
    assert read_video_info(tmp_path) == {"fps": 29.97, "first_frame": 1, "frame_count": 120, "source": "clip.mp4"}
    write_video_info(tmp_path, 0.0, None, "broken.mp4")
    assert json.loads((tmp_path / VIDEO_INFO_FILE).read_text())["fps"] is None
    assert read_video_info(tmp_path / "nowhere") is None
