"""Shared fixtures: everything the suite needs it makes itself (no downloads)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from .helpers import MEDIA, missing

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not MEDIA.is_dir():
        missing(f"real test media not found at {MEDIA} (put shared/media beside the checkout or set MOCAP_MEDIA_DIR)")
    return MEDIA


@pytest.fixture(scope="session")
def smplx_dir(tmp_path_factory) -> Path:
    """A directory with a synthetic smplx/SMPLX_NEUTRAL.npz (real names and shapes)."""
    from engines.synthetic import write_synthetic_smplx

    root = tmp_path_factory.mktemp("body_models")
    write_synthetic_smplx(root)
    return root


@pytest.fixture(scope="session")
def body_model(smplx_dir):
    from engines.body_model import BodyModel

    return BodyModel(smplx_dir)


@pytest.fixture(scope="session")
def s32_ckpt(tmp_path_factory) -> Path:
    """Random-weight S32 checkpoint in the official layout (module. prefix, new names)."""
    from engines.checkpoints import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "smpler_x_s32.pth.tar", "s32", "new", seed=1)


@pytest.fixture(scope="session")
def onnx_cache(s32_ckpt, tmp_path_factory) -> Path:
    """A mocap cache holding the optimised ONNX export of ``s32_ckpt`` (made once per run, about a
    minute, checked against eager PyTorch on the way): point MOCAP_CACHE_DIR here to use it."""
    from engines.backends import cached_onnx

    cache = tmp_path_factory.mktemp("onnx_cache")
    cached_onnx(s32_ckpt, cache=cache / "engines")  # where engines_cache_dir() looks under MOCAP_CACHE_DIR
    return cache


@pytest.fixture(scope="session")
def s32_net(s32_ckpt):
    from engines.checkpoints import load_network

    return load_network(s32_ckpt)


#: Inputs of the batch tests: two real clips (5 frames each, several people) and a real photo.
BATCH_MEDIA = ("street_walk_960x540.mp4", "posetrack_1280x720.mp4", "astronaut.png")


@pytest.fixture(scope="session")
def batch_ckpt(tmp_path_factory) -> Path:
    """Random S32 weights with a camera head that centres the body in its box, so that the
    tracker of mocap video follows people as with real weights (and overlays show meshes)."""
    import torch

    from engines.checkpoints import write_random_checkpoint

    extra = {"body_regressor.cam_out.0.weight": torch.zeros(3, 384),
             "body_regressor.cam_out.0.bias": torch.tensor([0.0, 0.0, 1.0])}
    return write_random_checkpoint(tmp_path_factory.mktemp("batch_ckpt") / "s32_centred.pth.tar", "s32", seed=2,
                                   extra=extra)


@pytest.fixture(scope="session")
def offline_reference(tmp_path_factory, media_dir, batch_ckpt, smplx_dir):
    """``mocap video`` / ``mocap image`` on each of :data:`BATCH_MEDIA`: {file name: result folder}."""
    from realtime.offline import run_session

    root = tmp_path_factory.mktemp("offline_reference")
    out = {}
    for name in BATCH_MEDIA:
        path = media_dir / name
        stats = run_session("image" if path.suffix == ".png" else "video", [path], root / path.stem,
                            checkpoint=str(batch_ckpt), body_models=smplx_dir, progress=False)
        assert stats.frames and not stats.stopped
        out[name] = root / path.stem
    return out
