"""``mocap eval --results OUT --ground-truth GT.npz``: the temporal figures of a ``mocap video`` result
folder against ground truth.

Usage::

    from realtime.research.folder_temporal import evaluate_result_folder

    summary = evaluate_result_folder("out/clip", "clip_gt.npz", body_models="human_model_files", person=0)

The ground truth is one ``.npz`` of SMPL-X parameters per frame, with the result files' keys and
conventions (``global_orient``, ``body_pose``, ``left_hand_pose``, ``right_hand_pose``, ``jaw_pose``,
``betas``, ``expression``, ``transl``; each stacked over frames, first axis T) and ``frame`` (T,): the
frame numbers of ``OUT/smplx/<frame>_<person>.npz``. The frames both have are compared exactly as
for the sequence benchmarks (:func:`realtime.research.evaluate._temporal`): the 14 body joints of
each frame, the prediction pelvis-aligned to the ground truth, acceleration error and jitter over
runs of 4 or more consecutive frames, for the folder's parameters (raw: ``mocap video`` writes the
network's output) and for the same parameters after the live One-Euro filter, run causally at the
folder's frame rate (``video.json``, or ``fps``).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Optional

import numpy as np

from engines.errors import UserError

from .evaluate import _meshes, _temporal
from .predictions import PRED_KEYS

#: Result-file key of each network output key (the official demo's names).
RESULT_KEYS = dict(zip(PRED_KEYS, ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose",
                                   "betas", "expression", "transl")))


def read_ground_truth(path: Path) -> Dict[int, Dict[str, np.ndarray]]:
    """Frame number -> the ground truth's parameters as network outputs (``PRED_KEYS``)."""
    from engines.types import PARAM_SHAPES

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except FileNotFoundError:
        raise UserError(f"--ground-truth {path} not found") from None
    except Exception as exc:  # not an npz, truncated
        raise UserError(f"--ground-truth {path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("frame", *RESULT_KEYS.values()) if k not in arrays]
    if missing:
        raise UserError(f"--ground-truth {path}: missing array(s) {', '.join(missing)} (one SMPL-X parameter set "
                        "per frame, the result files' keys, plus 'frame')")
    frames = arrays["frame"].reshape(-1)
    if len(set(frames.tolist())) != len(frames):
        raise UserError(f"--ground-truth {path}: a frame number appears twice in 'frame'")
    out: Dict[int, Dict[str, np.ndarray]] = {int(f): {} for f in frames}
    for pred_key, key in RESULT_KEYS.items():
        size = int(np.prod(PARAM_SHAPES[key]))
        a = arrays[key]
        if a.shape[0] != len(frames) or a[0].size != size:
            raise UserError(f"--ground-truth {path}: '{key}' has shape {a.shape}, expected ({len(frames)}, "
                            f"{', '.join(map(str, PARAM_SHAPES[key]))})")
        for f, row in zip(frames, a.reshape(len(frames), size).astype(np.float32)):
            out[int(f)][pred_key] = row
    return out


def evaluate_result_folder(results: str, ground_truth: str, body_models: Optional[str] = None, person: int = 0,
                           fps: Optional[float] = None) -> Dict:
    """The summary (``--json`` content): frames compared, and the temporal figures raw and filtered."""
    from engines.body_model import BodyModel, BodyModelNotFound
    from engines.datasets.sample import EvalSample
    from engines.evaluation.model_files import SMPLXEvalFiles
    from engines.evaluation.protocols import temporal_joints
    from realtime.results import open_results, read_params

    try:
        folder = open_results(Path(results))
    except FileNotFoundError as exc:
        raise UserError(f"--results {exc}") from None
    if not folder.numbered:
        raise UserError(f"--results {folder.root}: not a mocap video result folder (its results are not frame "
                        "numbers)")
    gt = read_ground_truth(Path(ground_truth))
    try:
        files = SMPLXEvalFiles.load(body_models)
        body_model = BodyModel(body_models)
    except BodyModelNotFound as exc:
        raise UserError(str(exc)) from exc
    preds, samples = {}, []
    for f in folder.files:
        frame = int(f.name)
        if f.person != person or frame not in gt:
            continue
        try:
            params = read_params(f.npz).to_dict()
        except ValueError as exc:
            raise UserError(str(exc)) from None
        preds[frame] = {k: params[RESULT_KEYS[k]].reshape(-1) for k in PRED_KEYS}
        samples.append(EvalSample(index=frame, key=f.npz.stem, img_path=f.npz, img_shape=(0, 0),
                                  bbox=np.zeros(4, np.float32), sequence=f"person {person}", frame=frame))
    if not samples:
        raise UserError(f"--results {folder.root}: no frame of person {person} has ground truth in {ground_truth}")
    order = sorted(preds)
    gt_meshes = dict(zip(order, _meshes(body_model, [gt[f] for f in order])))
    pred_meshes = dict(zip(order, _meshes(body_model, [preds[f] for f in order])))
    joints = {}
    for f in order:
        pj, gj = temporal_joints("video", pred_meshes[f], gt_meshes[f], files)
        joints[f] = (pj, gj, gt_meshes[f])
    rate = float(fps or folder.fps or 30.0)
    reader = SimpleNamespace(name="video", fps=rate)
    temporal = _temporal(SimpleNamespace(fps=rate), reader, samples, preds, joints, body_model, files, None)
    return {"results": str(folder.root), "ground_truth": str(ground_truth), "person": person,
            "frames": len(samples), "frames_in_ground_truth": len(gt), "fps": rate, "temporal": temporal}


def format_folder_summary(summary: Dict) -> str:
    from .evaluate import temporal_line

    t = summary["temporal"]
    head = (f"====== {summary['results']} against {summary['ground_truth']} (person {summary['person']}, "
            f"{summary['frames']} frames with ground truth) ======")
    return head + "\n" + (temporal_line(t) if t.get("sequences") else f"temporal: {t['note']}")
