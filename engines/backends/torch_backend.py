"""PyTorch backend: CPU or CUDA; fp32, or fp16/bf16 autocast; optional exact CPU rewrites;
CUDA graphs or ``torch.compile`` on GPU.

* ``optimize=True`` applies :func:`engines.optimize.optimize_for_cpu` (BN folding, deconv ->
  sub-pixel conv, fused attention): same outputs within fp32 rounding.
* ``cuda_graph=True`` (CUDA only) captures the whole forward once per batch size into a CUDA
  graph with static input/output buffers (:class:`engines.backends.cuda_graph.CudaGraphed`); the RoIAlign runs with a fixed sample-grid bound
  (:func:`engines.roi_align.static_grid`) and a frame whose hand boxes exceed it is recomputed
  eagerly, so results never depend on the bound.
* ``compile=True`` wraps the network in ``torch.compile`` (figures in docs/benchmarks.md).
"""
from __future__ import annotations

import logging
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from ..errors import DeviceUnavailable
from ..smplerx import SMPLerX
from .base import INPUT_NAME, OUTPUT_NAMES, Engine
from .cuda_graph import CudaGraphed

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class GraphedEngine(Engine):
    """An engine whose forward is a Python call on device tensors (PyTorch, AOTInductor): launched
    eagerly, or replayed as a CUDA graph captured once per batch size with the RoIAlign's sample
    grid bounded (``grid_cap``) and an input that overflows the bound recomputed eagerly.
    Subclasses set ``device``, define :meth:`_eager` and call :meth:`_use_graphs` once."""

    #: RoIAlign samples per bin axis that a captured forward allows (:func:`engines.roi_align.static_grid`)
    grid_cap = 16

    def _use_graphs(self, cuda_graph: bool) -> None:
        self.cuda_graph = bool(cuda_graph) and self.device == "cuda"
        if cuda_graph and self.device != "cuda":
            log.warning("CUDA graphs need --device cuda; running eagerly")
        self._graphed = CudaGraphed(self._bounded, "network", eager=self._unbounded)

    def _eager(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The forward on a float32 batch on the engine's device: outputs by name (any float dtype)."""
        raise NotImplementedError

    def _bounded(self, img: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
        """The forward with the RoIAlign's sample grid bounded (capturable): (outputs, overflow)."""
        from ..roi_align import static_grid

        with static_grid(self.grid_cap) as flags:
            out = self._eager(img)
        return out, (torch.stack(flags).any() if flags else None)

    def _unbounded(self, img: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], None]:
        return self._eager(img), None

    @staticmethod
    def _float(out: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {k: v.float() for k, v in out.items()}  # float32 tensors come back as they are

    @torch.inference_mode()
    def launch(self, img: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
        """Start the forward without waiting for the device: (outputs, overflow), see
        :meth:`Engine.launch`. With CUDA graphs the outputs of an fp32 engine are static buffers
        that the next call overwrites; a graph that cannot be captured turns graphs off (warned)."""
        img = img.to(self.device, non_blocking=True).float()
        if not self.cuda_graph:
            return self._float(self._eager(img)), None
        out, overflow = self._graphed(img)
        if self._graphed.disabled:
            self.cuda_graph = False
        return self._float(out), overflow

    @torch.inference_mode()
    def recompute(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The eager forward (no grid bound, no graph), for an input :meth:`launch` flagged."""
        return self._float(self._eager(img.to(self.device).float()))

    def run(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        img = inputs[INPUT_NAME]
        t = img if isinstance(img, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
        out = self.forward_tensor(t)
        return {k: out[k].detach().float().cpu().numpy().copy() for k in OUTPUT_NAMES}


class TorchEngine(GraphedEngine):
    name = "torch"

    def __init__(self, net: SMPLerX, device: str = "cpu", precision: str = "fp32", fused_attention: bool = False,
                 optimize: bool = False, cuda_graph: bool = False, compile: bool = False,
                 threads: Optional[int] = None):
        if precision not in _DTYPES:
            raise ValueError(f"precision must be one of {list(_DTYPES)}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise DeviceUnavailable("--device cuda was asked for, but PyTorch sees no CUDA device "
                               "(CPU build of torch, or no driver). Use --device cpu.")
        if threads:
            torch.set_num_threads(int(threads))
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        self.precision = precision
        self.variant = net.variant.name
        net = net.eval()
        if optimize:
            from ..optimize import optimize_for_cpu

            net = optimize_for_cpu(net)
        else:
            net.set_fused_attention(fused_attention)
        self.optimized = optimize
        self.net = net.to(self.device)
        self._dtype = _DTYPES[precision]
        self._forward = torch.compile(self.net) if compile else self.net
        self._use_graphs(cuda_graph)

    def _eager(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        if self._dtype is torch.float32:
            return self._forward(img)
        with torch.autocast(device_type=self.device, dtype=self._dtype):
            return self._forward(img)
