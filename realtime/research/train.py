"""``mocap train``: fine-tune SMPLer-X on HumanData with the official losses, on one device or many
(``torchrun``: DDP, NCCL on GPUs, gloo on CPUs; each rank reads its shard, rank 0 writes).

A step is one optimiser update; the loss logged for step k is the loss of the k-th batch before
update k, so step 0 is the ``--init`` weights on the first batch. Checkpoints
``OUT/snapshot_<step>.pth.tar`` hold exactly the official keys (``network`` with ``module.``
prefixes, ``optimizer``, ``epoch``); what ``--resume`` needs beyond them (schedule, step, sampler
position, random states) sits beside it in ``snapshot_<step>.resume.pth``. Both are written
atomically, the resume state first.

Sample order: with shuffling (default), each file's list is shuffled once as the official
"balance" strategy does (seed 2023), files are mixed in equal shares and every epoch is a new
permutation (seeded by ``--seed`` and the epoch, as ``DistributedSampler``); ``--no-shuffle``
concatenates the files in the order given and keeps every file's sample order. Augmentation draws
are seeded per sample from (seed, epoch, index), so a run does not depend on ``--workers`` and
``--resume`` repeats them exactly.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

from engines.atomic import atomic_file, json_safe
from engines.errors import UserError
from engines.stop import stop_requested

SNAPSHOT_RE = re.compile(r"^snapshot_(\d+)\.pth\.tar$")
BALANCE_SHUFFLE_SEED = 2023


class TrainingStopped(Exception):
    """Training ended early: a stop signal (after a resumable checkpoint) or a NaN loss."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass
class TrainOptions:
    config: str
    init: Optional[str]
    data: List[Tuple[Path, Path]]
    out: Path
    steps: Optional[int] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    amp: bool = False
    augment: bool = True
    shuffle: bool = True
    seed: int = 0
    log_json: Optional[Path] = None
    resume: bool = False
    device: str = "cpu"
    body_models: Optional[str] = None
    workers: int = 0
    save_every: int = 0
    keep: int = 3
    progress: bool = True
    extra: Dict = field(default_factory=dict)


# --------------------------------------------------------------------------- distributed
def _dist_setup(device: str):
    """(rank, world, torch.device); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available (use --device cpu)")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, world, dev


# --------------------------------------------------------------------------- data
class ShardSampler(torch.utils.data.Sampler):
    """This rank's (epoch, index) pairs of one epoch, from batch ``start`` on: a permutation
    seeded by (seed, epoch) when shuffling, whole global batches only (official ``drop_last``)."""

    def __init__(self, n: int, rank: int, world: int, batch: int, shuffle: bool, seed: int, epoch: int, start: int = 0):
        self.n, self.rank, self.world, self.batch = n, rank, world, batch
        self.shuffle, self.seed, self.epoch, self.start = shuffle, seed, epoch, start

    def batches_per_epoch(self) -> int:
        return self.n // (self.batch * self.world)

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        usable = self.batches_per_epoch() * self.batch * self.world
        mine = order[:usable][self.rank::self.world]
        for i in mine[self.start * self.batch:]:
            yield (self.epoch, i)

    def __len__(self) -> int:
        return max(0, (self.batches_per_epoch() - self.start) * self.batch)


class SeededSamples(torch.utils.data.Dataset):
    """Wraps the mixed dataset: seeds the augmentation per (seed, epoch, index) and turns a bad
    sample (missing or unreadable image, broken labels) into None, counted by the collate step."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        s = zlib.crc32(f"{self.seed}/{epoch}/{index}".encode())
        random.seed(s)
        np.random.seed(s)
        try:
            return self.dataset[index]
        except (UserError, OSError, ValueError, KeyError, IndexError, cv2_error()) as exc:
            return BadSample(f"sample {index}: {exc}")


@dataclass
class BadSample:
    reason: str


def cv2_error():
    import cv2

    return cv2.error


def collate(items):
    """Default collation of the good samples; the bad ones are counted (``(batch or None, bad, first reason)``)."""
    from torch.utils.data import default_collate

    good = [it for it in items if not isinstance(it, BadSample)]
    bad = [it.reason for it in items if isinstance(it, BadSample)]
    return (default_collate(good) if good else None), len(bad), (bad[0] if bad else None)


def _to_device(tree, dev):
    if isinstance(tree, dict):
        return {k: _to_device(v, dev) for k, v in tree.items()}
    if isinstance(tree, torch.Tensor):
        return tree.to(dev, dtype=torch.float32 if tree.is_floating_point() else tree.dtype, non_blocking=True)
    return tree


def build_dataset(opts: TrainOptions, bbox_ratio: float, smplx_joints):
    from engines.datasets.humandata import HumanDataset
    from engines.datasets.mixing import MultipleDatasets

    dbs = []
    for annot, root in opts.data:
        if not Path(root).is_dir():
            raise UserError(f"image folder not found: {root} (for {annot})")
        db = HumanDataset(annot, root, split="train", augment=opts.augment, bbox_ratio=bbox_ratio,
                          shuffle_seed=BALANCE_SHUFFLE_SEED if opts.shuffle else None, smplx_joints=smplx_joints)
        if len(db) == 0:
            raise UserError(f"{annot}: no usable samples ({db.stats.get('no_image', 0)} without a readable image)")
        dbs.append(db)
    return MultipleDatasets(dbs, balanced=opts.shuffle), dbs


# --------------------------------------------------------------------------- checkpoints
def latest_snapshot(out: Path) -> Optional[Path]:
    best = None
    for p in out.glob("snapshot_*.pth.tar"):
        m = SNAPSHOT_RE.match(p.name)
        if m and resume_path(p).is_file() and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return best[1] if best else None


def resume_path(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name[: -len(".pth.tar")] + ".resume.pth")


def _torch_save_atomic(obj, path: Path) -> None:
    try:
        with atomic_file(path, "wb") as fh:
            torch.save(obj, fh)
    except OSError as exc:
        raise UserError(f"cannot write checkpoint {path}: {exc.strerror or exc} (nothing was written under that name)") from exc


def save_snapshot(out: Path, net, optimizer, scheduler, step: int, epoch: int, batch_in_epoch: int,
                  extra: Dict) -> Path:
    """Official-layout ``snapshot_<step>.pth.tar`` plus the ``.resume.pth`` state beside it."""
    path = out / f"snapshot_{step}.pth.tar"
    state = {
        "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python_rng": random.getstate(), "numpy_rng": np.random.get_state(), **extra,
    }
    _torch_save_atomic(state, resume_path(path))
    network = {"module." + k: v.detach().cpu() for k, v in net.state_dict().items()}
    _torch_save_atomic({"epoch": epoch, "network": network, "optimizer": optimizer.state_dict()}, path)
    return path


# --------------------------------------------------------------------------- the run
class _Progress:
    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", desc="train", dynamic_ncols=True, file=sys.stderr)

    def update(self, total_loss: float, sps: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {total_loss:.4f}, {sps:.1f} samples/s", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _all_reduce_mean(values: Dict[str, torch.Tensor], world: int, present: List[str]) -> Dict[str, float]:
    """Average the loss terms over ranks (a term a rank lacks counts as 0 there, as its loss is 0)."""
    dev = next(iter(values.values())).device
    vec = torch.stack([values[k].detach().float() if k in values else torch.zeros((), device=dev) for k in present])
    if world > 1:
        dist.all_reduce(vec)
        vec = vec / world
    return {k: float(v) for k, v in zip(present, vec.cpu())}


LOSS_NAMES = ("smplx_pose", "smplx_shape", "smplx_expr", "joint_cam", "smplx_joint_cam", "lhand_bbox", "rhand_bbox",
              "face_bbox", "joint_proj", "joint_img", "smplx_joint_img")


def run_training(opts: TrainOptions) -> Dict:
    """Train; returns a summary dict. Raises UserError (bad input) or TrainingStopped."""
    from engines.body_model import BodyModel, BodyModelNotFound
    from engines.checkpoints import CheckpointError, load_network
    from engines.training.config import (convert_sync_batchnorm, make_optimizer, make_scheduler, official_config)
    from engines.training.forward import TrainNet, smplx_joint_fn
    from engines.training.losses import official_losses, reduce_losses

    cfg = official_config(opts.config)
    rank, world, dev = _dist_setup(opts.device)
    out = Path(opts.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    batch = opts.batch_size or cfg.batch_size
    lr = cfg.lr if opts.lr is None else opts.lr
    random.seed(opts.seed)
    np.random.seed(opts.seed)
    torch.manual_seed(opts.seed)

    try:
        body_model = BodyModel(opts.body_models).to(dev)
    except BodyModelNotFound as exc:
        raise UserError(str(exc)) from exc
    resume_from = latest_snapshot(out) if opts.resume else None
    if opts.resume and resume_from is None:
        raise UserError(f"--resume: no snapshot_<k>.pth.tar with its .resume.pth in {out}")
    init = resume_from or opts.init
    if init is None:
        raise UserError("--init CHECKPOINT is required (an official SMPLer-X checkpoint or a snapshot)")
    try:
        net = load_network(init)
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc
    if net.variant.name != opts.config:
        raise UserError(f"--init {init} is SMPLer-X-{net.variant.name.upper()}, but --config is {opts.config}")
    net.set_drop_path(cfg.drop_path_rate if opts.augment else 0.0)  # --no-augment: deterministic
    net.train()
    if world > 1:
        net = convert_sync_batchnorm(net, dev)
    net.to(dev)

    # samples without 3-D keypoints take their 3-D targets from the SMPL-X fit, on the CPU (workers)
    cpu_body_model = body_model if dev.type == "cpu" else BodyModel(opts.body_models)
    mixed, dbs = build_dataset(opts, cfg.bbox_ratio, smplx_joint_fn(cpu_body_model))
    probe = ShardSampler(len(mixed), rank, world, batch, opts.shuffle, opts.seed, 0)
    per_epoch = probe.batches_per_epoch()
    if per_epoch == 0:
        raise UserError(f"{len(mixed)} samples are fewer than one global batch ({batch} x {world} processes); "
                        "lower --batch-size")
    total = opts.steps if opts.steps is not None else (opts.epochs or cfg.end_epoch) * per_epoch

    model = TrainNet(net, body_model)
    if world > 1:  # find_unused_parameters as the official Trainer sets it
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                                          find_unused_parameters=True)
    optimizer = make_optimizer(net, cfg, lr)
    scheduler = make_scheduler(optimizer, total, cfg)
    step, epoch, start_batch, skipped_total = 0, 0, 0, 0
    if resume_from is not None:
        ckpt = torch.load(str(resume_from), map_location="cpu", weights_only=False)
        state = torch.load(str(resume_path(resume_from)), map_location="cpu", weights_only=False)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, start_batch = state["step"], state["epoch"], state["batch_in_epoch"]
        skipped_total = state.get("skipped", 0)
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        random.setstate(state["python_rng"])
        np.random.set_state(state["numpy_rng"])

    use_amp = opts.amp and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    log_fh = open(opts.log_json, "a" if opts.resume else "w", encoding="utf-8") if (opts.log_json and rank == 0) else None
    bar = _Progress(total, step, opts.progress and rank == 0 and sys.stderr.isatty())
    samples = SeededSamples(mixed, opts.seed)
    last_path: Optional[Path] = None
    first_loss = last_loss = None

    written: List[Path] = []  # snapshots this run wrote (only these are ever removed, by --keep)

    def save(ep, bi):
        nonlocal last_path
        if rank == 0:
            last_path = save_snapshot(out, net, optimizer, scheduler, step, ep, bi,
                                      {"skipped": skipped_total, "config": opts.config, "seed": opts.seed})
            if last_path not in written:
                written.append(last_path)
            while opts.keep and len(written) > opts.keep:
                old = written.pop(0)
                resume_path(old).unlink(missing_ok=True)  # the resume state first: never a resumable half
                old.unlink(missing_ok=True)
        if world > 1:
            dist.barrier()

    try:
        while step < total:
            sampler = ShardSampler(len(mixed), rank, world, batch, opts.shuffle, opts.seed, epoch, start_batch)
            loader = torch.utils.data.DataLoader(samples, batch_size=batch, sampler=sampler, num_workers=opts.workers,
                                                 collate_fn=collate, pin_memory=dev.type == "cuda", drop_last=True)
            bi = start_batch
            t0 = time.perf_counter()
            steps_this_epoch, first_reason = 0, None
            for data, bad, reason in loader:
                skipped_total += bad
                first_reason = first_reason or reason
                if data is None:
                    bi += 1
                    continue
                steps_this_epoch += 1
                inputs, targets, meta = (_to_device(x, dev) for x in data)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                    outs = model(inputs["img"])
                outs = {k: v.float() for k, v in outs.items()}
                means, total_loss = reduce_losses(official_losses(outs, targets, meta, cfg.weights))
                logged = _all_reduce_mean(means, world, _present_terms(means, world))
                logged_total = sum(logged.values())
                if not math.isfinite(logged_total):
                    bad_terms = ", ".join(k for k, v in logged.items() if not math.isfinite(v))
                    raise TrainingStopped(f"loss is not finite at step {step} ({bad_terms}); stopped without "
                                          f"saving (last checkpoint: {last_path or 'none'})", 1)
                cur_lr = optimizer.param_groups[0]["lr"]
                scaler.scale(total_loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                dt = time.perf_counter() - t0
                t0 = time.perf_counter()
                sps = batch * world / dt if dt > 0 else 0.0
                if first_loss is None:
                    first_loss = logged_total
                last_loss = logged_total
                if log_fh is not None:
                    rec = {"step": step, "loss": logged, "total": logged_total, "lr": cur_lr, "samples_per_s": sps}
                    if bad:
                        rec["skipped"] = bad
                        rec["skip_reason"] = reason
                    log_fh.write(json.dumps(json_safe(rec)) + "\n")
                    log_fh.flush()
                bar.update(logged_total, sps)
                step += 1
                bi += 1
                if step >= total:
                    break
                if opts.save_every and step % opts.save_every == 0:
                    save(epoch, bi)
                if _stop_now(world, dev):
                    save(epoch, bi)
                    raise TrainingStopped(f"stopped at step {step}; resumable checkpoint {last_path} "
                                          f"(continue with --resume)", 128 + (stop_requested() or 2))
            else:
                if steps_this_epoch == 0 and len(sampler) > 0:
                    raise UserError(f"no usable batch in a whole epoch (every sample failed; first: {first_reason})")
                epoch += 1
                start_batch = 0
                if step < total and not opts.save_every:
                    save(epoch, 0)
                continue
            if step >= total:
                next_epoch, next_batch = (epoch + 1, 0) if bi >= per_epoch else (epoch, bi)
                save(next_epoch, next_batch)
    finally:
        bar.close()
        if log_fh is not None:
            log_fh.close()
    return {"steps": step, "snapshot": str(last_path) if last_path else None, "skipped_samples": skipped_total,
            "first_total": first_loss, "last_total": last_loss, "world_size": world,
            "samples": len(mixed), "rank": rank}


def _present_terms(means: Dict[str, torch.Tensor], world: int) -> List[str]:
    """The loss terms of this step on any rank (the box terms are absent where no box is valid)."""
    dev = next(iter(means.values())).device  # NCCL reduces CUDA tensors only
    flags = torch.tensor([1.0 if k in means else 0.0 for k in LOSS_NAMES], device=dev)
    if world > 1:
        dist.all_reduce(flags)
    return [k for k, f in zip(LOSS_NAMES, flags.tolist()) if f > 0]


def _stop_now(world: int, dev: torch.device) -> bool:
    flag = torch.tensor([1.0 if stop_requested() is not None else 0.0], device=dev)
    if world > 1:
        dist.all_reduce(flag)
    return bool(flag.item() > 0)
