"""The AOTInductor engine on the CPU: `mocap export --to aoti` compiles a random-weight S32 into a
.pt2 package with its build record; the package loads, runs in the predictor's device path and
matches the PyTorch engine; the cache finds it; a package built for another torch or a cut
package is refused with one line; `auto` on CUDA prefers a usable package and otherwise names why
not. One compile (minutes on 2 cores): marked slow. The rule tests need no compile."""
from __future__ import annotations

import json
import logging
import shutil
import time

import numpy as np
import pytest
import torch

import engines.backends as backends
from engines.backends import OUTPUT_NAMES, load_engine
from engines.backends.aoti_backend import AotiPackageError, build_facts, package_problem, record_path
from engines.errors import UserError

#: |AOTInductor - eager PyTorch| per output, relative to max(1, max |eager|) (the ONNX check's bound).
RTOL = 1e-3


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("aoti_cache")
    mp.setenv("MOCAP_CACHE_DIR", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def package(s32_ckpt, cache, tmp_path_factory):
    """`mocap export --to aoti` on the CPU (the one compile of this file) and its wall time."""
    from realtime.cli import main

    out = tmp_path_factory.mktemp("aoti") / "s32.pt2"
    t0 = time.perf_counter()
    assert main(["export", "--checkpoint", str(s32_ckpt), "--to", "aoti", "--device", "cpu", "--out", str(out)]) == 0
    return out, time.perf_counter() - t0


@pytest.mark.slow
def test_package_loads_runs_and_matches_torch(package, s32_net, body_model, media_dir):
    import cv2

    from engines.backends.torch_backend import TorchEngine
    from engines.inference import Predictor

    path, compile_s = package
    record = json.loads(record_path(path).read_text())
    assert record["format"] == "aoti" and record["precision"] == "fp32" and record["variant"] == "s32"
    assert {k: record[k] for k in ("torch", "cuda", "device", "target")} == build_facts("cpu")
    t0 = time.perf_counter()
    engine = load_engine(path, "aoti", "cpu")
    load_s = time.perf_counter() - t0
    print(f"\nAOTInductor S32 on CPU: compile {compile_s:.0f} s, load {load_s:.2f} s")
    assert engine.name == "aoti" and engine.precision == "fp32" and not engine.cuda_graph
    img = torch.rand(3, 3, 512, 384, generator=torch.Generator().manual_seed(4))  # a batch the trace never saw
    got = engine.run({"img": img.numpy()})
    ref = TorchEngine(s32_net).run({"img": img.numpy()})
    for k in OUTPUT_NAMES:
        assert got[k].shape == ref[k].shape
        assert np.abs(got[k] - ref[k]).max() <= RTOL * max(1.0, np.abs(ref[k]).max()), k
    frame = cv2.imread(str(media_dir / "coco_000785_skier.jpg"))
    boxes = [(280.0, 44.0, 220.0, 348.0), (10.0, 20.0, 200.0, 300.0)]
    people = Predictor(engine, body_model, device_path=True).predict(frame, boxes)
    official = Predictor(TorchEngine(s32_net), body_model).predict(frame, boxes)
    for a, b in zip(people, official):
        np.testing.assert_allclose(a.person.params.body_pose, b.person.params.body_pose, atol=2e-3)
        np.testing.assert_allclose(a.person.vertices, b.person.vertices, atol=2e-3)


@pytest.mark.slow
def test_cache_uses_an_exported_package_without_compiling(package, s32_ckpt, cache, monkeypatch):
    import engines.export

    path, _ = package
    target = backends.cached_aoti_path(s32_ckpt, "cpu", "fp32")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, target)
    shutil.copy(record_path(path), record_path(target))

    def no_compile(*a, **k):
        raise AssertionError("compiled although a usable package is cached")

    monkeypatch.setattr(engines.export, "torch_to_aoti", no_compile)
    assert load_engine(s32_ckpt, "aoti", "cpu").path == target


@pytest.mark.slow
def test_foreign_or_cut_package_is_refused_in_one_line(package, tmp_path):
    path, _ = package
    foreign = tmp_path / "foreign.pt2"
    shutil.copy(path, foreign)
    record = json.loads(record_path(path).read_text())
    record_path(foreign).write_text(json.dumps(dict(record, torch="1.0.0")))
    with pytest.raises(UserError, match=r"built for torch '1.0.0', this machine has") as err:
        load_engine(foreign, "aoti", "cpu")
    assert "\n" not in str(err.value)
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(path.read_bytes()[: 1 << 20])
    record_path(cut).write_text(record_path(path).read_text())
    with pytest.raises(AotiPackageError, match="not a loadable AOTInductor package") as err:
        load_engine(cut, "aoti", "cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(AotiPackageError, match="no build record"):
        shutil.copy(path, tmp_path / "bare.pt2")
        load_engine(tmp_path / "bare.pt2", "aoti", "cpu")


def _fake_cuda_package(ckpt, **changes):
    """A cached 'CUDA' package: a placeholder file and a record claiming this machine's CUDA build."""
    path = backends.cached_aoti_path(ckpt, "cuda", "fp16")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"placeholder")
    facts = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": "cuda", "target": "GPU sm_90"}
    record_path(path).write_text(json.dumps({"format": "aoti", "precision": "fp16", **facts, **changes}))
    return path


def test_auto_on_cuda_prefers_a_usable_package_and_names_why_not(s32_ckpt, cache, monkeypatch, caplog):
    import engines.backends.aoti_backend as aoti

    monkeypatch.setattr(backends, "_cuda_available", lambda: True)
    monkeypatch.setattr(backends, "_tensorrt_importable", lambda: False)
    monkeypatch.setattr(aoti, "build_facts", lambda device: {"torch": torch.__version__, "cuda": torch.version.cuda,
                                                             "device": "cuda", "target": "GPU sm_90"})
    assert backends.auto_kind(s32_ckpt, "cuda") == "torch"  # nothing cached
    path = _fake_cuda_package(s32_ckpt)
    assert backends.auto_kind(s32_ckpt, "cuda") == "aoti"
    assert backends.auto_kind(s32_ckpt, "cuda", "fp32") == "torch"  # no fp32 package
    assert package_problem(path, "cuda") is None
    _fake_cuda_package(s32_ckpt, torch="2.0.0")
    assert backends.auto_kind(s32_ckpt, "cuda") == "torch"
    assert "built for torch '2.0.0'" in backends._usable_aoti(s32_ckpt, "fp16")[1]
    path.unlink()
    record_path(path).unlink()


def test_export_to_aoti_refuses_cuda_without_a_gpu_and_a_wrong_name(s32_ckpt, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    from realtime.cli import main

    assert main(["export", "--checkpoint", str(s32_ckpt), "--to", "aoti", "--device", "cuda"]) != 0
    assert "no CUDA device" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(s32_ckpt), "--to", "aoti", "--out", str(tmp_path / "x.onnx")]) != 0
    assert "*.pt2" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_auto_on_cuda_falls_back_with_one_line_reason(s32_ckpt, cache, monkeypatch, caplog):
    """A cached package that does not load, or one built for another torch: one warning line naming
    why, then the PyTorch engine (which, on this machine without CUDA, refuses --device cuda)."""
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the fallback would succeed, this test checks the refusal after it")
    import engines.backends.aoti_backend as aoti

    monkeypatch.setattr(backends, "_cuda_available", lambda: True)
    monkeypatch.setattr(backends, "_tensorrt_importable", lambda: False)
    monkeypatch.setattr(aoti, "build_facts", lambda device: {"torch": torch.__version__, "cuda": torch.version.cuda,
                                                             "device": "cuda", "target": "GPU sm_90"})

    def cut(self, path, *a, **k):
        raise AotiPackageError(f"{path} is not a loadable AOTInductor package (RuntimeError: zip archive)\nmore")

    monkeypatch.setattr(aoti.AotiEngine, "__init__", cut)
    path = _fake_cuda_package(s32_ckpt)
    for expected in ("not a loadable AOTInductor package (RuntimeError: zip archive)", "built for torch '2.0.0'"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="engines.backends"), \
                pytest.raises(RuntimeError, match="no CUDA device"):
            load_engine(s32_ckpt, "auto", "cuda")
        lines = [r.getMessage() for r in caplog.records if "AOTInductor package not used" in r.getMessage()]
        assert len(lines) == 1 and expected in lines[0] and lines[0].endswith("; using PyTorch"), lines
        assert "\n" not in lines[0]
        _fake_cuda_package(s32_ckpt, torch="2.0.0")
    path.unlink()
    record_path(path).unlink()
