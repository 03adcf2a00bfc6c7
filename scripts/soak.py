#!/usr/bin/env python
"""Soak: `mocap live` for a long time with every sink on, sampling RSS, threads and file descriptors.

The real command runs as a subprocess on a real clip looped at its own rate (the 5-frame
PoseTrack clip: the file is re-opened every 5 frames, which also catches descriptor leaks),
with VMC/OSC to a UDP receiver that reads, ZMQ to one subscriber that reads and one that never
does, and a recording with its JPEG frames. Every ``--every`` seconds /proc gives the process's
RSS, thread count and open descriptors. At the end it is stopped with SIGINT; the summary, the
recording (read back with ``load_recording``) and the frames the reading subscriber received
are compared.

Verdict: after a warm-up (the first 10 %, at least 2 minutes) RSS must stay within 5 % of its
median over the next 10 % of the run (compared with the median of the last 10 %); threads and
descriptors must not grow. Random weights: the numbers describe the plumbing, not a model.

    python scripts/soak.py --minutes 60 --out /tmp/soak      # writes /tmp/soak/soak.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from fault_harness import (UdpCounter, ZmqCounter, ZmqNeverReads, free_port, live_command, machine, media_dir,
                           prepare_models, proc_sample, spawn, stop_process, wait_for)


def verdict(samples, minutes: float) -> dict:
    t_end = samples[-1]["t"]
    warm = max(120.0, 0.1 * t_end)
    after = [s for s in samples if s["t"] >= warm]
    if len(after) < 4:
        return {"ok": False, "why": "too few samples after the warm-up"}
    n = max(1, len(after) // 10)
    base_rss = statistics.median(s["rss_kb"] for s in after[:n])
    end_rss = statistics.median(s["rss_kb"] for s in after[-n:])
    growth = (end_rss - base_rss) / base_rss
    # least-squares slope of RSS after the warm-up, in MB per hour
    ts = [s["t"] for s in after]
    rs = [s["rss_kb"] / 1024 for s in after]
    tm, rm = statistics.fmean(ts), statistics.fmean(rs)
    den = sum((t - tm) ** 2 for t in ts) or 1.0
    slope = sum((t - tm) * (r - rm) for t, r in zip(ts, rs)) / den * 3600
    threads = [s["threads"] for s in after]
    fds = [s["fds"] for s in after]
    ok = abs(growth) <= 0.05 and max(threads) - min(threads) <= 2 and max(fds) <= min(fds) + 2
    return {"ok": ok, "warmup_s": warm, "rss_mb_after_warmup": round(base_rss / 1024, 1),
            "rss_mb_end": round(end_rss / 1024, 1), "rss_growth_pct": round(100 * growth, 2),
            "rss_slope_mb_per_h": round(slope, 2), "rss_mb_min_max": [round(min(rs), 1), round(max(rs), 1)],
            "threads_min_max": [min(threads), max(threads)], "fds_min_max": [min(fds), max(fds)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--out", type=Path, default=Path("/tmp/mocap-soak"))
    ap.add_argument("--clip", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1, help="compute threads of the live process")
    args = ap.parse_args()

    clip = args.clip or media_dir() / "posetrack_1280x720.mp4"
    args.out.mkdir(parents=True, exist_ok=True)
    rec = args.out / "recording"
    if rec.exists():
        shutil.rmtree(rec)
    models = prepare_models(args.out / "models")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    udp = UdpCounter()
    udp.start()
    summary_path = args.out / "summary.json"
    summary_path.unlink(missing_ok=True)
    cmd = live_command(models, str(clip), "--loop", "--osc", f"127.0.0.1:{udp.port}", "--zmq", endpoint,
                       "--record", str(rec), "--record-video", "--summary-json", str(summary_path))
    info = {"machine_at_start": machine(), "command": " ".join(cmd[1:]), "minutes_planned": args.minutes,
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    proc = spawn(cmd, threads=args.threads, log_path=args.out / "live.log")
    samples = []
    reader = never = None
    t0 = time.monotonic()
    try:
        if not wait_for(lambda: (rec / "frames.bin").is_file() or proc.poll() is not None, 300):
            raise SystemExit("soak: mocap live did not start recording within 5 minutes")
        if proc.poll() is not None:
            raise SystemExit(f"soak: mocap live exited {proc.returncode}; see {args.out / 'live.log'}")
        reader = ZmqCounter(endpoint)
        reader.start()
        never = ZmqNeverReads(endpoint)
        t0 = time.monotonic()
        deadline = t0 + 60 * args.minutes
        with open(args.out / "samples.jsonl", "w") as fh:
            while time.monotonic() < deadline and proc.poll() is None:
                s = proc_sample(proc.pid)
                if s is None:
                    break
                s["t"] = round(time.monotonic() - t0, 1)
                s["zmq_received"] = len(reader.frame_ids)
                s["udp_datagrams"] = udp.datagrams
                s["frames_bin_bytes"] = (rec / "frames.bin").stat().st_size
                s["load1"] = round(__import__("os").getloadavg()[0], 2)
                samples.append(s)
                fh.write(json.dumps(s) + "\n")
                fh.flush()
                time.sleep(args.every)
        alive = proc.poll() is None
        rc = stop_process(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        for r in (reader, never, udp):
            if r is not None:
                r.close()
    duration = time.monotonic() - t0
    from realtime.recording import load_recording

    recording = load_recording(rec)
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    received = set(reader.frame_ids) if reader else set()
    recorded = {f.frame_id for f in recording.frames}
    report = {**info, "minutes_run": round(duration / 60, 1), "alive_until_stop": alive, "exit_code": rc,
              "summary": summary, "samples": len(samples),
              "verdict": verdict(samples, args.minutes) if samples else None,
              "recording": {"frames": len(recording), "complete": recording.meta.get("complete"),
                            "problems": recording.problems(), "fps_meta": recording.meta.get("fps"),
                            "jpegs": sum(p is not None for p in recording.image_paths)},
              "zmq_reader_received": len(received), "received_not_recorded": len(received - recorded),
              "udp_datagrams": udp.datagrams, "machine_at_end": machine()}
    (args.out / "soak.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "summary"}, indent=2))
    return 0 if report["verdict"] and report["verdict"]["ok"] and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
