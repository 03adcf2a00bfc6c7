"""TensorRT backend: a serialized engine behind a JSON metadata header; device buffers allocated once.

File layout (``.engine``)::

    b"MOCAPTRT"            8-byte magic
    uint32 little-endian   length N of the header
    N bytes                UTF-8 JSON: precision, batch, max_batch, input, outputs, variant, ...
    rest                   the engine as serialized by ``IBuilder.build_serialized_network``

``tensorrt`` (and torch with CUDA, used for the device buffers) are imported only when an
engine is opened or built. NOTE: this backend could not be run where it was written (TensorRT
cannot be installed there, and no GPU was available); the header and everything up to the
engine build are tested on CPU.

Device buffers (input and every output) are allocated once, for the engine's largest batch, and
bound to the execution context once; a smaller batch only changes the input shape (the batch is
the outermost axis, so the first rows of each buffer are that batch). :meth:`TensorRTEngine.launch`
takes the predictor's crops as a device tensor, runs on the current CUDA stream and returns views
of the output buffers (the device path, no host round trip).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np

from ..atomic import atomic_file
from ..errors import DependencyMissing, DeviceUnavailable, ModelFileError
from .base import INPUT_NAME, OUTPUT_NAMES, Engine, check_precision

MAGIC = b"MOCAPTRT"


class TensorRTUnavailable(DependencyMissing):
    """The ``tensorrt`` Python package is not installed."""


def import_tensorrt():
    try:
        import tensorrt as trt  # noqa: F401
    except ImportError as exc:
        raise TensorRTUnavailable(
            "the TensorRT backend needs the `tensorrt` Python package (NVIDIA GPU machines only): "
            "pip install tensorrt (from NVIDIA's index), or use --engine onnx / torch") from exc
    return trt


def write_engine_file(path: Union[str, Path], meta: Mapping, engine: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = json.dumps(dict(meta), sort_keys=True).encode("utf-8")
    with atomic_file(path, "wb") as fh:
        fh.write(MAGIC)
        fh.write(struct.pack("<I", len(header)))
        fh.write(header)
        fh.write(engine)
    return path


def read_engine_file(path: Union[str, Path]) -> Tuple[Dict, bytes]:
    """(metadata, serialized engine) of a file written by :func:`write_engine_file`."""
    data = Path(path).read_bytes()
    if data[:len(MAGIC)] != MAGIC:
        raise ValueError(f"{path} is not a mocap TensorRT engine (missing the {MAGIC!r} header); "
                         "build it with `mocap export --to engine`")
    (n,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
    start = len(MAGIC) + 4
    meta = json.loads(data[start:start + n].decode("utf-8"))
    return meta, data[start + n:]


class TensorRTEngine(Engine):
    """Runs a mocap ``.engine`` on CUDA with torch device buffers allocated once for the largest batch."""

    name = "tensorrt"
    device = "cuda"

    def __init__(self, path: Union[str, Path], device: str = "cuda", precision: Optional[str] = None):
        if not device.startswith("cuda"):
            raise ValueError(f"the TensorRT engine runs on CUDA only, not on --device {device}")
        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise DeviceUnavailable("the TensorRT backend needs a CUDA device; none is visible")
        self.meta, blob = read_engine_file(path)
        self.precision = self.meta.get("precision", "fp16")
        check_precision(precision, self.precision, path,
                        f"build one with `mocap export --to engine{' --fp16' if precision == 'fp16' else ''}`")
        self.variant = self.meta.get("variant", "?")
        self._trt, self._torch = trt, torch
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise ModelFileError(f"TensorRT could not load {path} (built with TensorRT "
                               f"{self.meta.get('tensorrt')}, another GPU, or a corrupt file?)")
        self.context = self.engine.create_execution_context()
        self.max_batch = int(self.meta.get("max_batch", self.meta.get("batch", 1)))
        self._dtypes = {}
        for i in range(self.engine.num_io_tensors):
            n = self.engine.get_tensor_name(i)
            self._dtypes[n] = torch.from_numpy(np.zeros(0, trt.nptype(self.engine.get_tensor_dtype(n)))).dtype
        self._buffers: Dict[str, "torch.Tensor"] = {}
        self._batch = -1
        self._allocate(self.max_batch)

    def _allocate(self, batch: int) -> None:
        """Device buffers for the largest ``batch``, bound once (done at load)."""
        torch = self._torch
        self.context.set_input_shape(INPUT_NAME, (batch, 3, 512, 384))
        for name in (INPUT_NAME, *OUTPUT_NAMES):
            shape = tuple(self.context.get_tensor_shape(name))
            buf = torch.empty(shape, dtype=self._dtypes[name], device="cuda")
            self._buffers[name] = buf
            self.context.set_tensor_address(name, buf.data_ptr())
        self._batch = batch

    def launch(self, img):
        """Copy the crops into the bound input buffer, enqueue the engine on the current stream,
        return float32 views of the output buffers (overwritten by the next launch); no overflow."""
        torch = self._torch
        b = int(img.shape[0])
        if b > self.max_batch:
            raise ValueError(f"batch {b} is larger than the engine's maximum {self.max_batch}")
        if b != self._batch:
            self.context.set_input_shape(INPUT_NAME, (b, 3, 512, 384))
            self._batch = b
        self._buffers[INPUT_NAME][:b].copy_(img, non_blocking=True)
        self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
        return {k: self._buffers[k][:b].float() for k in OUTPUT_NAMES}, None

    def run(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        torch = self._torch
        img = inputs[INPUT_NAME]
        src = img if isinstance(img, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
        out = self.forward_tensor(src.to("cuda"))
        return {k: v.cpu().numpy().copy() for k, v in out.items()}
