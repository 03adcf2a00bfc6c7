#!/usr/bin/env python
"""A consumer that never reads: does it slow `mocap live` down or make it grow?

Runs the real command on a clip, unpaced (frames as fast as the engine takes them, so any wait
in a sink would show as a lower output rate), for ``--seconds``, alternately

* ``alone``: VMC to a UDP port nobody reads, ZMQ with no subscriber;
* ``stalled``: the same plus a ZMQ subscriber that connects and never reads, and a UDP socket
  bound on the VMC port that never reads (its receive buffer fills and stays full);

``--repeats`` times each, and compares output frame rate, latency and the process's peak RSS
(sampled from /proc). The load average is recorded: the machine is shared.

    python scripts/fault_consumer.py --seconds 60 --repeats 2 --out /tmp/consumer
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from fault_harness import (UdpCounter, ZmqNeverReads, free_port, live_command, machine, media_dir, prepare_models,
                           proc_sample, spawn)


def one_run(models, clip: Path, seconds: float, stalled: bool, out: Path, k: int) -> dict:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    udp = UdpCounter(read=False)  # bound, never reads
    udp.start()
    never = ZmqNeverReads(endpoint) if stalled else None
    summary = out / f"summary{k:02d}.json"
    summary.unlink(missing_ok=True)
    osc_port = udp.port if stalled else free_port(2)
    cmd = live_command(models, str(clip), "--loop", "--no-pace", "--duration", str(seconds),
                       "--osc", f"127.0.0.1:{osc_port}", "--zmq", endpoint, "--summary-json", str(summary))
    proc = spawn(cmd, log_path=out / f"live{k:02d}.log")
    peak, rss_end = 0, 0
    while proc.poll() is None:
        s = proc_sample(proc.pid)
        if s:
            peak = max(peak, s["rss_kb"])
            rss_end = s["rss_kb"]
        time.sleep(1.0)
    if never is not None:
        never.close()
    udp.close()
    s = json.loads(summary.read_text()) if summary.is_file() else {}
    return {"mode": "stalled" if stalled else "alone", "exit": proc.returncode, "frames_out": s.get("frames_out"),
            "out_fps": round(s.get("out_fps_mean", 0.0), 2),
            "latency_ms_median": round(s.get("latency_ms_median", 0), 1),
            "peak_rss_mb": round(peak / 1024, 1), "last_rss_mb": round(rss_end / 1024, 1),
            "load1": round(os.getloadavg()[0], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/mocap-consumer"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    models = prepare_models(args.out / "models")
    clip = media_dir() / "posetrack_1280x720.mp4"
    rows = []
    k = 0
    for _ in range(args.repeats):
        for stalled in (False, True):
            rows.append(one_run(models, clip, args.seconds, stalled, args.out, k))
            print(json.dumps(rows[-1]), flush=True)
            k += 1

    def med(mode, key):
        return statistics.median(r[key] for r in rows if r["mode"] == mode and r[key] is not None)

    report = {"machine": machine(), "seconds": args.seconds, "runs": rows,
              "median_out_fps": {m: med(m, "out_fps") for m in ("alone", "stalled")},
              "median_peak_rss_mb": {m: med(m, "peak_rss_mb") for m in ("alone", "stalled")}}
    report["ok"] = all(r["exit"] == 0 for r in rows)
    (args.out / "consumer.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
