#!/usr/bin/env python
"""Several streams on one predictor: streams x people at 30 fps per stream (issue 22, item 3).

Runs the several-source pipeline of ``mocap live`` (:class:`realtime.multistream.MultiPipeline`):
every stream a paced 30 fps clip (as from a camera) of N copies of a real one-person photo, with
its own MediaPipe detector schedule and tracker, One-Euro filter, VMC sink (127.0.0.1) and ZMQ PUB
sink; the people of all streams go through ONE predictor call per round. The predictor is the 2 ms
stand-in (``--cost-ms``, default; it measures everything around the network on this machine) or,
with ``--device cuda`` (or ``--real``), the real network (random weights in the official layout with
a centring camera head, ``scripts/bench_live.py``; speed does not depend on the weights' values).

Reports per configuration: achieved output fps of every stream (the target is the input's 30),
capture-to-send latency, rounds per second, ms per round (track + one call + complete) and people
per call. Writes ``--json`` and ``--md``.

    python scripts/bench_streams.py --streams 1,2,4 --people 1,2 --seconds 8 --md /tmp/streams.md
    python scripts/bench_streams.py --device cuda --variant s32 --json OUT/streams.json   # on a GPU: S32 fp16
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
sys.path.insert(0, str(REPO / "scripts"))


def run_config(clip: Path, predictor, body, streams: int, people: int, seconds: float, fps: float) -> dict:
    from engines.detection_schedule import DetectionSchedule
    from engines.detector import PersonDetector
    from engines.tracking import PersonTracker
    from realtime.capture import open_source
    from realtime.filters import FilterSettings, MultiPersonFilter
    from realtime.multistream import MultiPipeline, StreamLane
    from realtime.pipeline import Pipeline
    from realtime.sinks.osc_vmc import VMCSink
    from realtime.sinks.zmq_pub import ZMQSink

    lanes, detectors = [], []
    for k in range(streams):
        source = open_source(str(clip), pace=True, loop=True, fps=fps)
        detector = PersonDetector(static=False, max_people=people)
        detectors.append(detector)
        tracker = DetectionSchedule(detector, PersonTracker(max_people=people),
                                    redetect_every=30 if people == 1 else 15, background=True)
        filt = MultiPersonFilter(FilterSettings(), hand_mean=(body.hand_mean_left, body.hand_mean_right))
        sinks = [VMCSink("127.0.0.1", 39539 + k, body), ZMQSink("tcp://127.0.0.1:*")]
        lanes.append(StreamLane(f"{k + 1}", Pipeline(source, predictor, tracker, filt, sinks)))
    multi = MultiPipeline(predictor, lanes)
    calls0 = getattr(predictor, "calls", None)
    try:
        multi.start()
        multi.wait(duration=seconds)
    finally:
        multi.stop()
        for d in detectors:
            d.close()
    if multi.error is not None:
        return {"streams": streams, "people": people, "error": str(multi.error)}
    s = multi.summary()
    per = [{"out_fps": e["out_fps_mean"], "in_fps": e["in_fps"], "frames_out": e["frames_out"],
            "max_people": e.get("max_people", 0), "latency_ms_median": e["latency_ms_median"],
            "latency_ms_p95": e["latency_ms_p95"], "dropped": e["dropped"], "problem": e.get("problem")}
           for e in s["streams"]]
    out = {"streams": streams, "people": people, "per_stream": per,
           "out_fps_min": min(p["out_fps"] for p in per), "out_fps_mean": sum(p["out_fps"] for p in per) / len(per),
           "rounds_per_s": s["rounds"] / s["elapsed_s"], "round_ms_median": s["round_ms_median"],
           "round_ms_p95": s["round_ms_p95"], "people_per_call_mean": s["crops_per_call_mean"],
           "people_per_call_max": s["crops_per_call_max"],
           "latency_ms_median": sorted(p["latency_ms_median"] for p in per)[len(per) // 2]}
    if calls0 is not None:
        out["predictor_calls"] = predictor.calls - calls0
    return out


def run_processes(args, streams: int, people: int) -> dict:
    """``streams`` processes of this script with one stream each, measuring at the same time."""
    import subprocess

    load_s = 30.0 if (args.device == "cuda" or args.real) else 15.0  # every child has loaded before it starts
    start_at = time.time() + load_s
    with tempfile.TemporaryDirectory() as td:
        cmd = [sys.executable, __file__, "--streams", "1", "--people", str(people), "--seconds", str(args.seconds),
               "--fps", str(args.fps), "--cost-ms", str(args.cost_ms), "--device", args.device, "--engine", args.engine,
               "--variant", args.variant, "--threads", str(max(1, args.threads // streams)),
               "--start-at", str(start_at)] + (["--real"] if args.real else []) + \
              (["--checkpoint", str(args.checkpoint)] if args.checkpoint else [])
        procs = [subprocess.Popen(cmd + ["--json", f"{td}/{k}.json"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for k in range(streams)]
        codes = [p.wait(timeout=load_s + args.seconds + 120) for p in procs]
        runs = []
        for k in range(streams):
            f = Path(td) / f"{k}.json"
            if f.exists():
                runs += json.loads(f.read_text())["runs"]
    if len(runs) != streams or any("error" in r for r in runs):
        return {"streams": streams, "people": people, "mode": "processes",
                "error": f"exit codes {codes}; " + "; ".join(r.get("error", "") for r in runs)}
    per = [p for r in runs for p in r["per_stream"]]
    return {"streams": streams, "people": people, "mode": f"{streams} processes", "per_stream": per,
            "out_fps_min": min(p["out_fps"] for p in per), "out_fps_mean": sum(p["out_fps"] for p in per) / len(per),
            "rounds_per_s": sum(r["rounds_per_s"] for r in runs),
            "round_ms_median": sorted(r["round_ms_median"] for r in runs)[len(runs) // 2],
            "round_ms_p95": max(r["round_ms_p95"] for r in runs),
            "people_per_call_mean": sum(r["people_per_call_mean"] for r in runs) / len(runs),
            "people_per_call_max": max(r["people_per_call_max"] for r in runs),
            "latency_ms_median": sorted(p["latency_ms_median"] for p in per)[len(per) // 2]}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"Several streams, one predictor call per round ({report['predictor']}; each stream a paced "
             f"{report['fps']:.0f} fps clip of N copies of a real photo, its own detector/tracker, One-Euro, VMC + ZMQ; "
             f"{report['seconds']:.0f} s per row; {m['platform']}, {m['cpus']} CPUs, load average "
             f"{m['load_avg_start'][0]:.2f} at the start, {m['load_avg_end'][0]:.2f} at the end):", "",
             "| streams | people per stream | run as | out fps per stream (min / mean) | latency median ms | rounds/s "
             "| ms per round (median / p95) | people per call (mean / max) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"| {r['streams']} | {r['people']} | {r.get('mode', '')} | failed: {r['error']} | | | | |")
            continue
        lines.append(f"| {r['streams']} | {r['people']} | {r.get('mode', '')} "
                     f"| {r['out_fps_min']:.1f} / {r['out_fps_mean']:.1f} "
                     f"| {r['latency_ms_median']:.1f} | {r['rounds_per_s']:.1f} "
                     f"| {r['round_ms_median']:.1f} / {r['round_ms_p95']:.1f} "
                     f"| {r['people_per_call_mean']:.1f} / {r['people_per_call_max']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="1,2,4", help="comma-separated stream counts (default 1,2,4)")
    ap.add_argument("--people", default="1,2", help="comma-separated people per stream (default 1,2)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per configuration (default 8)")
    ap.add_argument("--fps", type=float, default=30.0, help="frame rate of every stream (default 30)")
    ap.add_argument("--cost-ms", type=float, default=2.0, help="the stand-in's cost per call (default 2 ms)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: the real network on the GPU (fp16, CUDA graphs through --engine auto)")
    ap.add_argument("--real", action="store_true", help="the real network on --device cpu too (slow)")
    ap.add_argument("--engine", default="auto", help="engine of the real network (default auto)")
    ap.add_argument("--variant", default="s32", help="model size of the real network (default s32)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: random weights, centred camera)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--processes", action="store_true",
                    help="also run each stream count as that many processes of one stream each, at the same time "
                         "(the alternative to several --source values in one process), for comparison")
    ap.add_argument("--start-at", type=float, default=None, help=argparse.SUPPRESS)  # a child of --processes
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    ap.add_argument("--md", type=Path, default=None, help="write the markdown table here")
    args = ap.parse_args()

    import torch

    from bench_pipeline_overhead import people_clip
    from engines.benchmark import media_dir
    from engines.body_model import BodyModel
    from engines.synthetic import write_synthetic_smplx

    torch.set_num_threads(args.threads)
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__, "load_avg_start": os.getloadavg(),
                          "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
              "fps": args.fps, "seconds": args.seconds, "runs": []}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        write_synthetic_smplx(tmp / "smplx" / "SMPLX_NEUTRAL.npz")
        body = BodyModel(tmp)
        if args.device == "cuda" or args.real:
            from bench_live import centred_checkpoint
            from engines.inference import Predictor

            ckpt = args.checkpoint or centred_checkpoint(tmp / f"smpler_x_{args.variant}.pth.tar", args.variant)
            predictor = Predictor.from_files(str(ckpt), str(tmp), device=args.device, engine=args.engine)
            predictor.with_mesh = False
            body = predictor.body_model
            report["predictor"] = f"{args.variant} {predictor.engine.describe()} on {args.device}"
        else:
            from engines.stand_in import StandInPredictor

            predictor = StandInPredictor(body, cost_ms=args.cost_ms, asynchronous=True)
            report["predictor"] = f"the {args.cost_ms:g} ms stand-in network"
        photo = media_dir() / "coco_000785_skier.jpg"
        clips = {}
        for people in [int(p) for p in args.people.split(",")]:
            clips[people] = people_clip(tmp / f"people{people}.mp4", photo, people, fps=args.fps)
            for streams in [int(s) for s in args.streams.split(",")]:
                if args.start_at is not None:  # a child of --processes: start with the others
                    time.sleep(max(0.0, args.start_at - time.time()))
                new = [run_config(clips[people], predictor, body, streams, people, args.seconds, args.fps)]
                new[0]["mode"] = "one process"
                if args.processes and streams > 1:
                    new.append(run_processes(args, streams, people))
                report["runs"] += new
                for r in new:
                    if "error" in r:
                        print(f"{streams} streams x {people} people ({r['mode']}): failed: {r['error']}", flush=True)
                    else:
                        print(f"{streams} streams x {people} people ({r['mode']}): out fps per stream min "
                              f"{r['out_fps_min']:.1f} mean {r['out_fps_mean']:.1f}, {r['rounds_per_s']:.1f} rounds/s, "
                              f"{r['round_ms_median']:.1f} ms per round, {r['people_per_call_mean']:.1f} people per "
                              f"call, latency {r['latency_ms_median']:.1f} ms", flush=True)
    report["machine"]["load_avg_end"] = os.getloadavg()
    md = markdown(report)
    print(md)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.md:
        args.md.write_text(md)
    return 0 if all("error" not in r for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
