"""Phase 1 of ``mocap eval``: the options a run depends on, each sample's prediction and the folder
that keeps them (``--save-predictions``), shared by the one-process run, the local workers
(:mod:`.evaluate`) and the Ray actors (:mod:`.ray_eval`)."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from engines.atomic import write_json_atomic
from engines.errors import UserError

log = logging.getLogger(__name__)

#: Network outputs kept per sample (the official ``out`` keys the metrics use).
PRED_KEYS = ("smplx_root_pose", "smplx_body_pose", "smplx_lhand_pose", "smplx_rhand_pose", "smplx_jaw_pose",
             "smplx_shape", "smplx_expr", "cam_trans")
RUN_FILE = "eval_run.json"


@dataclass
class EvalOptions:
    """Everything a run depends on (see ``mocap eval --help`` for each)."""

    dataset: str
    data_dir: str
    checkpoint: str = "s32"
    body_models: Optional[str] = None
    engine: str = "torch"
    device: str = "cpu"
    fp16: bool = False
    batch_size: int = 8
    max_samples: Optional[int] = None
    save_predictions: Optional[str] = None
    bbox_ratio: float = 1.2
    sample_interval: Optional[int] = None
    annotation: Optional[str] = None
    image_dir: Optional[str] = None
    official_batch: int = 32
    official_gpus: int = 1
    fps: Optional[float] = None
    #: local worker processes (default 1); with ``ray``: engine actors (default: planned from the cluster)
    workers: Optional[int] = None
    #: predict on Ray: "local" (a local instance) or the cluster head's HOST:PORT; None: here
    ray: Optional[str] = None
    progress: bool = True

    def result_key(self) -> Dict[str, object]:
        """The options a saved prediction depends on (a resumed run must agree on all of them)."""
        keys = ("dataset", "checkpoint", "engine", "device", "fp16", "bbox_ratio", "sample_interval", "annotation",
                "image_dir")
        d = {k: getattr(self, k) for k in keys}
        d["data_dir"] = str(Path(self.data_dir).resolve())
        ckpt = Path(self.checkpoint)
        if ckpt.is_file():
            d["checkpoint"] = str(ckpt.resolve())
            d["checkpoint_bytes"] = ckpt.stat().st_size
        return d


class PredictionStore:
    """Per-sample predictions in a folder (``samples/<index>.npz``) with the options they came from
    (``eval_run.json``); a folder holding anything else, or predictions of other options, is refused."""

    def __init__(self, folder: Optional[str], options: EvalOptions):
        self.folder = Path(folder) if folder else None
        if self.folder is None:
            return
        run = self.folder / RUN_FILE
        key = options.result_key()
        if run.is_file():
            try:
                saved = json.loads(run.read_text())
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot read {run} ({exc})") from None
            if saved != json.loads(json.dumps(key)):
                diff = sorted(k for k in set(saved) | set(key) if saved.get(k) != json.loads(json.dumps(key)).get(k))
                raise UserError(f"{self.folder} holds predictions of another run (differs in: {', '.join(diff)}); "
                                "use another --save-predictions folder")
        elif self.folder.exists() and any(self.folder.iterdir()):
            raise UserError(f"--save-predictions {self.folder} is not empty and holds no {RUN_FILE}; "
                            "give an empty or new folder (nothing there is overwritten)")
        else:
            (self.folder / "samples").mkdir(parents=True, exist_ok=True)
            write_json_atomic(run, key)

    def _path(self, sample) -> Path:
        return self.folder / "samples" / f"{sample.index:07d}.npz"

    def load(self, sample) -> Optional[Dict[str, np.ndarray]]:
        if self.folder is None or not self._path(sample).is_file():
            return None
        try:
            with np.load(self._path(sample)) as data:
                if str(data["key"]) != sample.key:
                    raise UserError(f"{self._path(sample)} is the prediction of '{data['key']}', not of "
                                    f"'{sample.key}' (the dataset changed?); use a new --save-predictions folder")
                return {k: data[k] for k in data.files if k != "key"}
        except (OSError, ValueError, KeyError) as exc:  # a file cut short by a kill: predict again
            log.warning("ignoring unreadable saved prediction %s (%s)", self._path(sample), exc)
            return None

    def resume(self, samples, counts: Dict[str, int]):
        """(the saved predictions by sample index, the samples still to predict); ``counts["resumed"]``
        set to how many were saved."""
        preds: Dict[int, Dict] = {}
        todo = []
        for s in samples:
            saved = self.load(s)
            if saved is not None:
                preds[s.index] = saved
            else:
                todo.append(s)
        counts["resumed"] = len(preds)
        return preds, todo

    def save(self, sample, pred: Dict[str, np.ndarray]) -> None:
        if self.folder is None:
            return
        path = self._path(sample)
        tmp = path.with_name(path.stem + ".part.npz")
        np.savez(tmp, key=np.array(sample.key), **pred)
        os.replace(tmp, path)


def load_predictor(o: EvalOptions):
    """The engine of ``o`` (network and SMPL-X layer), loaded once per process or Ray actor."""
    from engines.inference import Predictor

    kwargs = {"precision": "fp16"} if o.fp16 else {}
    try:
        return Predictor.from_files(o.checkpoint, o.body_models, device=o.device, engine=o.engine, **kwargs)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from exc


def predict(o: EvalOptions, samples, store: PredictionStore, counts: Dict[str, int],
             predictor=None) -> Dict[int, Dict]:
    """Phase 1: network outputs per sample (from the store where present)."""
    from engines import geometry as G
    from engines.datasets.augmentation import load_image_rgb

    preds, todo = store.resume(samples, counts)
    if not todo:
        return preds
    predictor = predictor or load_predictor(o)
    from tqdm import tqdm

    bar = tqdm(total=len(samples), initial=len(preds), unit="sample", desc=f"eval {o.dataset}",
               disable=not o.progress, dynamic_ncols=True)
    try:
        for start in range(0, len(todo), o.batch_size):
            batch, patches, extra = todo[start:start + o.batch_size], [], []
            for s in batch:
                try:
                    rgb = load_image_rgb(s.img_path)
                except UserError as exc:
                    counts["unreadable_image"] += 1
                    log.warning("skipped: %s", exc)
                    bar.update(1)
                    continue
                patch, _, inv = G.crop_image(rgb, s.bbox)
                patches.append(patch)
                extra.append((s, inv, rgb.shape[:2]))
            if not patches:
                continue
            out, _, _ = predictor.forward(G.to_input_batch(patches))
            for b, (s, inv, hw) in enumerate(extra):
                pred = {k: np.asarray(out[k][b], np.float32) for k in PRED_KEYS}
                pred["bb2img_trans"] = np.asarray(inv, np.float32)
                pred["image_hw"] = np.asarray(hw, np.int64)
                store.save(s, pred)
                preds[s.index] = pred
            bar.update(len(extra))
    finally:
        bar.close()
    return preds
