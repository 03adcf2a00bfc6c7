"""End-to-end CLI runs on real photos and clips with a random-weight checkpoint and a synthetic body."""
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.cli import main

OFFICIAL_SHAPES = {
    "global_orient": (1, 3), "body_pose": (21, 3), "left_hand_pose": (15, 3), "right_hand_pose": (15, 3),
    "jaw_pose": (1, 3), "leye_pose": (1, 3), "reye_pose": (1, 3), "betas": (1, 10), "expression": (1, 10),
    "transl": (1, 3)}


@pytest.fixture(scope="module")
def ckpt_args(s32_ckpt, smplx_dir):
    return ["--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir)]


@pytest.mark.slow
def test_image_with_fixed_box_official_format(tmp_path, media_dir, ckpt_args, s32_net, body_model):
    img = media_dir / "coco_000785_skier.jpg"
    out = tmp_path / "out"
    assert main(["image", str(img), "--out", str(out), "--bbox", "270", "20", "240", "400", "--save-mesh",
                 *ckpt_args]) == 0
    npz = np.load(out / "smplx" / "coco_000785_skier_0.npz")
    assert {k: npz[k].shape for k in npz.files} == OFFICIAL_SHAPES
    meta = json.loads((out / "meta" / "coco_000785_skier_0.json").read_text())
    assert meta["bbox_detector"] == [270.0, 20.0, 240.0, 400.0]
    bx, by, bw, bh = meta["bbox"]
    assert bw / bh == pytest.approx(0.75, rel=1e-5)
    assert meta["focal"] == pytest.approx([5000 / 192 * bw, 5000 / 256 * bh], rel=1e-5)
    assert meta["princpt"] == pytest.approx([bx + bw / 2, by + bh / 2], rel=1e-5)
    # same numbers as running the network directly on the official crop
    from engines.backends.torch_backend import TorchEngine
    from engines.inference import Predictor

    frame = cv2.imread(str(img))
    pred = Predictor(TorchEngine(s32_net), body_model).predict(frame, [[270, 20, 240, 400]])[0]
    for k, v in pred.npz_dict().items():
        np.testing.assert_array_equal(npz[k], v, err_msg=k)
    overlay = cv2.imread(str(out / "overlay" / "coco_000785_skier.jpg"))
    assert overlay.shape == frame.shape
    obj = (out / "mesh" / "coco_000785_skier_0.obj").read_text().splitlines()
    assert sum(l.startswith("v ") for l in obj) == 10475 and sum(l.startswith("f ") for l in obj) == 20908


@pytest.mark.slow
def test_image_detector_finds_people_and_skips_empty(tmp_path, media_dir, ckpt_args):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 127, np.uint8))
    out = tmp_path / "out"
    imgs = [media_dir / "coco_000785_skier.jpg", media_dir / "mpii_004645041.jpg", media_dir / "astronaut.png", blank]
    assert main(["image", *map(str, imgs), "--out", str(out), *ckpt_args]) == 0
    written = sorted(p.name for p in (out / "smplx").iterdir())
    assert written == ["astronaut_0.npz", "coco_000785_skier_0.npz", "mpii_004645041_0.npz"]
    for stem in ("coco_000785_skier", "mpii_004645041"):
        meta = json.loads((out / "meta" / f"{stem}_0.json").read_text())
        x, y, w, h = meta["bbox_detector"]
        assert h > w > 30  # a standing person's box
    # the frame without a person still gets its (unchanged) overlay and no parameters
    assert (out / "overlay" / "blank.jpg").exists()


@pytest.fixture(scope="module")
def centred_ckpt(tmp_path_factory):
    """Random weights, except a camera head that puts the body in the middle of its box
    (translation (0, 0, k * sigmoid(1)) ~ 41 m), so the overlay check sees a mesh."""
    import torch

    from engines.checkpoints import write_random_checkpoint

    extra = {"body_regressor.cam_out.0.weight": torch.zeros(3, 384),
             "body_regressor.cam_out.0.bias": torch.tensor([0.0, 0.0, 1.0])}
    return write_random_checkpoint(tmp_path_factory.mktemp("c") / "centred.pth.tar", "s32", seed=2, extra=extra)


@pytest.mark.slow
def test_video_end_to_end_overlay_shows_mesh(tmp_path, media_dir, centred_ckpt, smplx_dir, body_model):
    clip = media_dir / "street_walk_960x540.mp4"
    out = tmp_path / "vid"
    assert main(["video", str(clip), "--out", str(out), "--checkpoint", str(centred_ckpt),
                 "--body-models", str(smplx_dir), "--max-people", "1", "--no-boxes"]) == 0
    n_frames = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
    npzs = sorted((out / "smplx").glob("*.npz"))
    assert [p.stem for p in npzs] == [f"{i:05d}_0" for i in range(1, n_frames + 1)]  # a person in every frame
    info = json.loads((out / "video.json").read_text())
    assert info["fps"] == pytest.approx(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS))
    # the folder turns into an animation at the video's rate without --fps (random weights: plumbing only)
    assert main(["convert", str(out), "--out", str(tmp_path / "walk.bvh"), "--body-models", str(smplx_dir)]) == 0
    bvh = (tmp_path / "walk.bvh").read_text()
    assert f"Frames: {n_frames}\n" in bvh and f"Frame Time: {1 / info['fps']:.8f}" in bvh
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n_frames
    # the rendered mesh is where the projected SMPL-X vertices are (random weights: wherever that is)
    src = cv2.VideoCapture(str(clip))
    ok, frame = src.read()
    overlay = cv2.imread(str(out / "overlay" / "00001.jpg"))
    meta = json.loads((out / "meta" / "00001_0.json").read_text())
    params = dict(np.load(npzs[0]))
    verts, _ = body_model.from_params(params)
    uv = verts[:, :2] / verts[:, 2:] * np.array(meta["focal"]) + np.array(meta["princpt"])
    h, w = frame.shape[:2]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h) & (verts[:, 2] > 0)
    changed = np.abs(overlay.astype(int) - frame.astype(int)).max(-1) > 40
    assert inside.sum() > 5000  # the centred camera head puts the body inside the frame
    pts = uv[inside].astype(int)
    assert changed[pts[:, 1], pts[:, 0]].mean() > 0.8
    ys, xs = np.nonzero(changed)
    assert xs.min() >= uv[inside, 0].min() - 10 and xs.max() <= uv[inside, 0].max() + 10
    # ... and that is inside the detector's box around the walking person
    bx, by, bw, bh = meta["bbox"]
    assert bx - 5 <= np.median(uv[inside, 0]) <= bx + bw + 5


@pytest.mark.slow
def test_video_several_people_keep_their_track_ids(tmp_path, media_dir, centred_ckpt, smplx_dir):
    """The PoseTrack clip (three football players): every person found gets a track id that
    names their files in every frame, the meta json carries it and the detector score, and the
    overlay draws each person's box in their colour."""
    clip = media_dir / "posetrack_1280x720.mp4"
    out = tmp_path / "multi"
    assert main(["video", str(clip), "--out", str(out), "--checkpoint", str(centred_ckpt),
                 "--body-models", str(smplx_dir), "--max-people", "4"]) == 0
    names = sorted(p.stem for p in (out / "smplx").glob("*.npz"))
    frames = {}
    for name in names:
        frame, tid = name.split("_")
        frames.setdefault(int(tid), []).append(int(frame))
        meta = json.loads((out / "meta" / f"{name}.json").read_text())
        assert meta["track_id"] == int(tid) and meta["frame"] == int(frame)
        assert 0.0 < meta["score"] <= 1.0
    steady = [tid for tid, fr in frames.items() if len(fr) >= 4]
    assert len(steady) >= 2, frames  # at least two players followed through (nearly) every frame
    for k in range(1, 6):
        in_frame = [n for n in names if n.startswith(f"{k:05d}_")]
        assert len(in_frame) == len(set(in_frame)) <= 4
    overlay = cv2.imread(str(out / "overlay" / "00003.jpg"))
    src = cv2.VideoCapture(str(clip))
    for _ in range(3):
        ok, frame = src.read()
    meta = json.loads((out / "meta" / f"00003_{steady[0]}.json").read_text())
    x, y, w, h = (int(round(v)) for v in meta["bbox_detector"])
    edge = overlay[max(y, 0):y + h, max(x, 0):max(x, 0) + 2].astype(int) - frame[max(y, 0):y + h, max(x, 0):max(x, 0) + 2]
    assert (np.abs(edge).max(-1) > 60).mean() > 0.5  # the box's left edge is drawn


def test_user_errors_are_clear(tmp_path, ckpt_args, smplx_dir, capsys, media_dir):
    img = str(media_dir / "astronaut.png")
    assert main(["image", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o"), *ckpt_args]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"garbage")
    assert main(["image", img, "--out", str(tmp_path / "o"), "--checkpoint", str(bad),
                 "--body-models", str(smplx_dir)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert main(["image", img, "--out", str(tmp_path / "o"), "--checkpoint", ckpt_args[1],
                 "--body-models", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "smpl-x.is.tue.mpg.de" in err and "SMPLX_NEUTRAL.npz" in err
    assert main(["video", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "o"), *ckpt_args]) == 2


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).with_name("mocap")
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for cmd in ("image", "video", "weights", "live", "replay", "convert"):
        assert cmd in res.stdout


@pytest.mark.slow
def test_third_party_chatter_only_with_verbose(tmp_path, media_dir, ckpt_args):
    """MediaPipe/absl/TFLite and Open3D notices stay off the terminal; -v lets them through; the
    progress bar and our own lines always get there."""
    img = str(media_dir / "coco_000785_skier.jpg")
    quiet = subprocess.run([sys.executable, "-m", "realtime.cli", "image", img, "--out", str(tmp_path / "q"),
                            *ckpt_args], capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    noisy = ("W0000", "TensorFlow Lite", "absl::InitializeLog", "[Open3D", "XDG_RUNTIME_DIR")
    assert not [n for n in noisy if n in quiet.stderr + quiet.stdout], quiet.stderr[-2000:]
    assert "images: 100%" in quiet.stderr and "mocap image: 1 frame(s)" in quiet.stdout
    loud = subprocess.run([sys.executable, "-m", "realtime.cli", "-v", "image", img, "--out", str(tmp_path / "l"),
                           *ckpt_args], capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert loud.returncode == 0
    assert any(n in loud.stderr + loud.stdout for n in noisy)


def _commands():
    import argparse

    from realtime.cli import build_parser

    def walk(name, parser):
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from walk(f"{name} {sub_name}".strip(), sub)

    yield from walk("", build_parser())


def test_every_option_has_help_and_every_command_examples():
    import argparse

    for name, parser in _commands():
        if not name:
            continue
        has_subcommands = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
        if not has_subcommands:
            assert parser.epilog and parser.epilog.startswith("examples:"), f"mocap {name}: no examples"
            assert all(f"mocap {name.split()[0]}" in line for line in parser.epilog.splitlines()[1:])
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            assert action.help, f"mocap {name}: {action.option_strings or action.dest} has no help text"


def readme_synopsis() -> dict:
    """The README's command synopsis as {command: its lines}, with "[same options]" (image's) and
    "[same --osc-*/--vmc-* options as live]" written out."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## Commands", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    blocks, current = {}, None
    for line in block.splitlines():
        if line.startswith("mocap "):
            current = line.split()[1]
            if current.startswith("["):  # the global line: mocap [-v|--verbose] COMMAND
                current = ""
        blocks[current] = blocks.get(current, "") + line + "\n"
    blocks["video"] = blocks["video"].replace("[same options]", blocks["image"])
    blocks["batch"] = blocks["batch"].replace("[same options]", blocks["image"])
    live_stream = " ".join(o for o in re.findall(r"--(?:osc|vmc)[\w-]*", blocks["live"]))
    blocks["replay"] = blocks["replay"].replace("[same --osc-*/--vmc-* options as live]", live_stream)
    return blocks


def test_readme_synopsis_lists_every_option_on_its_own_command():
    """Each option on its command's synopsis lines (an option of live does not cover image's)."""
    blocks = readme_synopsis()
    missing = []
    for name, parser in _commands():
        top = name.split()[0] if name else ""
        for action in parser._actions:
            for opt in action.option_strings:
                if opt.startswith("--") and opt not in ("--help", "--version") and \
                        not re.search(re.escape(opt) + r"(?![\w-])", blocks.get(top, "")):
                    missing.append(f"mocap {name}: {opt}")
    assert not missing, missing


def test_stderr_filter_drops_a_notice_glued_to_a_progress_bar():
    """A native notice written right after a progress bar's partial line (one pipe segment):
    the bar and the lines after it get through, the notice does not."""
    code = ("import os; from engines.quiet import StderrFilter\n"
            "f = StderrFilter().start()\n"
            "os.write(2, b'images:   0%|          | 0/1 [00:00<?, ?img/s]'"
            " + b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
            "os.write(2, b'W0000 00:00:1764.5 1234 inference_feedback_manager.cc:114] x\\n')\n"
            "os.write(2, b'our own line\\n')\n"
            "f.stop()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                         cwd=Path(__file__).parents[1])
    assert res.returncode == 0, res.stderr
    assert res.stderr == b"images:   0%|          | 0/1 [00:00<?, ?img/s]our own line\n"


def test_stderr_filter_drops_a_notice_split_by_a_progress_bar():
    """TFLite writes "INFO: " and its text separately; a progress bar refresh can come in between.
    Both pieces are dropped, the bar and the lines after it get through."""
    code = ("import os, time; from engines.quiet import StderrFilter\n"
            "f = StderrFilter().start()\n"
            "for pause in (0.0, 0.2):  # one pipe read, then pieces read apart\n"
            "    os.write(2, b'INFO: '); time.sleep(pause)\n"
            "    os.write(2, b'\\rimages:   0%|          | 0/1 [00:00<?, ?img/s]'); time.sleep(pause)\n"
            "    os.write(2, b'Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
            "    os.write(2, b'our own line\\n'); time.sleep(0.2)\n"
            "f.stop()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                         cwd=Path(__file__).parents[1])
    assert res.returncode == 0, res.stderr
    assert res.stderr == b"\rimages:   0%|          | 0/1 [00:00<?, ?img/s]our own line\n" * 2
