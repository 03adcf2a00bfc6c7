"""Smoothing and grounding measured against ground truth (docs/motion.md).

Takes with known motion (a curved walk with planted feet, a squat, a turn on planted feet, hand
waves; realtime/animation/known_motion.py) on the synthetic SMPL-X model, seen by a camera 3.5 m
away and 1.2 m up, tilted 5 degrees, plus estimator-like noise (3 degrees on every joint, 5 on the
fingers, 3 % depth along the camera ray, one-frame outliers: flipped limbs, swapped hands, depth
jumps). Every output is compared with the clean take:

* raw: the parameters as they are (``mocap convert --no-smooth``), put on the *true* floor;
* live: the One-Euro filter at its defaults, and with lag compensation (``predict``), then the
  causal grounder (``mocap live --ground``), frame by frame at the capture times;
* offline: ``mocap convert --to npz --smooth --ground`` run on a recording of the noisy take,
  the written file read back.

Metrics: MPJPE (mm, all 55 joints, after moving each output on the floor so its mean pelvis
matches), acceleration error (mm/frame^2), foot skating (mm of horizontal ankle/toe motion per
frame of true contact), floor penetration (mm, mean over frames of the lowest sole below the
output's floor) and float (mm, mean height of a foot in true contact), lag (ms, the time shift
that best fits the clean take), and the grounder's and filter's cost (ms per frame, this CPU).

    .venv/bin/python scripts/bench_motion.py [--takes walk squat turn wave] [--seeds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engines.synthetic import write_synthetic_smplx  # noqa: E402
from engines.types import FrameResult, Person, SMPLXParams  # noqa: E402
from realtime.animation.known_motion import (add_estimator_noise, align_xz, clean_joints, lag_ms,  # noqa: E402
                                             make_take, measure, run_live, run_raw)
from realtime.animation.npz_addon import Q_YUP_TO_ZUP, ZUP_FROM_YUP  # noqa: E402
from realtime.animation.skeleton import joint_positions, open_body_model, shaped_body  # noqa: E402
from realtime.cli import main as mocap  # noqa: E402
from realtime.filters import FilterSettings, SMPLXFilter  # noqa: E402
from realtime.rotations import axis_angle_to_quat, quat_conj, quat_mul  # noqa: E402
from realtime.sinks.recorder import Recorder  # noqa: E402

LOW_LAG = ["predict=true", "body.beta=1.5", "hands.beta=1.5", "root.beta=1"]
METRICS = ("mpjpe_mm", "accel_mm", "skate_mm", "penetration_mm", "float_mm", "lag_ms")


def write_take(folder: Path, frames, fps: float) -> Path:
    z = np.zeros(4, np.float32)
    with Recorder(folder, fps=fps, source="bench_motion") as rec:
        for k, f in enumerate(frames):
            p = Person(track_id=0, params=SMPLXParams.from_dict(f), bbox=z, bbox_detector=z,
                       focal=np.array([1000.0, 1000.0], np.float32), princpt=np.array([320.0, 240.0], np.float32))
            rec.send(FrameResult(frame_id=k, t_capture_ns=1_000_000_000 + int(round(k * 1e9 / fps)),
                                 image_size=(640, 480), persons=[p]))
    return folder


def read_npz(path: Path, body) -> np.ndarray:
    """Joints (T, 55, 3), y up, of an add-on npz (the inverse of npz_addon.addon_arrays)."""
    d = np.load(path)
    t = len(d["poses"])
    q = axis_angle_to_quat(d["poses"].reshape(t, 55, 3))
    q[:, 0] = quat_mul(quat_conj(Q_YUP_TO_ZUP), q[:, 0])
    root = (d["trans"] + body.skeleton.rest[0]) @ ZUP_FROM_YUP
    return joint_positions(body.skeleton, q, root)


def offline(take, frames, body, smplx_dir: Path, work: Path, seed: int) -> np.ndarray:
    rec = write_take(work / f"{take.name}_{seed}_rec", frames, take.fps)
    out = work / f"{take.name}_{seed}.npz"
    code = mocap(["convert", str(rec), "--to", "npz", "--out", str(out), "--smooth", "--ground",
                  "--body-models", str(smplx_dir)])
    assert code == 0, code
    return read_npz(out, body)


def filter_ms(take, frames) -> float:
    filt = SMPLXFilter(FilterSettings(), hand_mean=(take.body.hand_mean[0], take.body.hand_mean[1]))
    params = [SMPLXParams.from_dict(f) for f in frames]
    t0 = time.perf_counter()
    for k, p in enumerate(params):
        filt(p, k / take.fps)
    return 1000 * (time.perf_counter() - t0) / len(params)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--takes", nargs="+", default=["walk", "squat", "turn", "wave"])
    ap.add_argument("--seeds", type=int, default=3, help="noise draws per take (results are averaged)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = {}
    costs = {"grounder_ms": [], "filter_ms": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        smplx_dir = work / "models"
        write_synthetic_smplx(smplx_dir)
        body = shaped_body(open_body_model(smplx_dir), np.zeros(10))
        for name in args.takes:
            take = make_take(name, body, tilt_deg=5.0)
            ref = clean_joints(take)
            for seed in range(args.seeds):
                frames, _ = add_estimator_noise(take.params(), seed=100 + seed)
                outs = {"raw": run_raw(take, frames)}
                outs["live"], _, _ = run_live(take, frames)
                outs["live low-lag"], ms, _ = run_live(take, frames, FilterSettings().with_overrides(LOW_LAG))
                costs["grounder_ms"].append(ms)
                costs["filter_ms"].append(filter_ms(take, frames))
                outs["offline"] = offline(take, frames, body, smplx_dir, work, seed)
                for label, joints in outs.items():
                    m = measure(joints, take)
                    m["lag_ms"] = lag_ms(align_xz(joints, ref), ref, take.fps)
                    rows.setdefault((name, label), []).append(m)
    table = {f"{name}/{label}": {k: float(np.mean([r[k] for r in runs])) for k in METRICS}
             for (name, label), runs in rows.items()}
    labels = ["raw", "live", "live low-lag", "offline"]
    mean = {label: {k: float(np.mean([v[k] for key, v in table.items() if key.endswith("/" + label)]))
                    for k in METRICS} for label in labels}
    print("| take | output | MPJPE mm | accel mm/f^2 | skate mm/f | penetration mm | float mm | lag ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, m in list(table.items()) + [(f"all/{k}", v) for k, v in mean.items()]:
        name, label = key.split("/")
        print(f"| {name} | {label} | " + " | ".join(f"{m[k]:.1f}" for k in METRICS) + " |")
    ratio = {label: mean["raw"]["accel_mm"] / mean[label]["accel_mm"] for label in labels[1:]}
    print("\nacceleration error vs raw: " + ", ".join(f"{label} {r:.1f}x" for label, r in ratio.items()))
    print(f"grounder {np.mean(costs['grounder_ms']):.2f} ms/frame, One-Euro filter {np.mean(costs['filter_ms']):.2f} "
          f"ms/frame (one person, this CPU)")
    if args.json:
        args.json.write_text(json.dumps({"table": table, "mean": mean,
                                         "cost_ms": {k: float(np.mean(v)) for k, v in costs.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
