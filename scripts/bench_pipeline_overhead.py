#!/usr/bin/env python
"""What the live pipeline costs around the model, on this CPU (issue: a pipeline whose only limit
is the network).

Runs the real `mocap live` pipeline (video source read losslessly, tracker with the MediaPipe
detector, One-Euro filter, VMC/OSC to 127.0.0.1, ZMQ PUB, recorder) on a real clip, with the
network and the SMPL-X layer replaced by ``engines.stand_in.StandInPredictor``: a fixed cost
(``--cost-ms``, 2 ms by default, what a fast GPU network takes) and well-formed outputs. The
stand-in waits like a GPU: asynchronously (the pipeline overlaps sending frame t-1 with the
"GPU" time of frame t) or synchronously. Reports output FPS, per-frame wall time, each stage's
median and each sink's median ``send`` time. Pipeline work per frame = wall per frame minus the
stand-in's cost (synchronous mode) — the target is at most 5 ms for one person.

    .venv/bin/python scripts/bench_pipeline_overhead.py --seconds 10 --json /tmp/overhead.json
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(clip: Path, body, cost_ms: float, asynchronous: bool, seconds: float, tmp: Path, sinks_on: bool = True,
        people: int = 1) -> dict:
    from engines.detector import PersonDetector
    from engines.stand_in import StandInPredictor
    from realtime.capture import open_source
    from realtime.filters import FilterSettings, MultiPersonFilter
    from realtime.pipeline import Pipeline
    from realtime.sinks.osc_vmc import VMCSink
    from realtime.sinks.recorder import Recorder
    from realtime.sinks.zmq_pub import ZMQSink
    from engines.detection_schedule import DetectionSchedule
    from engines.tracking import PersonTracker

    predictor = StandInPredictor(body, cost_ms=cost_ms, asynchronous=asynchronous)
    source = open_source(str(clip), pace=False, loop=True)
    detector = PersonDetector(static=False, max_people=people)
    tracker = DetectionSchedule(detector, PersonTracker(max_people=people),
                                redetect_every=30 if people == 1 else 15, background=True)
    filt = MultiPersonFilter(FilterSettings(), hand_mean=(body.hand_mean_left, body.hand_mean_right))
    sinks = []
    if sinks_on:
        rec_dir = tmp / f"rec-{time.perf_counter_ns()}"
        sinks = [VMCSink("127.0.0.1", 39539, body), ZMQSink("tcp://127.0.0.1:*"), Recorder(rec_dir, fps=source.fps)]
    pipe = Pipeline(source, predictor, tracker, filt, sinks)
    try:
        pipe.start()
        pipe.wait(duration=seconds)
    finally:
        pipe.stop()
        detector.close()
    if pipe.error is not None:
        raise pipe.error
    s = pipe.summary()
    s["sink_ms"] = pipe.stats.sink_ms()
    s["wall_per_frame_ms"] = 1000.0 / s["out_fps_mean"] if s["out_fps_mean"] else float("nan")
    s["cost_ms"] = cost_ms
    s["asynchronous"] = asynchronous
    s["people"] = people
    s["detector_pose_calls"] = detector.pose_calls
    return s


def people_clip(path: Path, photo: Path, people: int, seconds: float = 4.0, fps: float = 30.0) -> Path:
    """A clip of ``people`` copies of a one-person photo side by side (960x540), gently panned."""
    import cv2
    import numpy as np

    img = cv2.imread(str(photo))
    tile = np.concatenate([img] * people, axis=1)
    h, w = 540, 960
    scale = min(w / tile.shape[1], h / tile.shape[0])
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    n = int(seconds * fps)
    for i in range(n):
        dx = 20 * np.sin(2 * np.pi * i / n)
        m = np.array([[scale, 0, dx + (w - scale * tile.shape[1]) / 2], [0, scale, (h - scale * tile.shape[0]) / 2]],
                     np.float32)
        vw.write(cv2.warpAffine(tile, m, (w, h), borderValue=(255, 255, 255)))
    vw.release()
    return path


#: Per-run figures printed as each run ends.
PRINTED = ("out_fps_mean", "wall_per_frame_ms", "wait_ms", "track_ms", "infer_ms", "hold_ms", "filter_ms", "send_ms",
           "latency_ms_median", "detector_calls_per_100")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=None, help="video (default: street_walk_960x540.mp4 from the media)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cost-ms", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--people", default="1", help="comma-separated people counts; N > 1 uses a clip of N copies "
                    "of coco_000785_skier.jpg side by side")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from engines.benchmark import media_dir
    from engines.body_model import BodyModel
    from engines.synthetic import write_synthetic_smplx

    torch.set_num_threads(args.threads)
    clip = args.clip or media_dir() / "street_walk_960x540.mp4"
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__, "load_avg_start": os.getloadavg()},
              "clip": clip.name, "runs": []}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        write_synthetic_smplx(tmp / "bm")
        body = BodyModel(tmp / "bm")
        for people in (int(v) for v in args.people.split(",")):
            video = clip if people == 1 else people_clip(tmp / f"people{people}.mp4",
                                                         media_dir() / "coco_000785_skier.jpg", people)
            for asynchronous in (False, True):
                for sinks_on in (True, False):
                    r = run(video, body, args.cost_ms, asynchronous, args.seconds, tmp, sinks_on, people)
                    r["sinks"] = sinks_on
                    r["clip"] = video.name
                    report["runs"].append(r)
                    print(f"people={people}", ("async" if asynchronous else "sync "),
                          ("sinks" if sinks_on else "none "), " ".join(f"{k}={r[k]:.2f}" for k in PRINTED),
                          "sinks:", {k: round(v, 3) for k, v in r["sink_ms"].items()}, flush=True)
    report["machine"]["load_avg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
