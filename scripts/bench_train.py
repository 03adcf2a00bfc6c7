#!/usr/bin/env python
"""Training throughput of `mocap train` (samples/s): the official train-mode forward, losses,
backward and Adam step on real photo crops with synthetic HumanData labels, plus the data loading
rate (HumanData reading, augmentation and targets) with --workers processes.

Random official-layout weights and the synthetic SMPL-X stand-in when --body-models is not given
(speed does not depend on their values).

    .venv/bin/python scripts/bench_train.py --config s32 --batch-size 4                   # CPU
    .venv/bin/python scripts/bench_train.py --device cuda --amp --batch-size 32 --config s32|b32
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engines.benchmark import media_dir  # noqa: E402

PHOTOS = ("coco_000785_skier.jpg", "coco_197388.jpg", "humanart_acrobatics.jpg", "mpii_004645041.jpg")


def main() -> int:
    p = argparse.ArgumentParser(description="mocap train throughput (samples/s)")
    p.add_argument("--config", default="s32", choices=["s32", "b32", "l32", "h32"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--amp", action="store_true", help="autocast (bf16 where supported, else fp16) on CUDA")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--iters", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="data-loading processes for the loading rate")
    p.add_argument("--body-models", default=None)
    p.add_argument("--threads", type=int, default=2, help="CPU torch threads")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from engines.body_model import BodyModel
    from engines.checkpoints import load_network, write_random_checkpoint
    from engines.datasets.humandata import HumanDataset
    from engines.datasets.synthetic import write_synthetic_humandata
    from engines.synthetic import write_synthetic_smplx
    from engines.training.config import make_optimizer, official_config
    from engines.training.forward import TrainNet
    from engines.training.losses import official_losses, reduce_losses
    from realtime.research.train import SeededSamples, ShardSampler, _to_device, collate

    dev = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    bm_dir = args.body_models
    if bm_dir is None:
        write_synthetic_smplx(tmp)
        bm_dir = str(tmp)
    body_model = BodyModel(bm_dir)
    media = media_dir()
    images = [media / PHOTOS[i % len(PHOTOS)] for i in range(max(args.batch_size, 8))]
    annot = write_synthetic_humandata(tmp / "bench.npz", images, body_model)
    ds = HumanDataset(annot, media, augment=True)
    cfg = official_config(args.config)

    # data loading rate
    loader = torch.utils.data.DataLoader(SeededSamples(ds, 0), batch_size=args.batch_size, collate_fn=collate,
                                         sampler=ShardSampler(len(ds), 0, 1, args.batch_size, True, 0, 0),
                                         num_workers=args.workers)
    t0 = time.perf_counter()
    n = 0
    for _ in range(3):
        for batch, _, _ in loader:
            n += args.batch_size
    load_sps = n / (time.perf_counter() - t0)

    net = load_network(write_random_checkpoint(tmp / "w.pth.tar", args.config))
    net.set_drop_path(cfg.drop_path_rate)
    net.train().to(dev)
    body_model.to(dev)
    model = TrainNet(net, body_model)
    opt = make_optimizer(net, cfg, cfg.lr)
    amp = args.amp and dev.type == "cuda"
    dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dtype == torch.float16)
    batch = next(iter(loader))[0]
    inputs, targets, meta = (_to_device(x, dev) for x in batch)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=dtype, enabled=amp):
            out = model(inputs["img"])
        _, total = reduce_losses(official_losses({k: v.float() for k, v in out.items()}, targets, meta, cfg.weights))
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    times = []
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(args.iters):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    cpu_per_wall = (time.process_time() - c0) / (time.perf_counter() - w0)
    med = float(np.median(times))
    res = {"config": args.config, "device": args.device, "amp": amp, "amp_dtype": str(dtype) if amp else None,
           "batch_size": args.batch_size, "step_median_s": med, "train_samples_per_s": args.batch_size / med,
           "load_samples_per_s": load_sps, "workers": args.workers, "iters": args.iters, "threads": args.threads, "cpu_per_wall": cpu_per_wall,
           "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None}
    print(json.dumps(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
