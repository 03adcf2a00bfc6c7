#!/usr/bin/env python
"""Markdown summary of a `scripts/gpu_check.sh` output folder (engines.md + live.json + tests)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def live_table(report: dict) -> list:
    lines = [f"`mocap live` on {report.get('clip')} ({report.get('device')}, engine {report.get('engine')}, "
             f"{report.get('variant')}, weights: {report.get('weights')}, {report.get('seconds')} s per run):", "",
             "| mode | in fps | out fps | frames | latency median ms | p95 ms | wait | track | infer | filter | send "
             "| detector calls /100 |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mode, r in report.get("runs", {}).items():
        if "error" in r:
            lines.append(f"| {mode} | failed: {r['error']} |" + " |" * 10)
            continue

        def f(key, fmt="{:.1f}"):
            v = r.get(key)
            return fmt.format(v) if isinstance(v, (int, float)) else "-"

        lines.append(f"| {mode} | {f('in_fps')} | {f('out_fps_mean')} | {r.get('frames_out', '-')} "
                     f"| {f('latency_ms_median', '{:.2f}')} | {f('latency_ms_p95', '{:.2f}')} "
                     f"| {f('wait_ms', '{:.2f}')} | {f('track_ms', '{:.2f}')} | {f('infer_ms', '{:.2f}')} "
                     f"| {f('filter_ms', '{:.2f}')} | {f('send_ms', '{:.2f}')} | {f('detector_calls_per_100')} |")
    return lines


def main(folder: str) -> int:
    out = Path(folder)
    parts = ["# GPU check", ""]
    env = out / "env.txt"
    if env.is_file():
        parts += ["```", env.read_text().strip(), "```", ""]
    tests = out / "gpu_tests.txt"
    if tests.is_file():
        parts += ["gpu-marked tests: `" + (tests.read_text().strip().splitlines() or ["(no output)"])[-1] + "`", ""]
    for name in ("engines.md", "compile.md"):
        eng = out / name
        if eng.is_file():
            parts += [eng.read_text().strip(), ""]
    live = out / "live.json"
    if live.is_file():
        parts += live_table(json.loads(live.read_text())) + [""]
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "gpu_check_out"))
