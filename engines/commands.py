"""``mocap export`` and ``mocap bench``: registered into the CLI by ``register(subparsers)``.

Also the timing helpers the benchmark scripts share (:func:`bench_input`, :func:`time_calls`,
:func:`machine_info`).
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

log = logging.getLogger("mocap")

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


# --------------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    """Add ``export`` and ``bench`` to the ``mocap`` sub-command parser."""
    p = subparsers.add_parser("export", help="export the network to ONNX or a TensorRT engine (checked against PyTorch)")
    p.add_argument("--checkpoint", default="s32", help="checkpoint path or size name (s32, b32, ...)")
    p.add_argument("--to", choices=["onnx", "engine"], default="onnx", help="target format (default onnx)")
    p.add_argument("--out", type=Path, default=None, help="output file (default: next to the checkpoint's name in ./)")
    p.add_argument("--fp16", action="store_true", help="half precision (engine: TensorRT fp16; onnx: fp16 graph for GPU runtimes)")
    p.add_argument("--batch", type=int, default=1, help="batch the engine is optimised for (ONNX batch axis stays dynamic)")
    p.add_argument("--static-batch", action="store_true", help="fix the ONNX batch axis to --batch")
    p.add_argument("--no-optimize", action="store_true", help="export the network as written (no BN folding / sub-pixel deconvs)")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("bench", help="time the model forward (network + SMPL-X layer) on a real crop")
    p.add_argument("--checkpoint", default="s32", help="checkpoint path or size name")
    p.add_argument("--body-models", default=None, metavar="DIR", help="SMPL-X model dir (default: cache; a synthetic "
                   "stand-in with the real shapes is used when absent)")
    p.add_argument("--engine", choices=["torch", "onnx", "tensorrt"], default=None,
                   help="backend (default: the fastest available, as the live pipeline uses)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--fp16", action="store_true", help="half precision (torch autocast on CUDA)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the results as JSON")
    p.set_defaults(func=cmd_bench)


def _user_error():
    from realtime.cli import UserError

    return UserError


def cmd_export(args) -> int:
    UserError = _user_error()
    from .checkpoints import CheckpointError, load_network, resolve_checkpoint
    from .export import check_onnx, onnx_to_engine, summarize, tensorrt_unsupported_ops, torch_to_onnx
    from .optimize import optimize_for_cpu

    if args.batch < 1:
        raise UserError("--batch must be >= 1")
    try:
        ckpt = resolve_checkpoint(args.checkpoint)
        net = load_network(ckpt)
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc
    stem = ckpt.name.split(".")[0]
    if args.to == "engine":
        from .backends.tensorrt_backend import TensorRTUnavailable, import_tensorrt

        try:
            import_tensorrt()
        except TensorRTUnavailable as exc:
            raise UserError(str(exc)) from exc
    onnx_path = args.out if (args.out and args.to == "onnx") else Path(f"{stem}{'-fp16' if args.fp16 and args.to == 'onnx' else ''}.onnx")
    if args.to == "engine" and args.out:
        onnx_path = args.out.with_suffix(".onnx")
    exported = net if args.no_optimize else optimize_for_cpu(net)
    fp16_graph = args.fp16 and args.to == "onnx"
    torch_to_onnx(exported, onnx_path, batch=args.batch, dynamic_batch=not args.static_batch, fp16=fp16_graph,
                  metadata={"checkpoint": ckpt.name,
                            "rewrites": "none" if args.no_optimize else "fold_bn,subpixel2x2,sdpa"})
    if fp16_graph:
        print(f"wrote {onnx_path} (fp16; not checked on CPU: ONNX Runtime's CPU provider lacks fp16 kernels)")
    else:
        try:
            diffs = check_onnx(onnx_path, net)
        except AssertionError as exc:
            raise UserError(f"exported graph failed its check: {exc}") from exc
        print(f"wrote {onnx_path}; checked with ONNX Runtime: {summarize(diffs)}")
    if args.to == "engine":
        bad = tensorrt_unsupported_ops(onnx_path)
        if bad:
            raise UserError(f"{onnx_path} uses ops TensorRT cannot import: {', '.join(bad)}")
        engine_path = args.out or Path(f"{stem}{'-fp16' if args.fp16 else ''}.engine")
        onnx_to_engine(onnx_path, engine_path, fp16=args.fp16, batch=args.batch)
        print(f"wrote {engine_path}")
    return 0


def _body_model(body_models: Optional[str]):
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
    """Time ``engine.run`` + the SMPL-X layer (the official full forward) on a real crop."""
    import torch

    from .backends import auto_kind, load_engine

    torch.set_num_threads(threads)
    os.environ.setdefault("MOCAP_THREADS", str(threads))
    kind = engine or "auto"
    precision = "fp16" if fp16 else "fp32"
    kwargs = {"threads": threads} if kind in ("onnx", "auto") or device == "cpu" else {}
    if kind == "torch":
        eng = load_engine(checkpoint, "torch", device, precision, **kwargs)
    else:
        eng = load_engine(checkpoint, kind, device, **kwargs) if kind != "tensorrt" else load_engine(checkpoint, kind, device)
    body, body_what = _body_model(body_models)
    img, what = bench_input(batch)

    def full():
        out = eng.run({"img": img})
        with torch.inference_mode():
            t = {k: torch.from_numpy(out[k]) for k in ("smplx_root_pose", "smplx_body_pose", "smplx_lhand_pose",
                                                      "smplx_rhand_pose", "smplx_jaw_pose", "smplx_shape",
                                                      "smplx_expr", "cam_trans")}
            verts, _ = body(t["smplx_root_pose"], t["smplx_body_pose"], t["smplx_lhand_pose"], t["smplx_rhand_pose"],
                            t["smplx_jaw_pose"], t["smplx_shape"], t["smplx_expr"])
            return verts + t["cam_trans"][:, None]

    res = time_calls(full, iters, warmup)
    res.update({"engine": eng.name, "engine_requested": engine or "auto (" + auto_kind(checkpoint, device) + ")",
                "device": eng.device, "precision": eng.precision, "variant": eng.variant, "batch": batch,
                "per_item_ms": res["median_ms"] / batch, "input": what, "body_model": body_what,
                "describe": eng.describe(), "machine": machine_info(),
                "checkpoint": str(checkpoint)})
    return res


def cmd_bench(args) -> int:
    UserError = _user_error()
    from .backends.tensorrt_backend import TensorRTUnavailable
    from .body_model import BodyModelNotFound
    from .checkpoints import CheckpointError

    if args.iters < 1 or args.batch < 1:
        raise UserError("--iters and --batch must be >= 1")
    try:
        res = run_bench(args.checkpoint, args.engine, args.device, args.fp16, args.batch, args.iters, args.warmup,
                        args.threads, args.body_models)
    except (CheckpointError, BodyModelNotFound, TensorRTUnavailable, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc
    except RuntimeError as exc:
        if "CUDA" in str(exc) or "cuda" in str(exc):
            raise UserError(str(exc)) from exc
        raise
    print(f"{res['describe']} batch {res['batch']} on {res['input']} + {res['body_model']}: "
          f"median {res['median_ms']:.1f} ms (p10 {res['p10_ms']:.1f}, p90 {res['p90_ms']:.1f}; "
          f"{res['iters']} runs after {res['warmup']} warm-up; CPU/wall {res['cpu_per_wall']:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2, default=str))
    return 0


