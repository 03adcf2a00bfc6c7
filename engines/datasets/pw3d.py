"""3DPW test split in the official layout: ``ROOT/PW3D/data/3DPW_test.json`` (COCO style, per image
``sequence`` and ``cam_param``; per annotation ``bbox`` and ``smpl_param``) and the images under
``ROOT/PW3D/data/imageFiles/<sequence>/``, as the official ``data/PW3D/PW3D.py`` reads them.
The ground truth is an SMPL mesh (gendered SMPL layers, ``BM/smpl/``)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Union

import numpy as np

from ..geometry import process_bbox
from .coco_json import read_coco
from .sample import EvalSample, trailing_number
from .test_targets import smpl_test_mesh

#: 3DPW's frame rate (for the temporal figures).
FPS = 30.0


class PW3D:
    """The 3DPW test split."""

    name = "PW3D"
    sequences = True
    fps = FPS

    def __init__(self, root: Union[str, Path], bbox_ratio: float = 1.2, split: str = "test"):
        self.data_path = Path(root) / "PW3D" / "data"
        imgs, anns = read_coco(self.data_path / f"3DPW_{split}.json")
        self.samples: List[EvalSample] = []
        for ann in anns:
            img = imgs[ann["image_id"]]
            bbox = process_bbox(np.array(ann["bbox"]), img["width"], img["height"], ratio=bbox_ratio)
            if bbox is None:
                continue
            seq, name = img["sequence"], img["file_name"]
            person = ann.get("person_id", ann.get("pid", 0))
            self.samples.append(EvalSample(
                index=len(self.samples), key=f"{seq}/{Path(name).stem}_{ann['id']}",
                img_path=self.data_path / "imageFiles" / seq / name, img_shape=(img["height"], img["width"]),
                bbox=bbox, sequence=f"{seq}#{person}", frame=trailing_number(name),
                gt={"smpl_param": ann["smpl_param"],
                    "cam_param": {k: np.array(v, dtype=np.float32) for k, v in img["cam_param"].items()}}))

    def ground_truth(self, sample: EvalSample, models) -> np.ndarray:
        """The SMPL ground-truth mesh (6890, 3) in the camera frame."""
        return smpl_test_mesh(models.smpl, sample.gt["smpl_param"], sample.gt["cam_param"])
