"""The predictor's device path on the CPU, through a fake device engine: the PyTorch engine with
CUDA graphs switched on, whose graph capture is emulated on the CPU (captured once into static
buffers, replayed by recomputing into them) or made to fail. This reaches what only a GPU reached
before: the overflow recompute of a captured forward, and both "capture failed, run eagerly"
fallbacks (the network's and the SMPL-X layer's). The reference is the same device path without
graphs on a plain CPU engine."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils._pytree import tree_flatten

from engines.backends.base import Engine
from engines.backends.cuda_graph import CudaGraphed
from engines.backends.torch_backend import TorchEngine
from engines.inference import Predictor

BOXES = [(280.0, 44.0, 220.0, 348.0), (10.0, 20.0, 200.0, 300.0)]


class FakeDeviceEngine(TorchEngine):
    """The PyTorch engine on the CPU acting as a CUDA-graph device engine (``cuda_graph`` on,
    RoIAlign grid bound ``grid_cap``); counts its overflow recomputes."""

    def __init__(self, net, grid_cap: int = 16):
        super().__init__(net)
        self.cuda_graph = True
        self.grid_cap = grid_cap
        self.recomputes = 0

    def recompute(self, img):
        self.recomputes += 1
        return super().recompute(img)


class _ReplayOnCpu:
    """Stands in for ``torch.cuda.CUDAGraph``: replay recomputes the function on the static inputs
    and writes into the static outputs, so callers see graph semantics (outputs overwritten)."""

    def __init__(self, fn, static_in, static_out):
        self.fn, self.static_in, self.static_out = fn, static_in, static_out
        self.replays = 0

    def replay(self):
        self.replays += 1
        fresh, _ = tree_flatten(self.fn(*self.static_in))
        kept, _ = tree_flatten(self.static_out)
        for buf, new in zip(kept, fresh):
            if buf is not None:
                buf.copy_(new)


def _capture_on_cpu(self, inputs):
    static_in = [t.detach().clone() for t in inputs]
    static_out = self.fn(*static_in)
    graph = _ReplayOnCpu(self.fn, static_in, static_out)
    CAPTURED.append((self.name, graph))
    return graph, static_in, static_out


CAPTURED: list = []


@pytest.fixture()
def frame(media_dir):
    import cv2

    return cv2.imread(str(media_dir / "coco_000785_skier.jpg"))


@pytest.fixture()
def reference(s32_net, body_model, frame):
    """The device path without graphs (a plain CPU engine)."""
    return Predictor(TorchEngine(s32_net), body_model, device_path=True).predict(frame, BOXES)


def _same(got, ref, exact: bool):
    assert len(got) == len(ref) == 2
    for g, r in zip(got, ref):
        pairs = [(g.person.params.to_dict()[k], v) for k, v in r.person.params.to_dict().items()]
        pairs += [(g.person.vertices, r.person.vertices), (g.person.joints, r.person.joints),
                  (g.lhand_bbox, r.lhand_bbox), (g.face_bbox, r.face_bbox)]
        for a, b in pairs:
            if exact:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


class HostEngine(Engine):
    """An engine that computes on the host and has no launch of its own (like ONNX Runtime on
    the CPU): it inherits the base launch."""

    name = "host"

    def __init__(self, net):
        self.inner = TorchEngine(net)

    def run(self, inputs):
        return self.inner.run(inputs)


def test_predictor_path_follows_the_engine_device(s32_net, body_model):
    engine = HostEngine(s32_net)
    assert not Predictor(engine, body_model).is_async  # a CPU engine: the official path
    engine.device = "meta"  # stands for "cuda": any backend on a device takes the device path
    assert Predictor(engine, body_model).is_async


def test_captured_forward_replays_and_matches_eager(s32_net, body_model, frame, reference, monkeypatch):
    monkeypatch.setattr(CudaGraphed, "_capture", _capture_on_cpu)
    CAPTURED.clear()
    engine = FakeDeviceEngine(s32_net)
    pred = Predictor(engine, body_model, device_path=True)
    for _ in range(2):  # the second call replays the graphs captured by the first
        _same(pred.predict(frame, BOXES), reference, exact=False)
    assert sorted(name for name, _ in CAPTURED) == ["SMPL-X layer", "network"]
    assert all(graph.replays == 2 for _, graph in CAPTURED)
    assert engine.recomputes == 0 and engine.cuda_graph and not pred._cuda._body_call.disabled


@pytest.mark.slow
def test_overflow_of_the_captured_grid_is_recomputed_eagerly(s32_net, body_model, frame, reference, monkeypatch):
    """A grid bound of zero samples per bin: every hand box overflows it (random weights predict
    hand boxes too small to overflow the real bound of 16), the captured forward flags that, and
    the predictor recomputes the frame with the eager forward: the reference, exactly."""
    monkeypatch.setattr(CudaGraphed, "_capture", _capture_on_cpu)
    engine = FakeDeviceEngine(s32_net, grid_cap=0)
    pred = Predictor(engine, body_model, device_path=True)
    got = pred.predict(frame, BOXES)
    assert engine.recomputes == 1
    _same(got, reference, exact=True)
    _, overflow = engine.launch(torch.rand(1, 3, 512, 384, generator=torch.Generator().manual_seed(0)))
    assert overflow is not None and bool(overflow)
    assert engine.forward_tensor(torch.zeros(1, 3, 512, 384)) is not None and engine.recomputes == 2


@pytest.mark.parametrize("failing", ["network", "SMPL-X layer"])
def test_capture_failure_runs_eagerly_with_the_same_results(s32_net, body_model, frame, reference, monkeypatch,
                                                            caplog, failing):
    def capture(self, inputs):
        if self.name == failing:
            raise RuntimeError("operation not permitted when stream is capturing")
        return _capture_on_cpu(self, inputs)

    monkeypatch.setattr(CudaGraphed, "_capture", capture)
    engine = FakeDeviceEngine(s32_net)
    pred = Predictor(engine, body_model, device_path=True)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            _same(pred.predict(frame, BOXES), reference, exact=False)
    warnings = [r.getMessage() for r in caplog.records if "capture failed" in r.getMessage()]
    assert warnings == [f"{failing}: CUDA graph capture failed (operation not permitted when stream is capturing); "
                        "running eagerly"]  # once, not per frame
    assert engine.cuda_graph is (failing != "network")
    assert pred._cuda._body_call.disabled is (failing == "SMPL-X layer")


def test_host_engine_launch_gives_device_tensors(s32_net):
    """The base launch (engines that compute on the host, e.g. ONNX Runtime on the CPU) returns the
    outputs of ``run`` as tensors, never an overflow."""
    img = torch.rand(2, 3, 512, 384, generator=torch.Generator().manual_seed(1))
    out, overflow = HostEngine(s32_net).launch(img)
    ref = TorchEngine(s32_net).run({"img": img.numpy()})
    assert overflow is None
    for k, v in ref.items():
        assert isinstance(out[k], torch.Tensor)
        np.testing.assert_array_equal(out[k].numpy(), v)


def test_host_engine_through_the_device_path_equals_the_official_path(s32_net, body_model, frame, reference):
    got = Predictor(HostEngine(s32_net), body_model, device_path=True).predict(frame, BOXES)
    _same(got, reference, exact=True)
