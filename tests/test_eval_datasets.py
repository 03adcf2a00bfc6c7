"""Dataset readers on test sets written in the official layouts, ``mocap eval`` end to end, bad inputs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from engines.errors import UserError
from tests.helpers import media_file
from tests import eval_layouts as L
from pathlib import Path


@pytest.fixture(scope="module")
def photos():
    return [media_file(name) for name, _ in L.PHOTOS]


@pytest.fixture(scope="module")
def eval_bm(tmp_path_factory):
    """human_model_files: synthetic SMPL-X, the three evaluation extras and synthetic SMPL."""
    from engines.synthetic import write_synthetic_smplx

    root = tmp_path_factory.mktemp("human_model_files")
    write_synthetic_smplx(root)
    L.write_eval_extras(root)
    L.write_synthetic_smpl(root)
    return root


@pytest.fixture(scope="module")
def bm(eval_bm):
    from engines.body_model import BodyModel

    return BodyModel(eval_bm)


@pytest.fixture(scope="module")
def ehf_root(tmp_path_factory, photos, bm):
    root = tmp_path_factory.mktemp("ehf_data")
    meshes = L.write_ehf(root, photos[:3], bm)
    return root, meshes


def test_ehf_reader(ehf_root):
    from engines.datasets.ehf import CAMERA_R, EHF
    from engines.geometry import process_bbox

    root, meshes = ehf_root
    ds = EHF(root, bbox_ratio=1.2)
    assert [s.key for s in ds.samples] == ["01", "02", "03"]
    ann = json.loads((root / "EHF" / "data" / "EHF.json").read_text())["annotations"][1]
    img = json.loads((root / "EHF" / "data" / "EHF.json").read_text())["images"][1]
    np.testing.assert_array_equal(ds.samples[1].bbox, process_bbox(ann["body_bbox"], img["width"], img["height"], 1.2))
    for s, mesh in zip(ds.samples, meshes):  # ascii (odd) and binary (even) PLY files
        gt = ds.ground_truth(s)
        assert gt.dtype == np.float32 and gt.shape == (10475, 3)
        np.testing.assert_allclose((CAMERA_R @ gt.T.astype(np.float64)).T, mesh, atol=2e-5)


def test_agora_reader_follows_the_official_filters(tmp_path, photos, bm):
    from engines.datasets.agora import AGORA

    meshes = L.write_agora(tmp_path, photos[:2], bm)
    ds = AGORA(tmp_path)
    assert len(ds.samples) == 2 and ds.left_out == 1  # one not is_valid (silent), one without its crop .json
    s = ds.samples[0]
    h, w = s.img_shape
    np.testing.assert_array_equal(s.bbox, [0, 0, w, h])
    np.testing.assert_allclose(ds.ground_truth(s), meshes[0], atol=1e-6)


def test_pw3d_reader_and_smpl_ground_truth(tmp_path, photos, eval_bm):
    from engines.datasets.pw3d import PW3D
    from engines.evaluation.model_files import SMPLLayers

    L.write_pw3d(tmp_path, photos[:2], frames=5)
    ds = PW3D(tmp_path)
    assert len(ds.samples) == 5 and [s.frame for s in ds.samples] == [0, 1, 2, 3, 4]
    assert len({s.sequence for s in ds.samples}) == 1
    smpl = SMPLLayers(eval_bm)
    models = type("M", (), {"smpl": smpl})()
    s = ds.samples[1]
    mesh = ds.ground_truth(s, models)
    p, cam = s.gt["smpl_param"], s.gt["cam_param"]
    # by hand: the world-frame SMPL mesh, then the camera extrinsics about the root joint
    rot = torch.tensor(cam["R"], dtype=torch.float64)
    pose = torch.tensor(p["pose"], dtype=torch.float32).view(-1, 3)
    world = smpl.layer(p["gender"])(betas=torch.tensor([p["shape"]], dtype=torch.float32),
                                    body_pose=pose[1:].reshape(1, -1), global_orient=pose[:1],
                                    transl=torch.tensor([p["trans"]], dtype=torch.float32)).vertices[0].double()
    root = torch.tensor(smpl.joint_regressor, dtype=torch.float64)[0] @ world
    want = (world - root) @ rot.T + root @ rot.T + torch.tensor(cam["t"], dtype=torch.float64)
    np.testing.assert_allclose(mesh, want.numpy(), atol=2e-5)


def test_ubody_reader_and_pseudo_ground_truth(tmp_path, photos, bm):
    from engines.datasets.ubody import UBody

    fits = L.write_ubody(tmp_path, photos[:3])
    assert len(UBody(tmp_path).samples) == 0  # the official interval of 100 keeps none of 4 annotations
    ds = UBody(tmp_path, sample_interval=1)
    assert len(ds.samples) == 3  # the train video is left out
    models = type("M", (), {"smplx": bm})()
    # sample 1 has no valid left hand: its pseudo ground truth uses a zero left-hand pose
    p = dict(fits[1]["smplx_param"])
    p["lhand_pose"] = np.zeros((15, 3)).tolist()
    np.testing.assert_allclose(ds.ground_truth(ds.samples[1], models), L.smplx_mesh(bm, p), atol=1e-5)
    np.testing.assert_allclose(ds.ground_truth(ds.samples[0], models), L.smplx_mesh(bm, fits[0]["smplx_param"]),
                               atol=1e-5)


@pytest.fixture(scope="module")
def egobody_root(tmp_path_factory, photos, bm):
    from engines.datasets.synthetic import write_synthetic_humandata

    root = tmp_path_factory.mktemp("humandata_root")
    images = root / "EgoBody" / "clip01"
    images.mkdir(parents=True)
    names = []
    for i, photo in enumerate(photos[:1] * 5):
        dst = images / f"frame_{i:05d}.jpg"
        shutil.copy(photo, dst)
        names.append(dst)
    npz = write_synthetic_humandata(root / "preprocessed_datasets" / "ego.npz", names, bm, seed=3)
    content = dict(np.load(npz, allow_pickle=True))
    content["image_path"] = np.array([f"clip01/{p.name}" for p in names])
    np.savez(npz, **content)
    return root, content


def test_humandata_test_set_reader(egobody_root, bm):
    from engines.datasets.humandata_testsets import HumanDataTestSet

    root, content = egobody_root
    ds = HumanDataTestSet(root, "EgoBody_Egocentric", annotation="ego.npz")
    assert len(ds.samples) == 5 and {s.sequence for s in ds.samples} == {"clip01"}
    assert [s.frame for s in ds.samples] == [0, 1, 2, 3, 4]
    params = content["smplx"].item()
    i = 2
    mesh = ds.ground_truth(ds.samples[i], type("M", (), {"smplx": bm})())
    p = {"root_pose": params["global_orient"][i], "body_pose": params["body_pose"][i], "shape": params["betas"][i],
         "lhand_pose": params["left_hand_pose"][i], "rhand_pose": params["right_hand_pose"][i],
         "jaw_pose": params["jaw_pose"][i], "expr": params["expression"][i], "trans": params["transl"][i]}
    np.testing.assert_allclose(mesh, L.smplx_mesh(bm, p), atol=1e-5)
    with pytest.raises(UserError, match="not an official HumanData test set"):
        HumanDataTestSet(root, "SomethingElse")


def _independent_ehf_pa_mpvpe(ehf_root, ckpt, bm_dir):
    """PA-MPVPE (all) of the S32 checkpoint on the EHF test set, computed here without the runner:
    official crop (box ratio 1.2), the predictor's forward, scipy Procrustes, the generator's meshes."""
    import cv2

    from engines import geometry as G
    from engines.inference import Predictor
    from tests.test_eval_metrics import _procrustes_independent

    root, meshes = ehf_root
    data = json.loads((root / "EHF" / "data" / "EHF.json").read_text())
    predictor = Predictor.from_files(ckpt, bm_dir)
    errs = []
    for img, ann, gt in zip(data["images"], data["annotations"], meshes):
        bgr = cv2.imread(str(root / "EHF" / "data" / img["file_name"]))
        box = G.process_bbox(ann["body_bbox"], img["width"], img["height"], ratio=1.2)
        patch, _, _ = G.crop_image(bgr[:, :, ::-1].astype(np.float32), box)
        _, verts, _ = predictor.forward(G.to_input_batch([patch]))
        # float32 prediction, as the official evaluate gets it from the GPU: its centring and variance in
        # float32 move PA-MPVPE by ~0.1 mm when the body is ~25 m away (random weights)
        errs.append(np.linalg.norm(_procrustes_independent(verts[0], gt) - gt, axis=1).mean())
    return float(np.mean(errs) * 1000)


@pytest.mark.slow
def test_mocap_eval_ehf_end_to_end(tmp_path, ehf_root, eval_bm, s32_ckpt, capsys):
    from realtime.cli import main

    root, _ = ehf_root
    preds = tmp_path / "preds"

    def run(json_name, *extra):
        out = tmp_path / json_name
        assert main(["eval", "--dataset", "EHF", "--data-dir", str(root), "--checkpoint", str(s32_ckpt),
                     "--body-models", str(eval_bm), "--json", str(out), "--save-predictions", str(preds),
                     *extra]) == 0
        return json.loads(out.read_text())

    summary = run("ehf.json", "--official-batch", "2", "--batch-size", "2")
    printed = capsys.readouterr().out
    assert summary["dataset"] == "EHF" and summary["samples"] == 3 and summary["engine"] == "torch"
    assert set(summary["metrics"]) == {"pa_mpvpe_all", "pa_mpvpe_l_hand", "pa_mpvpe_r_hand", "pa_mpvpe_hand",
                                       "pa_mpvpe_face", "mpvpe_all", "mpvpe_l_hand", "mpvpe_r_hand", "mpvpe_hand",
                                       "mpvpe_face", "pa_mpjpe_body", "pa_mpjpe_l_hand", "pa_mpjpe_r_hand",
                                       "pa_mpjpe_hand"}
    assert "versions" in summary and "torch" in summary["versions"]
    assert f"PA MPVPE (All): {summary['metrics']['pa_mpvpe_all']:.2f} mm" in printed
    # official batches of 2 leave no chunk of 3: the metric equals the independent computation
    assert summary["official_batch_quirk_samples"] == 0
    # (to 0.005 mm: the independent Procrustes rounds differently in float32)
    assert summary["metrics"]["pa_mpvpe_all"] == pytest.approx(_independent_ehf_pa_mpvpe(ehf_root, s32_ckpt, eval_bm),
                                                              abs=5e-3)
    # resumed from the saved predictions with another batch size: the same numbers, no forward pass
    again = run("ehf2.json", "--official-batch", "2", "--batch-size", "1")
    assert again["resumed_predictions"] == 3 and again["metrics"] == summary["metrics"]
    # the official batch of 32 puts the 3 samples in one chunk of 3: the official quirk changes root and jaw
    quirk = run("ehf3.json")
    assert quirk["official_batch_quirk_samples"] == 3
    assert quirk["metrics"]["mpvpe_all"] != pytest.approx(summary["metrics"]["mpvpe_all"], abs=1e-3)


@pytest.mark.slow
def test_mocap_eval_bad_inputs(tmp_path, ehf_root, eval_bm, s32_ckpt, capsys, photos):
    from realtime.cli import main

    base = ["eval", "--checkpoint", str(s32_ckpt), "--body-models", str(eval_bm), "--no-progress"]
    # a dataset folder without the annotation file: the file is named
    assert main(base + ["--dataset", "EHF", "--data-dir", str(tmp_path)]) == 2
    assert "EHF.json" in capsys.readouterr().err
    # an empty split
    empty = tmp_path / "empty" / "EHF" / "data"
    empty.mkdir(parents=True)
    (empty / "EHF.json").write_text(json.dumps({"images": [], "annotations": []}))
    assert main(base + ["--dataset", "EHF", "--data-dir", str(tmp_path / "empty")]) == 2
    assert "empty split" in capsys.readouterr().err
    # missing evaluation extras: the file and where it comes from
    from engines.synthetic import write_synthetic_smplx

    bare = tmp_path / "bare_bm"
    write_synthetic_smplx(bare)
    root, _ = ehf_root
    assert main(base[:-3] + ["--body-models", str(bare), "--dataset", "EHF", "--data-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert "SMPLX_to_J14.pkl" in err and "smpl-x.is.tue.mpg.de" in err
    # a ground-truth mesh with the wrong vertex count; an unreadable image is skipped and counted
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    L.write_ply(bad / "EHF" / "data" / "02_align.ply", np.zeros((100, 3)), binary=False)
    assert main(base + ["--dataset", "EHF", "--data-dir", str(bad)]) == 2
    assert "02_align.ply has 100 vertices" in capsys.readouterr().err
    L.write_ply(bad / "EHF" / "data" / "02_align.ply", np.zeros((10475, 3)), binary=False)
    (bad / "EHF" / "data" / "03_img.jpg").write_bytes(b"not an image")
    out = tmp_path / "bad.json"
    assert main(base + ["--dataset", "EHF", "--data-dir", str(bad), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["samples"] == 2 and summary["skipped"]["unreadable_image"] == 1
    # a prediction folder that holds other files is refused, nothing in it is touched
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    assert main(base + ["--dataset", "EHF", "--data-dir", str(root), "--save-predictions", str(other)]) == 2
    assert (other / "mine.txt").read_text() == "keep" and "not empty" in capsys.readouterr().err


@pytest.mark.slow
def test_mocap_eval_sequence_temporal_figures(tmp_path, egobody_root, eval_bm, s32_ckpt):
    from realtime.research.evaluate import EvalOptions, run_evaluation

    root, _ = egobody_root
    s = run_evaluation(EvalOptions(dataset="EgoBody_Egocentric", data_dir=str(root), checkpoint=str(s32_ckpt),
                                   body_models=str(eval_bm), annotation="ego.npz", progress=False))
    assert s["samples"] == 5 and set(s["metrics"]) >= {"pa_mpvpe_all", "pa_mpjpe_body"}
    t = s["temporal"]
    assert t["sequences"] == 1 and t["frames"] == 5
    # five crops of the same photo: the network output barely moves, so its jitter is far below the
    # ground truth's, and the filter does not add any
    assert t["jitter"]["filtered"] <= t["jitter"]["raw"] + 1e-6
    for part in ("accel_error", "jitter"):
        assert all(np.isfinite(v) for v in t[part].values())


@pytest.mark.slow
def test_pw3d_end_to_end_with_temporal_figures_checked_by_hand(tmp_path, photos, eval_bm, bm, s32_ckpt):
    from engines.datasets.pw3d import PW3D
    from engines.evaluation.model_files import SMPLLayers, SMPLXEvalFiles
    from realtime.research.evaluate import EvalOptions, run_evaluation

    L.write_pw3d(tmp_path, photos[:2], frames=6)
    preds = tmp_path / "preds"
    s = run_evaluation(EvalOptions(dataset="PW3D", data_dir=str(tmp_path), checkpoint=str(s32_ckpt),
                                   body_models=str(eval_bm), save_predictions=str(preds), progress=False))
    assert s["samples"] == 6 and set(s["metrics"]) == {"mpjpe_body", "pa_mpjpe_body"}
    t = s["temporal"]
    assert t["sequences"] == 1 and t["frames"] == 6 and t["fps"] == 30.0
    # the raw acceleration error by hand from the saved predictions (VIBE's formula)
    files = SMPLXEvalFiles.load(eval_bm)
    smpl = SMPLLayers(eval_bm)
    ds = PW3D(tmp_path)
    models = type("M", (), {"smpl": smpl})()
    pred_j, gt_j = [], []
    for sample in ds.samples:
        with np.load(preds / "samples" / f"{sample.index:07d}.npz") as p:
            t_ = {k: torch.from_numpy(p[k].reshape(1, -1)) for k in ("smplx_root_pose", "smplx_body_pose",
                  "smplx_lhand_pose", "smplx_rhand_pose", "smplx_jaw_pose", "smplx_shape", "smplx_expr")}
            cam = p["cam_trans"]
        with torch.no_grad():
            v, _ = bm(t_["smplx_root_pose"], t_["smplx_body_pose"], t_["smplx_lhand_pose"], t_["smplx_rhand_pose"],
                      t_["smplx_jaw_pose"], t_["smplx_shape"], t_["smplx_expr"])
        mesh = v[0].numpy() + cam
        gt = ds.ground_truth(sample, models)
        gj = smpl.joint_regressor @ gt
        oj = files.j_regressor @ mesh
        sel = [1, 2, 4, 5, 7, 8, 12, 15, 16, 17, 18, 19, 20, 21]
        pred_j.append(oj[sel] - oj[0] + gj[0])
        gt_j.append(gj[sel])
    pred_j, gt_j = np.array(pred_j, np.float64), np.array(gt_j, np.float64)
    acc = lambda x: x[:-2] - 2 * x[1:-1] + x[2:]  # noqa: E731
    want = np.linalg.norm(acc(gt_j) - acc(pred_j), axis=-1).mean() * 1000
    assert t["accel_error"]["raw"] == pytest.approx(want, rel=1e-4)
    jerk = lambda x: x[3:] - 3 * x[2:-1] + 3 * x[1:-2] - x[:-3]  # noqa: E731
    assert t["jitter"]["ground_truth"] == pytest.approx(np.linalg.norm(jerk(gt_j), axis=-1).mean() * 1000, rel=1e-4)
    assert t["jitter"]["raw"] != pytest.approx(t["jitter"]["filtered"])  # the filter did something


@pytest.mark.slow
def test_ubody_end_to_end_official_nan_is_reported(tmp_path, photos, eval_bm, s32_ckpt):
    from realtime.research.evaluate import EvalOptions, format_summary, run_evaluation

    L.write_ubody(tmp_path, photos[:3])
    s = run_evaluation(EvalOptions(dataset="UBody", data_dir=str(tmp_path), checkpoint=str(s32_ckpt),
                                   body_models=str(eval_bm), sample_interval=1, progress=False))
    assert s["samples"] == 3 and set(s["metrics"]) == {"pa_mpvpe_all", "pa_mpvpe_hand", "pa_mpvpe_face", "mpvpe_all",
                                                       "mpvpe_hand", "mpvpe_face", "pa_mpjpe_body", "pa_mpjpe_hand"}
    json.dumps(s, allow_nan=False)  # valid JSON whatever the official NaNs
    for key, count in s["not_finite"].items():
        assert s["metrics"][key] is None and 1 <= count <= 3
        assert "nan mm (as officially" in format_summary(s)


@pytest.mark.slow
def test_onnx_engine_gives_the_same_metrics(ehf_root, eval_bm, s32_ckpt, onnx_cache, monkeypatch):
    """An engine's accuracy cost as a number: the exported ONNX model (Runtime on the CPU) against the
    PyTorch fp32 forward, on the same samples; well within the 0.01 mm the figures are given to."""
    from realtime.research.evaluate import EvalOptions, run_evaluation

    monkeypatch.setenv("MOCAP_CACHE_DIR", str(onnx_cache))  # the run's one export of s32_ckpt
    root, _ = ehf_root
    runs = {eng: run_evaluation(EvalOptions(dataset="EHF", data_dir=str(root), checkpoint=str(s32_ckpt),
                                            body_models=str(eval_bm), engine=eng, progress=False))
            for eng in ("torch", "onnx")}
    assert runs["onnx"]["engine"] == "onnx" and "onnxruntime" in runs["onnx"]["versions"]
    for key, value in runs["torch"]["metrics"].items():
        assert runs["onnx"]["metrics"][key] == pytest.approx(value, abs=0.01), key


@pytest.mark.slow
def test_workers_give_the_same_metrics(tmp_path, ehf_root, eval_bm, s32_ckpt):
    import tempfile

    from realtime.research.evaluate import EvalOptions, run_evaluation

    root, _ = ehf_root
    base = dict(dataset="EHF", data_dir=str(root), checkpoint=str(s32_ckpt), body_models=str(eval_bm),
                progress=False, batch_size=1)
    scratch = lambda: {p.name for p in Path(tempfile.gettempdir()).glob("mocap-eval-*")}  # noqa: E731
    before = scratch()
    one = run_evaluation(EvalOptions(**base))
    two = run_evaluation(EvalOptions(**base, workers=2))
    assert two["samples"] == one["samples"] == 3 and two["official_batch_quirk_samples"] == 3
    # the workers split the cores, so the forward rounds differently in the last float32 bits
    for key, value in one["metrics"].items():
        assert two["metrics"][key] == pytest.approx(value, abs=1e-3), key
    assert scratch() == before  # the hand-over folder is removed
