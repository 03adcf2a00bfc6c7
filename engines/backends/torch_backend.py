"""PyTorch backend: eager CPU or CUDA, fp32 or fp16/bf16."""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np
import torch

from ..smplerx import SMPLerX
from .base import INPUT_NAME, OUTPUT_NAMES, Engine

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, net: SMPLerX, device: str = "cpu", precision: str = "fp32", fused_attention: bool = False):
        if precision not in _DTYPES:
            raise ValueError(f"precision must be one of {list(_DTYPES)}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA device "
                               "(CPU build of torch, or no driver). Use --device cpu.")
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        self.precision = precision
        self.variant = net.variant.name
        self.net = net.to(device).eval()
        self.net.set_fused_attention(fused_attention)
        self._dtype = _DTYPES[precision]

    @torch.inference_mode()
    def forward_tensor(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        img = img.to(self.device, non_blocking=True)
        if self._dtype is torch.float32:
            return self.net(img.float())
        with torch.autocast(device_type=self.device, dtype=self._dtype):
            out = self.net(img.float())
        return {k: v.float() for k, v in out.items()}

    def run(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        img = inputs[INPUT_NAME]
        t = img if isinstance(img, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
        out = self.forward_tensor(t)
        return {k: out[k].detach().float().cpu().numpy() for k in OUTPUT_NAMES}
