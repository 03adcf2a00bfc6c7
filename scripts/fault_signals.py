#!/usr/bin/env python
"""SIGINT, SIGTERM and SIGHUP at random moments of `mocap live` (auto engine) and `mocap video`.

Each try starts the real command and sends one signal at a random moment from launch to well
into the run, so that it lands in the interpreter's start, the imports, the model and engine
load (ONNX Runtime for `live --engine auto`, whose fallback to PyTorch must never be taken
because of a signal), the detector and Open3D start-up, or the run itself. Outcomes:

* ``clean stop``: exit 0 (live) or 128+N (video) with the summary printed; the recording is
  complete (live) or overlay.mp4 is finalised and run.json says "stopped_by" (video);
* ``stopped at start-up``: exit 128+N with "stopped by SIG..." on one line;
* ``finished``: `video` had done its last frame when the signal came: a complete run, exit 0;
* ``before main()``: the signal came while Python itself was starting, before the command line
  could install its handlers (the default action: exit -N, or a KeyboardInterrupt traceback);
* ``BAD``: anything else: a traceback, an engine or renderer fallback, another exit code.

    python scripts/fault_signals.py --tries 36 --out /tmp/signals     # writes /tmp/signals/signals.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from fault_harness import REPO, default_signals, machine, media_dir, prepare_models

FALLBACK_WORDS = ("unavailable", "using optimised PyTorch", "falling back", "fall back")


def classify(command: str, sig: int, rc: int, out: str, err: str, work: Path) -> str:
    if rc == -sig:  # SIGTERM/SIGHUP's default action: the handlers were not installed yet
        return "before main()"
    if "KeyboardInterrupt" in err and ", in main\n" not in err:  # SIGINT's default, while Python was starting
        return "before main()"
    if "Traceback" in err or any(w in err for w in FALLBACK_WORDS):
        return "BAD"
    name = signal.Signals(sig).name
    if command == "live" and rc == 0 and "frames processed" in out:
        from realtime.recording import load_recording

        rec = work / "rec"
        if (rec / "frames.bin").is_file():
            r = load_recording(rec)
            if not (r.meta.get("complete") and not r.truncated and not r.damaged):
                return "BAD"
        return "clean stop"
    if command == "video" and rc == 128 + sig and f"stopped early by {name}" in out:
        run = json.loads((work / "out" / "run.json").read_text())
        mp4 = work / "out" / "overlay.mp4"
        if run.get("stopped_by") != name or (run["frames"] and not mp4.is_file()) \
                or (work / "out" / "overlay.partial.mp4").exists():
            return "BAD"
        return "clean stop"
    if rc == 128 + sig and f"stopped by {name}" in err:
        return "stopped at start-up"
    if command == "video" and rc == 0 and (work / "out" / "run.json").is_file():
        run = json.loads((work / "out" / "run.json").read_text())
        if run.get("complete") and (work / "out" / "overlay.mp4").is_file():
            return "finished (signal after the last frame)"
    return "BAD"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tries", type=int, default=36)
    ap.add_argument("--max-delay", type=float, default=25.0, help="latest signal, seconds after launch")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("/tmp/mocap-signals"))
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    models = prepare_models(args.out / "models")
    cache = args.out / "cache"  # the auto engine's ONNX export, made once here so that tries load it
    env_cache = {"MOCAP_CACHE_DIR": str(cache)}
    clip = args.out / "pan.mp4"  # 90 frames panning across a real photo: video runs last about a minute
    if not clip.is_file():
        import cv2
        import numpy as np

        still = cv2.resize(cv2.imread(str(media_dir() / "mpii_004645041.jpg")), (640, 360))
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
        for i in range(90):
            writer.write(np.roll(still, 4 * i, axis=1))
        writer.release()
    base = [sys.executable, "-m", "realtime.cli"]
    model = ["--checkpoint", str(models["checkpoint"]), "--body-models", str(models["body_models"])]
    warm = subprocess.run(base + ["live", "--source", "synthetic:320x240@10", "--max-frames", "1", "--viewer", "none",
                                 "--osc", "none", "--zmq", "none", "--engine", "auto", *model],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, **env_cache})
    if warm.returncode != 0:
        print(warm.stderr[-3000:], file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    rows = []
    for k in range(args.tries):
        command = "live" if k % 3 else "video"  # two live tries for each video try
        sig = rng.choice((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
        work = args.out / f"try{k:02d}"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        if command == "live":
            argv = ["live", "--source", "synthetic:320x240@15", "--viewer", "none", "--osc", "none", "--zmq", "none",
                    "--engine", "auto", "--record", str(work / "rec"), *model]
        else:
            argv = ["video", str(clip), "--out", str(work / "out"), "--engine", "torch", *model]
        delay = rng.uniform(0.05, args.max_delay)
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **env_cache)
        proc = subprocess.Popen(base + argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=default_signals)
        time.sleep(delay)
        sent = proc.poll() is None
        t_sent = time.monotonic()
        if sent:
            proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        exit_after = time.monotonic() - t_sent
        outcome = classify(command, sig, proc.returncode, out, err, work) if sent else "finished before the signal"
        row = {"try": k, "command": command, "signal": signal.Signals(sig).name, "delay_s": round(delay, 2),
               "exit": proc.returncode, "exit_after_s": round(exit_after, 2), "outcome": outcome}
        if outcome == "BAD":
            row["stderr_tail"] = err[-1500:]
        rows.append(row)
        print(json.dumps(row), flush=True)
    counts = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    report = {"machine_at_start": machine(), "tries": rows, "counts": counts, "ok": "BAD" not in counts}
    (args.out / "signals.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(counts, indent=2), "\nok" if report["ok"] else "\nFAILED")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
