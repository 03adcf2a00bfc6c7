"""mocap train: HumanData reading, augmentation geometry, loss terms, resume, DDP, snapshots."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .helpers import REPO, media_file

PHOTOS = ("coco_000785_skier.jpg", "coco_197388.jpg", "humanart_acrobatics.jpg", "mpii_004645041.jpg")


@pytest.fixture(scope="module")
def humandata(tmp_path_factory, body_model):
    """A 4-sample HumanData file on real photos with synthetic SMPL-X labels: (npz, image root)."""
    from engines.datasets.synthetic import write_synthetic_humandata

    images = [media_file(n) for n in PHOTOS]
    path = write_synthetic_humandata(tmp_path_factory.mktemp("hd") / "hd.npz", images, body_model, seed=3)
    return path, images[0].parent


def _rewrite(src: Path, dst: Path, **changes) -> Path:
    data = dict(np.load(src, allow_pickle=True))
    for k, v in changes.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    np.savez(dst, **data)
    return dst


# --------------------------------------------------------------------------- reader
def test_reader_maps_keypoints_and_pads_boxes_as_officially(humandata):
    from engines.datasets import joints as J
    from engines.datasets.humandata import read_humandata
    from engines.geometry import process_bbox

    path, root = humandata
    raw = np.load(path, allow_pickle=True)
    recs = read_humandata(path, root)
    assert len(recs) == 4
    r = recs[1]
    # the official 137 mapping has the eyeballs as 56, 57 (the network's joint order has 57, 56)
    np.testing.assert_allclose(r.joint_img[67], raw["keypoints2d_smplx"][1, 56, :2])
    np.testing.assert_allclose(r.joint_img[24], raw["keypoints2d_smplx"][1, 55, :2])  # nose
    np.testing.assert_allclose(r.joint_cam[J.LWRIST], raw["keypoints3d_smplx"][1, 20, :3])
    h, w = r.img_shape
    np.testing.assert_allclose(r.bbox, process_bbox(raw["bbox_xywh"][1, :4], w, h, 1.2 * 0.833), rtol=1e-6)
    face = process_bbox(raw["face_bbox_xywh"][1, :4], w, h, 1.2)
    np.testing.assert_allclose(r.face_bbox, np.concatenate([face[:2], face[:2] + face[2:]]), rtol=1e-6)
    assert recs[-1].lhand_bbox is None  # confidence 0 -> no box
    assert r.smplx_param["lhand_valid"] and r.smplx_param["face_valid"]


@pytest.mark.parametrize("change, message", [
    ({"bbox_xywh": None}, "'bbox_xywh' is missing"),
    ({"bbox_xywh": np.zeros((3, 5), np.float32)}, "'bbox_xywh' has 3 entries"),
    ({"keypoints2d_smplx": None}, "no 2-D keypoints"),
    ({"smplx": None}, "no SMPL-X parameters"),
])
def test_reader_refuses_bad_files_in_one_line(humandata, tmp_path, change, message):
    from engines.datasets.humandata import HumanDataError, read_humandata

    path, root = humandata
    bad = _rewrite(path, tmp_path / "bad.npz", **change)
    with pytest.raises(HumanDataError, match=message) as info:
        read_humandata(bad, root)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_reader_counts_missing_images(humandata, tmp_path):
    from engines.datasets.humandata import read_humandata

    path, root = humandata
    paths = np.array(["missing.jpg"] + [Path(p).name for p in np.load(path)["image_path"][1:]])
    bad = _rewrite(path, tmp_path / "noimg.npz", image_path=paths, meta=None)
    stats = {}
    recs = read_humandata(bad, root, stats=stats)
    assert len(recs) == 3 and stats["no_image"] == 1


def test_test_split_is_the_plain_crop(humandata):
    from engines.datasets.humandata import HumanDataset
    from engines.geometry import crop_transform

    path, root = humandata
    ds = HumanDataset(path, root, split="test")
    inputs, targets, meta = ds[0]
    assert inputs["img"].shape == (3, 512, 384) and 0 <= float(inputs["img"].min()) <= float(inputs["img"].max()) <= 1
    np.testing.assert_allclose(meta["bb2img_trans"], crop_transform(ds.records[0].bbox, inverse=True), atol=1e-3)
    raw = np.load(path, allow_pickle=True)["smplx"].item()
    np.testing.assert_allclose(targets["smplx_pose"][3:66], raw["body_pose"][0].reshape(-1), atol=1e-6)
    np.testing.assert_allclose(targets["smplx_cam_trans"], raw["transl"][0], atol=1e-6)


# --------------------------------------------------------------------------- augmentation geometry
def test_flip_mirrors_keypoints_and_swaps_left_and_right():
    from engines.datasets import joints as J
    from engines.datasets.augmentation import patch_transform
    from engines.datasets.targets import keypoint_targets, smplx_param_targets

    rng = np.random.default_rng(0)
    w, h = 400, 300
    img_xy = rng.uniform([50, 50], [350, 250], (137, 2)).astype(np.float32)
    cam = rng.normal(0, 0.3, (137, 3)).astype(np.float32)
    joint_img = np.concatenate([img_xy, np.full((137, 1), 8.0, np.float32)], 1)
    valid = np.ones((137, 1), np.float32)
    valid[J.PART["lhand"][0]] = 0  # a left-hand joint without a label ...
    trans = patch_transform(200, 150, 300, 400, 384, 512, 1.0, 0.0)
    ji, cam_wo, _, v, _ = keypoint_targets(joint_img, cam, valid, True, (h, w), trans, 0.0)
    li, ri = J.JOINT_NAMES.index("L_Wrist"), J.JOINT_NAMES.index("R_Wrist")
    # the flipped image's left wrist is the mirrored right wrist, in the 12x16 grid
    x_grid = (trans[0, 0] * (w - 1 - img_xy[ri, 0]) + trans[0, 1] * img_xy[ri, 1] + trans[0, 2]) / 384 * 12
    assert ji[li, 0] == pytest.approx(x_grid, rel=1e-5)
    assert cam_wo[li, 0] == pytest.approx(-cam[ri, 0]) and cam_wo[li, 1] == pytest.approx(cam[ri, 1])
    assert v[J.PART["rhand"][0]] == 0 and v[J.PART["lhand"][0]] == 1  # ... becomes a right-hand one
    assert ji[J.ROOT, 0] == pytest.approx((trans[0, 0] * (w - 1 - img_xy[0, 0]) + trans[0, 1] * img_xy[0, 1]
                                           + trans[0, 2]) / 384 * 12, rel=1e-5)

    param = {"root_pose": np.array([0.1, 0.2, 0.3]), "body_pose": rng.normal(0, 0.2, (21, 3)),
             "lhand_pose": rng.normal(0, 0.2, (15, 3)), "rhand_pose": None, "rhand_valid": False,
             "jaw_pose": np.array([0.2, 0.05, -0.1]), "expr": np.ones(10), "shape": np.zeros(10)}
    pose, _, _, pvalid, _ = smplx_param_targets(param, True, 0.0)
    pose = pose.reshape(53, 3)
    np.testing.assert_allclose(pose[37:52], param["lhand_pose"] * [1, -1, -1], rtol=1e-5, atol=1e-7)
    assert (pvalid[22:37] == 0).all() and (pvalid[37:52] == 1).all()  # the missing right hand is now the left
    np.testing.assert_allclose(pose[1], param["body_pose"][1] * [1, -1, -1], rtol=1e-5)  # L_Hip <- R_Hip
    np.testing.assert_allclose(pose[0], [0.1, -0.2, -0.3], rtol=1e-5)
    np.testing.assert_allclose(pose[52], [0.2, -0.05, 0.1], rtol=1e-5)


def test_rotation_turns_the_root_and_the_3d_joints_together():
    import cv2

    from engines.datasets.augmentation import patch_transform
    from engines.datasets.targets import keypoint_targets, smplx_param_targets

    cam = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]] + [[0, 0, 0]] * 135, np.float32)
    img = np.zeros((137, 3), np.float32)
    _, cam_wo, _, _, _ = keypoint_targets(img, cam, np.ones((137, 1), np.float32), False, (100, 100),
                                          patch_transform(50, 50, 100, 100, 384, 512, 1.0, 90.0), 90.0)
    np.testing.assert_allclose(cam_wo[1], [0.0, -1.0, 0.0], atol=1e-6)  # +x turned by -90 degrees about z
    param = {"root_pose": np.zeros(3), "body_pose": np.zeros(63), "shape": np.zeros(10)}
    pose = smplx_param_targets(param, False, 90.0)[0]
    rot, _ = cv2.Rodrigues(pose[:3].astype(np.float64))
    np.testing.assert_allclose(rot @ [1, 0, 0], [0, -1, 0], atol=1e-6)


def test_identity_augmentation_draws_nothing():
    import random

    from engines.datasets.augmentation import Augment

    state = (random.getstate(), np.random.get_state()[1].copy())
    assert Augment.identity() == Augment(1.0, 0.0, (1.0, 1.0, 1.0), False)
    assert random.getstate() == state[0] and (np.random.get_state()[1] == state[1]).all()
    np.random.seed(0)
    random.seed(0)
    draws = [Augment.draw() for _ in range(200)]
    assert all(0.75 <= d.scale <= 1.25 and abs(d.rot) <= 60 and all(0.8 <= c <= 1.2 for c in d.color) for d in draws)
    assert 60 < sum(d.flip for d in draws) < 140


# --------------------------------------------------------------------------- losses
def _targets_from(out, b=2):
    """Targets and masks equal to a prediction (all valid)."""
    from engines.datasets import joints as J

    targets = {"smplx_pose": out["pose"].clone(), "smplx_shape": out["shape"].clone(), "smplx_expr": out["expr"].clone(),
               "joint_cam": out["joint_cam_wo_ra"].clone(), "smplx_joint_cam": out["joint_cam"].clone()}
    for part in ("lhand", "rhand", "face"):
        targets[f"{part}_bbox_center"] = out[f"{part}_bbox_center"].clone()
        targets[f"{part}_bbox_size"] = out[f"{part}_bbox_size"].clone()
    ones = torch.ones(b)
    meta = {"smplx_pose_valid": torch.ones(b, 159), "smplx_shape_valid": ones, "smplx_expr_valid": ones,
            "joint_valid": torch.ones(b, J.JOINT_NUM, 1), "smplx_joint_valid": torch.ones(b, J.JOINT_NUM, 1),
            "is_3D": ones, "lhand_bbox_valid": ones, "rhand_bbox_valid": ones, "face_bbox_valid": torch.zeros(b),
            "joint_trunc": torch.zeros(b, J.JOINT_NUM, 1), "smplx_joint_trunc": torch.zeros(b, J.JOINT_NUM, 1)}
    targets["joint_img"] = torch.zeros(b, J.JOINT_NUM, 3)
    targets["smplx_joint_img"] = torch.zeros(b, J.JOINT_NUM, 3)
    return targets, meta


def _fake_out(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    out = {"pose": r(b, 159), "shape": r(b, 10), "expr": r(b, 10), "joint_cam_wo_ra": r(b, 137, 3),
           "joint_cam": r(b, 137, 3), "joint_proj": r(b, 137, 2) + 6, "joint_img": r(b, 65, 3) + 6}
    for part in ("lhand", "rhand", "face"):
        out[f"{part}_bbox_center"] = r(b, 2) + 6
        out[f"{part}_bbox_size"] = r(b, 2).abs() + 1
    out["lhand_bbox"] = torch.tensor([[40.0, 60, 104, 124]] * b)
    out["rhand_bbox"] = torch.tensor([[100.0, 60, 164, 124]] * b)
    return out


def test_losses_vanish_when_the_prediction_is_the_target():
    from engines.training.losses import official_losses, reduce_losses

    out = _fake_out()
    targets, meta = _targets_from(out)
    loss = official_losses(out, targets, meta)
    means, total = reduce_losses(loss)
    for k in ("smplx_pose", "smplx_shape", "smplx_expr", "joint_cam", "smplx_joint_cam", "lhand_bbox", "rhand_bbox"):
        assert float(means[k]) == 0.0, k
    assert "face_bbox" not in loss  # no valid face box in the batch: no term, as officially


def test_loss_terms_against_independent_sums():
    from engines.training.losses import official_losses

    out = _fake_out(seed=1)
    targets, meta = _targets_from(_fake_out(seed=2))
    meta["smplx_pose_valid"][0, :66] = 0  # root + body of sample 0 unlabelled
    meta["is_3D"][1] = 0
    meta["face_bbox_valid"][1] = 1
    loss = official_losses(out, targets, meta)
    d = (out["pose"] - targets["smplx_pose"]).abs()
    d[0, :66] = 0
    assert float(loss["smplx_pose"].mean()) == pytest.approx(10 * float(d.sum()) / d.numel(), rel=1e-5)
    e = (out["joint_cam_wo_ra"] - targets["joint_cam"]).abs()[0]
    assert float(loss["joint_cam"].mean()) == pytest.approx(100 * float(e.sum()) / (2 * 137 * 3), rel=1e-5)
    f = sum((out[f"face_bbox_{k}"][1] - targets[f"face_bbox_{k}"][1]).abs().sum() for k in ("center", "size"))
    assert float(loss["face_bbox"].mean()) == pytest.approx(float(f) / 4, rel=1e-5)
    # all 2-D joints truncated: the 2-D terms are 0
    assert float(loss["joint_proj"].sum()) == 0 and float(loss["joint_img"].sum()) == 0


def test_hand_targets_move_into_the_predicted_hand_box():
    """A hand joint at the centre of the predicted hand box is at (8, 8) of the 16x16 hand grid."""
    from engines.datasets import joints as J
    from engines.training.losses import official_losses

    out = _fake_out(b=1)
    targets, meta = _targets_from(out, b=1)
    j = J.PART["rhand"][3]
    box = out["rhand_bbox"][0]  # xyxy in the 192x256 body input
    targets["joint_img"][0, j] = torch.tensor([float(box[0] + box[2]) / 2 / 16, float(box[1] + box[3]) / 2 / 16, 5.0])
    targets["smplx_joint_img"] = targets["joint_img"].clone()
    meta["joint_trunc"][0, j] = 1
    meta["smplx_joint_trunc"][0, j] = 1
    out["joint_img"][0, j] = torch.tensor([8.0, 8.0, 5.0])
    loss = official_losses(out, targets, meta)
    assert float(loss["joint_img"][0, j].abs().sum()) == pytest.approx(0.0, abs=1e-5)
    out["joint_img"][0, j] = torch.tensor([9.0, 8.0, 5.0])
    assert float(official_losses(out, targets, meta)["joint_img"][0, j, 0]) == pytest.approx(1.0, rel=1e-5)


def test_balanced_mixing_gives_each_file_an_equal_share():
    from engines.datasets.mixing import MultipleDatasets

    mixed = MultipleDatasets([list(range(10)), list(range(100, 104))], balanced=True)
    assert len(mixed) == 14
    firsts = [mixed.locate(i) for i in range(7)]
    assert firsts == [(0, i) for i in range(7)]
    assert [mixed.locate(i) for i in range(7, 11)] == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert all(mixed.locate(i)[0] == 1 for i in range(7, 14))
    concat = MultipleDatasets([list(range(3)), list(range(100, 102))], balanced=False)
    assert [concat[i] for i in range(5)] == [0, 1, 2, 100, 101]


# --------------------------------------------------------------------------- drop path
def test_stochastic_depth_only_in_training(s32_net):
    from engines.smplerx import SMPLerX

    net = SMPLerX("s32")
    net.load_state_dict(s32_net.state_dict())
    x = torch.rand(2, 3, 256, 192)
    net.eval()
    with torch.no_grad():
        ref = net.encoder(x)[0]
        net.set_drop_path(0.5)
        assert torch.equal(net.encoder(x)[0], ref)  # eval never drops
        net.train()
        torch.manual_seed(0)
        dropped = net.encoder(x)[0]
        net.set_drop_path(0.0)
        kept = net.encoder(x)[0]
    assert not torch.allclose(dropped, kept)
    assert net.encoder.blocks[0].drop_path == 0.0


# --------------------------------------------------------------------------- runs (slow)
def _train(args, cwd=REPO, env_extra=None, torchrun=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.update(env_extra or {})
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
               "-m", "realtime.cli", "train"] + args
    else:
        cmd = [sys.executable, "-m", "realtime.cli", "train"] + args
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


def _log(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _base(humandata, s32_ckpt, smplx_dir, out, batch, extra=()):
    path, root = humandata
    return ["--config", "s32", "--init", str(s32_ckpt), "--data", f"{path}:{root}", "--out", str(out),
            "--batch-size", str(batch), "--no-augment", "--no-shuffle", "--seed", "0", "--body-models", str(smplx_dir),
            "--workers", "0", "--lr", "1e-4", *extra]


@pytest.mark.slow
def test_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path, humandata, s32_ckpt, smplx_dir):
    full = _train(_base(humandata, s32_ckpt, smplx_dir, tmp_path / "a", 2,
                        ["--steps", "3", "--log-json", str(tmp_path / "a.jsonl")]))
    assert full.returncode == 0, full.stderr
    first = _train(_base(humandata, s32_ckpt, smplx_dir, tmp_path / "b", 2,
                         ["--steps", "3", "--save-every", "1", "--log-json", str(tmp_path / "b.jsonl")]))
    assert first.returncode == 0, first.stderr
    for name in ("snapshot_2.pth.tar", "snapshot_3.pth.tar", "snapshot_3.resume.pth"):
        (tmp_path / "b" / name).unlink()
    again = _train(_base(humandata, s32_ckpt, smplx_dir, tmp_path / "b", 2,
                         ["--steps", "3", "--save-every", "1", "--resume", "--log-json", str(tmp_path / "b.jsonl")]))
    assert again.returncode == 0, again.stderr
    a, b = _log(tmp_path / "a.jsonl"), _log(tmp_path / "b.jsonl")
    assert [r["step"] for r in b] == [0, 1, 2, 1, 2]
    for ra, rb in zip(a[1:], b[3:]):
        assert ra["total"] == pytest.approx(rb["total"], rel=1e-6) and ra["lr"] == pytest.approx(rb["lr"])
    assert a[0]["lr"] == 1e-4 and a[1]["lr"] < 1e-4  # cosine schedule stepped per update


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(tmp_path, humandata, s32_ckpt, smplx_dir):
    # the official learning rate (Adam's first steps move every weight by about lr, so a larger one
    # magnifies the rounding differences of a split sum)
    one = _train(_base(humandata, s32_ckpt, smplx_dir, tmp_path / "one", 4,
                       ["--steps", "2", "--lr", "1e-5", "--log-json", str(tmp_path / "one.jsonl")]))
    assert one.returncode == 0, one.stderr
    two = _train(_base(humandata, s32_ckpt, smplx_dir, tmp_path / "two", 2,
                       ["--steps", "2", "--lr", "1e-5", "--log-json", str(tmp_path / "two.jsonl")]), torchrun=2)
    assert two.returncode == 0, two.stderr
    a, b = _log(tmp_path / "one.jsonl"), _log(tmp_path / "two.jsonl")
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        assert set(ra["loss"]) == set(rb["loss"])
        for k in ra["loss"]:
            assert rb["loss"][k] == pytest.approx(ra["loss"][k], rel=1e-5, abs=1e-6), (ra["step"], k)
    w1 = torch.load(tmp_path / "one" / "snapshot_2.pth.tar", weights_only=True)["network"]
    w2 = torch.load(tmp_path / "two" / "snapshot_2.pth.tar", weights_only=True)["network"]
    # weights: Adam moves a weight by about lr whatever its gradient's size, so a gradient at the rounding
    # noise level can move the two runs' copies apart by up to 2 lr per step; all others agree closely
    far = total = 0
    for k in w1:
        if w1[k].is_floating_point():
            diff = (w2[k] - w1[k]).abs()
            assert float(diff.max()) <= 2 * 1e-5 * 2 + 1e-6, k
            far += int((diff > 1e-6).sum())
            total += diff.numel()
    assert far <= 1e-3 * total, (far, total)


@pytest.mark.slow
def test_overfit_lowers_the_loss_and_the_snapshot_runs_in_mocap_image(tmp_path, humandata, s32_ckpt, smplx_dir):
    from engines.checkpoints import IGNORED_TOP_LEVEL
    from realtime.cli import main

    out = tmp_path / "run"
    # the total falls to about 0.6x in 10 steps here (0.44x in 30): below 0.7x is learning, not noise
    res = _train(_base(humandata, s32_ckpt, smplx_dir, out, 4, ["--steps", "10", "--save-every", "4", "--keep", "2",
                                                                 "--log-json", str(tmp_path / "l.jsonl")]),
                 env_extra={"OMP_NUM_THREADS": "2"})
    assert res.returncode == 0, res.stderr
    log = _log(tmp_path / "l.jsonl")
    assert len(log) == 10 and log[-1]["total"] < 0.7 * log[0]["total"]
    snap = out / "snapshot_10.pth.tar"
    # a snapshot every 4 steps and at the end, of which the newest 2 (--keep) stay
    assert {p.name for p in out.glob("snapshot_*.pth.tar")} == {f"snapshot_{k}.pth.tar" for k in (8, 10)}
    ckpt = torch.load(snap, weights_only=True)
    assert set(ckpt) == {"network", "optimizer", "epoch"} and set(IGNORED_TOP_LEVEL) <= set(ckpt)
    assert all(k.startswith("module.") for k in ckpt["network"])
    img = media_file(PHOTOS[0])
    assert main(["image", str(img), "--out", str(tmp_path / "img"), "--checkpoint", str(snap),
                 "--body-models", str(smplx_dir), "--bbox", "100", "50", "200", "300", "--no-overlay"]) == 0
    assert list((tmp_path / "img" / "smplx").glob("*.npz"))


@pytest.mark.slow
def test_bad_inputs_give_one_line(tmp_path, humandata, s32_ckpt, smplx_dir):
    path, root = humandata
    bad = _rewrite(path, tmp_path / "bad.npz", bbox_xywh=None)
    res = _train(["--config", "s32", "--init", str(s32_ckpt), "--data", f"{bad}:{root}", "--out", str(tmp_path / "o"),
                  "--body-models", str(smplx_dir)])
    assert res.returncode == 2 and "'bbox_xywh' is missing" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = _train(["--config", "b32", "--init", str(s32_ckpt), "--data", f"{path}:{root}", "--out", str(tmp_path / "o"),
                  "--body-models", str(smplx_dir), "--steps", "1"])
    assert res.returncode == 2 and "but --config is b32" in res.stderr


@pytest.mark.slow
def test_sigterm_writes_a_resumable_snapshot_first(tmp_path, humandata, s32_ckpt, smplx_dir):
    import signal
    import time

    log = tmp_path / "l.jsonl"
    args = _base(humandata, s32_ckpt, smplx_dir, tmp_path / "run", 2, ["--steps", "50", "--log-json", str(log)])
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "realtime.cli", "train"] + args, cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 900
    while time.time() < deadline and not (log.exists() and log.read_text().strip()):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "resumable checkpoint" in err and len(err.strip().splitlines()) == 1
    snaps = sorted((tmp_path / "run").glob("snapshot_*.pth.tar"))
    assert snaps and all(p.with_name(p.name.replace(".pth.tar", ".resume.pth")).is_file() for p in snaps)
    assert not list((tmp_path / "run").glob("*.tmp"))
    done = len(_log(log))
    res = _train(args[:args.index("--steps") + 1] + [str(done + 1)] + args[args.index("--steps") + 2:] + ["--resume"])
    assert res.returncode == 0, res.stderr
    assert [r["step"] for r in _log(log)][-1] == done


def test_unreadable_image_is_skipped_and_counted(humandata, tmp_path):
    from engines.datasets.humandata import HumanDataset
    from realtime.research.train import SeededSamples, ShardSampler, collate

    path, root = humandata
    for name in np.load(path)["image_path"]:
        shutil.copy(Path(root) / str(name), tmp_path / str(name))
    (tmp_path / str(np.load(path)["image_path"][1])).write_bytes(b"not a jpeg")
    ds = HumanDataset(path, tmp_path, augment=False)  # meta holds the sizes: the file list is kept
    assert len(ds) == 4
    loader = torch.utils.data.DataLoader(SeededSamples(ds, 0), batch_size=2, collate_fn=collate,
                                         sampler=ShardSampler(4, 0, 1, 2, False, 0, 0))
    (b0, bad0, why0), (b1, bad1, _) = list(loader)
    assert bad0 == 1 and "image unreadable" in why0 and b0[0]["img"].shape[0] == 1
    assert bad1 == 0 and b1[0]["img"].shape[0] == 2


def test_shards_cover_the_global_batch_once():
    from realtime.research.train import ShardSampler

    n, world, batch = 11, 2, 2
    for shuffle in (False, True):
        shards = [list(ShardSampler(n, r, world, batch, shuffle, 5, 3)) for r in range(world)]
        idx = [i for s in shards for _, i in s]
        assert len(idx) == len(set(idx)) == 8 and all(e == 3 for s in shards for e, _ in s)
        later = [i for _, i in ShardSampler(n, 0, world, batch, shuffle, 5, 3, start=1)]
        assert later == [i for _, i in shards[0]][batch:]
    assert [i for _, i in ShardSampler(n, 0, 1, 4, False, 0, 0)] == list(range(8))


@pytest.mark.slow
def test_step0_losses_equal_the_official_code(tmp_path, humandata, s32_ckpt, smplx_dir):
    """Needs a checkout of the official repository in $MOCAP_OFFICIAL_SMPLERX (skipped otherwise)."""
    official = os.environ.get("MOCAP_OFFICIAL_SMPLERX")
    if not official or not Path(official, "main", "SMPLer_X.py").is_file():
        pytest.skip("set MOCAP_OFFICIAL_SMPLERX to a checkout of caizhongang/SMPLer-X")
    path, root = humandata
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "check_train_official.py"), "--official", official,
                          "--data", f"{path}:{root}", "--init", str(s32_ckpt), "--body-models", str(smplx_dir),
                          "--batch-size", "4", "--json", str(tmp_path / "cmp.json")],
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                         timeout=1800)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    assert cmp["worst_rel"] <= 1e-4 and len(cmp["terms"]) >= 9


@pytest.mark.slow
def test_nan_loss_stops_naming_the_step(tmp_path, humandata, s32_ckpt, smplx_dir):
    args = _base(humandata, s32_ckpt, smplx_dir, tmp_path / "run", 2, ["--steps", "4", "--log-json", str(tmp_path / "l")])
    args[args.index("--lr") + 1] = "1e30"  # Adam moves every weight by about lr: the next forward overflows
    res = _train(args)
    assert res.returncode == 1, res.stderr
    assert "loss is not finite at step 1" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "run").glob("snapshot_*"))  # no snapshot of the broken weights
