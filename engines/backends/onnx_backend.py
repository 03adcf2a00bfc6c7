"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers where installed.

Precision comes from the model's input type (float32 / float16). On CPU the session uses
``ORT_ENABLE_ALL`` graph optimisation, 2 intra-op threads by default (this project's target
is a 2-core CPU) and, when ``optimized_path`` is given, saves the optimised graph there and
loads it directly next time. Output buffers are bound once per batch size (I/O binding);
``run`` returns copies, so results stay valid after the next call. With the CUDA provider
(onnxruntime-gpu), :meth:`OnnxEngine.launch` binds the predictor's device tensor as the input and
torch device buffers as the outputs (I/O binding on the GPU: no host round trip).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import numpy as np

from ..errors import DeviceUnavailable, ModelFileError
from ..stop import raise_if_stopped
from .base import INPUT_NAME, OUTPUT_NAMES, Engine, check_precision

log = logging.getLogger(__name__)


class OnnxModelError(ModelFileError):
    """An ONNX file that ONNX Runtime cannot load, or one that is not an SMPLer-X export."""


def available_providers():
    import onnxruntime as ort

    return ort.get_available_providers()


class OnnxEngine(Engine):
    name = "onnx"

    def __init__(self, path: Union[str, Path], device: str = "cpu", precision: Optional[str] = None,
                 threads: Optional[int] = None, optimized_path: Optional[Union[str, Path]] = None,
                 tensorrt_ep: bool = False, spinning: Optional[bool] = None):
        import onnxruntime as ort

        self._ort = ort
        path = Path(path)
        self.path = path
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        avail = ort.get_available_providers()
        if self.device == "cuda":
            if "CUDAExecutionProvider" not in avail:
                raise DeviceUnavailable("--device cuda with --engine onnx needs onnxruntime-gpu (CUDAExecutionProvider); "
                                   f"this onnxruntime has {avail}")
            providers = (["TensorrtExecutionProvider"] if tensorrt_ep and "TensorrtExecutionProvider" in avail else [])
            providers += ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = int(threads or os.environ.get("MOCAP_THREADS", 0) or min(2, os.cpu_count() or 2))
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning (ORT's default: workers busy-wait between parallel sections) made the network
        # alone 5-10 % faster here (S32 126-127 vs 131-143 ms), but the spinning workers then
        # compete with the torch SMPL-X layer and the pipeline's other threads: network + SMPL-X
        # was no faster. Off by default; MOCAP_ORT_SPIN=1 turns it on.
        if spinning is None:
            spinning = os.environ.get("MOCAP_ORT_SPIN", "0") == "1"
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        load_from = path
        if optimized_path is not None and self.device == "cpu":
            optimized_path = Path(optimized_path)
            if optimized_path.is_file() and optimized_path.stat().st_mtime >= path.stat().st_mtime:
                load_from = optimized_path
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            else:
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                so.optimized_model_filepath = str(optimized_path)
        else:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(load_from), so, providers=providers)
        except Exception as exc:  # ORT raises its own types (InvalidProtobuf, Fail, NoSuchFile, ...)
            raise_if_stopped()
            if load_from == path:
                raise OnnxModelError(f"{path} is not a usable ONNX model ({type(exc).__name__}: {exc}); "
                                     f"export it again with `mocap export --to onnx`") from None
            # the cached optimised graph is damaged (ORT writes it in place; a killed run can cut it):
            # drop it and build it again from the model
            log.warning("cached optimised graph %s is unreadable (%s); rebuilding it", load_from, exc)
            Path(load_from).unlink(missing_ok=True)
            return self.__init__(path, device, precision, threads, optimized_path, tensorrt_ep, spinning)
        inp = self.session.get_inputs()[0]
        if inp.name != INPUT_NAME:
            raise OnnxModelError(f"{path}: input is named '{inp.name}', expected '{INPUT_NAME}': "
                                 f"not an SMPLer-X model exported by `mocap export`")
        self._in_dtype = np.float16 if "float16" in inp.type else np.float32
        self.precision = "fp16" if self._in_dtype is np.float16 else "fp32"
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = dict(meta)
        self.variant = meta.get("variant", "?")
        if "precision" in meta and meta["precision"] in ("int8",):
            self.precision = meta["precision"]
        check_precision(precision, self.precision, path,
                        f"export one with `mocap export --to onnx{' --fp16' if precision == 'fp16' else ''}`")
        names = [o.name for o in self.session.get_outputs()]
        missing = [k for k in OUTPUT_NAMES if k not in names]
        if missing:
            raise ValueError(f"{path} lacks outputs {missing}")
        self.providers = self.session.get_providers()
        self._binding = None
        self._out_bufs: dict = {}
        self._batch = -1

    def _bind(self, batch: int) -> None:
        """I/O binding with output arrays allocated once per batch size (CPU)."""
        binding = self.session.io_binding()
        self._out_bufs = {}
        shapes = _output_shapes(batch)
        for k in OUTPUT_NAMES:
            buf = np.empty(shapes[k], np.float16 if self._in_dtype is np.float16 else np.float32)
            self._out_bufs[k] = buf
            binding.bind_output(k, "cpu", 0, buf.dtype, buf.shape, buf.ctypes.data)
        self._binding = binding
        self._batch = batch

    def launch(self, img):
        """CPU: :meth:`Engine.launch` (through :meth:`run`). CUDA: the device tensor bound as the
        input, output device buffers bound once per batch size, float32 views of them returned."""
        if self.device == "cpu":
            return super().launch(img)
        import torch

        dtype = torch.float16 if self._in_dtype is np.float16 else torch.float32
        img = img.to("cuda").to(dtype).contiguous()
        b = int(img.shape[0])
        index = img.device.index or 0
        if b != self._batch:
            binding = self.session.io_binding()
            self._out_bufs = {k: torch.empty(shape, dtype=dtype, device=img.device)
                              for k, shape in _output_shapes(b).items()}
            for k, buf in self._out_bufs.items():
                binding.bind_output(k, "cuda", index, self._in_dtype, tuple(buf.shape), buf.data_ptr())
            self._binding, self._batch = binding, b
        self._binding.bind_input(INPUT_NAME, "cuda", index, self._in_dtype, tuple(img.shape), img.data_ptr())
        torch.cuda.current_stream().synchronize()  # ORT runs on its own stream: the crops must be ready
        self.session.run_with_iobinding(self._binding)  # returns once the outputs are written
        return {k: self._out_bufs[k].float() for k in OUTPUT_NAMES}, None

    def run(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.device != "cpu":
            import torch

            out = self.forward_tensor(torch.as_tensor(np.ascontiguousarray(inputs[INPUT_NAME], dtype=np.float32)))
            return {k: v.cpu().numpy().copy() for k, v in out.items()}
        img = np.ascontiguousarray(inputs[INPUT_NAME], dtype=self._in_dtype)
        if img.shape[0] != self._batch:
            self._bind(img.shape[0])
        self._binding.bind_cpu_input(INPUT_NAME, img)
        self.session.run_with_iobinding(self._binding)
        return {k: self._out_bufs[k].astype(np.float32, copy=True) for k in OUTPUT_NAMES}


def _output_shapes(batch: int) -> Dict[str, tuple]:
    return {
        "smplx_root_pose": (batch, 3), "smplx_body_pose": (batch, 63), "smplx_lhand_pose": (batch, 45),
        "smplx_rhand_pose": (batch, 45), "smplx_jaw_pose": (batch, 3), "smplx_shape": (batch, 10),
        "smplx_expr": (batch, 10), "cam_trans": (batch, 3), "joint_img": (batch, 65, 3),
        "lhand_bbox": (batch, 4), "rhand_bbox": (batch, 4), "face_bbox": (batch, 4),
    }
