#!/usr/bin/env python
"""AOTInductor against the PyTorch engine, on the CPU or a CUDA GPU: compile time, load time,
ms per frame, output difference.

For each variant: a random-weight checkpoint in the official layout (``--checkpoint-dir``, made
when missing, with the centred camera head of ``bench_live.py``), compiled into the engine cache's
AOTInductor package (:func:`engines.backends.cached_aoti`, so that ``--engine auto`` finds it
afterwards for the same checkpoint file), loaded, and timed against the PyTorch engine at the
same precision (CUDA: both with CUDA graphs, fp16 by default; CPU: fp32, eager) on the skier
photo's crop repeated to each batch size. Speed does not depend on the weights' values.
The difference is the largest |AOTInductor - PyTorch| per output relative to max(1, max |PyTorch|).

    python scripts/bench_aoti.py --device cpu --variants s32 --batches 1 --json aoti_cpu.json
    python scripts/bench_aoti.py --device cuda --variants s32 b32 --batches 1 4 --json out/aoti.json --md out/aoti.md
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--variants", nargs="+", default=["s32"])
    ap.add_argument("--precision", default=None, choices=["fp32", "fp16", "bf16"],
                    help="default fp16 on CUDA, fp32 on the CPU")
    ap.add_argument("--batches", nargs="+", type=int, default=[1])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (CPU runs)")
    ap.add_argument("--checkpoint-dir", type=Path, default=None, help="where the checkpoints are (made when missing)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from bench_live import centred_checkpoint
    from engines.backends import cached_aoti, cached_aoti_path
    from engines.backends.aoti_backend import AotiEngine, read_record
    from engines.backends.torch_backend import TorchEngine
    from engines.benchmark import bench_input, machine_info, time_calls
    from engines.checkpoints import load_network

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("bench_aoti: no CUDA device", file=sys.stderr)
        return 2
    if not cuda:
        torch.set_num_threads(args.threads)
    precision = args.precision or ("fp16" if cuda else "fp32")
    ckpt_dir = args.checkpoint_dir or Path(tempfile.mkdtemp(prefix="bench-aoti-"))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    report = {"device": args.device, "precision": precision, "cuda_graphs": cuda, "iters": args.iters,
              "machine": machine_info(), "results": {}}

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for variant in args.variants:
        ckpt = ckpt_dir / f"smpler_x_{variant}.pth.tar"
        if not ckpt.is_file():
            centred_checkpoint(ckpt, variant)
        row = report["results"][variant] = {"checkpoint": str(ckpt)}
        fresh = not cached_aoti_path(ckpt, args.device, precision).is_file()
        package = cached_aoti(ckpt, args.device, precision)
        row["compile_s"] = read_record(package).get("compile_s") if fresh else None
        row["package_mb"] = round(package.stat().st_size / 1e6, 1)
        sync()
        t0 = time.perf_counter()
        aoti = AotiEngine(package, args.device, precision, cuda_graph=cuda)
        sync()
        row["load_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        ref = TorchEngine(load_network(ckpt), args.device, precision, cuda_graph=cuda)
        row["torch_load_s"] = round(time.perf_counter() - t0, 2)
        for b in args.batches:
            img = torch.from_numpy(bench_input(b)[0]).to(args.device)
            got = {k: v.clone() for k, v in aoti.forward_tensor(img).items()}
            want = ref.forward_tensor(img)
            diff = max(float((got[k] - want[k]).abs().max()) / max(1.0, float(want[k].abs().max())) for k in want)
            sync()
            timings = {}
            for name, eng in (("aoti", aoti), ("torch", ref)):
                def call(eng=eng):
                    eng.forward_tensor(img)
                    sync()

                t = time_calls(call, args.iters, args.warmup)
                timings[name] = {"median_ms": t["median_ms"], "p90_ms": t["p90_ms"],
                                 "ms_per_frame": t["median_ms"] / b}
            row[f"batch{b}"] = {**timings, "max_rel_diff_vs_torch": diff,
                                "speedup": timings["torch"]["median_ms"] / timings["aoti"]["median_ms"],
                                "aoti_graph_captured": bool(aoti.cuda_graph)}
            print(f"{variant} batch {b}: AOTInductor {timings['aoti']['median_ms']:.2f} ms "
                  f"({timings['aoti']['ms_per_frame']:.2f} ms/frame), PyTorch {timings['torch']['median_ms']:.2f} ms, "
                  f"x{row[f'batch{b}']['speedup']:.2f}, max rel diff {diff:.1e}", flush=True)
        print(f"{variant}: compile {row['compile_s']} s, load {row['load_s']} s, package {row['package_mb']} MB",
              flush=True)
        del aoti, ref
        write(report, args)  # after every variant: a run cut short by its time cap keeps what it measured
    return 0


def write(report: dict, args) -> None:
    report["cache"] = os.environ.get("MOCAP_CACHE_DIR", "default")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text("\n".join(markdown(report)) + "\n")


def markdown(report: dict) -> list:
    m = report["machine"]
    where = m.get("cuda") or m.get("cpu_model") or m.get("processor")
    lines = [f"AOTInductor vs PyTorch on {where} ({report['device']}, {report['precision']}, "
             f"CUDA graphs {'on' if report['cuda_graphs'] else 'off'}, torch {m.get('torch')}), "
             f"median of {report['iters']} runs:", "",
             "| variant | batch | AOTInductor ms/frame | PyTorch ms/frame | speed-up | max rel diff | compile s | load s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for variant, row in report["results"].items():
        for key, r in row.items():
            if key.startswith("batch"):
                lines.append(f"| {variant.upper()} | {key[5:]} | {r['aoti']['ms_per_frame']:.2f} | "
                             f"{r['torch']['ms_per_frame']:.2f} | {r['speedup']:.2f}x | {r['max_rel_diff_vs_torch']:.1e} | "
                             f"{row['compile_s']} | {row['load_s']} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
