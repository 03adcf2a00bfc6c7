#!/usr/bin/env python
"""GPU benchmark of the SMPLer-X engines (run it on a CUDA machine; exits cleanly without one).

For each variant (S32, B32 by default) and batch size (1, 4 and 8 by default) it measures
network latency (median / p90 ms, CUDA-synchronised) and throughput (items/s) for

* ``torch_fp32``        PyTorch eager fp32,
* ``torch_fp16``        PyTorch eager fp16 autocast,
* ``torch_fp32_graph``  PyTorch fp32 captured in a CUDA graph,
* ``torch_fp16_graph``  PyTorch fp16 autocast captured in a CUDA graph (the CUDA ``auto`` engine),
* ``torch_compile_fp16`` ``torch.compile`` (default mode) of the fp16 network, at ``--compile-batches`` only,
* ``torch_compile_fp16_graph`` the same, compiled kernels captured in a CUDA graph,
* ``ort_cuda_fp32``     ONNX Runtime CUDA execution provider (if onnxruntime-gpu is installed),
* ``tensorrt_fp16``     a TensorRT fp16 engine (if the ``tensorrt`` package is installed),

and the error of each reduced-precision engine against torch fp32 on the same real crop:
rotations (root, body, hands, jaw) as geodesic angles in degrees, camera translation in mm.
It also times the SMPL-X layer (synthetic model file with the real shapes) on the CPU and on the
GPU at the same batch sizes. ``--budget-s`` bounds the whole run: rows not started in time are
reported as skipped. Writes ``--out``.json and ``--out``.md (a markdown table). Random weights by
default (``--checkpoint-dir`` with official files gives meaningful error numbers; speed is the same).

    python scripts/gpu_bench.py --out docs/gpu_bench
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROT_KEYS = ("smplx_root_pose", "smplx_body_pose", "smplx_lhand_pose", "smplx_rhand_pose", "smplx_jaw_pose")


def rotation_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Geodesic angle (degrees) between axis-angle rotations a, b (..., 3)."""
    from scipy.spatial.transform import Rotation as R

    ra, rb = R.from_rotvec(a.reshape(-1, 3).astype(np.float64)), R.from_rotvec(b.reshape(-1, 3).astype(np.float64))
    return np.degrees((ra.inv() * rb).magnitude())


def errors(out: dict, ref: dict) -> dict:
    rot = np.concatenate([rotation_error_deg(out[k], ref[k]) for k in ROT_KEYS])
    trans_mm = np.linalg.norm(out["cam_trans"] - ref["cam_trans"], axis=-1) * 1000.0
    return {"rot_deg_mean": float(rot.mean()), "rot_deg_max": float(rot.max()),
            "trans_mm_mean": float(trans_mm.mean()), "trans_mm_max": float(trans_mm.max()),
            "betas_max_abs": float(np.abs(out["smplx_shape"] - ref["smplx_shape"]).max())}


def time_engine(eng, img, iters, warmup):
    from engines.benchmark import time_calls

    # run() returns host numpy: each call includes the device->host sync
    res = time_calls(lambda: eng.run({"img": img}), iters=iters, warmup=warmup)
    return {"median_ms": res["median_ms"], "p90_ms": res["p90_ms"], "min_ms": res["min_ms"],
            "throughput_per_s": img.shape[0] * 1000.0 / res["median_ms"], "iters": iters}


def smplx_layer_times(batches, work: Path, iters: int = 30, devices=("cpu", "cuda")) -> list:
    """Median ms of the SMPL-X layer (all outputs of the network at once) on the CPU and on CUDA."""
    import torch

    from engines.benchmark import time_calls
    from engines.body_model import BodyModel
    from engines.synthetic import write_synthetic_smplx

    write_synthetic_smplx(work / "bm")
    rows = []
    for batch in batches:
        row = {"batch": batch}
        for dev in devices:
            bm = BodyModel(work / "bm").to(dev)
            g = torch.Generator().manual_seed(0)
            args = [(torch.rand(batch, n, generator=g) * 0.4 - 0.2).to(dev) for n in (3, 63, 45, 45, 3, 10, 10)]

            def call():
                with torch.inference_mode():
                    v, j = bm(*args)
                if dev == "cuda":
                    torch.cuda.synchronize()
                return v

            row[f"{dev}_median_ms"] = time_calls(call, iters=iters, warmup=3)["median_ms"]
        rows.append(row)
    return rows


def predictor_times(ckpt: Path, work: Path, people=(1, 2, 4), iters: int = 50) -> list:
    """Frame in, people out: ``Predictor.predict`` on the skier photo with 1/2/4 boxes (upload, GPU
    crops, fp16 network and SMPL-X layer as CUDA graphs, one copy back, host assembly), median ms."""
    import cv2

    from engines.backends.torch_backend import TorchEngine
    from engines.benchmark import BENCH_BOX, BENCH_IMAGE, media_dir, time_calls
    from engines.body_model import BodyModel
    from engines.checkpoints import load_network
    from engines.inference import Predictor
    from engines.synthetic import write_synthetic_smplx

    if not (work / "bm").is_dir():
        write_synthetic_smplx(work / "bm")
    img = cv2.imread(str(media_dir() / BENCH_IMAGE))
    rows = []
    for mesh in (False, True):
        pred = Predictor(TorchEngine(load_network(ckpt), device="cuda", precision="fp16", cuda_graph=True),
                         BodyModel(work / "bm"), with_mesh=mesh)
        for n in people:
            boxes = [tuple(np.add(BENCH_BOX, (12 * k, 0, 0, 0))) for k in range(n)]
            res = time_calls(lambda: pred.predict(img, boxes), iters=iters, warmup=5)  # host arrays out: synced
            rows.append({"people": n, "with_mesh": mesh, "median_ms": res["median_ms"], "p90_ms": res["p90_ms"],
                         "per_person_ms": res["median_ms"] / n})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["s32", "b32"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    ap.add_argument("--compile-batches", nargs="*", type=int, default=[1], help="batches for torch.compile rows")
    ap.add_argument("--budget-s", type=float, default=1e9, help="start no new row after this many seconds")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--checkpoint-dir", type=Path, default=None, help="official smpler_x_*.pth.tar files (optional)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip", nargs="*", default=[], help="engines to skip")
    ap.add_argument("--engines", nargs="*", default=None, help="only these engines (torch_fp32 always runs: it is the reference)")
    ap.add_argument("--no-smplx", action="store_true", help="skip the SMPL-X layer timing")
    ap.add_argument("--predictor", action="store_true",
                    help="also time the whole GPU predictor (frame in, people out) for 1, 2 and 4 people (S32)")
    ap.add_argument("--out", type=Path, default=Path("gpu_bench"), help="output stem (.json and .md)")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}); nothing measured.", file=sys.stderr)
        return 2

    from engines.backends import load_engine
    from engines.backends.torch_backend import TorchEngine
    from engines.checkpoints import load_network, write_random_checkpoint
    from engines.benchmark import bench_input, machine_info
    from engines.export import onnx_to_engine, torch_to_onnx

    torch.backends.cudnn.benchmark = True
    t_start = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine_info(), "gpu": torch.cuda.get_device_name(0), "results": [],
              "weights": "official" if args.checkpoint_dir else "random"}
    try:
        import onnxruntime as ort

        has_ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    except ImportError:
        has_ort_cuda = False
    import importlib.util

    has_trt = importlib.util.find_spec("tensorrt") is not None
    report["onnxruntime_cuda"], report["tensorrt_available"] = has_ort_cuda, has_trt

    def checkpoint_for(variant: str) -> Path:
        """The official file with --checkpoint-dir, else random weights in the official layout."""
        if args.checkpoint_dir:
            return args.checkpoint_dir / f"smpler_x_{variant}.pth.tar"
        ckpt = work / f"smpler_x_{variant}.pth.tar"
        if not ckpt.is_file():
            write_random_checkpoint(ckpt, variant)
        return ckpt

    for variant in args.variants:
        ckpt = checkpoint_for(variant)
        onnx_path = work / f"{variant}.onnx"
        for batch in args.batches:
            img, what = bench_input(batch)
            makers = {
                "torch_fp32": lambda: TorchEngine(load_network(ckpt), device="cuda"),
                "torch_fp16": lambda: TorchEngine(load_network(ckpt), device="cuda", precision="fp16"),
                "torch_fp32_graph": lambda: TorchEngine(load_network(ckpt), device="cuda", cuda_graph=True),
                "torch_fp16_graph": lambda: TorchEngine(load_network(ckpt), device="cuda", precision="fp16",
                                                        cuda_graph=True),
            }
            if batch in args.compile_batches:
                makers["torch_compile_fp16"] = lambda: TorchEngine(load_network(ckpt), device="cuda",
                                                                   precision="fp16", compile=True)
                makers["torch_compile_fp16_graph"] = lambda: TorchEngine(load_network(ckpt), device="cuda",
                                                                         precision="fp16", compile=True,
                                                                         cuda_graph=True)
            if has_ort_cuda:
                def make_ort():
                    if not onnx_path.is_file():
                        torch_to_onnx(load_network(ckpt), onnx_path)
                    return load_engine(onnx_path, "onnx", "cuda")
                makers["ort_cuda_fp32"] = make_ort
            if has_trt:
                def make_trt(b=batch):
                    if not onnx_path.is_file():
                        torch_to_onnx(load_network(ckpt), onnx_path)
                    eng_path = work / f"{variant}-fp16-b{max(args.batches)}.engine"
                    if not eng_path.is_file():
                        onnx_to_engine(onnx_path, eng_path, fp16=True, batch=b, max_batch=max(args.batches))
                    return load_engine(eng_path, "tensorrt", "cuda")
                makers["tensorrt_fp16"] = make_trt
            ref = None
            for name, make in makers.items():
                if name in args.skip or (args.engines and name != "torch_fp32" and name not in args.engines):
                    continue
                row = {"variant": variant, "batch": batch, "engine": name, "input": what}
                if time.perf_counter() - t_start > args.budget_s:
                    row["error"] = "skipped: time budget spent"
                    report["results"].append(row)
                    continue
                try:
                    t_make = time.perf_counter()
                    eng = make()
                    out = eng.run({"img": img})
                    row["first_call_s"] = time.perf_counter() - t_make  # build + first run (compile, capture)
                    if name == "torch_fp32":
                        ref = out
                    row.update(time_engine(eng, img, args.iters, args.warmup))
                    if ref is not None and name != "torch_fp32":
                        row.update(errors(out, ref))
                    del eng
                    torch.cuda.empty_cache()
                except Exception as exc:  # report and go on with the other engines
                    row["error"] = f"{type(exc).__name__}: {exc}"
                report["results"].append(row)
                print(json.dumps(row), flush=True)

    try:
        report["smplx_layer"] = [] if args.no_smplx else smplx_layer_times(args.batches, work)
    except Exception as exc:  # report it; the engine rows above are kept
        report["smplx_layer"] = []
        report["smplx_layer_error"] = f"{type(exc).__name__}: {exc}"
    print("smplx_layer", json.dumps(report["smplx_layer"]), flush=True)

    if args.predictor:
        try:
            report["predictor"] = predictor_times(checkpoint_for("s32"), work)
        except Exception as exc:  # report it; the rows above are kept
            report["predictor"] = []
            report["predictor_error"] = f"{type(exc).__name__}: {exc}"
        print("predictor", json.dumps(report["predictor"]), report.get("predictor_error", ""), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    lines = [f"GPU: {report['gpu']}; torch {report['machine']['torch']}; weights: {report['weights']}", "",
             "| variant | batch | engine | median ms | p90 ms | items/s | rot err mean/max (deg) | trans err mean/max (mm) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['batch']} | {r['engine']} | failed: {r['error'][:80]} | | | | |")
            continue
        rot = f"{r['rot_deg_mean']:.3f} / {r['rot_deg_max']:.3f}" if "rot_deg_mean" in r else "reference"
        tr = f"{r['trans_mm_mean']:.2f} / {r['trans_mm_max']:.2f}" if "trans_mm_mean" in r else "reference"
        lines.append(f"| {r['variant']} | {r['batch']} | {r['engine']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} "
                     f"| {r['throughput_per_s']:.1f} | {rot} | {tr} |")
    lines += ["", "SMPL-X layer (vertices + joints, synthetic model with the real shapes):", "",
              "| batch | CPU median ms | CUDA median ms |", "| --- | --- | --- |"]
    for r in report["smplx_layer"]:
        lines.append(f"| {r['batch']} | {r['cpu_median_ms']:.2f} | {r['cuda_median_ms']:.3f} |")
    if report.get("predictor"):
        lines += ["", "Whole GPU predictor, S32 fp16 + CUDA graphs (frame in, people out: upload, crops, network, "
                  "SMPL-X layer, copy back, host assembly):", "",
                  "| people | mesh | median ms | p90 ms | per person ms |", "| --- | --- | --- | --- | --- |"]
        for r in report["predictor"]:
            lines.append(f"| {r['people']} | {'yes' if r['with_mesh'] else 'no'} | {r['median_ms']:.2f} "
                         f"| {r['p90_ms']:.2f} | {r['per_person_ms']:.2f} |")
    if report.get("predictor_error"):
        lines += ["", f"predictor timing failed: {report['predictor_error']}"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
