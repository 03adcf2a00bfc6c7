"""Export the SMPLer-X network: PyTorch -> ONNX -> TensorRT engine, as plain functions.

* :func:`torch_to_onnx` -- the whole network (RoIAlign included, as the standard ONNX
  ``RoiAlign`` op with mmcv ``aligned=False`` semantics) through the dynamo exporter;
  input ``img`` (B, 3, 512, 384), outputs :data:`~engines.backends.base.OUTPUT_NAMES`;
  provenance in the ONNX ``metadata_props`` (variant, precision, rewrites, checkpoint).
* :func:`check_onnx` -- ONNX Runtime (CPU) against eager PyTorch on the same input.
* :func:`tensorrt_unsupported_ops` -- ops of a graph that TensorRT's ONNX parser lacks.
* :func:`onnx_to_engine` -- a serialized TensorRT engine behind a JSON metadata header
  (format in :mod:`engines.backends.tensorrt_backend`).
* :func:`torch_to_aoti` -- an AOTInductor ``.pt2`` package (``torch.export`` + AOTInductor) and
  its JSON build record (format in :mod:`engines.backends.aoti_backend`).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import numpy as np
import torch

from .atomic import atomic_file, atomic_path
from .backends.base import INPUT_NAME, OUTPUT_NAMES
from .geometry import INPUT_IMG_SHAPE

log = logging.getLogger(__name__)

#: ONNX opset of the exported graphs (RoiAlign with coordinate_transformation_mode needs >= 16).
OPSET = 18
#: Largest accepted |ORT - torch| per output, relative to the output's magnitude (max(1, max|ref|)).
CHECK_RTOL = 1e-3


class _Outputs(torch.nn.Module):
    """Dict-returning network -> tuple in :data:`OUTPUT_NAMES` order (what exporters want)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, img):
        out = self.net(img)
        return tuple(out[k] for k in OUTPUT_NAMES)


def example_input(batch: int = 1, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *INPUT_IMG_SHAPE, generator=g).to(dtype)


def torch_to_onnx(net: torch.nn.Module, path: Union[str, Path], batch: int = 1, dynamic_batch: bool = True,
                  fp16: bool = False, metadata: Optional[Dict[str, str]] = None) -> Path:
    """Export ``net`` (an :class:`~engines.smplerx.SMPLerX`, optionally rewritten by
    :mod:`engines.optimize`) to ``path``. ``batch`` is the example batch; with ``dynamic_batch``
    the batch axis is symbolic (the RoIAlign and reshapes are batch-generic).

    ``fp16`` exports a half-precision graph (fp16 input and weights), meant for GPU runtimes.
    """
    from .roi_align import onnx_translation

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    dtype = torch.float16 if fp16 else torch.float32
    if fp16:
        import copy

        net = copy.deepcopy(net).half()
    # torch.export specialises size-1 dimensions: trace a dynamic batch with an example of 2
    x = example_input(max(batch, 2) if dynamic_batch else batch, dtype=dtype)
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = {"img": {0: torch.export.Dim("batch", min=1, max=64)}}
    t0 = time.perf_counter()
    with torch.no_grad():
        prog = torch.onnx.export(_Outputs(net).eval(), (x,), dynamo=True, opset_version=OPSET,
                                 input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                                 custom_translation_table=onnx_translation(), external_data=False,
                                 **kwargs)
    if prog is None:  # pragma: no cover - legacy exporter path
        raise RuntimeError("torch.onnx.export returned no program")
    model = prog.model_proto
    meta = {"producer": "smplerx-mocap", "precision": "fp16" if fp16 else "fp32",
            "input": INPUT_NAME, "outputs": ",".join(OUTPUT_NAMES),
            "batch": "dynamic" if dynamic_batch else str(batch)}
    variant = getattr(getattr(net, "variant", None), "name", None)
    if variant:
        meta["variant"] = variant
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    _set_metadata(model, meta)
    import onnx

    with atomic_file(path, "wb") as fh:  # a killed export leaves no half-written model under the real name
        fh.write(model.SerializeToString())
    onnx.checker.check_model(str(path))
    log.info("exported %s in %.1f s", path, time.perf_counter() - t0)
    return path


def _set_metadata(model, meta: Dict[str, str]) -> None:
    existing = {p.key: p for p in model.metadata_props}
    for k, v in meta.items():
        if k in existing:
            existing[k].value = v
        else:
            p = model.metadata_props.add()
            p.key, p.value = k, v


def read_onnx_metadata(path: Union[str, Path]) -> Dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def check_onnx(path: Union[str, Path], net: torch.nn.Module, img: Optional[torch.Tensor] = None,
               rtol: float = CHECK_RTOL) -> Dict[str, float]:
    """Run the ONNX file with ONNX Runtime (CPU, fp32 reference network) and ``net`` in eager
    PyTorch on the same input; return ``{output: max abs difference}``. Raises ``AssertionError``
    naming the outputs whose difference exceeds ``rtol * max(1, max|torch output|)``."""
    import onnxruntime as ort

    img = example_input(1) if img is None else img
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    in_type = sess.get_inputs()[0].type
    feed = img.numpy().astype(np.float16 if "float16" in in_type else np.float32)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {INPUT_NAME: feed})))
    with torch.inference_mode():
        ref = net.eval().float()(img.float())
    diffs, bad = {}, []
    for k in OUTPUT_NAMES:
        r = ref[k].float().numpy()
        d = float(np.abs(got[k].astype(np.float32) - r).max())
        diffs[k] = d
        if not d <= rtol * max(1.0, float(np.abs(r).max())):
            bad.append(f"{k}: {d:.3g}")
    if bad:
        raise AssertionError(f"ONNX Runtime output differs from PyTorch beyond {rtol:g} (relative): " + ", ".join(bad))
    return diffs


# --------------------------------------------------------------------------- TensorRT
#: Ops TensorRT 10's ONNX parser imports (onnx-tensorrt ``docs/operators.md``), restricted to the
#: ones an exporter can plausibly emit for this network. RoiAlign goes through TensorRT's
#: ``ROIAlign_TRT`` plugin (parser support since 8.6).
TENSORRT_OPS = frozenset("""
Abs Acos Add And ArgMax ArgMin Asin Atan AveragePool BatchNormalization Cast Ceil Clip Concat Constant
ConstantOfShape Conv ConvTranspose Cos CumSum DepthToSpace Div Einsum Elu Equal Erf Exp Expand Flatten Floor
Gather GatherElements GatherND Gelu Gemm GlobalAveragePool Greater GreaterOrEqual GridSample Identity If
InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax MatMul Max
MaxPool Mean Min Mod Mul Neg Not Or Pad Pow PRelu Range Reciprocal ReduceL1 ReduceL2 ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize RoiAlign Round Shape Sigmoid
Sign Sin Slice Softmax Softplus SpaceToDepth Split Sqrt Squeeze Sub Sum Tanh Tile TopK Transpose Trilu
Unsqueeze Where Xor
""".split())


def onnx_ops(path: Union[str, Path]) -> List[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}
    for fn in model.functions:
        ops |= {n.op_type for n in fn.node if n.domain in ("", "ai.onnx")}
    custom = {f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")}
    return sorted(ops | custom)


def tensorrt_unsupported_ops(path: Union[str, Path]) -> List[str]:
    """Ops of the ONNX file that TensorRT's ONNX parser does not import (empty = all supported)."""
    return [op for op in onnx_ops(path) if op not in TENSORRT_OPS]


def onnx_to_engine(onnx_path: Union[str, Path], engine_path: Union[str, Path], fp16: bool = True,
                   batch: int = 1, max_batch: Optional[int] = None, workspace_gb: float = 4.0) -> Path:
    """Build a TensorRT engine from our ONNX with the TensorRT Python API and write it with the
    metadata header. Raises :class:`~engines.backends.tensorrt_backend.TensorRTUnavailable` when
    the ``tensorrt`` package is missing."""
    from .backends.tensorrt_backend import import_tensorrt, write_engine_file

    trt = import_tensorrt()
    bad = tensorrt_unsupported_ops(onnx_path)
    if bad:
        raise ValueError(f"{onnx_path} uses ops TensorRT cannot import: {', '.join(bad)}")
    onnx_meta = read_onnx_metadata(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # RoiAlign is a plugin
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast fp16; building fp16 anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    max_batch = max(batch, max_batch or batch)
    inp = network.get_input(0)
    if inp.shape[0] == -1:
        profile = builder.create_optimization_profile()
        shape = tuple(inp.shape)[1:]
        profile.set_shape(inp.name, (1, *shape), (batch, *shape), (max_batch, *shape))
        config.add_optimization_profile(profile)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
    meta = {"producer": "smplerx-mocap", "precision": "fp16" if fp16 else "fp32", "batch": batch,
            "max_batch": max_batch, "input": INPUT_NAME, "outputs": list(OUTPUT_NAMES),
            "variant": onnx_meta.get("variant", "?"), "tensorrt": trt.__version__,
            "onnx": Path(onnx_path).name, "built": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_engine_file(engine_path, meta, bytes(serialized))
    log.info("built %s in %.0f s", engine_path, time.perf_counter() - t0)
    return Path(engine_path)


# --------------------------------------------------------------------------- AOTInductor
class _Autocast(torch.nn.Module):
    """The tuple-returning network under autocast (the PyTorch engine's fp16/bf16), float32 out."""

    def __init__(self, net: torch.nn.Module, device: str, dtype: torch.dtype):
        super().__init__()
        self.net, self.device, self.dtype = net, device, dtype

    def forward(self, img):
        with torch.autocast(device_type=self.device, dtype=self.dtype):
            out = self.net(img)
        return tuple(o.float() for o in out)


def torch_to_aoti(net: torch.nn.Module, path: Union[str, Path], device: str = "cpu", precision: str = "fp32",
                  max_batch: int = 64, metadata: Optional[Dict[str, str]] = None) -> Path:
    """Compile ``net`` with ``torch.export`` + AOTInductor for ``device`` into the package ``path``
    (``.pt2``) with a dynamic batch axis (1 ... ``max_batch``) and write its build record beside it
    (``.json``: torch/CUDA versions, device target, precision, variant, compile time). ``precision``
    fp16/bf16 compiles the network under autocast. The package and record appear only when the
    build succeeded (written under temporary names, then renamed)."""
    from .backends.aoti_backend import build_facts, record_path

    dtypes = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"precision must be one of {list(dtypes)}")
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"an AOTInductor package is named *.pt2, not {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    module = _Outputs(net.eval()).to(kind)
    if dtypes[precision] is not None:
        module = _Autocast(module, kind, dtypes[precision])
    x = example_input(2).to(kind)  # torch.export specialises size-1 dimensions: trace with 2
    t0 = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(module.eval(), (x,),
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=int(max_batch))},))
        with atomic_path(path, keep_suffix=True) as tmp:  # a failed compile leaves nothing behind
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
            record = {"format": "aoti", "producer": "smplerx-mocap", "precision": precision, "batch": "dynamic",
                      "max_batch": int(max_batch), "input": INPUT_NAME, "outputs": list(OUTPUT_NAMES),
                      "variant": getattr(getattr(net, "variant", None), "name", "?"),
                      "compile_s": round(time.perf_counter() - t0, 1),
                      "built": time.strftime("%Y-%m-%dT%H:%M:%S"), **build_facts(kind)}
            record.update({k: str(v) for k, v in (metadata or {}).items()})
            record_path(path).unlink(missing_ok=True)  # a package without its record is never used
        with atomic_file(record_path(path), "w") as fh:
            fh.write(json.dumps(record, indent=2, sort_keys=True))
    log.info("compiled %s in %.0f s", path, time.perf_counter() - t0)
    return path


def summarize(diffs: Dict[str, float]) -> str:
    worst = max(diffs, key=diffs.get)
    return f"max |ORT - torch| = {diffs[worst]:.2e} ({worst})"


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


__all__: Iterable[str] = ("torch_to_onnx", "check_onnx", "onnx_to_engine", "tensorrt_unsupported_ops", "torch_to_aoti",
                          "read_onnx_metadata", "example_input", "OPSET", "TENSORRT_OPS")
