"""Timing the model: the real crop, the timing loop and the machine facts that ``mocap bench``
and the benchmark scripts in ``scripts/`` share, and :func:`run_bench` (network + SMPL-X layer)."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np


#: A real photo for benchmarks, with a person box (xywh, pixels) around the skier.
BENCH_IMAGE = "coco_000785_skier.jpg"
BENCH_BOX = (280.0, 44.0, 220.0, 348.0)


def media_dir() -> Path:
    env = os.environ.get("MOCAP_MEDIA_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[1]
    for cand in (here.parent / "shared" / "media", here / "shared" / "media", Path("/work/shared/media")):
        if cand.is_dir():
            return cand
    return here.parent / "shared" / "media"


def bench_input(batch: int = 1) -> tuple:
    """(img (B,3,512,384) float32 in [0,1], description): the skier photo cropped the way the
    demo does (process_bbox + crop_image), or a synthetic frame when the photo is absent."""
    from . import geometry as G

    path = media_dir() / BENCH_IMAGE
    if path.is_file():
        import cv2

        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        rgb = G.bgr_to_rgb_float(bgr)
        box = G.process_bbox(BENCH_BOX, rgb.shape[1], rgb.shape[0])
        patch, _, _ = G.crop_image(rgb, box)
        what = f"{BENCH_IMAGE} crop"
    else:
        g = np.random.default_rng(0)
        patch = (g.random((512, 384, 3), dtype=np.float32) * 255).astype(np.float32)
        what = "synthetic frame (photo not found)"
    img = (patch.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)
    return np.ascontiguousarray(np.repeat(img, batch, 0)), what


def time_calls(fn: Callable[[], object], iters: int = 20, warmup: int = 3) -> Dict[str, float]:
    """Median and percentiles (ms) of ``iters`` calls after ``warmup``, and process CPU-seconds
    per wall-second (about the thread count when the cores were ours; lower = contended)."""
    for _ in range(warmup):
        fn()
    times: List[float] = []
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    wall = time.perf_counter() - w0
    arr = np.asarray(times)
    return {"median_ms": float(np.median(arr)), "p10_ms": float(np.percentile(arr, 10)),
            "p90_ms": float(np.percentile(arr, 90)), "min_ms": float(arr.min()), "max_ms": float(arr.max()),
            "mean_ms": float(arr.mean()), "iters": iters, "warmup": warmup,
            "cpu_per_wall": float((time.process_time() - c0) / wall)}


def machine_info() -> Dict[str, object]:
    import torch

    info: Dict[str, object] = {
        "platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("onnxruntime", "onnx", "onnxscript", "tensorrt"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info


def body_model_or_stand_in(body_models: Optional[str]):
    """The real SMPL-X layer if present, else the synthetic stand-in (same shapes, same cost)."""
    from .body_model import BodyModel, BodyModelNotFound

    try:
        return BodyModel(body_models), "SMPL-X"
    except BodyModelNotFound:
        if body_models:
            raise
        import tempfile

        from .synthetic import write_synthetic_smplx

        tmp = Path(tempfile.mkdtemp(prefix="mocap-bench-"))
        write_synthetic_smplx(tmp / "smplx" / "SMPLX_NEUTRAL.npz")
        return BodyModel(tmp), "synthetic SMPL-X stand-in"


def run_bench(checkpoint, engine: Optional[str] = None, device: str = "cpu", fp16: bool = False, batch: int = 1,
              iters: int = 20, warmup: int = 3, threads: int = 2, body_models=None) -> Dict[str, object]:
    """Time the network + the SMPL-X layer (:func:`engines.inference.forward_step`, the official full
    forward) on a real crop."""
    import torch

    from .backends import auto_kind, load_engine
    from .inference import forward_step

    torch.set_num_threads(threads)
    os.environ.setdefault("MOCAP_THREADS", str(threads))
    kind = engine or "auto"
    precision = "fp16" if fp16 else None  # None: the backend's own (ONNX/TensorRT: the file's)
    kwargs = {"threads": threads} if kind in ("onnx", "auto") or (kind == "torch" and device == "cpu") else {}
    eng = load_engine(checkpoint, kind, device, precision, **kwargs)
    body, body_what = body_model_or_stand_in(body_models)
    img, what = bench_input(batch)

    img_t = torch.from_numpy(img)

    def full():
        return forward_step(eng, body, img_t)

    res = time_calls(full, iters, warmup)
    res.update({"engine": eng.name, "engine_requested": engine or "auto (" + auto_kind(checkpoint, device) + ")",
                "device": eng.device, "precision": eng.precision, "variant": eng.variant, "batch": batch,
                "per_item_ms": res["median_ms"] / batch, "input": what, "body_model": body_what,
                "describe": eng.describe(), "machine": machine_info(),
                "checkpoint": str(checkpoint)})
    return res
