"""A first run with no surprises (issue 17): no third-party lines without -v, a heartbeat while the
engine builds, live and replay say where they send, a recording remembers its body model."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engines.progress import ticking
from engines.quiet import muted_stdout
from realtime.cli import main

REPO = Path(__file__).resolve().parents[1]


def _run(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("MOCAP_VERBOSE", None)
    return subprocess.run([sys.executable, "-m", "realtime.cli", *args], capture_output=True, text=True,
                          timeout=900, cwd=REPO, env=env, **kw)


def test_muted_stdout_drops_python_and_native_writes(capfd, monkeypatch):
    monkeypatch.delenv("MOCAP_VERBOSE", raising=False)
    with muted_stdout():
        print("from python")
        os.write(1, b"from native code\n")
    print("after")
    out = capfd.readouterr().out
    assert "from python" not in out and "from native" not in out and "after" in out
    monkeypatch.setenv("MOCAP_VERBOSE", "1")
    with muted_stdout():
        print("verbose keeps it")
    assert "verbose keeps it" in capfd.readouterr().out


def test_exporter_loggers_quiet_after_torch_resets_its_levels(monkeypatch):
    import logging

    monkeypatch.delenv("MOCAP_VERBOSE", raising=False)
    from engines.quiet import quiet_loggers

    quiet_loggers()
    import torch.onnx  # noqa: F401
    from torch.onnx._internal.exporter import _registration

    assert not _registration.logger.isEnabledFor(logging.WARNING)  # "torchvision is not installed" stays off
    assert _registration.logger.isEnabledFor(logging.ERROR)


def test_heartbeat_while_a_long_step_runs():
    import time

    said = []
    with ticking("building", every=0.05, say=said.append):
        time.sleep(0.3)
    assert said[0] == "building ..." and said[-1].startswith("building: done in")
    assert any(s.startswith("building ... ") and s.endswith(" s") for s in said[1:-1])
    said.clear()
    with pytest.raises(ValueError):
        with ticking("exporting", every=10, say=said.append):
            raise ValueError("x")
    assert said[-1].startswith("exporting: failed after")


def test_sinks_and_viewer_are_described(tmp_path, body_model):
    from realtime.sinks import describe_sinks
    from realtime.sinks.osc_vmc import VMCSink
    from realtime.sinks.recorder import Recorder
    from realtime.sinks.zmq_pub import ZMQSink
    from viewers.preview import describe_viewer

    sinks = [VMCSink("127.0.0.1", 39611, body_model), ZMQSink("tcp://127.0.0.1:*"),
             Recorder(tmp_path / "rec", body_models=str(body_model.path))]
    try:
        text = describe_sinks(sinks)
    finally:
        for s in sinks:
            s.close()
    port = sinks[1].last_endpoint.rsplit(":", 1)[1]
    assert text == f"VMC/OSC udp://127.0.0.1:39611, ZMQ PUB tcp://127.0.0.1:{port}, recording in {tmp_path / 'rec'}"
    assert describe_sinks([]) == "no output"
    assert "no display" in describe_viewer("auto", "none") and "--viewer none" in describe_viewer("none", "none")
    assert "Open3D" in describe_viewer("open3d", "open3d")


def test_live_prints_where_it_sends_and_which_viewer(tmp_path, s32_ckpt, smplx_dir, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert main(["live", "--source", "synthetic:160x120@15", "--max-frames", "2", "--osc", f"127.0.0.1:{port}",
                     "--zmq", "tcp://127.0.0.1:*", "--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir),
                     "--engine", "torch", "--record", str(tmp_path / "rec")]) == 0
    err = capsys.readouterr().err
    line = next(l for l in err.splitlines() if "sending to" in l)
    assert f"VMC/OSC udp://127.0.0.1:{port}" in line and "ZMQ PUB tcp://127.0.0.1:" in line
    assert "recording in" in line and "no window: no display found" in line
    meta = json.loads((tmp_path / "rec" / "meta.json").read_text())
    assert Path(meta["body_models"]).is_file() and Path(meta["body_models"]).parent.parent == smplx_dir


def test_recording_remembers_its_body_model(tmp_path, smplx_dir, body_model, monkeypatch, capsys):
    from engines.synthetic import synthetic_take
    from tests.takes import person
    from engines.types import FrameResult
    from realtime.sinks.recorder import Recorder

    take = synthetic_take(6)
    with Recorder(tmp_path / "rec", fps=30.0, body_models=str(body_model.path)) as rec:
        for k, params in enumerate(take):
            rec.send(FrameResult(frame_id=k, t_capture_ns=10**9 + k * 33_333_333, image_size=(640, 480),
                                 persons=[person(0, params)]))
    monkeypatch.delenv("MOCAP_BODY_MODELS", raising=False)
    monkeypatch.setenv("MOCAP_CACHE_DIR", str(tmp_path / "empty_cache"))  # no model anywhere else
    assert main(["convert", str(tmp_path / "rec"), "--out", str(tmp_path / "a.npz")]) == 0
    assert (tmp_path / "a.npz").is_file()
    port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port.bind(("127.0.0.1", 0))
    try:
        assert main(["replay", str(tmp_path / "rec"), "--osc", f"127.0.0.1:{port.getsockname()[1]}",
                     "--zmq", "none", "--speed", "20", "--settle", "0"]) == 0
    finally:
        port.close()
    out = capsys.readouterr().out
    assert "mocap replay: 6 frame(s)" in out and "-> VMC/OSC udp://127.0.0.1:" in out and "6 frame(s) sent" in out


def test_replay_progress_counts_every_frame(tmp_path, capsys):
    from realtime.replay import Timeline, replay
    from engines.types import FrameResult

    sent = []

    class Sink:
        def send(self, result):
            sent.append(result)

    items = [(k * 0.001, FrameResult(frame_id=k, t_capture_ns=0, image_size=(4, 4), persons=[])) for k in range(7)]
    stats = replay(Timeline(tmp_path, items), [Sink()], speed=1.0, progress=True)
    assert stats.frames_sent == 7 == len(sent)
    assert "7/7" in capsys.readouterr().err


@pytest.mark.slow
def test_fbx_export_prints_nothing_of_blenders_without_verbose(tmp_path, smplx_dir):
    pytest.importorskip("bpy")
    from engines.synthetic import synthetic_take
    from tests.takes import write_recording

    write_recording(tmp_path / "rec", {0: synthetic_take(8)}, [k / 30 for k in range(8)])
    quiet = _run(["convert", str(tmp_path / "rec"), "--out", str(tmp_path / "q.fbx"), "--body-models", str(smplx_dir)])
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "FBX export" not in quiet.stdout + quiet.stderr and "export finished" not in quiet.stdout
    assert quiet.stdout.strip().splitlines() == [l for l in quiet.stdout.strip().splitlines() if l.startswith("mocap")]
    loud = _run(["-v", "convert", str(tmp_path / "rec"), "--out", str(tmp_path / "l.fbx"), "--body-models",
                 str(smplx_dir)])
    assert loud.returncode == 0 and "FBX export starting" in loud.stdout


@pytest.mark.slow
def test_export_shows_progress_and_no_exporter_chatter(tmp_path, s32_ckpt):
    done = _run(["export", "--checkpoint", str(s32_ckpt), "--to", "onnx", "--out", str(tmp_path / "s.onnx")])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[torch.onnx]" not in done.stdout + done.stderr
    assert "torchvision is not installed" not in done.stderr
    assert "exporting" in done.stderr and ": done in" in done.stderr
    assert "wrote" in done.stdout
