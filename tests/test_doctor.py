"""`mocap doctor` and `mocap cache`: what the machine has, how to fix what it lacks."""
from __future__ import annotations

import socket

import pytest

from realtime.cli import main


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("MOCAP_CACHE_DIR", str(root))
    monkeypatch.delenv("MOCAP_BODY_MODELS", raising=False)
    return root


def test_doctor_on_a_bare_machine_says_what_to_do(cache, capsys):
    assert main(["doctor", "--no-cameras"]) == 1
    out = capsys.readouterr()
    assert "FAIL  checkpoint s32" in out.out and "mocap weights download s32" in out.out
    assert "FAIL  SMPL-X body model" in out.out and "smpl-x.is.tue.mpg.de" in out.out
    assert "cannot run yet: 2 problem(s)" in out.err


def test_doctor_with_weights_and_body_model_says_live_can_run(cache, capsys, smplx_dir):
    from engines.checkpoints import write_random_checkpoint

    write_random_checkpoint(cache / "weights" / "smpler_x_s32.pth.tar", "s32")
    (cache / "engines").mkdir()
    (cache / "engines" / "x.onnx").write_bytes(b"\0" * 2_500_000)
    assert main(["doctor", "--no-cameras", "--body-models", str(smplx_dir)]) == 0
    out = capsys.readouterr().out
    assert "ok    checkpoint s32" in out and "ok    SMPL-X body model" in out
    assert "engines 2.5 MB" in out
    assert out.rstrip().endswith("mocap live can run.")


def test_doctor_names_a_broken_body_model_file(cache, capsys, tmp_path):
    bad = tmp_path / "bm" / "smplx"
    bad.mkdir(parents=True)
    (bad / "SMPLX_NEUTRAL.npz").write_bytes(b"not a zip at all")
    assert main(["doctor", "--no-cameras", "--body-models", str(tmp_path / "bm")]) == 1
    out = capsys.readouterr().out
    assert "is not a readable SMPL-X npz" in out


def test_doctor_reports_a_busy_zmq_port_with_the_fix(cache, capsys):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        main(["doctor", "--no-cameras", "--zmq", f"tcp://127.0.0.1:{port}"])
    finally:
        holder.close()
    out = capsys.readouterr().out
    assert f"WARN  ZMQ port tcp://127.0.0.1:{port}" in out and "--zmq none" in out


def test_cache_list_and_clear_keeps_weights_unless_asked(cache, capsys):
    (cache / "engines").mkdir(parents=True)
    (cache / "weights").mkdir(parents=True)
    (cache / "engines" / "a.onnx").write_bytes(b"x" * 1000)
    (cache / "weights" / "smpler_x_s32.pth.tar").write_bytes(b"y" * 500)
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "a.onnx" in out and "smpler_x_s32.pth.tar" in out
    assert main(["cache", "clear"]) == 0
    assert "cleared engines: 1.0 KB" in capsys.readouterr().out
    assert not (cache / "engines").exists() and (cache / "weights" / "smpler_x_s32.pth.tar").exists()
    assert main(["cache", "clear", "--weights"]) == 0
    assert not (cache / "weights").exists()


@pytest.mark.slow
def test_doctor_as_the_readme_runs_it_reports_no_camera_cleanly(cache, tmp_path):
    """The README's first command: `mocap doctor` with the camera probe (no --no-cameras), in its own
    process as a user runs it. This machine has no camera: a WARN line with the fix, no traceback, no
    "internal error", no OpenCV warnings on stderr."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, MOCAP_CACHE_DIR=str(cache))
    env.pop("MOCAP_BODY_MODELS", None)
    proc = subprocess.run([sys.executable, "-m", "realtime.cli", "doctor"], capture_output=True, text=True,
                          env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=120)
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1  # no checkpoint, no body model here: FAIL lines, not a crash
    cameras = [line for line in proc.stdout.splitlines() if "cameras" in line]
    assert cameras and (cameras[0].startswith("WARN  cameras") or cameras[0].startswith("ok    cameras")), \
        proc.stdout
    if cameras[0].startswith("WARN"):
        assert "mocap live --source FILE.mp4" in proc.stdout
    assert "WARN:" not in proc.stderr and "cap_v4l" not in proc.stderr, proc.stderr
