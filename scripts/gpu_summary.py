#!/usr/bin/env python
"""Markdown summary of a `scripts/gpu_check.sh` output folder (tests, engines, AOTInductor, live runs
per model size, several streams on one GPU, training throughput)."""
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


def overhead_table(report: dict) -> list:
    lines = [f"Live pipeline around a stand-in network ({report.get('clip')}, lossless reading, tracker, One-Euro, "
             "VMC + ZMQ + recorder when sinks are on):", "",
             "| stand-in | sinks | out fps | wall per frame ms | track | infer | hold | filter | send | VMC | ZMQ | recorder |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report.get("runs", []):
        sk = r.get("sink_ms", {})
        cell = lambda v: f"{v:.2f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
        lines.append(f"| {r['cost_ms']:.0f} ms {'async' if r['asynchronous'] else 'sync'} | {'on' if r['sinks'] else 'off'} "
                     f"| {r['out_fps_mean']:.1f} | {r['wall_per_frame_ms']:.2f} | {cell(r.get('track_ms'))} "
                     f"| {cell(r.get('infer_ms'))} | {cell(r.get('hold_ms'))} | {cell(r.get('filter_ms'))} "
                     f"| {cell(r.get('send_ms'))} | {cell(sk.get('VMCSink'))} | {cell(sk.get('ZMQSink'))} "
                     f"| {cell(sk.get('Recorder'))} |")
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
    for name in ("engines.md", "compile.md", "predictor.md", "aoti.md"):
        eng = out / name
        if eng.is_file():
            parts += [eng.read_text().strip(), ""]
    over = out / "overhead.json"
    if over.is_file():
        parts += overhead_table(json.loads(over.read_text())) + [""]
    live = out / "live.json"
    if live.is_file():
        parts += live_table(json.loads(live.read_text())) + [""]
    sizes = out / "sizes.json"
    if sizes.is_file():
        for variant, report in json.loads(sizes.read_text()).items():
            parts += live_table(report) + [""]
    streams = out / "streams.json"
    if streams.is_file():
        from bench_streams import markdown as streams_markdown  # scripts/ is on the path of a script

        for report in json.loads(streams.read_text()).values():
            parts += [streams_markdown(report).strip(), ""]
    train = out / "train.txt"
    if train.is_file():
        parts += ["Training throughput (`scripts/bench_train.py`, batch 32, AMP):", "", "```",
                  train.read_text().strip(), "```", ""]
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "gpu_check_out"))
