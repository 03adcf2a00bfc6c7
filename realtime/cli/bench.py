"""``mocap bench``: time the model forward (network + SMPL-X layer) on a real crop."""
from __future__ import annotations

import json
from pathlib import Path

from engines.errors import UserError

from .common import add_examples


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="time the model forward (network + SMPL-X layer) on a real crop")
    p.add_argument("--checkpoint", default="s32", help="checkpoint path or size name")
    p.add_argument("--body-models", default=None, metavar="DIR", help="SMPL-X model dir (default: cache; a synthetic "
                   "stand-in with the real shapes is used when absent)")
    p.add_argument("--engine", choices=["torch", "onnx", "tensorrt", "aoti"], default=None,
                   help="backend (default: the fastest available, as the live pipeline uses)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the network runs (default cpu)")
    p.add_argument("--fp16", action="store_true", help="half precision (torch autocast on CUDA)")
    p.add_argument("--batch", type=int, default=1, help="crops per forward (default 1)")
    p.add_argument("--iters", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the results as JSON")
    add_examples(p, "mocap bench --checkpoint s32",
                 "mocap bench --checkpoint b32 --device cuda --fp16 --batch 4 --json b32.json")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from engines.benchmark import run_bench

    if args.iters < 1 or args.batch < 1:
        raise UserError("--iters and --batch must be >= 1")
    try:
        res = run_bench(args.checkpoint, args.engine, args.device, args.fp16, args.batch, args.iters, args.warmup,
                        args.threads, args.body_models)
    except FileNotFoundError as exc:  # the benchmark's input photo (checkpoint, body model, device: typed errors)
        raise UserError(str(exc)) from exc
    print(f"{res['describe']} batch {res['batch']} on {res['input']} + {res['body_model']}: "
          f"median {res['median_ms']:.1f} ms (p10 {res['p10_ms']:.1f}, p90 {res['p90_ms']:.1f}; "
          f"{res['iters']} runs after {res['warmup']} warm-up; CPU/wall {res['cpu_per_wall']:.2f})")
    if args.json:
        from engines.atomic import write_text_atomic

        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(res, indent=2, default=str))
    return 0
