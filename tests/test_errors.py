"""Errors a user can fix are types under UserError (exit code 2, one line); everything else is a bug
(exit code 70), whatever its message says -- no matching on message text."""
from __future__ import annotations

import pytest
import torch

from engines.body_model import BodyModelNotFound
from engines.errors import CheckpointError, DeviceUnavailable, UserError
from realtime.cli import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_a_missing_cuda_device_is_a_typed_user_error(s32_ckpt, smplx_dir):
    from engines.inference import Predictor

    with pytest.raises(DeviceUnavailable, match="--device cpu"):
        Predictor.from_files(str(s32_ckpt), smplx_dir, device="cuda", engine="torch")


def test_checkpoint_and_body_model_errors_are_user_errors(tmp_path, s32_ckpt):
    from engines.checkpoints import resolve_checkpoint
    from engines.body_model import find_smplx_file

    with pytest.raises(CheckpointError):
        resolve_checkpoint(tmp_path / "none.pth.tar")
    with pytest.raises(BodyModelNotFound):
        find_smplx_file(tmp_path / "nowhere")
    assert issubclass(CheckpointError, UserError) and issubclass(BodyModelNotFound, UserError)


def test_a_runtime_error_that_mentions_cuda_is_still_a_bug(tmp_path, capsys, monkeypatch, s32_ckpt, smplx_dir,
                                                           media_dir):
    """The old rule turned any RuntimeError naming CUDA into a user error; a bug must say it is one."""
    from engines.inference import Predictor

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(Predictor, "from_files", broken)
    rc = main(["image", str(media_dir / "astronaut.png"), "--out", str(tmp_path / "o"), "--checkpoint",
               str(s32_ckpt), "--body-models", str(smplx_dir)])
    err = capsys.readouterr().err
    assert rc == 70 and "internal error: RuntimeError" in err and "a bug" in err
