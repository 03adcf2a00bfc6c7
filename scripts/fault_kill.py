#!/usr/bin/env python
"""SIGKILL `mocap live` at random moments; compare the recovered recording with what a subscriber received.

Each round starts the real command (a real clip looped at its own rate, ZMQ to a subscriber that
reads everything, a recording with its JPEG frames), waits a random time and kills it with
SIGKILL (no handler can run). Some rounds kill during start-up, the rest at a random moment of
the run. Then the recording is read back with ``load_recording`` and compared with the frame
ids the subscriber received: a frame the subscriber got but the recording lacks is a lost
frame (only the one in flight may be lost: the pipeline hands a frame to the ZMQ sink before
the recorder). The recording must read without error, with no record lost inside the file
(``missing_indices``), and every JPEG a record names must be whole.

    python scripts/fault_kill.py --kills 23 --out /tmp/kills     # writes /tmp/kills/kills.json
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import time
from pathlib import Path

from fault_harness import (ZmqCounter, free_port, live_command, machine, media_dir, prepare_models, spawn,
                           wait_for)


def one_round(k: int, models, clip: Path, out: Path, rng: random.Random, during_startup: bool, engine: str,
              env: dict) -> dict:
    from realtime.recording import load_recording

    rec = out / f"rec{k:02d}"
    if rec.exists():
        shutil.rmtree(rec)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    counter = ZmqCounter(endpoint)  # connects before the publisher binds: it sees the first frame
    counter.start()
    proc = spawn(live_command(models, str(clip), "--loop", "--osc", "none", "--zmq", endpoint,
                              "--record", str(rec), "--record-video", engine=engine),
                 log_path=out / f"live{k:02d}.log", env=env)
    t0 = time.monotonic()
    if during_startup:
        delay = rng.uniform(0.2, 6.0)
        time.sleep(delay)
        moment = f"start-up, {delay:.1f} s after launch"
    else:
        frames = rec / "frames.bin"
        wait_for(lambda: (frames.is_file() and frames.stat().st_size > 0) or proc.poll() is not None, 300)
        delay = rng.uniform(0.0, 15.0)
        time.sleep(delay)
        moment = f"run, {delay:.1f} s after the first frame ({time.monotonic() - t0:.1f} s after launch)"
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # let the subscriber take what was already on the wire
    counter.close()
    received = set(counter.frame_ids)
    row = {"round": k, "moment": moment, "alive_when_killed": alive, "exit": proc.returncode,
           "received": len(received)}
    if not (rec / "frames.bin").is_file():
        row.update(recovered=0, lost=sorted(received), note="killed before the recording opened")
        return row
    try:
        recording = load_recording(rec)
    except Exception as exc:  # the verdict below counts this as a failure
        row.update(recovered=0, lost=sorted(received), error=f"{type(exc).__name__}: {exc}")
        return row
    recovered = {f.frame_id for f in recording.frames}
    broken_jpegs = sum(1 for i, p in enumerate(recording.image_paths)
                       if p is not None and recording.load_image(i) is None)
    row.update(recovered=len(recovered), lost=sorted(received - recovered),
               recorded_not_received=len(recovered - received), torn_tail=recording.truncated,
               missing_inside=recording.missing_indices, broken_jpegs=broken_jpegs,
               complete_flag=recording.meta.get("complete"), problems=recording.problems())
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=23)
    ap.add_argument("--startup-kills", type=int, default=4, help="how many of them hit start-up")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=Path("/tmp/mocap-kills"))
    ap.add_argument("--clip", type=Path, default=None)
    ap.add_argument("--engine", default="torch", help="torch, or auto (ONNX Runtime: more frames per second; "
                    "the export is made once, before the first round)")
    args = ap.parse_args()

    clip = args.clip or media_dir() / "posetrack_1280x720.mp4"
    args.out.mkdir(parents=True, exist_ok=True)
    models = prepare_models(args.out / "models")
    env = {"MOCAP_CACHE_DIR": str(args.out / "cache")}
    if args.engine != "torch":  # make the ONNX export once, so that no round spends its time exporting
        warm = spawn(live_command(models, "synthetic:320x240@10", "--max-frames", "1", "--osc", "none",
                                  "--zmq", "none", engine=args.engine), log_path=args.out / "warm-up.log", env=env)
        if warm.wait() != 0:
            raise SystemExit(f"fault_kill: warm-up failed; see {args.out / 'warm-up.log'}")
    rng = random.Random(args.seed)
    startup = set(rng.sample(range(args.kills), min(args.startup_kills, args.kills)))
    report = {"machine_at_start": machine(), "kills": args.kills, "seed": args.seed, "engine": args.engine,
              "rounds": []}
    for k in range(args.kills):
        row = one_round(k, models, clip, args.out, rng, k in startup, args.engine, env)
        report["rounds"].append(row)
        print(json.dumps({key: v for key, v in row.items() if key != "problems"}), flush=True)
    rounds = report["rounds"]
    report["totals"] = {
        "received": sum(r["received"] for r in rounds), "recovered": sum(r["recovered"] for r in rounds),
        "lost": sum(len(r["lost"]) for r in rounds), "max_lost_in_a_round": max(len(r["lost"]) for r in rounds),
        "rounds_with_a_torn_tail": sum(bool(r.get("torn_tail")) for r in rounds),
        "records_missing_inside": sum(len(r.get("missing_inside", [])) for r in rounds),
        "broken_jpegs": sum(r.get("broken_jpegs", 0) for r in rounds),
        "unreadable_recordings": sum("error" in r for r in rounds)}
    report["machine_at_end"] = machine()
    t = report["totals"]
    report["ok"] = (t["max_lost_in_a_round"] <= 1 and t["records_missing_inside"] == 0 and t["broken_jpegs"] == 0
                    and t["unreadable_recordings"] == 0)
    (args.out / "kills.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(t, indent=2), "\nok" if report["ok"] else "\nFAILED")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
