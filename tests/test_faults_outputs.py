"""Fault injection on where results go (issue 17): inputs with one file stem, folders that are not
ours, --overwrite next to the user's own files and inputs, a disk that fills up (a small tmpfs), a
read-only folder (a read-only bind mount). Nothing of the user's is deleted or overwritten; a write
failure is one line with a non-zero exit code, and what was written before it stays intact."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from realtime.cli import main

from .test_faults_inputs import one_line_error


@pytest.fixture(scope="module")
def ckpt(s32_ckpt):
    return str(s32_ckpt)


def image_args(ckpt, smplx_dir, *extra):
    return ["--bbox", "100", "50", "300", "400", "--no-overlay", "--checkpoint", ckpt,
            "--body-models", str(smplx_dir), *extra]


def mounted(kind: str, target: Path, source: Path = None, size: str = "64k"):
    """Mount a small tmpfs (``kind="tmpfs"``) or a read-only bind mount of ``source`` at ``target``;
    skip with the reason when this machine does not let the tests mount (not root, no capability)."""
    target.mkdir(parents=True, exist_ok=True)
    if kind == "tmpfs":
        cmds = [["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)]]
    else:
        cmds = [["mount", "--bind", str(source), str(target)], ["mount", "-o", "remount,bind,ro", str(target)]]
    for k, cmd in enumerate(cmds):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot mount here ({exc})")
        if proc.returncode != 0:
            if k:
                subprocess.run(["umount", str(target)], capture_output=True)
            pytest.skip(f"cannot mount here: {proc.stderr.strip() or proc.returncode} (needs root)")
    return target


@pytest.fixture
def mounts():
    """Mount points made by the test, unmounted at its end."""
    points = []
    yield points
    for p in reversed(points):
        subprocess.run(["umount", "-l", str(p)], capture_output=True)


@pytest.mark.slow
def test_inputs_with_one_stem_are_kept_apart(tmp_path, capsys, ckpt, smplx_dir, media_dir):
    """IMG_0001.jpg from two phones' folders and a.jpg + a.png: one result each, named after the
    input they came from, run.json mapping every input to its name."""
    photo = media_dir / "coco_000785_skier.jpg"
    for folder in ("phone1", "phone2"):
        (tmp_path / folder).mkdir()
        shutil.copy(photo, tmp_path / folder / "IMG_0001.jpg")
    shutil.copy(photo, tmp_path / "a.jpg")
    shutil.copy(media_dir / "astronaut.png", tmp_path / "a.png")
    inputs = [tmp_path / "phone1" / "IMG_0001.jpg", tmp_path / "phone2" / "IMG_0001.jpg", tmp_path / "a.jpg",
              tmp_path / "a.png"]
    out = tmp_path / "out"
    assert main(["image", *map(str, inputs), "--out", str(out), *image_args(ckpt, smplx_dir)]) == 0
    assert "4 frame(s), 4 person(s)" in capsys.readouterr().out
    names = sorted(p.name for p in (out / "smplx").iterdir())
    assert names == ["a-jpg_0.npz", "a-png_0.npz", "phone1-IMG_0001_0.npz", "phone2-IMG_0001_0.npz"]
    run = json.loads((out / "run.json").read_text())
    assert run["names"] == {str(inputs[0]): "phone1-IMG_0001", str(inputs[1]): "phone2-IMG_0001",
                            str(inputs[2]): "a-jpg", str(inputs[3]): "a-png"}
    for path, name in run["names"].items():  # each result says where it came from
        assert json.loads((out / "meta" / f"{name}_0.json").read_text())["img_path"] == path


def test_a_folder_that_is_not_ours_is_never_touched(tmp_path, capsys, ckpt, smplx_dir, media_dir):
    """A user's folder with a mesh/ of their own: refused, --overwrite or not, nothing removed."""
    out = tmp_path / "project"
    (out / "mesh").mkdir(parents=True)
    (out / "mesh" / "character.obj").write_text("v 0 0 0\n")
    for extra in ([], ["--overwrite"]):
        rc = main(["image", str(media_dir / "astronaut.png"), "--out", str(out), *image_args(ckpt, smplx_dir),
                   *extra])
        one_line_error(capsys, rc, "mesh/", "mocap did not write", "choose another folder")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["mesh", "mesh/character.obj"]


def test_overwrite_never_removes_an_input(tmp_path, capsys, ckpt, smplx_dir, media_dir):
    """mocap video on a clip that sits in its own --out as overlay.mp4 (a name our video run writes):
    --overwrite replaces our earlier results but the input stays."""
    out = tmp_path / "out"
    out.mkdir()
    clip = out / "overlay.mp4"
    shutil.copy(media_dir / "street_walk_960x540.mp4", clip)
    before = clip.read_bytes()
    (out / "run.json").write_text(json.dumps({"command": "video", "complete": True}))  # an earlier run of ours
    (out / "smplx").mkdir()
    np.savez(out / "smplx" / "00001_0.npz", x=np.zeros(1))
    args = ["video", str(clip), "--out", str(out), "--max-frames", "1", "--overwrite", *image_args(ckpt, smplx_dir)]
    assert main(args) == 0, capsys.readouterr().err
    assert clip.read_bytes() == before
    assert json.loads((out / "run.json").read_text())["written"]["results"] == ["00001_0"]


def test_a_full_disk_is_one_line_and_keeps_what_was_written(tmp_path, capsys, ckpt, smplx_dir, media_dir, mounts):
    """Results on a tmpfs that fills up after a few images: one line naming the folder and the
    cause, exit code 2, every result written before it whole, no temporary file left behind."""
    disk = mounted("tmpfs", tmp_path / "disk", size="24k")
    mounts.append(disk)
    images = tmp_path / "images"
    images.mkdir()
    for k in range(6):
        shutil.copy(media_dir / "astronaut.png", images / f"photo{k:02d}.png")
    rc = main(["image", str(images), "--out", str(disk / "out"), *image_args(ckpt, smplx_dir)])
    err = capsys.readouterr().err
    lines = [line for line in err.split("\n") if line.strip() and "img/s]" not in line]  # not the bar
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"--out {disk / 'out'}" in lines[0] and "No space left on device" in lines[0]
    assert "results written so far are kept" in lines[0]
    written = sorted((disk / "out" / "smplx").glob("*.npz"))
    assert 0 < len(written) < 6
    for f in written:
        with np.load(f) as data:
            assert data["body_pose"].size == 63
        assert (disk / "out" / "meta" / f"{f.stem}.json").is_file() or f == written[-1]
    assert not list((disk / "out").rglob("*.tmp"))
    assert json.loads((disk / "out" / "run.json").read_text())["complete"] is False


def test_a_read_only_folder_is_one_line(tmp_path, capsys, ckpt, smplx_dir, media_dir, mounts):
    src = tmp_path / "src"
    src.mkdir()
    ro = mounted("bind-ro", tmp_path / "ro", source=src)
    mounts.append(ro)
    rc = main(["image", str(media_dir / "astronaut.png"), "--out", str(ro / "out"), *image_args(ckpt, smplx_dir)])
    one_line_error(capsys, rc, f"--out {ro / 'out'}", "Read-only file system")
    assert list(src.iterdir()) == []


def test_recorder_on_a_full_disk_stops_cleanly_and_says_so(tmp_path, mounts, caplog):
    """The recorder on a tmpfs that fills up: one error line (not one per frame), the records before
    it intact and readable, the rest counted as lost, no temporary file left behind."""
    from realtime.recording import load_recording
    from realtime.sinks.recorder import Recorder

    from .test_recorder import result_for

    disk = mounted("tmpfs", tmp_path / "disk", size="40k")
    mounts.append(disk)
    rec = Recorder(disk / "rec", save_video=True, fsync_every=1)
    for i in range(200):
        rec.send(result_for(i, n_persons=2, image=True))
    rec.close()
    assert rec.problem is not None and "No space left on device" in rec.problem
    assert rec.written > 0 and rec.lost > 0 and rec.written + rec.lost == 200
    assert sum("recorder:" in r.getMessage() for r in caplog.records if r.levelname == "ERROR") == 1
    assert not list((disk / "rec").rglob("*.tmp"))
    loaded = load_recording(disk / "rec")
    assert 0 < len(loaded.frames) <= rec.written
    assert [f.frame_id for f in loaded.frames] == list(range(len(loaded.frames)))


@pytest.mark.slow
def test_live_recording_on_a_full_disk_is_not_a_success(tmp_path, capsys, s32_ckpt, smplx_dir, mounts):
    """mocap live --record onto a disk that fills up: exit code 1, the summary counts the lost
    records as sink errors and names the problem, one line says the recording is incomplete."""
    disk = mounted("tmpfs", tmp_path / "disk", size="24k")
    mounts.append(disk)
    summary = tmp_path / "summary.json"
    rc = main(["live", "--source", "synthetic:320x240@15", "--max-frames", "40", "--no-pace", "--viewer", "none",
               "--osc", "none", "--zmq", "none", "--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir),
               "--engine", "torch", "--record", str(disk / "rec"), "--record-video", "--summary-json", str(summary)])
    out, err = capsys.readouterr()
    assert rc == 1, err
    s = json.loads(summary.read_text())
    assert s["sink_errors"] > 0 and "No space left on device" in s["recording_problem"]
    assert "recording in" not in out
    incomplete = [line for line in err.splitlines() if "is incomplete" in line]
    assert len(incomplete) == 1 and "No space left on device" in incomplete[0]
    assert err.count("No space left on device") <= 3  # the log line, the incomplete line: no flood
