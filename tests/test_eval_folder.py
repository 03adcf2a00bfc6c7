"""``mocap eval --results OUT --ground-truth GT.npz``: temporal figures of a mocap video result folder
(written here in the folder's layout: smplx/<frame>_<person>.npz and video.json) against ground truth
from the synthetic SMPL-X model with known parameters."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engines.types import PARAM_SHAPES, PREDICTED_KEYS
from realtime.cli import main
from realtime.results import write_video_info

from .test_eval_datasets import eval_bm  # noqa: F401  (fixture)

T = 12


def _sequence(seed: int = 0):
    """Known SMPL-X parameters over T frames: a slow smooth motion (frame 1..T)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=np.float64)[:, None]
    out = {}
    for k in PREDICTED_KEYS:
        n = int(np.prod(PARAM_SHAPES[k]))
        amp, phase = rng.uniform(0.05, 0.2, (1, n)), rng.uniform(0, np.pi, (1, n))
        out[k] = (amp * np.sin(0.2 * t + phase)).astype(np.float32).reshape((T, *PARAM_SHAPES[k]))
    out["transl"] = out["transl"] + np.array([0, 0, 4.0], np.float32)
    return out


def _write_folder(root, params, person=0, fps=25.0):
    (root / "smplx").mkdir(parents=True)
    for i in range(T):
        np.savez(root / "smplx" / f"{i + 1:05d}_{person}.npz", **{k: v[i] for k, v in params.items()})
    write_video_info(root, fps, T, "clip.mp4")


def _run(tmp_path, folder, gt, bm_dir, *extra):
    out = tmp_path / f"summary_{len(list(tmp_path.glob('summary_*')))}.json"
    assert main(["eval", "--results", str(folder), "--ground-truth", str(gt), "--body-models", str(bm_dir),
                 "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


@pytest.mark.slow
def test_result_folder_temporal_figures(tmp_path, eval_bm, capsys):  # noqa: F811
    from engines.body_model import BodyModel
    from engines.evaluation.model_files import SMPLXEvalFiles

    gt_params = _sequence()
    gt = tmp_path / "gt.npz"
    np.savez(gt, frame=np.arange(1, T + 1), **gt_params)

    # a folder equal to the ground truth: no acceleration error, the jitter of the ground truth
    exact = tmp_path / "exact"
    _write_folder(exact, gt_params)
    s = _run(tmp_path, exact, gt, eval_bm)
    t = s["temporal"]
    assert s["frames"] == T and s["fps"] == 25.0 and t["sequences"] == 1 and t["frames"] == T
    assert t["accel_error"]["raw"] == pytest.approx(0.0, abs=1e-3)
    assert t["jitter"]["raw"] == pytest.approx(t["jitter"]["ground_truth"], abs=1e-3)
    # the ground truth's jitter computed independently: the body model's mesh of each frame, the 14 joints
    bm, files = BodyModel(eval_bm), SMPLXEvalFiles.load(eval_bm)
    joints = np.stack([files.j14_regressor @ bm.from_params({k: v[i] for k, v in gt_params.items()})[0]
                       for i in range(T)])
    third = joints[3:] - 3 * joints[2:-1] + 3 * joints[1:-2] - joints[:-3]
    assert t["jitter"]["ground_truth"] == pytest.approx(np.linalg.norm(third, axis=-1).mean() * 1000, rel=1e-4)
    assert "temporal (1 runs, 12 frames at 25 fps)" in capsys.readouterr().out

    # per-frame noise on the pose: acceleration error and jitter appear; the One-Euro filter lowers the jitter
    rng = np.random.default_rng(1)
    noisy = {k: v + (rng.normal(0, 0.05, v.shape).astype(np.float32) if "pose" in k or k == "global_orient" else 0)
             for k, v in gt_params.items()}
    folder = tmp_path / "noisy"
    _write_folder(folder, noisy)
    n = _run(tmp_path, folder, gt, eval_bm)["temporal"]
    assert n["accel_error"]["raw"] > 1.0 and n["jitter"]["raw"] > 2 * n["jitter"]["ground_truth"]
    assert n["jitter"]["filtered"] < n["jitter"]["raw"]
    assert n["jitter"]["ground_truth"] == pytest.approx(t["jitter"]["ground_truth"], abs=1e-6)

    # ground truth without frame 5: runs 1-4 and 6-12; --fps overrides video.json; another person: refused
    keep = np.arange(T) != 4
    gap = tmp_path / "gap.npz"
    np.savez(gap, frame=np.arange(1, T + 1)[keep], **{k: v[keep] for k, v in gt_params.items()})
    g = _run(tmp_path, folder, gap, eval_bm, "--fps", "30")
    assert g["frames"] == T - 1 and g["temporal"]["sequences"] == 2 and g["fps"] == 30.0
    assert main(["eval", "--results", str(folder), "--ground-truth", str(gt), "--body-models", str(eval_bm),
                 "--person", "1"]) == 2
    assert "no frame of person 1 has ground truth" in capsys.readouterr().err


def test_result_folder_bad_inputs(tmp_path, eval_bm, capsys):  # noqa: F811
    gt_params = _sequence()
    folder = tmp_path / "out"
    _write_folder(folder, gt_params)
    bad = tmp_path / "bad.npz"
    np.savez(bad, frame=np.arange(1, T + 1), **{k: v for k, v in gt_params.items() if k != "betas"})
    base = ["eval", "--results", str(folder), "--body-models", str(eval_bm)]
    assert main(base + ["--ground-truth", str(bad)]) == 2
    assert "missing array(s) betas" in capsys.readouterr().err
    short = tmp_path / "short.npz"
    np.savez(short, frame=np.arange(1, T + 1), **dict(gt_params, body_pose=gt_params["body_pose"][:, :20]))
    assert main(base + ["--ground-truth", str(short)]) == 2
    assert "'body_pose' has shape (12, 20, 3), expected (12, 21, 3)" in capsys.readouterr().err
    assert main(base) == 2
    assert "--results OUT needs --ground-truth" in capsys.readouterr().err
    assert main(base + ["--ground-truth", str(tmp_path / "none.npz")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["eval", "--body-models", str(eval_bm)]) == 2
    assert "give --dataset NAME and --data-dir ROOT" in capsys.readouterr().err
