#!/usr/bin/env python
"""How long ``mocap convert`` takes for a one-minute take (numbers go to docs/benchmarks.md).

A 60 s, 30 fps take (1,800 frames, one person: smooth whole-body motion, hands, jaw, expression,
translation) is recorded with the real Recorder (capture timestamps with a little jitter, so the
resampling runs), then converted to each format the way ``mocap convert`` does it, end to end in
this process (reading the recording, loading the SMPL-X model, resampling, writing the file). The
SMPL-X file is the synthetic stand-in (same array shapes, so the same cost). Each format is run
``--repeat`` times; the table shows the median wall time and the spread, the process CPU time
(all threads; less sensitive than wall time to other work on a shared machine) and a split of
the median run.

Usage: .venv/bin/python scripts/bench_convert.py [--frames 1800] [--repeat 3] [--formats npz,bvh,glb,fbx]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def record_take(directory: Path, n_frames: int, fps: float) -> Path:
    from engines.synthetic import synthetic_take
    from engines.types import FrameResult, Person, SMPLXParams
    from realtime.sinks.recorder import Recorder

    rng = np.random.default_rng(0)
    z = np.zeros(4, np.float32)
    with Recorder(directory, fps=fps, source="bench") as rec:
        for k, params in enumerate(synthetic_take(n_frames, fps)):
            t = k / fps + rng.uniform(-0.003, 0.003)
            person = Person(track_id=0, params=SMPLXParams.from_dict(params), bbox=z, bbox_detector=z,
                            focal=np.ones(2, np.float32), princpt=np.ones(2, np.float32))
            rec.send(FrameResult(frame_id=k, t_capture_ns=int(1e9 + t * 1e9), image_size=(640, 480),
                                 persons=[person]))
    return directory


def stages(rec: Path, body_models: Path, fmt: str, out: Path):
    """One conversion, timed per stage (same steps as realtime.animation.convert.convert)."""
    from realtime.animation.convert import FORMATS, write_atomic
    from realtime.animation.motion import build_motion, settled_betas
    from realtime.animation.skeleton import open_body_model, shaped_body
    from realtime.animation.take import load_take

    c0 = time.process_time()
    t0 = time.perf_counter()
    take = load_take(rec)
    t1 = time.perf_counter()
    track = take.persons[0]
    body = shaped_body(open_body_model(body_models), settled_betas(track))
    t2 = time.perf_counter()
    motion = build_motion(track, body, 30.0, take.duration)
    t3 = time.perf_counter()
    f = FORMATS[fmt]
    write_atomic(f, motion, out, body.mesh if f.needs_mesh else None)
    t4 = time.perf_counter()
    return {"read": t1 - t0, "body model": t2 - t1, "resample + place": t3 - t2, "write": t4 - t3,
            "total": t4 - t0, "cpu": time.process_time() - c0, "frames": motion.n_frames,
            "bytes": out.stat().st_size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1800)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--formats", default="npz,bvh,glb,fbx")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    from engines.synthetic import write_synthetic_smplx

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synthetic_smplx(tmp / "body_models")
        rec = record_take(tmp / "rec", args.frames, args.fps)
        import bpy  # noqa: F401  (imported once up front, like a long-running process would; ~1 s)

        print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"load average before {os.getloadavg()[0]:.2f}")
        print(f"take: {args.frames} frames at {args.fps:g} fps, recording {(rec / 'frames.bin').stat().st_size / 1e6:.1f} MB")
        print("| format | wall (median) | min / max | CPU time | read | body model | resample + place | write | file "
              "| `mocap convert` command, wall |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for fmt in args.formats.split(","):
            runs = [stages(rec, tmp / "body_models", fmt, tmp / f"take.{fmt}") for _ in range(args.repeat)]
            runs.sort(key=lambda r: r["total"])
            med = runs[len(runs) // 2]
            t = time.perf_counter()  # the whole command once: interpreter, imports (torch, smplx, bpy) included
            subprocess.run([str(Path(sys.executable).with_name("mocap")), "convert", str(rec), "--out",
                            str(tmp / f"cli.{fmt}"), "--body-models", str(tmp / "body_models")],
                           check=True, capture_output=True)
            cli = time.perf_counter() - t
            print(f"| {fmt} | **{med['total']:.2f} s** | {runs[0]['total']:.2f} / {runs[-1]['total']:.2f} s | "
                  f"{med['cpu']:.2f} s | "
                  f"{med['read']:.2f} s | {med['body model']:.2f} s | {med['resample + place']:.2f} s | "
                  f"{med['write']:.2f} s | {med['bytes'] / 1e6:.1f} MB, {med['frames']} frames | {cli:.2f} s |",
                  flush=True)
        print(f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
