"""AGORA validation split in the official layout (``data/AGORA/AGORA.py``, the default 3840x2160
mode): annotations ``ROOT/AGORA/data/AGORA_validation_fix_betas.json`` (the file the official
configs' ``agora_fix_betas = True`` selects; ``AGORA_validation.json`` /
``AGORA_validation_fix_global_orient_transl.json`` for other configs), the pre-cropped person images
``ROOT/AGORA/data/3840x2160/<scene>_crop/<image>_ann_id_<id>.png`` with their ``.json`` (the
crop's ``img2bb_trans``, ``resized_height``/``resized_width``), and the ground-truth SMPL-X
vertices ``ROOT/AGORA/data/<smplx_verts_path>`` (JSON lists). As officially, an annotation that
is not ``is_valid`` or whose crop ``.json`` is missing is left out, and the whole crop is the box."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Union

import numpy as np

from ..body_model import NUM_VERTICES
from ..errors import UserError
from .coco_json import read_coco
from .sample import EvalSample, need_file

DEFAULT_ANNOTATION = "AGORA_validation_fix_betas.json"


class AGORA:
    """The AGORA validation split (the official ``--testset AGORA`` with ``agora_benchmark`` 'na')."""

    name = "AGORA"
    sequences = False

    def __init__(self, root: Union[str, Path], annotation: str = DEFAULT_ANNOTATION):
        self.data_path = Path(root) / "AGORA" / "data"
        imgs, anns = read_coco(self.data_path / annotation)
        self.samples: List[EvalSample] = []
        self.left_out = 0
        for ann in anns:
            if not ann["is_valid"]:
                continue
            img = imgs[ann["image_id"]]
            parts = img["file_name_3840x2160"].split("/")
            crop_dir = self.data_path / "3840x2160" / (parts[-2] + "_crop")
            stem = parts[-1][:-4] + "_ann_id_" + str(ann["id"])
            info_path = crop_dir / (stem + ".json")
            if not info_path.is_file():
                self.left_out += 1
                continue
            try:
                info = json.loads(info_path.read_text())
                h, w = int(info["resized_height"]), int(info["resized_width"])
            except (OSError, ValueError, KeyError) as exc:
                raise UserError(f"cannot read the crop description {info_path} ({exc})") from None
            self.samples.append(EvalSample(
                index=len(self.samples), key=stem, img_path=crop_dir / (stem + ".png"), img_shape=(h, w),
                bbox=np.array([0, 0, w, h], dtype=np.float32),
                gt={"verts_path": self.data_path / ann["smplx_verts_path"]}))

    def ground_truth(self, sample: EvalSample, models=None) -> np.ndarray:
        path = need_file(sample.gt["verts_path"], "AGORA ground-truth SMPL-X vertices")
        try:
            verts = np.array(json.loads(path.read_text())).reshape(-1, 3)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {path} as a JSON vertex list ({exc})") from None
        if verts.shape != (NUM_VERTICES, 3):
            raise UserError(f"{path} has {len(verts)} vertices; an SMPL-X mesh has {NUM_VERTICES}")
        return verts
