#!/usr/bin/env python
"""CPU benchmark: PyTorch eager vs each exact rewrite vs ONNX Runtime, S32 and B32.

Network forward + SMPL-X layer (synthetic stand-in with the real shapes unless --body-models),
batch 1, on the skier photo crop, 2 threads, random-weight checkpoints (speed does not depend on
the weights). Each variant is timed in ``--rounds`` blocks of ``--iters`` runs after a warm-up;
blocks of all variants alternate, so that load from other users of the machine spreads over all
of them. Reports the median over all runs, the per-call process CPU time, and process
CPU-seconds per wall-second (~2.0 = the two cores were ours; lower = contended).
Also checks every variant's outputs against eager (max abs difference).

    python scripts/bench_engines.py --variants s32 b32 --json docs/bench_cpu.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["s32", "b32"])
    ap.add_argument("--iters", type=int, default=10, help="timed runs per block")
    ap.add_argument("--rounds", type=int, default=2, help="blocks per variant (total runs = iters * rounds)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="subset of configurations to time")
    ap.add_argument("--body-models", default=None)
    ap.add_argument("--workdir", type=Path, default=None, help="where checkpoints/ONNX files go (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from engines.backends.onnx_backend import OnnxEngine
    from engines.backends.torch_backend import TorchEngine
    from engines.checkpoints import load_network, write_random_checkpoint
    from engines.benchmark import bench_input, body_model_or_stand_in, machine_info
    from engines.export import torch_to_onnx
    from engines.inference import forward_step
    from engines.optimize import optimize_for_cpu

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-engines-"))
    work.mkdir(parents=True, exist_ok=True)
    body, body_what = body_model_or_stand_in(args.body_models)
    img, what = bench_input(1)
    report = {"machine": machine_info(), "input": what, "body_model": body_what, "threads": args.threads,
              "iters_per_block": args.iters, "rounds": args.rounds, "results": {}}

    img_t = torch.from_numpy(img)

    def full(engine):
        return forward_step(engine, body, img_t)

    for variant in args.variants:
        ckpt = work / f"{variant}.pth.tar"
        if not ckpt.is_file():
            write_random_checkpoint(ckpt, variant)
        net = load_network(ckpt)
        configs = {
            "torch_eager": lambda: TorchEngine(load_network(ckpt)),
            "torch_sdpa": lambda: TorchEngine(load_network(ckpt), fused_attention=True),
            "torch_foldbn": lambda: TorchEngine(optimize_for_cpu(load_network(ckpt), True, None, False)),
            "torch_foldbn_subpixel3x3": lambda: TorchEngine(optimize_for_cpu(load_network(ckpt), True, "3x3", False)),
            "torch_foldbn_subpixel2x2": lambda: TorchEngine(optimize_for_cpu(load_network(ckpt), True, "2x2", False)),
            "torch_optimized": lambda: TorchEngine(load_network(ckpt), optimize=True),
            "ort_plain": lambda: _ort(net, work / f"{variant}-plain.onnx", None),
            "ort_optimized_3x3": lambda: _ort(net, work / f"{variant}-opt.onnx", "3x3"),
            "ort_optimized": lambda: _ort(net, work / f"{variant}-opt2.onnx", "2x2"),
        }
        if args.only:
            configs = {k: v for k, v in configs.items() if k in args.only or k == "torch_eager"}

        def _ort(ref, path, subpixel):
            if not path.is_file():
                m = ref if subpixel is None else optimize_for_cpu(ref, True, subpixel, True)
                torch_to_onnx(m, path)
            return OnnxEngine(path, threads=args.threads, optimized_path=path.with_suffix(".ort.onnx"))

        engines, ref_out = {}, None
        for name, make in configs.items():
            t0 = time.perf_counter()
            engines[name] = make()
            load_s = time.perf_counter() - t0
            out = engines[name].run({"img": img})
            if name == "torch_eager":
                ref_out = out
            diff = max(float(np.abs(out[k] - ref_out[k]).max()) for k in out)
            report["results"].setdefault(variant, {})[name] = {"max_abs_diff_vs_eager": diff, "load_s": load_s}
            for _ in range(args.warmup):
                full(engines[name])
        samples = {n: [] for n in engines}
        cpu = {n: [0.0, 0.0] for n in engines}
        for _ in range(args.rounds):
            for name, eng in engines.items():
                eng.run({"img": img})  # settle after switching runtimes
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(args.iters):
                    t = time.perf_counter()
                    full(eng)
                    samples[name].append((time.perf_counter() - t) * 1000)
                cpu[name][0] += time.process_time() - c0
                cpu[name][1] += time.perf_counter() - w0
        eager = float(np.median(samples["torch_eager"]))
        for name in engines:
            a = np.asarray(samples[name])
            r = report["results"][variant][name]
            r.update({"median_ms": float(np.median(a)), "p10_ms": float(np.percentile(a, 10)),
                      "p90_ms": float(np.percentile(a, 90)), "min_ms": float(a.min()), "n": int(a.size),
                      "cpu_ms_per_call": 1000 * cpu[name][0] / a.size,
                      "cpu_per_wall": cpu[name][0] / cpu[name][1],
                      "speedup_vs_eager": eager / float(np.median(a))})
            print(f"{variant} {name:26s} median {r['median_ms']:7.1f} ms  p10 {r['p10_ms']:7.1f}  "
                  f"cpu/call {r['cpu_ms_per_call']:7.1f} ms  cpu/wall {r['cpu_per_wall']:.2f}  "
                  f"x{r['speedup_vs_eager']:.2f}  maxdiff {r['max_abs_diff_vs_eager']:.2e}", flush=True)
        del engines
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
