"""CUDA graphs for a function of tensors: captured once per input shapes, then replayed. The one
capture of the project: the PyTorch engine's network and the predictor's SMPL-X layer both use it.

A replay launches the whole captured sequence of kernels at once, which removes the Python and
launch overhead that dominates small batches on a fast GPU (S32's eager forward is launch-bound
on an H100: about the same time at batch 1 and 8). Outputs are static buffers that the next
replay overwrites: copy out what you need before calling again.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

log = logging.getLogger(__name__)


class CudaGraphed:
    """``CudaGraphed(fn, name)(*tensors)`` runs ``fn`` through a CUDA graph per input signature.

    If capturing fails (an operation that cannot be captured), it logs one warning and runs
    ``eager`` (default: ``fn``; it must return what ``fn`` returns) from then on, so a graph problem
    costs speed, never results.
    """

    def __init__(self, fn: Callable[..., object], name: str, warmup: int = 2,
                 eager: Optional[Callable[..., object]] = None):
        self.fn = fn
        self.eager = eager or fn
        self.name = name
        self.warmup = int(warmup)
        self.disabled = False
        self._graphs: Dict[Tuple, tuple] = {}

    def __call__(self, *inputs: torch.Tensor):
        if self.disabled:
            return self.eager(*inputs)
        key = tuple((tuple(t.shape), t.dtype, t.device) for t in inputs)
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._graphs[key] = self._capture(inputs)
            except RuntimeError as exc:
                log.warning("%s: CUDA graph capture failed (%s); running eagerly", self.name, exc)
                self.disabled = True
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                return self.eager(*inputs)
        graph, static_in, static_out = entry
        for buf, t in zip(static_in, inputs):
            buf.copy_(t, non_blocking=True)
        graph.replay()
        return static_out

    def _capture(self, inputs: Sequence[torch.Tensor]):
        """(graph, static inputs, static outputs) for inputs shaped like ``inputs``."""
        static_in = [t.detach().clone() for t in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):  # lazy initialisation and autotuning happen outside the capture
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(*static_in)
        return graph, static_in, static_out
