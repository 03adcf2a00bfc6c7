#!/usr/bin/env python
"""``mocap batch`` throughput on this machine: frames per second over a batch of clips with 1 and 2
local worker processes and on a local Ray instance (issue: numbers go to docs/benchmarks.md).

The clips are made from real photos in shared/media (panned and zoomed, 960x540, a person in every
frame). Weights are random in the official layout with a camera head that centres the body (so the
overlay renders a mesh over the person, as with real weights); the SMPL-X file is the synthetic
stand-in. Speed does not depend on the weights' values. Every configuration runs the real command in
a fresh process, into a fresh output folder:

* ``wall``: the whole command (start-up: imports, engine load, Ray start);
* ``steady``: frames / (last input done - first input started), from the manifest's timestamps.

Usage: .venv/bin/python scripts/bench_batch.py [--clips 4] [--frames 24] [--configs w1 w2 ray]
       [--no-overlay] [--json out.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

PHOTOS = ("mpii_004645041.jpg", "coco_000785_skier.jpg", "humanart_acrobatics.jpg", "astronaut.png")
CONFIGS = {"w1": ["--workers", "1"], "w2": ["--workers", "2"], "ray": ["--ray"]}


def versions() -> dict:
    import cv2
    import torch

    out = {"machine": platform.platform(), "processor": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
           "opencv": cv2.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}
    try:
        import ray

        out["ray"] = ray.__version__
    except ImportError:
        out["ray"] = None
    return out


def steady_fps(out: Path) -> dict:
    from realtime.batch.manifest import MANIFEST

    lines = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()[1:]]
    t = lambda e: dt.datetime.fromisoformat(e["updated"]).timestamp()  # noqa: E731
    started = [t(e) for e in lines if e["state"] == "running"]
    done = [e for e in lines if e["state"] == "done"]
    frames = sum(e["frames"] for e in done)
    span = max(t(e) for e in done) - min(started)
    return {"inputs_done": len(done), "frames": frames, "persons": sum(e["persons"] for e in done),
            "steady_s": span, "steady_fps": frames / span}


def run(config: str, clips, out: Path, model_args, overlay: bool) -> dict:
    cmd = [sys.executable, "-m", "realtime.cli", "batch", *map(str, clips), "--out", str(out), "--no-progress",
           *model_args, *CONFIGS[config]] + ([] if overlay else ["--no-overlay"])
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{config} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    r = steady_fps(out)
    r.update(config=config, overlay=overlay, wall_s=wall, wall_fps=r["frames"] / wall,
             load_before=load0, load_after=os.getloadavg())
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=24, help="frames per clip")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--no-overlay", action="store_true", help="only SMPL-X parameters, no rendering")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from bench_live import centred_checkpoint, make_pan_clip
    from engines.benchmark import media_dir
    from engines.synthetic import write_synthetic_smplx

    results = {"versions": versions(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        ckpt = centred_checkpoint(tmp / "s32_centred.pth.tar")
        write_synthetic_smplx(tmp / "body")
        model_args = ["--checkpoint", str(ckpt), "--body-models", str(tmp / "body")]
        fps = 24.0
        clips = [make_pan_clip(tmp / f"clip{i}.mp4", media_dir() / PHOTOS[i % len(PHOTOS)],
                               seconds=args.frames / fps, fps=fps) for i in range(args.clips)]
        for config in args.configs:
            r = run(config, clips, tmp / f"out_{config}", model_args, overlay=not args.no_overlay)
            results["runs"].append(r)
            print(f"{config:>4} overlay={r['overlay']!s:5} {r['frames']} frames, {r['persons']} people: "
                  f"steady {r['steady_fps']:.2f} fps "
                  f"({r['steady_s']:.1f} s), wall {r['wall_fps']:.2f} fps ({r['wall_s']:.1f} s); "
                  f"load {r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["versions"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
