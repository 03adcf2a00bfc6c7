"""Real signals to real `mocap` processes: SIGTERM and SIGHUP stop `mocap live` and `mocap video` like
Ctrl-C (summary, finalised recording, playable overlay.mp4); a signal during start-up stops the
program with one line and never switches engines."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[1]


def default_signals():
    """The child starts with default signal actions even if the test runner was started with some
    ignored (a background job ignores SIGINT; nohup ignores SIGHUP): mocap keeps an inherited ignore."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def spawn(args, env=None, preexec_fn=default_signals):
    return subprocess.Popen([sys.executable, "-m", "realtime.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))


def wait_until(proc, predicate, timeout=180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended early ({proc.returncode}): {err[-2000:]}")
        if predicate():
            return
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("timed out waiting for the process")


def finish(proc, sig, timeout=120):
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()


def live_args(ckpt, smplx_dir, *extra):
    return ["live", "--source", "synthetic:320x240@15", "--viewer", "none", "--osc", "none", "--zmq", "none",
            "--engine", "torch", "--checkpoint", str(ckpt), "--body-models", str(smplx_dir), *extra]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_live_stops_like_ctrl_c(tmp_path, s32_ckpt, smplx_dir, sig):
    rec, summary = tmp_path / "rec", tmp_path / "summary.json"
    proc = spawn(live_args(s32_ckpt, smplx_dir, "--record", str(rec), "--summary-json", str(summary)))
    frames = rec / "frames.bin"
    wait_until(proc, lambda: frames.exists() and frames.stat().st_size > 0)
    out, err = finish(proc, sig)
    assert proc.returncode == 0, err[-2000:]
    assert "frames processed" in out and "Traceback" not in err
    s = json.loads(summary.read_text())
    assert s["stopped_by"] == signal.Signals(sig).name
    from realtime.recording import load_recording

    recording = load_recording(rec)
    assert recording.meta["complete"] is True and not recording.truncated and not recording.damaged
    assert len(recording) == s["frames_out"] >= 1
    assert recording.meta["fps"] == 15.0  # the source's rate, known since the source opened before the recorder


@pytest.mark.slow
def test_an_inherited_ignore_is_kept(tmp_path, s32_ckpt, smplx_dir):
    """`nohup mocap live ...` ignores SIGHUP: closing the terminal must not stop it; Ctrl-C still does."""
    def nohup():
        default_signals()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    rec = tmp_path / "rec"
    proc = spawn(live_args(s32_ckpt, smplx_dir, "--record", str(rec)), preexec_fn=nohup)
    frames = rec / "frames.bin"
    wait_until(proc, lambda: frames.exists() and frames.stat().st_size > 0)
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    assert proc.poll() is None  # still running
    out, err = finish(proc, signal.SIGINT)
    assert proc.returncode == 0 and "frames processed" in out, err[-2000:]


@pytest.mark.slow
def test_video_stops_on_sigterm_with_a_playable_overlay(tmp_path, s32_ckpt, smplx_dir, media_dir):
    clip = tmp_path / "long.mp4"
    still = cv2.resize(cv2.imread(str(media_dir / "coco_000785_skier.jpg")), (320, 212))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 212))
    for i in range(200):
        writer.write(np_roll(still, i))
    writer.release()
    out = tmp_path / "out"
    proc = spawn(["video", str(clip), "--out", str(out), "--bbox", "100", "10", "120", "190",
                  "--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir)])
    wait_until(proc, lambda: len(list((out / "overlay").glob("*.jpg"))) >= 3 if (out / "overlay").is_dir() else False)
    stdout, err = finish(proc, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped early by SIGTERM" in stdout and "Traceback" not in err
    results = sorted((out / "smplx").glob("*.npz"))
    assert 3 <= len(results) < 200
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))  # finalised: it opens and holds every frame done
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(results)
    ok, frame = cap.read()
    assert ok and frame.shape[:2] == (212, 320)
    assert not (out / "overlay.partial.mp4").exists() and not list(out.rglob("*.tmp"))
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is False and run["stopped_by"] == "SIGTERM" and run["frames"] == len(results)


def np_roll(image, i):
    import numpy as np

    return np.roll(image, 2 * i, axis=1)


def _torch_loaded(pid: int) -> bool:
    """The command is running (torch is imported only inside a command, after the handlers are in)."""
    try:
        return "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_start_up_stops_the_program(tmp_path, s32_ckpt, smplx_dir, sig):
    rec = tmp_path / "rec"
    proc = spawn(live_args(s32_ckpt, smplx_dir, "--record", str(rec)))
    wait_until(proc, lambda: _torch_loaded(proc.pid), timeout=120)
    out, err = finish(proc, sig)
    assert "Traceback" not in err and "unavailable" not in err
    if proc.returncode != 0:  # the usual case: the signal came while the model was loading
        assert proc.returncode == 128 + sig, err[-2000:]
        assert f"stopped by {signal.Signals(sig).name}" in err
        assert not rec.exists() or not (rec / "frames.bin").exists() or (rec / "meta.json").exists()
    else:  # a very fast machine had finished starting: then it is a clean stop with a summary
        assert "frames processed" in out


@pytest.mark.slow
def test_signal_during_onnx_export_does_not_switch_engines(tmp_path, s32_ckpt, smplx_dir):
    """The auto engine exports the checkpoint to ONNX on first use; a Ctrl-C there used to be caught by the
    fallback ("ONNX Runtime engine unavailable ... using optimised PyTorch") and the run went on."""
    proc = spawn(live_args(s32_ckpt, smplx_dir)[:-6] + ["--engine", "auto", "--checkpoint", str(s32_ckpt),
                                                         "--body-models", str(smplx_dir)],
                 env={"MOCAP_CACHE_DIR": str(tmp_path / "cache")})
    # the export makes the engines cache folder, then runs torch.onnx.export for many seconds: Ctrl-C there
    wait_until(proc, lambda: (tmp_path / "cache" / "engines").is_dir(), timeout=240)
    time.sleep(1.0)
    out, err = finish(proc, signal.SIGINT)
    assert proc.returncode == 130, err[-3000:]
    assert "stopped by SIGINT" in err
    assert "using optimised PyTorch" not in err and "unavailable" not in err and "Traceback" not in err
    assert not list((tmp_path / "cache").rglob("*.onnx"))  # no half-written export left behind


# --------------------------------------------------------------------------- fallbacks never swallow a stop

@pytest.fixture()
def stop_signals():
    from engines.stop import clear_stop
    from realtime import signals

    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if pytest runs with SIGINT ignored
    signals.install()
    try:
        yield
    finally:
        signals.uninstall()
        signal.signal(signal.SIGINT, before)
        clear_stop()


def test_auto_engine_fallback_does_not_swallow_a_ctrl_c(monkeypatch, s32_ckpt, stop_signals):
    """A real SIGINT arrives while the ONNX engine loads and the library it interrupts turns the
    KeyboardInterrupt into an ImportError (as a half-finished import can): the auto engine must stop,
    not fall back to PyTorch."""
    from engines import backends
    from engines.stop import StopRequested

    real = backends.load_engine
    kinds = []

    def load(model, kind="torch", device="cpu", precision=None, **kw):
        kinds.append(kind)
        if kind == "onnx":
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # the handler raises in here
            except KeyboardInterrupt as exc:
                raise ImportError("cannot import name 'InferenceSession' (partially initialized module)") from exc
        return real(model, kind, device, precision, **kw)

    monkeypatch.setattr(backends, "auto_kind", lambda model, device="cpu", precision=None: "onnx")
    monkeypatch.setattr(backends, "load_engine", load)
    with pytest.raises(StopRequested):
        backends.load_engine(s32_ckpt, "auto")
    assert kinds == ["auto", "onnx"]  # never "torch"
    # without a stop, the same failure still falls back (the fallback itself is kept)
    from engines.stop import clear_stop

    clear_stop()

    def load_without_onnxruntime(model, kind="torch", device="cpu", precision=None, **kw):
        if kind == "onnx":
            raise ImportError("no onnxruntime")
        return f"{kind} engine"

    monkeypatch.setattr(backends, "load_engine", load_without_onnxruntime)
    assert real(s32_ckpt, "auto") == "torch engine"


def test_overlay_renderer_fallback_does_not_swallow_a_stop(monkeypatch):
    from engines.stop import StopRequested, clear_stop, request_stop
    from viewers.mesh_overlay import MeshRenderer, RendererUnavailable

    monkeypatch.setitem(sys.modules, "open3d", None)  # "import open3d" now raises ImportError
    renderer = MeshRenderer(64, 48)
    renderer._o3d = None
    request_stop(signal.SIGTERM)
    try:
        with pytest.raises(StopRequested):
            renderer._ensure_canvas(64, 48)
    finally:
        clear_stop()
    with pytest.raises(RendererUnavailable):
        MeshRenderer(64, 48)._ensure_canvas(64, 48)
