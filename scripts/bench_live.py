#!/usr/bin/env python
"""`mocap live` on a real video file, end to end, on the CPU or a CUDA GPU.

Runs the real command (capture thread, tracker, engine, One-Euro, VMC to 127.0.0.1 and ZMQ
sinks, no viewer) on a 30 fps clip made from a real photo (or ``--clip``), looped for ``--seconds``, twice:

* ``paced``: frames arrive at the file's own rate, as from a camera (latency as a user sees it);
* ``no-pace``: every frame is read as soon as the engine is free (the pipeline's throughput).

Weights are random in the official layout with a camera head that centres the body in its box
(``centred_checkpoint``), so that the projected joints follow the person and the tracker only
re-detects on loss, as with real weights; the SMPL-X file is the synthetic stand-in. Speed does
not depend on the weights' values. Writes ``--out``.json with each run's summary.

    python scripts/bench_live.py --device cuda --out /tmp/live
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_pan_clip(path: Path, photo: Path, seconds: float = 12.0, fps: float = 30.0) -> Path:
    """A 960x540 clip at ``fps`` from a real photo, slowly panned and zoomed (a person in every frame)."""
    import cv2
    import numpy as np

    img = cv2.imread(str(photo))
    if img is None:
        raise FileNotFoundError(f"cannot read {photo}")
    h, w = 540, 960
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    n = int(seconds * fps)
    for i in range(n):
        s = 1.0 + 0.1 * np.sin(2 * np.pi * i / n)
        dx = 40 * np.sin(2 * np.pi * i / (n / 2))
        m = np.array([[s * w / img.shape[1], 0, dx], [0, s * h / img.shape[0], 0]], np.float32)
        vw.write(cv2.warpAffine(img, m, (w, h)))
    vw.release()
    return path


def centred_checkpoint(path: Path, variant: str = "s32") -> Path:
    """Random weights except a camera head that centres the body in its box, so that the
    projected joints follow the person and the tracker can skip the detector (random weights
    otherwise project the joints anywhere and the tracker re-detects every frame)."""
    import torch

    from engines.checkpoints import write_random_checkpoint
    from engines.smplerx import VARIANTS

    width = VARIANTS[variant].embed_dim
    extra = {"body_regressor.cam_out.0.weight": torch.zeros(3, width),
             "body_regressor.cam_out.0.bias": torch.tensor([0.0, 0.0, 1.0])}
    return write_random_checkpoint(path, variant, seed=2, extra=extra)


def run_live(clip: Path, ckpt: Path, body_dir: Path, device: str, engine: str, seconds: float,
             pace: bool, summary: Path, extra=()) -> dict:
    from realtime.live import LiveOptions, run
    from realtime.sinks.targets import StreamTargets

    rc = run(LiveOptions(source=str(clip), loop=True, duration=seconds, checkpoint=str(ckpt), body_models=str(body_dir),
                         device=device, engine=engine, viewer="none", no_pace=not pace, summary_json=summary,
                         streams=StreamTargets(osc=["127.0.0.1:39539"], zmq="tcp://127.0.0.1:5599"), **dict(extra)))
    if rc != 0:
        return {"error": f"mocap live exited {rc}"}
    return json.loads(summary.read_text())


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--variant", default="s32")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="checkpoint file to use (default: a fresh random one; give the one bench_aoti.py compiled "
                         "so that --engine auto finds its cached AOTInductor package)")
    ap.add_argument("--clip", type=Path, default=None,
                    help="video file (default: a 30 fps 960x540 clip made from mpii_004645041.jpg, panned and zoomed)")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--modes", default="paced,no-pace")
    ap.add_argument("--out", type=Path, default=Path("bench_live"), help="output stem (.json)")
    args = ap.parse_args()

    from engines.benchmark import media_dir
    from engines.synthetic import write_synthetic_smplx

    if args.clip is not None and not args.clip.is_file():
        print(f"bench_live: clip not found: {args.clip}", file=sys.stderr)
        return 2
    if args.checkpoint is not None and not args.checkpoint.is_file():
        print(f"bench_live: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    report = {"device": args.device, "engine": args.engine, "variant": args.variant,
              "seconds": args.seconds, "weights": "random, centred camera head", "runs": {}}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        clip = args.clip or make_pan_clip(tmp / "pan.mp4", media_dir() / "mpii_004645041.jpg", seconds=args.seconds)
        report["clip"] = clip.name if args.clip else "mpii_004645041.jpg panned, 30 fps 960x540"
        write_synthetic_smplx(tmp / "bm")
        ckpt = args.checkpoint or centred_checkpoint(tmp / f"smpler_x_{args.variant}.pth.tar", args.variant)
        for mode in args.modes.split(","):
            res = run_live(clip, ckpt, tmp / "bm", args.device, args.engine, args.seconds, mode == "paced",
                           tmp / f"{mode}.json")
            report["runs"][mode] = res
            print(mode, json.dumps(res), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main_())
