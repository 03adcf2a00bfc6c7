"""Hyper-parameters, optimiser and schedule as the official configs set them
(``main/config/config_smpler_x_{s,b,l,h}32.py``, ``common/base.py`` ``Trainer``).

* Adam over all parameters (two groups as officially: the network at ``lr``, an empty
  "special" group at ``lr * lr_mult``); no weight decay, no gradient clipping.
* ``CosineAnnealingLR`` stepped every iteration, ``T_max`` = all iterations of the run,
  ``eta_min`` = ``min_lr`` (1e-6 unless a config sets it).
* lr 1e-5, 10 epochs, batch 32 per GPU (16 for H32), body boxes padded by ``bbox_ratio`` 1.2,
  SyncBatchNorm across GPUs, encoder stochastic depth 0.1/0.3/0.5/0.55.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from .forward import DROP_PATH_RATE
from .losses import LossWeights


@dataclass(frozen=True)
class TrainConfig:
    variant: str
    lr: float = 1e-5
    min_lr: float = 1e-6
    lr_mult: float = 1.0
    end_epoch: int = 10
    batch_size: int = 32
    bbox_ratio: float = 1.2
    drop_path_rate: float = 0.1
    weights: LossWeights = LossWeights()


def official_config(variant: str) -> TrainConfig:
    if variant not in DROP_PATH_RATE:
        raise ValueError(f"unknown config '{variant}' (choose from {', '.join(DROP_PATH_RATE)})")
    return TrainConfig(variant=variant, batch_size=16 if variant == "h32" else 32,
                       drop_path_rate=DROP_PATH_RATE[variant])


def make_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """The official two-group Adam (the second, "special" group is empty)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam([{"params": params, "lr": lr}, {"params": [], "lr": lr * cfg.lr_mult}], lr=lr)


def make_scheduler(optimizer, total_steps: int, cfg: TrainConfig):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, int(total_steps)), eta_min=cfg.min_lr)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the whole global batch (every rank), for CPU
    process groups (gloo), where torch's SyncBatchNorm is not available. Same maths as
    SyncBatchNorm: biased variance to normalise, unbiased for the running estimate."""

    def forward(self, x):
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        n_local = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype)
        stats = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), n_local])
        stats = all_reduce(stats)
        c = x.shape[1]
        n = stats[2 * c]
        mean = stats[:c] / n
        var = stats[c:2 * c] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach() * m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)) * m)
        y = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Official ``syncbn = True``: torch's SyncBatchNorm on GPUs, :class:`GlobalBatchNorm2d` on CPUs."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return model
