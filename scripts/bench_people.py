#!/usr/bin/env python
"""What several people cost on this CPU (issue: everyone in the shot).

1. Detector time per frame against the number of people in it: the multi-person detector on
   frames holding 1, 2 and 4 real people side by side (each cut from its own photo: the skier, the
   MPII runner, the astronaut, the acrobat; copies of one photo side by side are not reliably found
   by MediaPipe), and on the real group photos (skiers, acrobats).
2. Network + SMPL-X layer for batch 1, 2 and 4 (one batched call for all people of a frame).
3. `mocap live --max-people N` on a folder of still frames of the same N people (looped, read as
   fast as the engine takes them): output FPS, latency, per-stage times, people seen per frame
   (counted on the ZMQ stream).

Random weights in the official layout (speed does not depend on their values), synthetic SMPL-X.

    .venv/bin/python scripts/bench_people.py --json /tmp/people.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


#: Photos the people of the test frames are cut from, in this order (this order is found reliably).
PEOPLE_PHOTOS = ("coco_000785_skier.jpg", "mpii_004645041.jpg", "astronaut.png", "humanart_acrobatics.jpg")


def people_row(media: Path, n: int) -> np.ndarray:
    """The first ``n`` people of :data:`PEOPLE_PHOTOS`, each cut around its person (single-person
    detector box, widened), scaled to 480 pixels high and set side by side on white (540 high)."""
    import cv2

    from engines.detector import PersonDetector

    cells = []
    with PersonDetector(static=True) as single:
        for name in PEOPLE_PHOTOS[:n]:
            img = cv2.imread(str(media / name))
            x, y, w, h = single.detect(img)[0].bbox_xywh
            cx, cy, hw, hh = x + w / 2, y + h / 2, w * 0.65, h * 0.575
            x0, y0 = int(max(0, cx - hw)), int(max(0, cy - hh))
            x1, y1 = int(min(img.shape[1], cx + hw)), int(min(img.shape[0], cy + hh))
            cut = img[y0:y1, x0:x1]
            cut = cv2.resize(cut, None, fx=480 / cut.shape[0], fy=480 / cut.shape[0])
            cells.append(np.pad(cut, ((30, 30), (20, 20), (0, 0)), constant_values=255))
    return np.concatenate(cells, axis=1)


def people_row_folder(folder: Path, frame: np.ndarray, count: int = 30) -> Path:
    """``count`` copies of ``frame`` as PNG files (lossless and still: the multi-person detector
    finds all four people of :func:`people_row` on it every time, while on a panned or compressed
    copy it often stops after the first; see docs/benchmarks.md)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:04d}.png"), frame)
    return folder


def bench_detector(media: Path, iters: int) -> list:
    import cv2

    from engines.benchmark import time_calls
    from engines.detector import PersonDetector

    frames = [(f"{n} people side by side", people_row(media, n)) for n in (1, 2, 4)]
    frames += [(name, cv2.imread(str(media / name))) for name in ("humanart_acrobatics.jpg", "coco_197388.jpg")]
    rows = []
    with PersonDetector(max_people=8) as det, PersonDetector(static=True, max_people=1) as single:
        for name, img in frames:
            found = len(det.detect(img))
            calls0 = det.pose_calls
            res = time_calls(lambda: det.detect(img), iters=iters, warmup=1)
            calls = (det.pose_calls - calls0) / (iters + 1)
            one = time_calls(lambda: single.detect(img), iters=iters, warmup=1)
            rows.append({"frame": name, "size": f"{img.shape[1]}x{img.shape[0]}", "people_found": found,
                         "multi_ms": res["median_ms"], "pose_calls": calls, "single_ms": one["median_ms"]})
            print("detector", json.dumps(rows[-1]), flush=True)
    return rows


def bench_batches(media: Path, body_dir: Path, ckpt: Path, iters: int) -> list:
    import cv2

    from engines.backends import load_engine
    from engines.benchmark import BENCH_BOX, time_calls
    from engines.body_model import BodyModel
    from engines.inference import Predictor

    img = cv2.imread(str(media / "coco_000785_skier.jpg"))
    rows = []
    for kind in ("torch", "auto"):
        pred = Predictor(load_engine(ckpt, kind, "cpu", threads=2) if kind == "auto" else load_engine(ckpt, kind, "cpu"),
                         BodyModel(body_dir), with_mesh=False)
        for n in (1, 2, 4):
            boxes = [tuple(np.add(BENCH_BOX, (10 * k, 0, 0, 0))) for k in range(n)]
            res = time_calls(lambda: pred.predict(img, boxes), iters=iters, warmup=2)
            rows.append({"engine": pred.engine.describe(), "people": n, "median_ms": res["median_ms"],
                         "per_person_ms": res["median_ms"] / n, "cpu_per_wall": res["cpu_per_wall"]})
            print("batch", json.dumps(rows[-1]), flush=True)
    return rows


def people_per_frame(counts: list) -> dict:
    """How many people the ZMQ messages carried."""
    c = np.asarray(counts or [0])
    return {"zmq_messages": len(counts), "people_per_frame_mean": float(c.mean()),
            "people_per_frame_hist": {int(k): int((c == k).sum()) for k in np.unique(c)}}


def bench_live(media: Path, body_dir: Path, tmp: Path, seconds: float) -> list:
    from bench_live import centred_checkpoint
    from fault_harness import ZmqCounter

    from realtime.live import LiveOptions, run
    from realtime.sinks.targets import StreamTargets

    ckpt = centred_checkpoint(tmp / "centred.pth.tar")
    rows = []
    for n in (1, 2, 4):
        clip = people_row_folder(tmp / f"p{n}", people_row(media, n))
        out = tmp / f"live{n}.json"
        counter = ZmqCounter("tcp://127.0.0.1:5597")
        counter.start()
        rc = run(LiveOptions(source=str(clip), loop=True, no_pace=True, duration=seconds, checkpoint=str(ckpt),
                             body_models=str(body_dir), viewer="none", max_people=n, summary_json=out,
                             streams=StreamTargets(osc=["none"], zmq="tcp://127.0.0.1:5597")))
        r = json.loads(out.read_text()) if rc == 0 else {"error": f"exit {rc}"}
        counter.close()
        r.update(people_per_frame(counter.people), people=n)
        rows.append(r)
        print("live", json.dumps({k: r.get(k) for k in ("people", "out_fps_mean", "latency_ms_median",
                                                         "infer_ms", "track_ms", "detector_calls_per_100",
                                                         "max_people", "people_per_frame_mean",
                                                         "people_per_frame_hist")}),
              flush=True)
    return rows


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--skip", nargs="*", default=[], choices=["detector", "batches", "live"])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from engines.benchmark import media_dir
    from engines.checkpoints import write_random_checkpoint
    from engines.synthetic import write_synthetic_smplx

    torch.set_num_threads(2)
    media = media_dir()
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__, "load_avg_start": os.getloadavg(),
                          "date": time.strftime("%Y-%m-%d %H:%M")}}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        write_synthetic_smplx(tmp / "bm")
        ckpt = write_random_checkpoint(tmp / "smpler_x_s32.pth.tar", "s32")
        if "detector" not in args.skip:
            report["detector"] = bench_detector(media, args.iters)
        if "batches" not in args.skip:
            report["batches"] = bench_batches(media, tmp / "bm", ckpt, args.iters)
        if "live" not in args.skip:
            report["live"] = bench_live(media, tmp / "bm", tmp, args.seconds)
    report["machine"]["load_avg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main_())
