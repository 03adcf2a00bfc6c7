"""AOTInductor backend: the network compiled ahead of time (``torch.export`` + AOTInductor) into a
``.pt2`` package of compiled kernels, loaded in seconds, with nothing to install beyond torch.

A package is built by :func:`engines.export.torch_to_aoti` (``mocap export --to aoti``, or the
engine cache on the first ``--engine aoti``) for one device kind and precision, with a dynamic
batch axis (1 ... ``max_batch``). fp16/bf16 packages run the network under autocast, as the
PyTorch engine's fp16 does. Beside ``X.pt2`` lies ``X.json``: what the package was built with
(torch and CUDA versions, the GPU or the CPU's vector ISA, precision, variant, checkpoint). A
package whose record does not match this machine, or which does not load, is refused with a
one-line reason (:class:`AotiPackageError`); the cache rebuilds it, ``auto`` falls back to PyTorch.

The loaded package runs like the PyTorch engine (:class:`~engines.backends.torch_backend.GraphedEngine`):
on device tensors, eagerly or replayed as a CUDA graph, with the RoIAlign's sample grid bounded
and an overflowing input recomputed eagerly (the RoIAlign is the custom op ``mocap::roi_align``,
called back into :mod:`engines.roi_align` from the compiled code).
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from ..errors import UserError
from ..stop import raise_if_stopped
from .base import OUTPUT_NAMES, check_precision
from .torch_backend import GraphedEngine

#: Build facts that must match this machine for a package to be used (see :func:`build_facts`).
MATCHED = ("torch", "cuda", "device", "target")


class AotiPackageError(UserError, ValueError):
    """An AOTInductor package that is missing its record, was built elsewhere, or does not load."""


def record_path(package: Union[str, Path]) -> Path:
    """The JSON record beside a package (``X.pt2`` -> ``X.json``)."""
    return Path(package).with_suffix(".json")


def build_facts(device: str) -> Dict[str, Optional[str]]:
    """What a package built here for ``device`` depends on: torch and CUDA versions, the device
    kind and its target (GPU name and compute capability, or the CPU's vector ISA)."""
    cuda = device.startswith("cuda")
    if cuda:
        major, minor = torch.cuda.get_device_capability()
        target = f"{torch.cuda.get_device_name()} sm_{major}{minor}"
    else:
        target = f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}"
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "device": "cuda" if cuda else "cpu",
            "target": target}


def read_record(package: Union[str, Path]) -> Dict:
    path = record_path(package)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise AotiPackageError(f"{package} has no build record ({path.name} beside it); "
                               f"build it with `mocap export --to aoti`") from None
    except (OSError, ValueError) as exc:
        raise AotiPackageError(f"{path} is not a readable AOTInductor build record ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != "aoti":
        raise AotiPackageError(f"{path} is not an AOTInductor build record of `mocap export --to aoti`")
    return record


def package_problem(package: Union[str, Path], device: str) -> Optional[str]:
    """Why ``package`` cannot be used on ``device`` here (one line), or None when it can."""
    package = Path(package)
    if not package.is_file():
        return f"no AOTInductor package at {package}"
    try:
        record = read_record(package)
    except AotiPackageError as exc:
        return str(exc)
    here = build_facts(device)
    for key in MATCHED:
        if record.get(key) != here[key]:
            return (f"{package.name} was built for {key} {record.get(key)!r}, this machine has {here[key]!r}; "
                    f"rebuild it with `mocap export --to aoti`")
    return None


class AotiEngine(GraphedEngine):
    """A ``.pt2`` package from :func:`engines.export.torch_to_aoti`, loaded with ``aoti_load_package``."""

    name = "aoti"

    def __init__(self, path: Union[str, Path], device: str = "cpu", precision: Optional[str] = None,
                 cuda_graph: bool = False):
        from .. import roi_align  # noqa: F401  registers mocap::roi_align, which the compiled code calls

        path = Path(path)
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA device "
                               "(CPU build of torch, or no driver). Use --device cpu.")
        problem = package_problem(path, self.device)
        if problem:
            raise AotiPackageError(problem)
        self.path = path
        self.record = read_record(path)
        self.precision = self.record.get("precision", "fp32")
        check_precision(precision, self.precision, path,
                        f"build one with `mocap export --to aoti{' --fp16' if precision == 'fp16' else ''}`")
        self.variant = self.record.get("variant", "?")
        self.max_batch = int(self.record.get("max_batch", 64))
        try:
            self.model = torch._inductor.aoti_load_package(str(path))
        except Exception as exc:  # a cut or foreign file: torch raises RuntimeError, zip and pickle errors
            raise_if_stopped()
            raise AotiPackageError(f"{path} is not a loadable AOTInductor package ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}); "
                                   f"build it again with `mocap export --to aoti`") from None
        self._use_graphs(cuda_graph)

    def _eager(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        if img.shape[0] > self.max_batch:
            raise ValueError(f"batch {img.shape[0]} is larger than the package's maximum {self.max_batch}")
        return dict(zip(OUTPUT_NAMES, self.model(img)))
