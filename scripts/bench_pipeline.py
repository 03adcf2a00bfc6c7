#!/usr/bin/env python
"""CPU benchmarks of the foundation and the live pipeline (issue: numbers go to docs/benchmarks.md).

Measures, on this machine, with random-weight official-layout checkpoints and a
synthetic SMPL-X file (speed does not depend on the weights' values):

1. full forward latency (network + SMPL-X layer, batch 1, torch eager fp32) of S32 and B32;
2. person-detector latency (mediapipe Pose, static and tracking mode) on real photos;
3. per-stage time of ``mocap video`` on a real clip;
4. ``mocap live`` on a video source (paced at the file's rate): input/output FPS,
   capture-to-send latency (median, p95), per-stage times, detector calls per 100 frames.

Usage: .venv/bin/python scripts/bench_pipeline.py [--threads 2] [--iters 20] [--json out.json] [--skip-b32]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
from engines.benchmark import media_dir  # noqa: E402

MEDIA = media_dir()


def cpu_time() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, iters: int, warmup: int = 3):
    for _ in range(warmup):
        fn()
    wall, c0, t0 = [], cpu_time(), time.perf_counter()
    for _ in range(iters):
        s = time.perf_counter()
        fn()
        wall.append(time.perf_counter() - s)
    total = time.perf_counter() - t0
    a = np.array(wall) * 1000
    return {"median_ms": float(np.median(a)), "p10_ms": float(np.percentile(a, 10)), "p90_ms": float(np.percentile(a, 90)),
            "min_ms": float(a.min()), "iters": iters, "cpu_per_wall": (cpu_time() - c0) / total}


def machine() -> dict:
    import cv2
    import mediapipe
    import torch

    return {"machine": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "opencv": cv2.__version__, "mediapipe": mediapipe.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}


def bench_forward(variant: str, body, iters: int, tmp: Path):
    import cv2
    import torch

    from engines import geometry as G
    from engines.checkpoints import load_network, write_random_checkpoint
    from engines.smplerx import SMPLerXFull

    ck = write_random_checkpoint(tmp / f"{variant}.pth.tar", variant)
    full = SMPLerXFull(load_network(ck), body).eval()
    img = cv2.imread(str(MEDIA / "coco_000785_skier.jpg"))
    box = G.process_bbox([270, 20, 240, 400], img.shape[1], img.shape[0])
    patch, _, _ = G.crop_image(G.bgr_to_rgb_float(img), box)
    x = G.to_input_tensor(patch)
    with torch.inference_mode():
        res = timed(lambda: full(x), iters)
        res["network_only"] = timed(lambda: full.net(x), iters)
    ck.unlink()
    return res


def bench_detector(iters: int):
    import cv2

    from engines.detector import PersonDetector

    out = {}
    for mode, static in (("static", True), ("tracking", False)):
        with PersonDetector(static=static) as det:
            per = {}
            for name in ("coco_000785_skier.jpg", "mpii_004645041.jpg", "astronaut.png"):
                img = cv2.imread(str(MEDIA / name))
                per[name] = timed(lambda: det.detect(img), iters, warmup=2)["median_ms"]
            out[mode] = per
    return out


def bench_video(ckpt: Path, body_dir: Path, tmp: Path):
    from engines.backends.torch_backend import TorchEngine
    from engines.body_model import BodyModel
    from engines.checkpoints import load_network
    from engines.detector import PersonDetector
    from engines.inference import Predictor
    from realtime.offline import run_video

    pred = Predictor(TorchEngine(load_network(ckpt)), BodyModel(body_dir))
    clip = MEDIA / "street_walk_960x540.mp4"
    with PersonDetector(static=False) as det:
        t0 = time.perf_counter()
        stats = run_video(clip, pred, tmp / "video_out", detector=det, progress=False)
        total = time.perf_counter() - t0
    return {"clip": clip.name, "frames": stats.frames, "persons": stats.persons, "total_s": total,
            "per_frame_ms": {k: 1000 * v / max(1, stats.frames) for k, v in stats.stage_seconds.items()}}


def bench_live(ckpt: Path, body_dir: Path, tmp: Path, engine: str, seconds: float, tag: str = ""):
    from realtime.live import LiveOptions, run
    from realtime.sinks.targets import StreamTargets

    from bench_live import make_pan_clip

    clip = tmp / "pan.mp4"
    if not clip.exists():
        make_pan_clip(clip, MEDIA / "mpii_004645041.jpg", seconds=seconds)
    out = tmp / f"live_{engine}{tag}.json"
    rc = run(LiveOptions(source=str(clip), checkpoint=str(ckpt), body_models=str(body_dir), engine=engine,
                         viewer="none", summary_json=out,
                         streams=StreamTargets(osc=["127.0.0.1:39539"], zmq="tcp://127.0.0.1:5599")))
    if rc != 0:
        return {"error": f"mocap live exited {rc}"}
    return json.loads(out.read_text())


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip-b32", action="store_true")
    ap.add_argument("--live-seconds", type=float, default=12.0)
    ap.add_argument("--live-engines", default="torch,auto")
    ap.add_argument("--only-live", action="store_true", help="skip the forward/detector/video parts")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from engines.body_model import BodyModel
    from engines.checkpoints import write_random_checkpoint
    from engines.synthetic import write_synthetic_smplx

    results = {"machine": machine(), "threads": args.threads}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        write_synthetic_smplx(tmp / "bm")
        body = BodyModel(tmp / "bm")
        for v in ([] if args.only_live else ["s32"] + ([] if args.skip_b32 else ["b32"])):
            results[f"forward_{v}"] = bench_forward(v, body, args.iters, tmp)
            print(v, json.dumps(results[f"forward_{v}"]), flush=True)
        ck = write_random_checkpoint(tmp / "s32.pth.tar", "s32")
        if not args.only_live:
            results["detector_ms"] = bench_detector(max(10, args.iters))
            print("detector", json.dumps(results["detector_ms"]), flush=True)
            results["mocap_video"] = bench_video(ck, tmp / "bm", tmp)
            print("video", json.dumps(results["mocap_video"]), flush=True)
        from bench_live import centred_checkpoint

        centred = centred_checkpoint(tmp / "centred.pth.tar")
        for eng in args.live_engines.split(","):
            for tag, c in (("", ck), ("_centred", centred)):
                results[f"live_{eng}{tag}"] = bench_live(c, tmp / "bm", tmp, eng, args.live_seconds, tag)
                print("live", eng, tag, json.dumps(results[f"live_{eng}{tag}"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main_())
