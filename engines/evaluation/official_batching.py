"""How the official ``main/test.py`` batches a test set, and the one place where that changes results.

The official test runs the dataset in order through a ``DataLoader`` of ``test_batch_size *
num_gpus`` samples (32 per GPU in every official config), and ``DataParallel`` splits each
batch into ``num_gpus`` chunks (``Tensor.chunk``). The official ``rot6d_to_axis_angle`` calls
``torch.cross`` without ``dim`` (see the spec, SMPLER-X.md section 3): for a chunk of exactly 3
samples the cross product of the root and jaw rotations is taken across the 3 samples instead
of within each, and those samples' root and jaw poses (hence their meshes) are wrong. The
official numbers include this; to equal them, :func:`apply_cross_quirk` reproduces it for the
samples that the official run would put in such a chunk. The project's own forward stays
correct for every batch size."""
from __future__ import annotations

import math
from typing import Iterator, List, Tuple

import cv2
import numpy as np
import torch

from ..geometry import rotmat_to_axis_angle

#: ``test_batch_size`` of every official config.
OFFICIAL_TEST_BATCH = 32


def official_chunks(n_samples: int, batch_size: int = OFFICIAL_TEST_BATCH, gpus: int = 1) -> Iterator[Tuple[int, int]]:
    """(first sample index, size) of every per-GPU chunk the official run forms, in order."""
    if batch_size < 1 or gpus < 1:
        raise ValueError("the official batch size and GPU count must be at least 1")
    per_loader = batch_size * gpus
    for start in range(0, n_samples, per_loader):
        b = min(per_loader, n_samples - start)
        chunk = math.ceil(b / gpus)
        for s in range(0, b, chunk):
            yield start + s, min(chunk, b - s)


def quirk_groups(n_samples: int, batch_size: int = OFFICIAL_TEST_BATCH, gpus: int = 1) -> List[Tuple[int, int, int]]:
    """The sample indices of every official chunk of exactly 3 samples."""
    return [(s, s + 1, s + 2) for s, size in official_chunks(n_samples, batch_size, gpus) if size == 3]


def apply_cross_quirk(axis_angles: np.ndarray) -> np.ndarray:
    """(3, 3) axis-angles of one rotation (root or jaw) for the 3 samples of a chunk -> what the
    official code outputs for them: the rotation matrices' first two columns are kept, the third
    is the cross product taken over the sample axis, and the result is converted back as officially."""
    aa = np.asarray(axis_angles, np.float64).reshape(3, 3)
    mats = np.stack([cv2.Rodrigues(a)[0] for a in aa]).astype(np.float32)
    b1 = torch.from_numpy(mats[:, :, 0].copy())
    b2 = torch.from_numpy(mats[:, :, 1].copy())
    b3 = torch.linalg.cross(b1, b2, dim=0)
    return rotmat_to_axis_angle(torch.stack((b1, b2, b3), dim=-1)).numpy()
