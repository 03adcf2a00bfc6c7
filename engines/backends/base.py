"""One interface for every inference backend: named arrays in, named arrays out.

An engine runs the SMPLer-X *network* (not the SMPL-X layer): input ``img``
(B, 3, 512, 384) float RGB in [0, 1]; outputs named as in :data:`OUTPUT_NAMES`.
Each backend reads its precision from the model file it loads (ONNX input type,
engine header, or the torch module's dtype); a precision asked for that the file was not
built with is refused (:func:`check_precision`), never silently ignored.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

INPUT_NAME = "img"
#: Network outputs, in this order, for every backend and the exported graphs.
OUTPUT_NAMES: Tuple[str, ...] = (
    "smplx_root_pose", "smplx_body_pose", "smplx_lhand_pose", "smplx_rhand_pose", "smplx_jaw_pose",
    "smplx_shape", "smplx_expr", "cam_trans", "joint_img", "lhand_bbox", "rhand_bbox", "face_bbox",
)


class Engine(ABC):
    """A loaded model ready to run. Subclasses allocate their buffers once."""

    #: short backend name: "torch", "onnx", "tensorrt"
    name: str = "?"
    #: "cpu" or "cuda"
    device: str = "cpu"
    #: "fp32", "fp16", "bf16" or "int8", as read from the model
    precision: str = "fp32"
    #: model size ("s32" ...)
    variant: str = "?"

    @abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run on ``{"img": (B,3,512,384) float32}`` and return float32 numpy outputs."""

    def __call__(self, img: np.ndarray) -> Dict[str, np.ndarray]:
        return self.run({INPUT_NAME: img})

    def close(self) -> None:
        """Release device resources (optional)."""

    def describe(self) -> str:
        return f"{self.name}/{self.device}/{self.precision} SMPLer-X-{self.variant.upper()}"


def check_precision(asked: Optional[str], found: str, source: object, how: str) -> None:
    """Refuse a precision that differs from the one a model file was built with (ONNX, TensorRT)."""
    if asked is not None and asked != found:
        raise ValueError(f"{source} is a {found} model but {asked} was asked for; {how}")
