"""Inference backends behind :class:`engines.backends.base.Engine`; optional ones import lazily."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from .base import INPUT_NAME, OUTPUT_NAMES, Engine  # noqa: F401


def load_engine(model: Union[str, Path], kind: str = "torch", device: str = "cpu", precision: str = "fp32",
                **kwargs) -> Engine:
    """Open a model with a backend. ``model`` is a checkpoint (path or size name) for ``torch``."""
    if kind == "torch":
        from ..checkpoints import load_network, resolve_checkpoint
        from .torch_backend import TorchEngine

        net = load_network(resolve_checkpoint(model))
        return TorchEngine(net, device=device, precision=precision, **kwargs)
    raise ValueError(f"unknown engine '{kind}'")
