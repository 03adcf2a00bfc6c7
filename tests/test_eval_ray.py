"""``mocap eval --ray`` on a real local Ray instance (one for the module: Ray takes seconds to start):
the metrics of a one-process run, predictions saved as they arrive and resumed, the driver killed
and the run resumed, a bad address refused before anything is written."""
from __future__ import annotations

import json
import signal
import socket

import pytest

pytestmark = pytest.mark.slow  # a real Ray instance and end-to-end evaluations

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install '.[batch]'")

from realtime.cli import main  # noqa: E402
from realtime.research.evaluate import EvalOptions, run_evaluation  # noqa: E402
from tests import eval_layouts as L  # noqa: E402

from .helpers import local_ray, mocap_subprocess, wait_for  # noqa: E402
from .test_eval_datasets import bm, ehf_root, eval_bm, photos  # noqa: E402,F401  (fixtures)


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance with three logical CPUs (the batch plan: two engine actors of one CPU),
    shared by this module's tests; its GCS address."""
    yield from local_ray(3)


def _saved(folder):
    """Saved predictions (not a file being written): name -> (mtime, inode)."""
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (folder / "samples").glob("*.npz")
            if not p.name.endswith(".part.npz")}


def test_ray_gives_the_metrics_of_one_process_and_resumes(ray_address, tmp_path, ehf_root, eval_bm, s32_ckpt):
    root, _ = ehf_root
    base = dict(dataset="EHF", data_dir=str(root), checkpoint=str(s32_ckpt), body_models=str(eval_bm),
                progress=False, batch_size=1)
    one = run_evaluation(EvalOptions(**base))
    preds = tmp_path / "preds"
    common = ["eval", "--dataset", "EHF", "--data-dir", str(root), "--checkpoint", str(s32_ckpt), "--body-models",
              str(eval_bm), "--batch-size", "1", "--save-predictions", str(preds), "--no-progress"]
    assert main(common + ["--json", str(tmp_path / "ray.json"), "--ray", ray_address]) == 0
    on_ray = json.loads((tmp_path / "ray.json").read_text())
    assert on_ray["samples"] == one["samples"] == 3 and on_ray["resumed_predictions"] == 0
    assert on_ray["official_batch_quirk_samples"] == one["official_batch_quirk_samples"] == 3
    assert set(on_ray["metrics"]) == set(one["metrics"])
    # the actors run the same batches with one thread each: the forward rounds differently in the last
    # float32 bits, nothing more
    for key, value in one["metrics"].items():
        assert on_ray["metrics"][key] == pytest.approx(value, abs=1e-3), key
    assert "ray" not in on_ray["options"] and "workers" not in on_ray["options"]

    # three shards went to the two actors, and this process saved every prediction
    saved = _saved(preds)
    assert sorted(saved) == ["0000000.npz", "0000001.npz", "0000002.npz"]
    assert not list((preds / "samples").glob("*.part.npz"))
    # a run cut short (two predictions missing) resumes: only those are predicted again, on the running
    # instance (--ray without an address inside a process already connected), the numbers unchanged
    (preds / "samples" / "0000000.npz").unlink()
    (preds / "samples" / "0000002.npz").unlink()
    assert main(common + ["--json", str(tmp_path / "again.json"), "--ray"]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["resumed_predictions"] == 1 and again["samples"] == 3
    assert _saved(preds)["0000001.npz"] == saved["0000001.npz"]  # not rewritten
    for key, value in on_ray["metrics"].items():
        assert again["metrics"][key] == pytest.approx(value, abs=1e-3), key
    # everything saved: nothing reaches Ray, the numbers are those of the saved predictions, to the bit
    assert main(common + ["--json", str(tmp_path / "third.json"), "--ray", ray_address]) == 0
    third = json.loads((tmp_path / "third.json").read_text())
    assert third["resumed_predictions"] == 3 and third["metrics"] == again["metrics"]


def test_ray_driver_killed_then_resumed(ray_address, tmp_path, photos, bm, eval_bm, s32_ckpt):  # noqa: F811
    """mocap eval joins the running instance by address, is SIGKILLed once the first predictions are
    saved, and the same command finishes the rest without predicting the saved ones again."""
    root = tmp_path / "ehf8"
    L.write_ehf(root, (photos * 2)[:8], bm, seed=3)
    preds = tmp_path / "preds"
    args = ["eval", "--dataset", "EHF", "--data-dir", str(root), "--checkpoint", str(s32_ckpt), "--body-models",
            str(eval_bm), "--batch-size", "1", "--save-predictions", str(preds), "--no-progress"]
    proc = mocap_subprocess(args + ["--ray", ray_address])
    try:
        wait_for(lambda: (preds / "samples").is_dir() and _saved(preds), 300,
                 "the first prediction saved on Ray")
    finally:
        proc.send_signal(signal.SIGKILL)
        output, _ = proc.communicate(timeout=60)
    before = _saved(preds)
    assert 1 <= len(before) < 8, output
    assert main(args + ["--json", str(tmp_path / "done.json"), "--ray", ray_address]) == 0
    done = json.loads((tmp_path / "done.json").read_text())
    assert done["samples"] == 8 and done["resumed_predictions"] == len(before)
    after = _saved(preds)
    assert len(after) == 8 and {k: after[k] for k in before} == before


def test_bad_ray_address_is_refused_before_anything_is_written(tmp_path, ehf_root, eval_bm, s32_ckpt, capsys):
    root, _ = ehf_root
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["eval", "--dataset", "EHF", "--data-dir", str(root), "--checkpoint", str(s32_ckpt), "--body-models",
            str(eval_bm), "--save-predictions", str(tmp_path / "preds")]
    assert main(args + ["--ray", f"127.0.0.1:{port}"]) == 2
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(args + ["--ray", "head-without-port"]) == 2
    assert "bad --ray address 'head-without-port'" in capsys.readouterr().err
    assert not (tmp_path / "preds").exists()
