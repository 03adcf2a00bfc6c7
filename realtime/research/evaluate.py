"""``mocap eval``: a checkpoint on an official benchmark, with the official test protocol.

Usage::

    from realtime.research.evaluate import EvalOptions, run_evaluation, format_summary

    summary = run_evaluation(EvalOptions(dataset="EHF", data_dir="data", checkpoint="s32",
                                         body_models="human_model_files"))
    print(format_summary(summary))          # the official printout's lines, plus temporal figures

What happens, as the official ``main/test.py`` does it: the dataset's official sample list
(:mod:`engines.datasets`), each sample cropped around its ground-truth box with the dataset's
box ratio, the network and the SMPL-X layer (:class:`engines.inference.Predictor`, any engine),
the official per-dataset rules (:mod:`engines.evaluation.protocols`) and the mean of each metric.
The official batches only matter through one quirk, reproduced by sample position
(:mod:`engines.evaluation.official_batching`), so ``--batch-size`` never changes a number.

Two phases: predictions (:mod:`.predictions`, the slow part; saved per sample with
``save_predictions`` and reused when the run is started again with the same options; ``workers`` > 1
splits it over local processes, ``ray`` over the engine actors of a Ray cluster (:mod:`.ray_eval`)),
then the metrics from the predictions, here, in sample order: the same numbers whichever way the
predictions were made.
For sequence datasets the temporal figures are added: acceleration error and jitter of the
raw network output and of the same output after the live One-Euro filter
(:class:`realtime.filters.SMPLXFilter`, default settings, run causally at the data's frame rate).
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Tuple

import numpy as np
import torch

from engines.datasets import OFFICIAL_TEST_SETS
from engines.errors import UserError

from .predictions import PRED_KEYS, EvalOptions, PredictionStore
from .predictions import predict as _predict

log = logging.getLogger(__name__)

#: The official dataset class names ``mocap eval --dataset`` takes (any other name: a HumanData file).
DATASETS = OFFICIAL_TEST_SETS


def open_dataset(o: EvalOptions):
    """The reader of ``o.dataset`` in its official layout under ``o.data_dir``."""
    from engines.datasets.agora import AGORA, DEFAULT_ANNOTATION
    from engines.datasets.ehf import EHF
    from engines.datasets.humandata_testsets import HumanDataTestSet
    from engines.datasets.pw3d import PW3D
    from engines.datasets.ubody import SAMPLE_INTERVAL, UBody

    root = Path(o.data_dir)
    if not root.is_dir():
        raise UserError(f"--data-dir {root} is not a folder (it should be laid out like the official data folder)")
    if o.dataset == "EHF":
        return EHF(root, o.bbox_ratio)
    if o.dataset == "UBody":
        return UBody(root, o.sample_interval or SAMPLE_INTERVAL)
    if o.dataset == "PW3D":
        return PW3D(root, o.bbox_ratio)
    if o.dataset == "AGORA":
        return AGORA(root, o.annotation or DEFAULT_ANNOTATION)
    return HumanDataTestSet(root, o.dataset, o.annotation, o.image_dir, o.sample_interval, o.bbox_ratio, o.fps)


def metric_keys(dataset: str) -> Tuple[str, ...]:
    from engines.evaluation import protocols as P

    return {"EHF": P.SMPLX_KEYS, "AGORA": P.AGORA_KEYS, "UBody": P.UBODY_KEYS, "PW3D": P.PW3D_KEYS}.get(
        dataset, P.SMPLX_KEYS)


def _versions(engine: str) -> Dict[str, str]:
    import cv2

    from importlib.metadata import PackageNotFoundError, version

    try:
        mocap = version("smplerx-mocap")
    except PackageNotFoundError:  # running from a checkout
        mocap = "unknown"
    out = {"mocap": mocap, "torch": torch.__version__, "numpy": np.__version__, "opencv": cv2.__version__}
    try:
        out["smplx"] = version("smplx")
    except PackageNotFoundError:
        pass
    if engine in ("onnx", "auto"):
        try:
            import onnxruntime

            out["onnxruntime"] = onnxruntime.__version__
        except ImportError:
            pass
    return out


def _worker_main(options: Dict, indices: List[int], threads: int, parent_pid: int, queue) -> None:
    """One local worker process: predict the samples ``indices`` into the shared prediction store."""
    from realtime.batch.local import _die_with_parent

    _die_with_parent(parent_pid)
    torch.set_num_threads(threads)
    try:
        o = EvalOptions(**dict(options, progress=False, workers=None))
        reader = open_dataset(o)
        wanted = set(indices)
        counts = {"unreadable_image": 0}
        _predict(o, [s for s in reader.samples if s.index in wanted], PredictionStore(o.save_predictions, o), counts)
        queue.put(("done", counts["unreadable_image"]))
    except BaseException as exc:  # noqa: BLE001 -- reported to the parent as one line
        queue.put(("error", f"{type(exc).__name__}: {exc}" if not isinstance(exc, UserError) else str(exc)))


def _predict_in_workers(o: EvalOptions, samples, store: PredictionStore, counts: Dict[str, int]) -> Dict[int, Dict]:
    """Phase 1 split over ``o.workers`` local processes (samples dealt round-robin; each process loads the
    engine once and writes into the prediction store), then read back from the store."""
    import multiprocessing as mp
    import time

    from tqdm import tqdm

    todo = [s.index for s in samples if store.load(s) is None]
    if todo:
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        threads = max(1, (os.cpu_count() or 1) // o.workers)
        options = asdict(o)
        procs = [ctx.Process(target=_worker_main, args=(options, todo[w::o.workers], threads, os.getpid(), queue),
                             daemon=True) for w in range(min(o.workers, len(todo)))]
        for proc in procs:
            proc.start()
        bar = tqdm(total=len(samples), initial=len(samples) - len(todo), unit="sample", desc=f"eval {o.dataset}",
                   disable=not o.progress, dynamic_ncols=True)
        reports: List[Tuple[str, object]] = []
        folder = store.folder / "samples"
        try:
            while len(reports) < len(procs):
                try:
                    reports.append(queue.get(timeout=0.5))
                except Exception:  # queue.Empty: poll the workers and the progress
                    if not any(p.is_alive() for p in procs) and queue.empty():
                        break
                done = sum(1 for f in folder.iterdir() if f.suffix == ".npz" and not f.name.endswith(".part.npz"))
                bar.n = min(done, len(samples))
                bar.refresh()
                time.sleep(0.05)
        finally:
            bar.close()
            for proc in procs:
                proc.join(timeout=5)
        errors = [msg for kind, msg in reports if kind == "error"]
        if errors:
            raise UserError(f"a worker failed: {errors[0]}")
        if len(reports) < len(procs):
            raise UserError("a worker process died before reporting (out of memory?); run again to resume")
        counts["unreadable_image"] += sum(int(msg) for kind, msg in reports if kind == "done")
    preds = _predict(o, samples, store, {"unreadable_image": 0}) if not todo else {}
    if todo:
        for s in samples:
            saved = store.load(s)
            if saved is not None:
                preds[s.index] = saved
    counts["resumed"] = len(samples) - len(todo)
    return preds


def _apply_official_quirk(o: EvalOptions, n_total: int, preds: Dict[int, Dict]) -> int:
    """Root and jaw of the samples in official chunks of 3 as the official run outputs them."""
    from engines.evaluation.official_batching import apply_cross_quirk, quirk_groups

    changed = 0
    for group in quirk_groups(n_total, o.official_batch, o.official_gpus):
        present = [i in preds for i in group]
        if not all(present):
            if any(present):
                log.warning("samples %s form an official batch of 3 but not all were predicted (--max-samples or an "
                            "unreadable image): their official root/jaw quirk is not reproduced", list(group))
            continue
        for key in ("smplx_root_pose", "smplx_jaw_pose"):
            fixed = apply_cross_quirk(np.stack([preds[i][key].reshape(3) for i in group]))
            for i, aa in zip(group, fixed):
                preds[i] = dict(preds[i], **{key: aa.astype(np.float32)})
        changed += 3
    return changed


@torch.no_grad()
def _meshes(body_model, preds: List[Dict]) -> np.ndarray:
    """``smplx_mesh_cam`` of predictions: the SMPL-X layer's vertices plus ``cam_trans``."""
    from engines.body_model import network_inputs

    t = {k: torch.from_numpy(np.stack([p[k].reshape(-1) for p in preds]).astype(np.float32)) for k in PRED_KEYS}
    verts, _ = body_model(*network_inputs(t))
    return (verts + t["cam_trans"][:, None, :]).numpy()


def _params(pred: Dict) -> "object":
    from engines.types import SMPLXParams

    names = {"smplx_root_pose": "global_orient", "smplx_body_pose": "body_pose", "smplx_lhand_pose": "left_hand_pose",
             "smplx_rhand_pose": "right_hand_pose", "smplx_jaw_pose": "jaw_pose", "smplx_shape": "betas",
             "smplx_expr": "expression", "cam_trans": "transl"}
    return SMPLXParams.from_dict({names[k]: pred[k] for k in names})


def _runs(frames: List[Tuple[int, int]]) -> List[List[int]]:
    """Split (frame number, item) pairs sorted by frame into runs with a constant positive step."""
    runs, cur, step = [], [], None
    for i, (f, item) in enumerate(frames):
        if cur:
            d = f - frames[i - 1][0]
            if d <= 0 or (step is not None and d != step):
                runs.append(cur)
                cur, step = [], None
            elif step is None:
                step = d
        cur.append(item)
    if cur:
        runs.append(cur)
    return runs


def _temporal(o: EvalOptions, reader, samples, preds, per_sample_joints, body_model, files, smpl_reg) -> Dict:
    """Acceleration error and jitter, raw and after the live One-Euro filter, per run of consecutive frames."""
    from engines.evaluation.metrics import acceleration_error_norms, jerk_norms
    from engines.evaluation.protocols import temporal_joints
    from realtime.filters import FilterSettings, SMPLXFilter

    fps = float(o.fps or getattr(reader, "fps", 30.0))
    groups: Dict[str, List[Tuple[int, int]]] = {}
    for s in samples:
        if s.index in per_sample_joints and s.sequence is not None and s.frame is not None:
            groups.setdefault(s.sequence, []).append((s.frame, s.index))
    by_index = {s.index: s for s in samples}
    acc = {"raw": [], "filtered": []}
    jit = {"raw": [], "filtered": [], "ground_truth": []}
    n_runs = n_frames = 0
    for _, frames in sorted(groups.items()):
        frames.sort()
        for run in _runs(frames):
            if len(run) < 4:
                continue
            n_runs += 1
            n_frames += len(run)
            pred = np.stack([per_sample_joints[i][0] for i in run])
            gt = np.stack([per_sample_joints[i][1] for i in run])
            filt = SMPLXFilter(FilterSettings(), hand_mean=(body_model.hand_mean_left, body_model.hand_mean_right))
            smoothed = []
            for i in run:
                p = filt(_params(preds[i]), by_index[i].frame / fps)
                smoothed.append({"smplx_root_pose": p.global_orient, "smplx_body_pose": p.body_pose,
                                 "smplx_lhand_pose": p.left_hand_pose, "smplx_rhand_pose": p.right_hand_pose,
                                 "smplx_jaw_pose": p.jaw_pose, "smplx_shape": p.betas, "smplx_expr": p.expression,
                                 "cam_trans": p.transl})
            meshes = _meshes(body_model, smoothed)
            fpred = np.stack([temporal_joints(reader.name, m, per_sample_joints[i][2], files, smpl_reg)[0]
                              for m, i in zip(meshes, run)])
            for name, seq in (("raw", pred), ("filtered", fpred)):
                acc[name].append(acceleration_error_norms(seq, gt).ravel())
                jit[name].append(jerk_norms(seq).ravel())
            jit["ground_truth"].append(jerk_norms(gt).ravel())
    if not n_runs:
        return {"sequences": 0, "note": "no run of 4 or more consecutive frames of one person"}
    mean_mm = lambda parts: float(np.concatenate(parts).mean() * 1000)  # noqa: E731
    return {"sequences": n_runs, "frames": n_frames, "fps": fps, "filter": "One-Euro, default live settings",
            "accel_error": {k: mean_mm(v) for k, v in acc.items()},
            "jitter": {k: mean_mm(v) for k, v in jit.items()},
            "units": {"accel_error": "mm/frame^2", "jitter": "mm/frame^3"}}


def run_evaluation(o: EvalOptions) -> Dict:
    """Evaluate and return the summary (``--json`` content)."""
    from engines.body_model import BodyModel, BodyModelNotFound
    from engines.evaluation import protocols as P
    from engines.evaluation.model_files import SMPLLayers, SMPLXEvalFiles

    if o.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if o.max_samples is not None and o.max_samples < 1:
        raise UserError("--max-samples must be at least 1")
    reader = open_dataset(o)
    n_total = len(reader.samples)
    if n_total == 0:
        raise UserError(f"{o.dataset}: the split under {o.data_dir} has no usable sample (empty split)")
    samples = reader.samples[:o.max_samples] if o.max_samples else reader.samples
    try:
        files = SMPLXEvalFiles.load(o.body_models)
        body_model = BodyModel(o.body_models)
    except BodyModelNotFound as exc:
        raise UserError(str(exc)) from exc
    smpl = SMPLLayers(o.body_models) if o.dataset == "PW3D" else None
    smpl_reg = smpl.joint_regressor if smpl is not None else None  # fails early without the SMPL files
    if o.workers is not None and o.workers < 1:
        raise UserError("--workers must be at least 1")
    ray_eval = None
    if o.ray is not None:
        from . import ray_eval  # imports Ray (the batch extra): a clear error without it

        ray_eval.check(o)  # before anything is written
    local_workers = (o.workers or 1) if o.ray is None else 1
    scratch = None
    if local_workers > 1 and not o.save_predictions:  # the workers hand their predictions over in a folder
        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="mocap-eval-")
        o = EvalOptions(**dict(asdict(o), save_predictions=scratch.name))
    store = PredictionStore(o.save_predictions, o)
    counts = {"unreadable_image": 0}
    try:
        if ray_eval is not None:
            preds = ray_eval.predict_on_ray(o, samples, store, counts)
        elif local_workers > 1:
            preds = _predict_in_workers(o, samples, store, counts)
        else:
            preds = _predict(o, samples, store, counts)
    finally:
        if scratch is not None:
            o = EvalOptions(**dict(asdict(o), save_predictions=None))
            scratch.cleanup()
    quirked = _apply_official_quirk(o, n_total, preds)

    models = SimpleNamespace(smplx=body_model, smpl=smpl)
    keys = metric_keys(o.dataset)
    per_sample: List[Dict[str, float]] = []
    joints: Dict[int, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    done = [s for s in samples if s.index in preds]
    for start in range(0, len(done), max(o.batch_size, 16)):
        chunk = done[start:start + max(o.batch_size, 16)]
        meshes = _meshes(body_model, [preds[s.index] for s in chunk])
        for s, mesh_out in zip(chunk, meshes):
            gt = reader.ground_truth(s, models)
            pred = preds[s.index]
            if o.dataset == "EHF":
                from engines.datasets.ehf import CAMERA_R

                gt = np.dot(CAMERA_R, gt.transpose(1, 0)).transpose(1, 0)
            if o.dataset == "PW3D":
                m = P.pw3d_metrics(mesh_out, gt, files, smpl_reg)
            elif o.dataset == "UBody":
                m = P.ubody_metrics(mesh_out, gt, pred["cam_trans"], pred["bb2img_trans"],
                                    tuple(pred["image_hw"]), files)
            else:
                m = P.smplx_mesh_metrics(mesh_out, gt, files, keys)
            per_sample.append(m)
            if getattr(reader, "sequences", False):
                pj, gj = P.temporal_joints(reader.name, mesh_out, gt, files, smpl_reg)
                joints[s.index] = (pj, gj, gt)
    means = P.summarise(per_sample, keys)
    # the official mean is NaN when a sample's value is (UBody: no ground-truth point inside the image);
    # JSON has no NaN: such a metric is null there and named under "not_finite"
    not_finite = sorted(k for k, v in means.items() if v is not None and not np.isfinite(v))
    summary = {
        "dataset": o.dataset, "samples": len(per_sample),
        "metrics": {k: (None if k in not_finite else v) for k, v in means.items()},
        "not_finite": {k: sum(1 for m in per_sample if k in m and not np.isfinite(m[k])) for k in not_finite},
        "skipped": {"unreadable_image": counts["unreadable_image"],
                    "left_out_by_the_official_rules": int(getattr(reader, "left_out", 0))},
        "samples_in_split": n_total, "resumed_predictions": counts["resumed"],
        "official_batch_quirk_samples": quirked,
        "checkpoint": str(o.checkpoint), "engine": o.engine, "precision": "fp16" if o.fp16 else "fp32",
        "device": o.device, "options": {k: v for k, v in asdict(o).items() if k not in ("progress", "workers", "ray")},
        "versions": _versions(o.engine), "units": "mm",
    }
    if not per_sample:
        raise UserError(f"{o.dataset}: no sample could be evaluated ({counts['unreadable_image']} unreadable images)")
    if getattr(reader, "sequences", False):
        summary["temporal"] = _temporal(o, reader, done, preds, joints, body_model, files, smpl_reg)
    return summary


def format_summary(summary: Dict) -> str:
    """The summary as the official printout's lines (``%.2f mm``) plus counts and temporal figures."""
    from engines.evaluation.protocols import LABELS

    lines = [f"====== {summary['dataset']} ({summary['samples']} samples; {summary['engine']} "
             f"{summary['precision']} on {summary['device']}) ======"]
    for key, value in summary["metrics"].items():
        if key in summary.get("not_finite", {}):
            shown = f"nan mm (as officially: {summary['not_finite'][key]} samples without a valid point)"
        else:
            shown = "n/a" if value is None else f"{value:.2f} mm"
        lines.append(f"{LABELS.get(key, key)}: {shown}   [{key}]")
    skipped = summary["skipped"]
    if skipped["unreadable_image"]:
        lines.append(f"skipped: {skipped['unreadable_image']} samples with an unreadable image")
    if skipped["left_out_by_the_official_rules"]:
        lines.append(f"left out as officially: {skipped['left_out_by_the_official_rules']} annotations")
    t = summary.get("temporal")
    if t and t.get("sequences"):
        lines.append(temporal_line(t))
    return "\n".join(lines)


def temporal_line(t: Dict) -> str:
    """The temporal figures (``summary["temporal"]`` with at least one run) as one printed line."""
    return (f"temporal ({t['sequences']} runs, {t['frames']} frames at {t['fps']:g} fps): "
            f"accel error raw {t['accel_error']['raw']:.2f} / One-Euro {t['accel_error']['filtered']:.2f} "
            f"mm/frame^2; jitter raw {t['jitter']['raw']:.2f} / One-Euro {t['jitter']['filtered']:.2f} / "
            f"ground truth {t['jitter']['ground_truth']:.2f} mm/frame^3")
