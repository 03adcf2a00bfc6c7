"""HumanData test sets (``EgoBody_Egocentric``, ``ARCTIC`` and any other HumanData file) in the
official layout: the annotation ``ROOT/preprocessed_datasets/<file>.npz`` and the images under
``ROOT/<image folder>/``, read with :func:`engines.datasets.humandata.read_humandata` in test mode
(the official ``HumanDataset.load_data``). The ground truth is the official pseudo ground truth:
the neutral SMPL-X mesh of the annotated parameters plus their translation."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import UserError
from .humandata import BBOX_RATIO, read_humandata
from .sample import EvalSample, trailing_number
from .test_targets import smplx_pseudo_gt_mesh, smplx_test_params

#: Official test sets: name -> (image folder, annotation file, test sample interval, frame rate).
TESTSETS: Dict[str, Tuple[str, str, int, Optional[float]]] = {
    "EgoBody_Egocentric": ("EgoBody", "egobody_egocentric_test_230425_043_fix_betas.npz", 1, 30.0),
    "ARCTIC": ("ARCTIC", "p1_val.npz", 10, 30.0),
}


class HumanDataTestSet:
    """One HumanData file in test mode. ``name`` is an official class name of :data:`TESTSETS`, or
    any name with ``annotation`` (a file under ``ROOT/preprocessed_datasets/`` or a path) and
    ``image_dir`` (a folder under ``ROOT`` or a path) given."""

    sequences = True

    def __init__(self, root: Union[str, Path], name: str, annotation: Optional[str] = None,
                 image_dir: Optional[str] = None, sample_interval: Optional[int] = None,
                 bbox_ratio: float = BBOX_RATIO, fps: Optional[float] = None):
        root = Path(root)
        default = TESTSETS.get(name)
        if default is None and (annotation is None or image_dir is None):
            raise UserError(f"'{name}' is not an official HumanData test set ({', '.join(TESTSETS)}); "
                            "give its --annotation (.npz) and --image-dir")
        folder, file, interval, rate = default or (None, None, 1, None)
        self.name = name
        self.annot_path = root / "preprocessed_datasets" / (annotation or file)
        if annotation is not None and Path(annotation).is_absolute():
            self.annot_path = Path(annotation)
        self.image_root = root / (image_dir or folder)
        self.fps = fps or rate or 30.0
        self.stats: Dict[str, int] = {}
        records = read_humandata(self.annot_path, self.image_root, "test", bbox_ratio,
                                 sample_interval or interval, stats=self.stats)
        self.left_out = self.stats.get("no_image", 0)
        self.samples: List[EvalSample] = []
        for rec in records:
            rel = Path(rec.img_path).relative_to(self.image_root) if rec.img_path.startswith(str(self.image_root)) \
                else Path(rec.img_path)
            self.samples.append(EvalSample(
                index=len(self.samples), key=f"{len(self.samples):07d}_{rel.stem}", img_path=Path(rec.img_path),
                img_shape=tuple(rec.img_shape), bbox=rec.bbox, sequence=str(rel.parent),
                frame=trailing_number(rel.name), gt={"smplx_param": rec.smplx_param}))

    def ground_truth(self, sample: EvalSample, models) -> np.ndarray:
        """The pseudo ground-truth mesh: the neutral SMPL-X fit plus its translation."""
        return smplx_pseudo_gt_mesh(models.smplx, smplx_test_params(sample.gt["smplx_param"]))
