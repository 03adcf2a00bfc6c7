"""One interface for every inference backend: named arrays in, named arrays out, on the host
(:meth:`Engine.run`) or on the engine's device (:meth:`Engine.launch`).

An engine runs the SMPLer-X *network* (not the SMPL-X layer): input ``img``
(B, 3, 512, 384) float RGB in [0, 1]; outputs named as in :data:`OUTPUT_NAMES`.
Each backend reads its precision from the model file it loads (ONNX input type,
engine header, or the torch module's dtype); a precision asked for that the file was not
built with is refused (:func:`check_precision`), never silently ignored.

Every engine offers the same device launch: ``launch(img)`` takes a float tensor (on any
device), starts the forward on ``engine.device`` without waiting for it and returns
``(outputs, overflow)``: float32 tensors on ``engine.device`` and either None or a 0-dim bool
device tensor (engines that replay a CUDA graph with a bounded RoIAlign grid) that, when True
after synchronising, means this input must be recomputed with :meth:`Engine.recompute`.
:meth:`Engine.forward_tensor` does both. The predictor takes its device path when
``engine.device`` is not the CPU, whatever the backend.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch

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
    #: True when :meth:`launch` replays CUDA graphs (the predictor then graphs the SMPL-X layer too)
    cuda_graph: bool = False

    @abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run on ``{"img": (B,3,512,384) float32}`` and return float32 numpy outputs."""

    def __call__(self, img: np.ndarray) -> Dict[str, np.ndarray]:
        return self.run({INPUT_NAME: img})

    def launch(self, img: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
        """Start the forward on the engine's device: (float32 outputs on ``self.device``, overflow).

        This default serves engines that compute on the host (ONNX Runtime on the CPU): it runs
        :meth:`run` and returns its arrays as tensors, never an overflow flag. Device engines
        (PyTorch, TensorRT, ONNX Runtime's CUDA provider) override it and return before the device
        is done; their outputs may be buffers that the next launch overwrites.
        """
        out = self.run({INPUT_NAME: img.detach().to("cpu").float().numpy()})
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in out.items()}, None

    def recompute(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The forward without the bounds a replayed graph has (called when :meth:`launch` flagged
        an overflow); engines that never flag one need not override it."""
        return self.launch(img)[0]

    def forward_tensor(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        """:meth:`launch`, waited for, with the overflow recompute: float32 outputs on the device."""
        out, overflow = self.launch(img)
        if overflow is not None and bool(overflow):  # a hand box beyond the captured RoIAlign grid bound
            out = self.recompute(img)
        return out

    def close(self) -> None:
        """Release device resources (optional)."""

    def describe(self) -> str:
        return f"{self.name}/{self.device}/{self.precision} SMPLer-X-{self.variant.upper()}"


def check_precision(asked: Optional[str], found: str, source: object, how: str) -> None:
    """Refuse a precision that differs from the one a model file was built with (ONNX, TensorRT)."""
    if asked is not None and asked != found:
        raise ValueError(f"{source} is a {found} model but {asked} was asked for; {how}")
