"""UBody (intra-scene test protocol) in the official layout (``data/UBody/UBody.py``):
``ROOT/UBody/images/<scene>/<video>/<frame>``, ``ROOT/UBody/annotations/<scene>/keypoint_annotation.json``
(COCO style) and ``smplx_annotation.json`` (``{annotation id: {"smplx_param": ..., "cam_param": ...}}``),
and ``ROOT/UBody/splits/intra_scene_test_list.npy`` (the test videos).

As officially: scenes in ``os.listdir`` order; within a scene every ``sample_interval``-th
annotation (the official configs' ``test_sample_interval = 100``), counted over all annotations;
only test videos (``_Trim`` suffixes dropped), existing images, non-crowd annotations with
keypoints, ``valid_label`` set and a fit in ``smplx_annotation.json``; the body box padded
with the default ratio 1.25 (the official UBody loader does not pass ``bbox_ratio``)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Union

import numpy as np

from ..errors import UserError
from ..geometry import process_bbox
from .coco_json import read_coco
from .sample import EvalSample, need_file
from .test_targets import smplx_pseudo_gt_mesh, smplx_test_params

#: The official configs' ``test_sample_interval`` (UBody only).
SAMPLE_INTERVAL = 100


class UBody:
    """The UBody test split."""

    name = "UBody"
    sequences = False

    def __init__(self, root: Union[str, Path], sample_interval: int = SAMPLE_INTERVAL):
        base = Path(root) / "UBody"
        images = base / "images"
        if not images.is_dir():
            raise UserError(f"{images} not found (UBody's image folder, one sub-folder per scene)")
        split_path = need_file(base / "splits" / "intra_scene_test_list.npy", "UBody's list of test videos")
        try:
            test_videos = set(np.load(split_path).tolist())
        except Exception as exc:
            raise UserError(f"cannot read {split_path} ({type(exc).__name__}: {exc})") from None
        self.samples: List[EvalSample] = []
        for scene in os.listdir(images):
            ann_dir = base / "annotations" / scene
            imgs, anns = read_coco(ann_dir / "keypoint_annotation.json")
            smplx_path = need_file(ann_dir / "smplx_annotation.json", f"UBody SMPL-X fits of scene {scene}")
            try:
                fits = json.loads(smplx_path.read_text())
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot read {smplx_path} as JSON ({exc})") from None
            for i, ann in enumerate(anns, start=1):
                if i % sample_interval != 0:
                    continue
                img = imgs[ann["image_id"]]
                file_name = img["file_name"][1:] if img["file_name"].startswith("/") else img["file_name"]
                video = file_name.split("/")[-2]
                if "Trim" in video:
                    video = video.split("_Trim")[0]
                if video not in test_videos:
                    continue
                img_path = images / scene / file_name
                if not img_path.exists():
                    continue
                if ann["iscrowd"] or ann["num_keypoints"] == 0:
                    continue
                if ann["valid_label"] == 0 or str(ann["id"]) not in fits:
                    continue
                bbox = process_bbox(ann["bbox"], img["width"], img["height"])
                if bbox is None:
                    continue
                fit = fits[str(ann["id"])]
                param = dict(fit["smplx_param"])
                if "lhand_valid" not in param:
                    param.update(lhand_valid=ann["lefthand_valid"], rhand_valid=ann["righthand_valid"],
                                 face_valid=ann["face_valid"])
                self.samples.append(EvalSample(
                    index=len(self.samples), key=f"{scene}/{ann['id']}", img_path=img_path,
                    img_shape=(img["height"], img["width"]), bbox=bbox,
                    gt={"smplx_param": param, "cam_param": fit.get("cam_param", {})}))

    def ground_truth(self, sample: EvalSample, models) -> np.ndarray:
        """The pseudo ground-truth mesh: the neutral SMPL-X fit plus its translation."""
        return smplx_pseudo_gt_mesh(models.smplx, smplx_test_params(sample.gt["smplx_param"], sample.gt["cam_param"]))
