"""Fault injection on what a user hands the command line: broken body-model files, bad output paths,
bad addresses, busy ports, missing devices, non-finite boxes, reused output folders, damaged result
folders. Each ends in one clear line on stderr, a non-zero exit code and no traceback (or, where
something intact is left, in a run that uses it and says what it skipped)."""
from __future__ import annotations

import json
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zmq

from realtime.cli import main

from .test_recorder import make_recording, write_official


@pytest.fixture(scope="module")
def ckpt(s32_ckpt):
    return str(s32_ckpt)


def one_line_error(capsys, rc, *needles):
    """The run failed with exit code 2 and exactly one line on stderr that names every needle."""
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("WARNING", "INFO"))]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- SMPL-X model file

def _broken_smplx(root, kind, smplx_dir):
    good = smplx_dir / "smplx" / "SMPLX_NEUTRAL.npz"
    bad = root / kind / "smplx" / "SMPLX_NEUTRAL.npz"
    bad.parent.mkdir(parents=True)
    data = good.read_bytes()
    if kind == "missing_array":
        with np.load(good) as z:
            arrays = {k: z[k] for k in z.files if k != "hands_componentsl"}
        np.savez(bad, **arrays)
    elif kind == "truncated":
        bad.write_bytes(data[: len(data) * 6 // 10])
    elif kind == "not_a_zip":
        bad.write_bytes(b"\x80\x04\x95 this is a pickle header, not a zip archive" * 100)
    elif kind == "damaged_array":
        # the archive's directory is intact but one array's bytes are not (its CRC fails on reading)
        with zipfile.ZipFile(good) as z:
            info = z.getinfo("shapedirs.npy")
        b = bytearray(data)
        start = info.header_offset + 30 + len(info.filename) + 200
        b[start:start + 64] = bytes(64)
        bad.write_bytes(bytes(b))
    return root / kind


@pytest.mark.parametrize("kind", ["missing_array", "truncated", "not_a_zip"])
@pytest.mark.parametrize("command", ["image", "video", "live", "replay"])
def test_broken_smplx_file_is_one_clear_line(tmp_path, capsys, ckpt, smplx_dir, media_dir, kind, command):
    body = str(_broken_smplx(tmp_path, kind, smplx_dir))
    model = ["--checkpoint", ckpt, "--body-models", body]
    if command == "image":
        argv = ["image", str(media_dir / "astronaut.png"), "--out", str(tmp_path / "o"), *model]
    elif command == "video":
        argv = ["video", str(media_dir / "street_walk_960x540.mp4"), "--out", str(tmp_path / "o"), *model]
    elif command == "live":
        argv = ["live", "--source", "synthetic", "--viewer", "none", "--osc", "none", "--zmq", "none",
                "--engine", "torch", *model]
    else:
        make_recording(tmp_path / "rec", n=2)
        argv = ["replay", str(tmp_path / "rec"), "--osc", "127.0.0.1:39539", "--zmq", "none", "--body-models", body]
    line = one_line_error(capsys, main(argv), "SMPLX_NEUTRAL.npz", "not a valid SMPL-X model file")
    assert "smpl-x.is.tue.mpg.de" in line
    if kind == "missing_array":
        assert "hands_componentsl" in line


def test_damaged_array_inside_the_smplx_file_is_one_clear_line(tmp_path, capsys, ckpt, smplx_dir, media_dir):
    body = str(_broken_smplx(tmp_path, "damaged_array", smplx_dir))
    make_recording(tmp_path / "rec", n=2)
    rc = main(["replay", str(tmp_path / "rec"), "--osc", "127.0.0.1:39539", "--zmq", "none", "--body-models", body])
    one_line_error(capsys, rc, "SMPLX_NEUTRAL.npz", "not a valid SMPL-X model file")


# --------------------------------------------------------------------------- output paths

def test_out_under_a_regular_file(tmp_path, capsys, ckpt, smplx_dir, media_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    img = str(media_dir / "astronaut.png")
    rc = main(["image", img, "--out", str(blocker / "results"), "--checkpoint", ckpt, "--body-models", str(smplx_dir)])
    one_line_error(capsys, rc, "is a file, not a folder", str(blocker))
    rc = main(["image", img, "--out", str(blocker), "--checkpoint", ckpt, "--body-models", str(smplx_dir)])
    one_line_error(capsys, rc, "is a file, not a folder")


@pytest.mark.parametrize("where", ["missing_dir", "under_file", "is_dir"])
def test_summary_json_bad_path_fails_before_running(tmp_path, capsys, ckpt, smplx_dir, where):
    (tmp_path / "f").write_text("x")
    target = {"missing_dir": tmp_path / "nope" / "s.json", "under_file": tmp_path / "f" / "s.json",
              "is_dir": tmp_path}[where]
    rc = main(["live", "--source", "synthetic", "--max-frames", "1", "--viewer", "none", "--osc", "none",
               "--zmq", "none", "--engine", "torch", "--checkpoint", ckpt, "--body-models", str(smplx_dir),
               "--record", str(tmp_path / "rec"), "--summary-json", str(target)])
    one_line_error(capsys, rc, "--summary-json")
    assert not (tmp_path / "rec").exists()  # nothing ran, nothing was recorded


@pytest.mark.slow
def test_reused_out_folder_is_refused_unless_overwrite(tmp_path, capsys, ckpt, smplx_dir, media_dir):
    """A folder of ours is reused only with --overwrite, which removes only what our earlier run wrote
    (listed in its run.json): a file of someone else's in our sub-folders stays."""
    out = tmp_path / "out"
    base = ["image", str(media_dir / "astronaut.png"), "--out", str(out), "--bbox", "100", "50", "300", "400",
            "--no-overlay", "--checkpoint", ckpt, "--body-models", str(smplx_dir)]
    assert main(base) == 0
    err = capsys.readouterr().err
    assert "engine: PyTorch" in err and "--engine torch" in err  # no --engine: which one, and the official path
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is True and run["frames"] == 1
    assert "torch" in run["engine"]
    assert run["written"] == {"results": ["astronaut_0"], "overlays": []}
    foreign = out / "smplx" / "old_frame_0.npz"  # not written by that run
    foreign.write_bytes(b"someone else's")
    (out / "notes.txt").write_text("mine")  # not a result: never touched
    one_line_error(capsys, main(base), "already holds results", "--overwrite")
    assert foreign.exists()
    assert main(base + ["--overwrite"]) == 0
    assert sorted(p.name for p in (out / "smplx").iterdir()) == ["astronaut_0.npz", "old_frame_0.npz"]
    assert foreign.read_bytes() == b"someone else's" and (out / "notes.txt").read_text() == "mine"
    assert not list(out.rglob("*.tmp"))


def test_non_finite_or_empty_bbox(tmp_path, capsys, ckpt, smplx_dir, media_dir):
    img = str(media_dir / "astronaut.png")
    for bad in (["nan", "0", "10", "10"], ["0", "0", "inf", "10"], ["0", "0", "x", "10"]):
        with pytest.raises(SystemExit) as exc:
            main(["image", img, "--out", str(tmp_path / "o"), "--bbox", *bad, "--checkpoint", ckpt])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--bbox" in err and "number" in err and "Traceback" not in err
    rc = main(["image", img, "--out", str(tmp_path / "o"), "--bbox", "0", "0", "0", "10", "--checkpoint", ckpt,
               "--body-models", str(smplx_dir)])
    one_line_error(capsys, rc, "--bbox", "width and height must be > 0")


# --------------------------------------------------------------------------- addresses and ports

@pytest.mark.parametrize("value, needle", [
    ("127.0.0.1:99999", "outside 1-65535"), ("127.0.0.1:0", "outside 1-65535"), ("127.0.0.1:-5", "not a number"),
    ("no-such-host.invalid:39539", "cannot resolve host 'no-such-host.invalid'"), ("[::1", "use HOST:PORT"),
    (":39539", "host is missing")])
def test_bad_osc_values(tmp_path, capsys, value, needle):
    make_recording(tmp_path / "rec", n=2)
    rc = main(["replay", str(tmp_path / "rec"), "--osc", value, "--zmq", "none"])
    one_line_error(capsys, rc, "--osc", needle)


@pytest.mark.parametrize("value, needle", [
    ("tcp://127.0.0.1:99999", "outside 1-65535"), ("tcp://127.0.0.1:0", "outside 1-65535"),
    ("tcp://::1:5555", "brackets"), ("udp://127.0.0.1:5555", "tcp://HOST:PORT"), ("127.0.0.1:5555", "tcp://HOST:PORT")])
def test_bad_zmq_values(tmp_path, capsys, value, needle):
    make_recording(tmp_path / "rec", n=2)
    rc = main(["replay", str(tmp_path / "rec"), "--osc", "none", "--zmq", value])
    one_line_error(capsys, rc, "--zmq", needle)


def test_busy_zmq_port_is_one_clear_line(tmp_path, capsys):
    make_recording(tmp_path / "rec", n=2)
    squatter = zmq.Context.instance().socket(zmq.PUB)
    port = squatter.bind_to_random_port("tcp://127.0.0.1")
    try:
        rc = main(["replay", str(tmp_path / "rec"), "--osc", "none", "--zmq", f"tcp://127.0.0.1:{port}"])
    finally:
        squatter.close(0)
    one_line_error(capsys, rc, f"tcp://127.0.0.1:{port}", "Address already in use", "--zmq none")


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_osc_and_zmq_endpoints_work(tmp_path, capsys, smplx_dir):
    make_recording(tmp_path / "rec", n=3)
    rcv = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    rcv.bind(("::1", 0))
    rcv.settimeout(10)
    port = rcv.getsockname()[1]
    zport = socket.socket(socket.AF_INET6)
    zport.bind(("::1", 0))
    zmq_port = zport.getsockname()[1]
    zport.close()
    try:
        assert main(["replay", str(tmp_path / "rec"), "--osc", f"[::1]:{port}", "--zmq", f"tcp://[::1]:{zmq_port}",
                     "--body-models", str(smplx_dir)]) == 0
        data, sender = rcv.recvfrom(65536)
    finally:
        rcv.close()
    assert data.startswith((b"#bundle", b"/VMC")) and sender[0] == "::1"
    assert "3 frame(s) sent" in capsys.readouterr().out


def test_vmc_socket_is_not_bound_on_every_interface():
    from engines.synthetic import synthetic_rest_joints
    from realtime.retarget import RestModel
    from realtime.sinks.osc_vmc import VMCSink

    rest = RestModel(synthetic_rest_joints(), np.zeros((15, 3)), np.zeros((15, 3)))
    sink = VMCSink("127.0.0.1", 39539, rest=rest)
    try:
        assert sink._sock.getsockname()[0] == "127.0.0.1"
    finally:
        sink.close()


# --------------------------------------------------------------------------- devices

def test_missing_camera_is_one_clear_line(tmp_path, capsys, ckpt, smplx_dir):
    rc = main(["live", "--source", "7", "--viewer", "none", "--osc", "none", "--zmq", "none", "--engine", "torch",
               "--checkpoint", ckpt, "--body-models", str(smplx_dir), "--record", str(tmp_path / "rec")])
    one_line_error(capsys, rc, "camera 7 could not be opened")
    assert not (tmp_path / "rec").exists()  # a source that cannot open leaves no recording behind


def test_unreadable_video_is_one_clear_line(tmp_path, capsys, ckpt, smplx_dir):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
    rc = main(["video", str(bad), "--out", str(tmp_path / "o"), "--checkpoint", ckpt, "--body-models", str(smplx_dir)])
    one_line_error(capsys, rc, "cannot open video", "clip.mp4")
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- result folders

def test_replay_of_a_result_folder_with_a_truncated_npz(tmp_path, capsys, caplog):
    """What a run killed while writing left (np.savez is not atomic; our writer now is)."""
    write_official(tmp_path / "out", frames=(1, 2, 3, 4), persons=(0,))
    npz = tmp_path / "out" / "smplx" / "00003_0.npz"
    npz.write_bytes(npz.read_bytes()[:300])
    assert main(["replay", str(tmp_path / "out"), "--osc", "none", "--zmq", "none", "--speed", "20"]) == 0
    out, err = capsys.readouterr()
    assert "4 frame(s) sent" in out and "1 damaged part(s) skipped" in out and "Traceback" not in err
    assert "00003_0.npz" in caplog.text
    # every file damaged: nothing to send is one clear line
    for f in (tmp_path / "out" / "smplx").iterdir():
        f.write_bytes(b"PK\x03\x04 cut")
    rc = main(["replay", str(tmp_path / "out"), "--osc", "none", "--zmq", "none"])
    one_line_error(capsys, rc, "no readable result file")


def test_result_writer_writes_valid_json_for_non_finite_values(tmp_path):
    from engines.atomic import write_json_atomic

    write_json_atomic(tmp_path / "m.json", {"bbox": [1.0, float("nan"), float("inf")], "n": {"x": float("-inf")}})
    assert json.loads((tmp_path / "m.json").read_text()) == {"bbox": [1.0, None, None], "n": {"x": None}}


# --------------------------------------------------------------------------- model files, settings, images

def test_corrupt_model_files_are_one_clear_line(tmp_path, capsys, ckpt, smplx_dir, media_dir):
    img = str(media_dir / "astronaut.png")
    bad_onnx = tmp_path / "model.onnx"
    bad_onnx.write_bytes(b"\x08\x07garbage, not a protobuf")
    rc = main(["image", img, "--out", str(tmp_path / "o1"), "--engine", "onnx", "--checkpoint", str(bad_onnx),
               "--body-models", str(smplx_dir)])
    one_line_error(capsys, rc, "model.onnx", "not a usable ONNX model")
    cut = tmp_path / "cut.pth.tar"
    data = open(ckpt, "rb").read()
    cut.write_bytes(data[: len(data) // 3])
    rc = main(["image", img, "--out", str(tmp_path / "o2"), "--checkpoint", str(cut), "--body-models", str(smplx_dir)])
    one_line_error(capsys, rc, "cut.pth.tar")
    rc = main(["image", img, "--out", str(tmp_path / "o3"), "--device", "cuda", "--checkpoint", ckpt,
               "--body-models", str(smplx_dir)])
    one_line_error(capsys, rc, "cuda")


@pytest.mark.parametrize("content", ["{not json", '{"body": {"min_cutoff": "fast"}}', '{"nope": {}}'])
def test_bad_filter_config_fails_before_the_model_loads(tmp_path, capsys, content):
    cfg = tmp_path / "filter.json"
    cfg.write_text(content)
    # a checkpoint that does not exist: the settings must be refused before anything is loaded
    rc = main(["live", "--source", "synthetic", "--viewer", "none", "--osc", "none", "--zmq", "none",
               "--checkpoint", str(tmp_path / "no.pth"), "--filter-config", str(cfg)])
    one_line_error(capsys, rc, "filter settings")


@pytest.mark.slow
def test_corrupt_images_are_reported_and_the_rest_processed(tmp_path, capsys, ckpt, smplx_dir, media_dir):
    good = media_dir / "astronaut.png"
    cut = tmp_path / "cut.jpg"
    cut.write_bytes((media_dir / "coco_000785_skier.jpg").read_bytes()[:200])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    box = ["--bbox", "100", "50", "300", "400", "--no-overlay", "--checkpoint", ckpt, "--body-models", str(smplx_dir)]
    assert main(["image", str(good), str(cut), str(text), "--out", str(tmp_path / "o"), *box]) == 0
    out = capsys.readouterr().out
    assert "1 frame(s)" in out and "2 failed: cut.jpg, notes.png" in out
    assert [p.name for p in (tmp_path / "o" / "smplx").iterdir()] == ["astronaut_0.npz"]
    assert main(["image", str(cut), str(text), "--out", str(tmp_path / "o2"), *box]) == 1  # nothing readable
    assert "0 frame(s)" in capsys.readouterr().out


def test_latency_sample_stays_bounded():
    from realtime.pipeline import Reservoir

    r = Reservoir(capacity=1000, seed=3)
    for i in range(50_000):
        r.add(float(i % 100))
    assert len(r) == 1000 and r.count == 50_000
    assert abs(np.median(r.values) - 49.5) < 5 and abs(np.percentile(r.values, 95) - 95) < 3
    small = Reservoir(capacity=1000)
    for v in (3.0, 1.0, 2.0):
        small.add(v)
    assert sorted(small.values) == [1.0, 2.0, 3.0]  # every value kept while under capacity: exact percentiles


@pytest.mark.slow
def test_a_full_disk_ends_the_run_in_one_line_and_leaves_whole_files(tmp_path, ckpt, smplx_dir, media_dir):
    """RLIMIT_FSIZE stands in for a full disk: a write past 100 kB fails (EFBIG) like one on a full disk
    (ENOSPC). The mesh (about 1 MB) cannot be written; the smaller results can."""
    import resource
    import signal
    import subprocess
    import sys

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "realtime.cli", "image", str(media_dir / "astronaut.png"),
                          "--out", str(out), "--bbox", "100", "50", "300", "400", "--save-mesh", "--no-overlay",
                          "--checkpoint", ckpt, "--body-models", str(smplx_dir)],
                         capture_output=True, text=True, preexec_fn=small_disk, timeout=300,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "cannot write results" in errors[0] and "Traceback" not in res.stderr
    assert json.loads((out / "run.json").read_text())["complete"] is False
    assert (out / "smplx" / "astronaut_0.npz").is_file()  # what fitted is whole ...
    np.load(out / "smplx" / "astronaut_0.npz")["body_pose"]
    assert not list((out / "mesh").iterdir())  # ... and what did not left nothing behind
