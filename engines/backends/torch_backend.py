"""PyTorch backend: CPU or CUDA; fp32, or fp16/bf16 autocast; optional exact CPU rewrites;
CUDA graphs or ``torch.compile`` on GPU.

* ``optimize=True`` applies :func:`engines.optimize.optimize_for_cpu` (BN folding, deconv ->
  sub-pixel conv, fused attention): same outputs within fp32 rounding.
* ``cuda_graph=True`` (CUDA only) captures the whole forward once per batch size into a CUDA
  graph with static input/output buffers; the RoIAlign runs with a fixed sample-grid bound
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

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchEngine(Engine):
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
        self.cuda_graph = bool(cuda_graph) and self.device == "cuda"
        if cuda_graph and self.device != "cuda":
            log.warning("CUDA graphs need --device cuda; running eagerly")
        self._graphs: Dict[int, tuple] = {}

    def _eager(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        if self._dtype is torch.float32:
            return self._forward(img)
        with torch.autocast(device_type=self.device, dtype=self._dtype):
            return self._forward(img)

    def _graph_for(self, batch: int):
        """(graph, static input, static outputs, overflow flags) for ``batch``; captured once."""
        if batch in self._graphs:
            return self._graphs[batch]
        from ..roi_align import static_grid

        static_in = torch.zeros(batch, 3, 512, 384, device="cuda")
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up (cuDNN autotuning, lazy init) outside the capture
                with static_grid():
                    self._eager(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), static_grid() as flags:
            static_out = self._eager(static_in)
        entry = (graph, static_in, static_out, flags)
        self._graphs[batch] = entry
        return entry

    @torch.inference_mode()
    def launch(self, img: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
        """Start the forward without waiting for the device: (outputs, overflow).

        ``overflow`` is None, or (CUDA graphs) a 0-dim bool device tensor that is True when a hand
        box exceeded the captured RoIAlign grid bound; check it after synchronising and, if True,
        run :meth:`forward_tensor` eagerly for this input. With CUDA graphs the outputs of an fp32
        engine are static buffers that the next call overwrites.
        """
        img = img.to(self.device, non_blocking=True).float()
        out, overflow = None, None
        if self.cuda_graph:
            try:
                graph, static_in, static_out, flags = self._graph_for(img.shape[0])
            except RuntimeError as exc:  # an op that cannot be captured: correct results first
                log.warning("CUDA graph capture failed (%s); running eagerly", exc)
                self.cuda_graph = False
                torch.cuda.synchronize()
            else:
                static_in.copy_(img)
                graph.replay()
                out = static_out
                overflow = torch.stack(flags).any() if flags else None
        if out is None:
            out = self._eager(img)
        if self._dtype is not torch.float32:
            out = {k: v.float() for k, v in out.items()}
        return out, overflow

    @torch.inference_mode()
    def forward_tensor(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The forward on the engine's device (outputs stay there, float32)."""
        out, overflow = self.launch(img)
        if overflow is not None and bool(overflow):
            out = self._eager(img.to(self.device).float())  # a hand box beyond the captured RoIAlign grid bound
            if self._dtype is not torch.float32:
                out = {k: v.float() for k, v in out.items()}
        return out

    def run(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        img = inputs[INPUT_NAME]
        t = img if isinstance(img, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
        out = self.forward_tensor(t)
        return {k: out[k].detach().float().cpu().numpy().copy() for k in OUTPUT_NAMES}
