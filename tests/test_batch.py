"""mocap batch on this machine: inputs, manifest, worker processes, kill and resume, equality with
mocap video / mocap image. Real clips and a photo from shared/media, a corrupt file, real processes."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from engines.errors import UserError
from realtime.batch.inputs import MediaInput, expand_inputs
from realtime.batch.manifest import MANIFEST, BatchDir, read_journal
from realtime.cli import main

from .conftest import BATCH_MEDIA
from .helpers import assert_same_file, assert_same_results, mocap_subprocess, pid_alive, wait_for

# --------------------------------------------------------------------------------------------- helpers


def manifest_entries(out: Path):
    return read_journal(out / MANIFEST)[1]


def corrupt_clip(folder: Path) -> Path:
    path = folder / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    return path


@pytest.fixture(scope="module")
def model_args(batch_ckpt, smplx_dir):
    return ["--checkpoint", str(batch_ckpt), "--body-models", str(smplx_dir)]


def journal_lines(out: Path):
    """Every readable line of the journal (not folded), tolerant of a file being written."""
    try:
        text = (out / MANIFEST).read_text()
    except FileNotFoundError:
        return []
    lines = []
    for line in text.splitlines()[1:]:
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return lines


# --------------------------------------------------------------------------------------------- inputs


def test_inputs_from_files_folders_and_lists(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("b10.mp4", "b2.MOV", "a.jpg", "notes.md"):
        (clips / name).write_bytes(b"x")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "lone.png").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# collection\n\nlone.png\n{clips / 'b2.MOV'}\nmissing_folder\n{tmp_path / 'gone.mp4'}\n")
    inputs, problems = expand_inputs([clips, listing, tmp_path / "empty_dir", tmp_path / "nope", clips / "notes.md"])
    # folder: videos, then images, each in natural order; the list adds lone.png and gone.mp4 (b2 only once)
    assert [(m.path.name, m.kind) for m in inputs] == [
        ("b2.MOV", "video"), ("b10.mp4", "video"), ("a.jpg", "image"), ("lone.png", "image"), ("gone.mp4", "video")]
    assert all(m.path.is_absolute() for m in inputs)
    # a file of another type in a folder is named, not skipped silently, and is no failure
    assert [(p.path, p.not_read) for p in problems if p.not_read] == [(str(clips / "notes.md"), True)]
    messages = [p.message for p in problems if not p.not_read]
    assert len(messages) == 4
    assert "not found" in messages[0] and "missing_folder" in messages[0]  # from the list, relative to it
    assert "no image or video files in folder" in messages[1]
    assert "not found" in messages[2] and "nope" in messages[2]
    assert "not an image, video, folder or list" in messages[3]
    # files that cannot be processed are found before any worker opens them
    assert "not found" in inputs[-1].preflight_error()
    (clips / "zero.mp4").write_bytes(b"")
    assert "empty file (0 bytes)" in MediaInput((clips / "zero.mp4").resolve(), "video").preflight_error()
    assert inputs[0].preflight_error() is None


# --------------------------------------------------------------------------------------------- manifest


def test_manifest_owns_its_folder_and_survives_a_torn_line(tmp_path):
    settings = {"checkpoint": "/w/s32.pth.tar", "max_frames": 5}
    out = tmp_path / "out"
    media = [MediaInput(tmp_path / "x" / "clip.mp4", "video"), MediaInput(tmp_path / "y" / "clip.mp4", "video"),
             MediaInput(tmp_path / "clip.jpg", "image"), MediaInput(tmp_path / ".hidden.mp4", "video"),
             MediaInput(tmp_path / "manifest.png", "image")]
    with BatchDir.open(out, settings) as bdir:
        names = [bdir.output_name(m) for m in media]
        assert names == ["clip", "clip-2", "clip-3", "hidden", "manifest"]  # unique, never a dot name
        with pytest.raises(UserError, match="in use by another running mocap batch"):
            BatchDir.open(out, settings)
        bdir.record(media[0], output="clip", state="done", source_size=1, source_mtime_ns=1)
        bdir.record(media[1], output="clip-2", state="running")
    with open(out / MANIFEST, "a") as fh:
        fh.write('{"input": "/torn", "sta')  # a kill in the middle of a line
    with BatchDir.open(out, settings) as bdir:
        assert set(bdir.entries) == {media[0].key, media[1].key}
        assert bdir.entries[media[1].key]["state"] == "interrupted"
        assert bdir.output_name(media[1]) == "clip-2"  # kept across runs
        assert bdir.output_name(media[2]) == "clip-3"
        assert not bdir.is_done(media[0])  # the journal says done, but there is no result folder
    header, entries, bad = read_journal(out / MANIFEST)  # compacted: one line per input, torn line gone
    assert bad == 0 and len((out / MANIFEST).read_text().splitlines()) == 3
    with pytest.raises(UserError, match=r"other settings \(max_frames: 5 there, 9 now\)"):
        BatchDir.open(out, {**settings, "max_frames": 9})
    (out / "clip").mkdir()  # a result folder the manifest lists, and a file of the user's
    (out / "clip" / "x.npz").write_bytes(b"x")
    (out / "notes.txt").write_text("mine")
    with BatchDir.open(out, {**settings, "max_frames": 9}, overwrite=True) as bdir:  # start over
        assert bdir.entries == {}
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [MANIFEST, "notes.txt"]
    assert read_journal(out / MANIFEST)[0]["settings"]["max_frames"] == 9
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.txt").write_text("mine")
    with pytest.raises(UserError, match="not a mocap batch folder"):
        BatchDir.open(foreign, settings)
    with pytest.raises(UserError, match="only replaces a batch"):
        BatchDir.open(foreign, settings, overwrite=True)
    assert sorted(p.name for p in foreign.iterdir()) == [".lock", "results.txt"]  # nothing else written
    with pytest.raises(UserError, match="is a file"):
        BatchDir.open(foreign / "results.txt", settings)


# --------------------------------------------------------------------------------------------- stages


@pytest.mark.slow
def test_stage_split_gives_what_predict_gives(media_dir, s32_net, body_model):
    """The Ray stages (crop in the decoder, network over a stack of crops, predictions rebuilt per
    frame) equal Predictor.predict: bit for bit when the network sees the frame's crops alone,
    to float32 rounding when crops of several frames share a batch."""
    import cv2

    from engines.backends.torch_backend import TorchEngine
    from engines.inference import Predictor
    from realtime.batch.stages import CropChunk, EngineStage, crops_of_frame
    from engines import geometry as G

    predictor = Predictor(TorchEngine(s32_net), body_model)
    frames = [cv2.imread(str(media_dir / n)) for n in ("coco_000785_skier.jpg", "mpii_004645041.jpg")]
    boxes = [[np.array([270.0, 20, 240, 400]), np.array([2000.0, 0, 10, 10])],  # the second lies outside: skipped
             [np.array([500.0, 100, 300, 600]), np.array([700.0, 80, 200, 500])]]
    expected = [predictor.predict(f, b) for f, b in zip(frames, boxes)]
    chunks = []
    for i, (f, b) in enumerate(zip(frames, boxes)):
        fc, patches = crops_of_frame(i + 1, f, b)
        chunks.append(CropChunk([fc], G.to_input_batch(patches)))
    alone = [EngineStage(predictor, batch_size=8).infer([c])[0][0][1] for c in chunks]
    together = EngineStage(predictor, batch_size=8).infer(chunks)  # 3 crops of two frames in one forward
    for exp, one, both in zip(expected, alone, [r[0][1] for r in together]):
        assert [p.box_index for p in one] == [p.box_index for p in exp]
        for e, a, t in zip(exp, one, both):
            for k, v in e.npz_dict().items():
                np.testing.assert_array_equal(a.npz_dict()[k], v, err_msg=k)
                np.testing.assert_allclose(t.npz_dict()[k], v, atol=1e-4, rtol=0, err_msg=k)
            for attr in ("bbox", "bbox_detector", "focal", "princpt"):
                np.testing.assert_array_equal(getattr(t.person, attr), getattr(e.person, attr))
            np.testing.assert_array_equal(a.person.vertices, e.person.vertices)
            np.testing.assert_array_equal(a.rhand_bbox, e.rhand_bbox)
    assert len(expected[0]) == 1 and len(expected[1]) == 2


@pytest.mark.slow
def test_staged_path_writes_what_mocap_video_writes(tmp_path, media_dir, offline_reference, batch_ckpt, smplx_dir):
    """What the Ray tasks and writers run, without Ray: frames tracked by mocap video's own loop, crops
    made apart from the network, the network behind an engine stage, chunks written by InputWriter.
    With one frame's crops per forward (as when one input is in flight) the files are byte-identical."""
    from engines.inference import Predictor
    from realtime.batch.stages import EngineStage, InputStart, InputWriter, PeopleChunk, crop_predictor, track_and_predict
    from viewers.mesh_overlay import PersonOverlay

    predictor = Predictor.from_files(batch_ckpt, smplx_dir)
    stage = EngineStage(predictor, batch_size=16)
    predict = crop_predictor(lambda chunk: stage.infer([chunk])[0])
    for name in ("posetrack_1280x720.mp4", "astronaut.png"):
        kind = "image" if name.endswith(".png") else "video"
        out = tmp_path / Path(name).stem
        items = list(track_and_predict(media_dir / name, kind, predict, max_people=10, chunk_frames=2))
        assert isinstance(items[0], InputStart) and [type(i) for i in items[1:-1]] == [PeopleChunk] * (len(items) - 2)
        overlay = PersonOverlay(predictor.body_model.faces)
        writer = InputWriter(out, media_dir / name, items[0], predictor.body_model.faces, False, overlay)
        assert sum(writer.write(chunk) for chunk in items[1:-1]) == items[-1].frames
        writer.close(items[-1])
        overlay.close()
        assert_same_results(offline_reference[name], out, exact=True)


# --------------------------------------------------------------------------------------------- local runs


@pytest.mark.slow
def test_local_batch_equals_mocap_video_and_resumes(tmp_path, media_dir, offline_reference, model_args, smplx_dir):
    """One worker: every result folder byte-identical to mocap video / mocap image (several people,
    track ids; overlays equal in pixels), the --export files equal to mocap convert's up to float64
    rounding; the corrupt and the empty
    file are reported and fail alone; a rerun redoes nothing that is done."""
    from realtime.animation.convert import convert

    bad = tmp_path / "bad"
    bad.mkdir()
    corrupt = corrupt_clip(bad)
    (bad / "empty.mp4").write_bytes(b"")
    out = tmp_path / "out"
    args = [str(media_dir / n) for n in BATCH_MEDIA] + [str(bad), "--out", str(out), "--workers", "1", *model_args,
                                                         "--export", "bvh", "npz"]
    assert main(["batch", *args]) == 1  # something failed
    entries = manifest_entries(out)
    for name, ref in offline_reference.items():
        folder = out / Path(name).stem
        exports = entries[str((media_dir / name).resolve())]["exports"]
        assert_same_results(ref, folder, exact=True, extra=exports)
        expected = tmp_path / "convert" / Path(name).stem
        expected.mkdir(parents=True)
        for fmt in ("bvh", "npz"):
            convert(ref, expected / f"{Path(name).stem}.{fmt}", to=fmt, body_models=smplx_dir)
        assert sorted(exports) == sorted(p.name for p in expected.iterdir()) and exports
        for f in exports:  # the export's float64 maths rounds differently in another process
            assert_same_file(expected / f, folder / f, f)
    assert len(manifest_entries(out)[str((media_dir / BATCH_MEDIA[0]).resolve())]["exports"]) > 2  # one per person
    assert entries[str(corrupt)]["state"] == "failed"
    assert "cannot open video" in entries[str(corrupt)]["error"]
    assert "empty file (0 bytes)" in entries[str((bad / "empty.mp4").resolve())]["error"]
    assert not (out / "corrupt").exists() and not (out / "empty").exists()
    done = {k: e for k, e in entries.items() if e["state"] == "done"}
    assert len(done) == 3 and {e["frames"] for e in done.values()} == {5, 1}
    assert list((out / ".tmp").iterdir()) == []

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out and ".logs" not in p.parts}
    assert main(["batch", *args]) == 1  # the corrupt file is retried and fails again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing done was rewritten
    again = manifest_entries(out)
    assert all(again[k]["updated"] == e["updated"] for k, e in done.items())
    assert again[str(corrupt)]["updated"] >= entries[str(corrupt)]["updated"]


@pytest.mark.slow
def test_two_workers_and_a_worker_that_dies(tmp_path, media_dir, offline_reference, model_args):
    """Two worker processes share the cores (results equal to float32 rounding); a worker killed in
    the middle of an input fails only that input, a new worker takes the rest, a rerun finishes it."""
    out = tmp_path / "out"
    inputs = [str(media_dir / n) for n in BATCH_MEDIA]
    args = ["batch", *inputs, "--out", str(out), "--no-progress", *model_args]
    proc = mocap_subprocess(args + ["--workers", "2"])
    street = str((media_dir / BATCH_MEDIA[0]).resolve())

    def street_worker():
        for e in journal_lines(out):
            if e["input"] == street and e["state"] == "running":
                return int(e["worker"].split()[1])

    victim = wait_for(street_worker, 300, "a worker to take the first clip")
    os.kill(victim, signal.SIGKILL)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, output
    entries = manifest_entries(out)
    assert entries[street]["state"] == "failed"
    assert entries[street]["error"] == "worker process died (killed by signal 9) while processing this input"
    assert "worker process died" in output
    for name in BATCH_MEDIA[1:]:
        assert entries[str((media_dir / name).resolve())]["state"] == "done"
        assert_same_results(offline_reference[name], out / Path(name).stem, exact=False)
    assert not (out / Path(BATCH_MEDIA[0]).stem).exists()

    assert main(args + ["--workers", "1"]) == 0  # rerun with one worker: only the clip is redone
    assert_same_results(offline_reference[BATCH_MEDIA[0]], out / Path(BATCH_MEDIA[0]).stem, exact=True)


@pytest.mark.slow
def test_kill_in_the_middle_then_resume(tmp_path, media_dir, model_args):
    """SIGKILL of mocap batch after its first input: no worker survives it, nothing half-written is
    in place, and the rerun finishes the rest without redoing the first."""
    out = tmp_path / "out"
    names = ["astronaut.png", "street_walk_960x540.mp4", "posetrack_1280x720.mp4"]
    args = ["batch", *[str(media_dir / n) for n in names], "--out", str(out), "--workers", "1", "--no-overlay",
            "--max-frames", "2", "--max-people", "1", "--no-progress", *model_args]
    proc = mocap_subprocess(args)
    first = str((media_dir / names[0]).resolve())
    wait_for(lambda: any(e["input"] == first and e["state"] == "done" for e in journal_lines(out)), 300,
             "the first input to be done")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    workers = {int(e["worker"].split()[1]) for e in journal_lines(out) if e.get("worker", "").startswith("pid")}
    wait_for(lambda: not any(pid_alive(p) for p in workers), 30, "the workers to die with the batch")
    done_before = {k for k, e in manifest_entries(out).items() if e["state"] == "done"}
    assert first in done_before and len(done_before) < len(names)  # killed in the middle
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [MANIFEST] + [Path(k).stem for k in done_before])  # only complete folders are in place
    kept = out / "astronaut" / "smplx" / "astronaut_0.npz"
    stamp = (kept.stat().st_mtime_ns, kept.stat().st_ino)
    updated = manifest_entries(out)[first]["updated"]

    assert main(args) == 0
    entries = manifest_entries(out)
    assert all(e["state"] == "done" for e in entries.values()) and len(entries) == 3
    assert (kept.stat().st_mtime_ns, kept.stat().st_ino) == stamp and entries[first]["updated"] == updated
    assert [entries[str((media_dir / n).resolve())]["frames"] for n in names] == [1, 2, 2]
    assert all(list((out / Path(n).stem / "smplx").glob("*.npz")) for n in names)
    assert list((out / ".tmp").iterdir()) == []


def test_batch_user_errors(tmp_path, media_dir, model_args, capsys):
    clip = str(media_dir / "astronaut.png")
    assert main(["batch", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), *model_args]) == 2
    assert "nothing to process: not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), *model_args]) == 2
    assert "no image or video files in folder" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.npz").write_bytes(b"x")
    assert main(["batch", clip, "--out", str(other), *model_args]) == 2
    assert "not a mocap batch folder" in capsys.readouterr().err
    assert main(["batch", clip, "--out", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "no.pth.tar"),
                 "--body-models", model_args[3]]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written for a batch that cannot start
    assert main(["batch", clip, "--out", str(tmp_path / "o"), "--workers", "0", *model_args]) == 2
