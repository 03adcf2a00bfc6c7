"""mocap batch on a real local Ray instance (one for the module: Ray takes seconds to start):
results equal to mocap video / mocap image, a corrupt file reported, SIGKILL of the driver and
resume, resource planning, an unreachable cluster."""
from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a real Ray instance and end-to-end batches

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install '.[batch]'")

from engines.errors import UserError  # noqa: E402
from realtime.batch.ray_runner import plan_resources  # noqa: E402
from realtime.cli import main  # noqa: E402

from .conftest import BATCH_MEDIA  # noqa: E402
from .helpers import local_ray, assert_same_results, mocap_subprocess, wait_for  # noqa: E402
from .test_batch import corrupt_clip, journal_lines, manifest_entries  # noqa: E402


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance with two CPUs, shared by this module's tests; its GCS address."""
    yield from local_ray(2)


@pytest.fixture(scope="module")
def model_args(batch_ckpt, smplx_dir):
    return ["--checkpoint", str(batch_ckpt), "--body-models", str(smplx_dir)]


def test_ray_batch_equals_mocap_video(ray_address, tmp_path, media_dir, offline_reference, model_args):
    """Decode/detect tasks, an engine actor batching crops of several frames and inputs, writers:
    the same files as mocap video / mocap image, the same boxes and cameras, parameters equal to
    float32 rounding; the corrupt file fails alone; a rerun (here with local workers: the same
    manifest) does nothing twice."""
    corrupt = corrupt_clip(tmp_path)
    out = tmp_path / "out"
    args = ["batch", *[str(media_dir / n) for n in BATCH_MEDIA], str(corrupt), "--out", str(out), "--ray",
            "--batch-size", "3", *model_args, "--export", "bvh"]
    assert main(args) == 1
    entries = manifest_entries(out)
    for name, ref in offline_reference.items():
        exports = entries[str((media_dir / name).resolve())]["exports"]
        assert exports and all(f.endswith(".bvh") and (out / Path(name).stem / f).is_file() for f in exports)
        assert_same_results(ref, out / Path(name).stem, exact=False, extra=exports)
    assert entries[str(corrupt)]["state"] == "failed" and "cannot open video" in entries[str(corrupt)]["error"]
    assert sorted(e["frames"] for e in entries.values() if e["state"] == "done") == [1, 5, 5]
    assert {e["worker"] for e in entries.values()} == {"ray"}
    assert list((out / ".tmp").iterdir()) == []

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}
    local = [a for a in args if a not in ("--ray", "--batch-size", "3")]
    assert main(local + ["--workers", "1"]) == 1  # resumed locally: only the corrupt file is tried again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert manifest_entries(out)[str(corrupt)]["worker"].startswith("pid ")


def test_ray_driver_killed_then_resumed(ray_address, tmp_path, media_dir, model_args):
    """mocap batch joins the running instance by address, is SIGKILLed after its first input, and a
    rerun finishes the rest without redoing the first."""
    out = tmp_path / "out"
    names = ["astronaut.png", "street_walk_960x540.mp4", "posetrack_1280x720.mp4"]
    inputs = [str(media_dir / n) for n in names]
    common = ["--out", str(out), "--no-overlay", "--max-frames", "2", "--max-people", "1", "--no-progress", *model_args]
    proc = mocap_subprocess(["batch", *inputs, *common, "--ray", ray_address])
    first = str((media_dir / names[0]).resolve())
    try:
        wait_for(lambda: any(e["input"] == first and e["state"] == "done" for e in journal_lines(out)), 300,
                 "the first input to be done on Ray")
    finally:
        proc.send_signal(signal.SIGKILL)
        output, _ = proc.communicate(timeout=60)
    done_before = {k for k, e in manifest_entries(out).items() if e["state"] == "done"}
    assert first in done_before and len(done_before) < len(names), output
    kept = out / "astronaut" / "smplx" / "astronaut_0.npz"
    stamp = (kept.stat().st_mtime_ns, kept.stat().st_ino)

    assert main(["batch", *inputs, *common, "--ray"]) == 0
    entries = manifest_entries(out)
    assert all(e["state"] == "done" for e in entries.values()) and len(entries) == 3
    assert (kept.stat().st_mtime_ns, kept.stat().st_ino) == stamp
    assert [entries[str((media_dir / n).resolve())]["frames"] for n in names] == [1, 2, 2]
    assert all(list((out / Path(n).stem / "smplx").glob("*.npz")) for n in names)


def test_unreachable_cluster_is_a_clear_error(tmp_path, media_dir, model_args, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["batch", str(media_dir / "astronaut.png"), "--out", str(tmp_path / "o"), *model_args,
                 "--ray", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err
    assert not (tmp_path / "o").exists()  # refused before anything was written
    assert main(["batch", str(media_dir / "astronaut.png"), "--out", str(tmp_path / "o"), *model_args,
                 "--ray", "ray://head:10001"]) == 2
    assert "Ray Client addresses (ray://) are not supported" in capsys.readouterr().err


def test_resource_plan():
    gpu = plan_resources(cluster_cpus=64, cluster_gpus=8, driver_cpus=16, device="cuda")
    assert (gpu.engines, gpu.engine_gpus, gpu.engine_cpus, gpu.active) == (8, 1, 1, 16)
    small = plan_resources(cluster_cpus=2, cluster_gpus=0, driver_cpus=2, device="cpu")
    assert (small.engines, small.engine_cpus, small.active) == (1, 1, 2)
    cpu = plan_resources(cluster_cpus=16, cluster_gpus=0, driver_cpus=16, device="cpu")
    assert cpu.engines * cpu.engine_cpus < 16 and cpu.engines == 6
    with pytest.raises(UserError, match="no GPU"):
        plan_resources(8, 0, 8, "cuda")
    with pytest.raises(UserError, match="too few"):
        plan_resources(2, 0, 2, "cpu", engines=2)
