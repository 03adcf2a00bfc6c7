"""Engines: exact CPU rewrites, RoIAlign export, ONNX export + ONNX Runtime parity, backends,
TensorRT up to the build, the export/bench commands. GPU tests are marked and skipped without CUDA."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from engines.backends import OUTPUT_NAMES, cached_onnx, load_engine
from engines.optimize import (SubPixelConv2x2, SubPixelConv3x3, deconv_to_subpixel, fold_batchnorm,
                              optimize_for_cpu)
from engines.roi_align import _roi_align_eager, roi_align, roi_align_op, roi_align_reference, static_grid

HAS_CUDA = torch.cuda.is_available()


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def s32(s32_net):
    return s32_net


@pytest.fixture(scope="module")
def s32_onnx(s32_ckpt, onnx_cache):
    """The optimised S32 exported once per run into the session's cache (export includes the check
    against eager PyTorch), with MOCAP_CACHE_DIR pointing there for this module; the tests that
    need it are marked slow."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MOCAP_CACHE_DIR", str(onnx_cache))
    yield cached_onnx(s32_ckpt)
    mp.undo()


@pytest.fixture(scope="module")
def img2():
    return torch.rand(2, 3, 512, 384, generator=torch.Generator().manual_seed(3))


# --------------------------------------------------------------------------- rewrites
@pytest.mark.parametrize("layout", ["3x3", "2x2"])
@pytest.mark.parametrize("cin,cout,h,w,bias", [(5, 7, 4, 3, False), (32, 16, 16, 12, True), (3, 2, 1, 1, False)])
def test_subpixel_deconv_equals_transposed_conv(layout, cin, cout, h, w, bias):
    torch.manual_seed(cin)
    d = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias)
    x = torch.randn(2, cin, h, w)
    mod = (SubPixelConv3x3 if layout == "3x3" else SubPixelConv2x2)(d)
    with torch.no_grad():
        ref, got = d(x), mod(x)
    assert got.shape == ref.shape
    assert _rel(got, ref) < 1e-5


@pytest.mark.parametrize("deconv", [True, False])
def test_fold_batchnorm_equals_eval_bn(deconv):
    torch.manual_seed(1)
    conv = nn.ConvTranspose2d(6, 8, 4, 2, 1, bias=False) if deconv else nn.Conv2d(6, 8, 1)
    seq = nn.Sequential(conv, nn.BatchNorm2d(8), nn.ReLU())
    bn = seq[1]
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.3, 2.0)
    bn.weight.data.normal_()
    bn.bias.data.normal_()
    seq.eval()
    x = torch.randn(2, 6, 5, 4)
    with torch.no_grad():
        ref = seq(x)
        folded = copy.deepcopy(seq)
        assert fold_batchnorm(folded) == 1
        assert isinstance(folded[1], nn.Identity)
        assert _rel(folded(x), ref) < 1e-5
        if deconv:
            assert deconv_to_subpixel(folded) == 1
            assert _rel(folded(x), ref) < 1e-5


@pytest.mark.slow
def test_optimized_network_matches_eager(s32, img2):
    opt = optimize_for_cpu(s32)
    assert not any(isinstance(m, (nn.ConvTranspose2d, nn.BatchNorm2d)) for m in opt.modules())
    with torch.inference_mode():
        ref, got = s32(img2), opt(img2)
    for k in OUTPUT_NAMES:
        assert _rel(got[k], ref[k]) < 1e-4, k
    # the original network is untouched
    assert any(isinstance(m, nn.ConvTranspose2d) for m in s32.modules())


# --------------------------------------------------------------------------- RoIAlign
def _boxes():
    return torch.tensor([
        [0, 3.2, 5.1, 20.7, 30.3],       # ordinary
        [1, -10.0, -8.0, 12.0, 9.0],     # partly outside (negative)
        [0, 40.0, 50.0, 90.0, 120.0],    # partly beyond the right/bottom edge
        [1, 70.0, 80.0, 95.0, 99.0],     # fully outside
        [0, 20.0, 20.0, 10.0, 5.0],      # malformed (x2 < x1, y2 < y1): clamped to 1x1
        [1, 7.5, 7.5, 7.5, 7.5],         # degenerate (zero size)
        [0, -30.0, -40.0, 100.0, 130.0], # huge: several samples per bin (grid > 1)
        [1, 0.0, 0.0, 47.0, 63.0],       # the whole map
    ])


def test_roi_align_custom_op_and_static_grid_match_eager():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 5, 64, 48, generator=g)
    rois = _boxes()
    ref = _roi_align_eager(feat, rois, 16, 1.0)
    assert torch.equal(roi_align_op(feat, rois, 16, 1.0), ref)  # the opaque op traced graphs use
    with static_grid(16) as flags:
        got = roi_align(feat, rois, 16, 1.0)
    assert torch.allclose(got, ref, atol=1e-6) and not bool(torch.stack(flags).any())
    with static_grid(1) as flags:  # the huge box needs more than 1 sample per bin: flagged
        roi_align(feat, rois, 16, 1.0)
    assert bool(torch.stack(flags).any())


@pytest.mark.slow
def test_onnx_roialign_matches_torch_and_reference(work):
    """ONNX Runtime's RoiAlign (output_half_pixel) == our roi_align == the literal mmcv loop,
    including negative, out-of-image, malformed (x2 < x1) and degenerate boxes."""
    import onnxruntime as ort

    from engines.roi_align import onnx_translation

    class M(nn.Module):
        def forward(self, f, r):
            return roi_align(f, r, 16, 1.0)

    g = torch.Generator().manual_seed(1)
    feat = torch.randn(2, 4, 64, 48, generator=g)
    rois = _boxes()
    path = work / "roi.onnx"
    prog = torch.onnx.export(M().eval(), (feat, rois), dynamo=True, opset_version=18,
                             custom_translation_table=onnx_translation(), input_names=["f", "r"])
    prog.save(str(path))
    import onnx

    assert "RoiAlign" in {n.op_type for n in onnx.load(str(path)).graph.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"f": feat.numpy(), "r": rois.numpy()})[0]
    ours = roi_align(feat, rois, 16, 1.0).numpy()
    ref = roi_align_reference(feat, rois, 16, 1.0).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(got, ref, atol=1e-5)


# --------------------------------------------------------------------------- export + ONNX Runtime
@pytest.mark.slow  # uses the S32 ONNX export (about a minute, built once per run)
def test_export_checked_and_metadata(s32_onnx):
    from engines.export import read_onnx_metadata

    meta = read_onnx_metadata(s32_onnx)
    assert meta["variant"] == "s32" and meta["precision"] == "fp32" and meta["batch"] == "dynamic"
    assert meta["producer"] == "smplerx-mocap"


@pytest.mark.slow  # uses the S32 ONNX export (about a minute, built once per run)
def test_onnx_engine_matches_torch_batched(s32, s32_onnx, img2):
    eng = load_engine(s32_onnx, "onnx", threads=2)
    assert (eng.name, eng.device, eng.precision, eng.variant) == ("onnx", "cpu", "fp32", "s32")
    with torch.inference_mode():
        ref = s32(img2)
    got = eng.run({"img": img2.numpy()})
    for k in OUTPUT_NAMES:
        assert got[k].dtype == np.float32 and got[k].shape == tuple(ref[k].shape)
        assert _rel(got[k], ref[k]) < 1e-4, k
    # results are copies: the next call must not overwrite them
    keep = {k: v.copy() for k, v in got.items()}
    got1 = eng.run({"img": img2[:1].numpy()})
    for k in OUTPUT_NAMES:
        np.testing.assert_array_equal(got[k], keep[k])
        assert _rel(got1[k], ref[k][:1]) < 1e-4, k


@pytest.mark.slow  # uses the S32 ONNX export (about a minute, built once per run)
def test_auto_engine_on_cpu_uses_cached_onnx(s32_ckpt, s32_onnx, img2):
    from engines.backends import auto_kind

    assert auto_kind(s32_ckpt, "cpu") == "onnx"
    eng = load_engine(s32_ckpt, "auto", "cpu")
    assert eng.name == "onnx" and eng.path == s32_onnx
    assert s32_onnx.with_name(s32_onnx.stem + ".ort.onnx").is_file()  # ORT's optimised graph saved
    reopened = load_engine(s32_ckpt, "auto", "cpu")  # now loads the saved optimised graph
    a, b = eng.run({"img": img2[:1].numpy()}), reopened.run({"img": img2[:1].numpy()})
    for k in OUTPUT_NAMES:
        assert _rel(a[k], b[k]) < 1e-5, k


@pytest.mark.slow  # uses the S32 ONNX export (about a minute, built once per run)
def test_every_backend_refuses_what_it_cannot_do(s32_ckpt, s32_onnx):
    """One signature, Backend(source, device, precision, **options): nothing is silently dropped."""
    with pytest.raises(ValueError, match="fp32 model but fp16 was asked for.*--fp16"):
        load_engine(s32_onnx, "onnx", "cpu", "fp16")
    assert load_engine(s32_onnx, "onnx", "cpu", "fp32", threads=1).precision == "fp32"
    with pytest.raises(ValueError, match="onnx engine has no option cuda_graph"):
        load_engine(s32_onnx, "onnx", "cpu", cuda_graph=True)
    with pytest.raises(ValueError, match="torch engine has no option spinning"):
        load_engine(s32_ckpt, "torch", "cpu", spinning=True)
    with pytest.raises(ValueError, match="no engine has the option bogus"):
        load_engine(s32_ckpt, "auto", "cpu", bogus=1)
    with pytest.raises(ValueError, match="CUDA only"):
        load_engine(s32_onnx.with_suffix(".engine"), "tensorrt", "cpu")
    # auto hands each backend only its own options: a torch option must not break the ONNX pick
    eng = load_engine(s32_ckpt, "auto", "cpu", threads=1, fused_attention=True)
    assert eng.name == "onnx"


def test_auto_engine_skips_onnx_for_checkpoints_over_2gb(tmp_path, monkeypatch):
    """H32's fp32 weights (2.6 GB) cannot go into one ONNX file: auto picks torch instead."""
    import engines.backends as B

    big = tmp_path / "smpler_x_h32.pth.tar"
    with open(big, "wb") as fh:  # sparse file: the size without the disk space
        fh.truncate(B.ONNX_MAX_BYTES + 1)
    assert B.auto_kind(big, "cpu") == "torch"
    small = tmp_path / "small.pth.tar"
    small.write_bytes(b"x")
    assert B.auto_kind(small, "cpu") == "onnx"


@pytest.mark.slow
def test_torch_engine_optimized_matches_eager(s32, img2):
    from engines.backends.torch_backend import TorchEngine

    a = TorchEngine(copy.deepcopy(s32)).run({"img": img2.numpy()})
    b = TorchEngine(copy.deepcopy(s32), optimize=True).run({"img": img2.numpy()})
    for k in OUTPUT_NAMES:
        assert _rel(a[k], b[k]) < 1e-4, k


@pytest.mark.slow  # uses the S32 ONNX export (about a minute, built once per run)
def test_check_onnx_detects_a_wrong_graph(s32_onnx, s32):
    from engines.export import check_onnx

    wrong = copy.deepcopy(s32)
    with torch.no_grad():
        wrong.face_regressor.expr_out[0].bias.add_(1.0)
    with pytest.raises(AssertionError, match="smplx_expr"):
        check_onnx(s32_onnx, wrong)


# --------------------------------------------------------------------------- TensorRT (up to the build)
@pytest.mark.slow  # uses the S32 ONNX export (about a minute, built once per run)
def test_exported_graph_uses_only_tensorrt_ops(s32_onnx):
    import onnx

    from engines.export import OPSET, onnx_ops, tensorrt_unsupported_ops

    assert tensorrt_unsupported_ops(s32_onnx) == []
    assert "RoiAlign" in onnx_ops(s32_onnx)
    model = onnx.load(str(s32_onnx))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= max(16, OPSET)


def test_engine_header_roundtrip(tmp_path):
    from engines.backends.tensorrt_backend import MAGIC, read_engine_file, write_engine_file

    meta = {"precision": "fp16", "batch": 4, "max_batch": 8, "variant": "b32", "outputs": list(OUTPUT_NAMES)}
    blob = bytes(range(256)) * 3
    p = write_engine_file(tmp_path / "x.engine", meta, blob)
    assert p.read_bytes().startswith(MAGIC)
    got_meta, got_blob = read_engine_file(p)
    assert got_meta == meta and got_blob == blob
    (tmp_path / "bad.engine").write_bytes(b"not an engine")
    with pytest.raises(ValueError, match="header"):
        read_engine_file(tmp_path / "bad.engine")


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is not None, reason="tensorrt installed")
def test_tensorrt_missing_gives_clear_errors(s32_ckpt, tmp_path):
    from engines.backends.tensorrt_backend import TensorRTUnavailable
    from engines.export import onnx_to_engine

    with pytest.raises(TensorRTUnavailable, match="tensorrt"):
        onnx_to_engine(tmp_path / "x.onnx", tmp_path / "x.engine")
    (tmp_path / "y.engine").write_bytes(b"MOCAPTRT")
    with pytest.raises(TensorRTUnavailable):
        load_engine(tmp_path / "y.engine", "tensorrt", "cuda")
    # the CLI turns it into a user error before spending time on an export
    from engines.errors import UserError

    args = _cli(["export", "--checkpoint", str(s32_ckpt), "--to", "engine"])
    with pytest.raises(UserError, match="tensorrt"):
        args.func(args)


# --------------------------------------------------------------------------- commands
def _cli(argv):
    from realtime.cli import build_parser

    return build_parser().parse_args(argv)


@pytest.mark.slow
def test_bench_command_writes_json(s32_ckpt, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = _cli(["bench", "--checkpoint", str(s32_ckpt), "--engine", "torch", "--iters", "2", "--warmup", "1",
                 "--json", str(out)])
    assert args.func(args) == 0
    res = json.loads(out.read_text())
    assert res["median_ms"] > 0 and res["engine"] == "torch" and res["iters"] == 2
    assert {"p10_ms", "p90_ms", "cpu_per_wall", "machine"} <= set(res)
    assert res["machine"]["torch"] == torch.__version__
    assert "median" in capsys.readouterr().out


@pytest.mark.slow  # uses the S32 ONNX export (about a minute, built once per run)
def test_bench_auto_picks_onnx_on_cpu(s32_ckpt, s32_onnx, tmp_path):
    from engines.benchmark import run_bench

    res = run_bench(s32_ckpt, None, "cpu", iters=1, warmup=1)
    assert res["engine"] == "onnx" and res["engine_requested"].startswith("auto")


def test_cuda_request_without_cuda_is_a_user_error(s32_ckpt):
    if HAS_CUDA:
        pytest.skip("CUDA present")
    from engines.errors import UserError

    args = _cli(["bench", "--checkpoint", str(s32_ckpt), "--engine", "torch", "--device", "cuda", "--iters", "1"])
    with pytest.raises(UserError, match="CUDA"):
        args.func(args)


# --------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cuda_graph_fp16_close_to_fp32(s32):
    """fp16 + CUDA graph: replays repeat exactly, match eager fp16, and stay near fp32 on a real crop."""
    from engines.backends.torch_backend import TorchEngine
    from engines.benchmark import bench_input
    from scipy.spatial.transform import Rotation

    img, _ = bench_input(2)
    ref = TorchEngine(copy.deepcopy(s32), device="cuda").run({"img": img})
    eager16 = TorchEngine(copy.deepcopy(s32), device="cuda", precision="fp16").run({"img": img})
    eng = TorchEngine(copy.deepcopy(s32), device="cuda", precision="fp16", cuda_graph=True)
    got = eng.run({"img": img})
    got2 = eng.run({"img": img})  # replay
    assert eng.cuda_graph  # captured, not fallen back to eager
    for k in OUTPUT_NAMES:
        np.testing.assert_array_equal(got[k], got2[k])
        assert _rel(got[k], eager16[k]) < 1e-2, (k, _rel(got[k], eager16[k]))
    for k in ("smplx_root_pose", "smplx_body_pose", "smplx_lhand_pose", "smplx_rhand_pose", "smplx_jaw_pose"):
        a = Rotation.from_rotvec(got[k].reshape(-1, 3).astype(np.float64))
        b = Rotation.from_rotvec(ref[k].reshape(-1, 3).astype(np.float64))
        err = np.degrees((a.inv() * b).magnitude())
        assert err.mean() < 1.0, (k, err.mean(), err.max())


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cuda_graph_fp32_equals_eager(s32, img2):
    from engines.backends.torch_backend import TorchEngine

    ref = TorchEngine(copy.deepcopy(s32), device="cuda").run({"img": img2.numpy()})
    got = TorchEngine(copy.deepcopy(s32), device="cuda", cuda_graph=True).run({"img": img2.numpy()})
    for k in OUTPUT_NAMES:
        assert _rel(got[k], ref[k]) < 1e-4, k


def _ort_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_CUDA and _ort_cuda()), reason="no CUDA device or onnxruntime without its CUDA provider")
def test_onnxruntime_cuda_matches_torch(s32, s32_onnx, img2):
    eng = load_engine(s32_onnx, "onnx", "cuda")
    with torch.inference_mode():
        ref = s32(img2)
    got = eng.run({"img": img2.numpy()})
    for k in OUTPUT_NAMES:
        assert _rel(got[k], ref[k]) < 1e-3, k


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_body_model_on_cuda_equals_cpu(body_model):
    g = torch.Generator().manual_seed(5)
    args = [torch.rand(3, n, generator=g) * 0.6 - 0.3 for n in (3, 63, 45, 45, 3, 10, 10)]
    with torch.inference_mode():
        v_cpu, j_cpu = body_model(*args)
        gpu = copy.deepcopy(body_model).to("cuda")
        v_gpu, j_gpu = gpu(*[a.cuda() for a in args])
    assert v_gpu.is_cuda
    np.testing.assert_allclose(v_gpu.cpu().numpy(), v_cpu.numpy(), atol=2e-5)
    np.testing.assert_allclose(j_gpu.cpu().numpy(), j_cpu.numpy(), atol=2e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("graph", [False, True])
def test_predictor_on_cuda_matches_the_same_path_on_cpu(s32, body_model, media_dir, graph):
    """Frame in, people out on the GPU (upload, GPU crops, network and SMPL-X layer on the device,
    CUDA graphs or not, asynchronous launch) equals the same device path run on the CPU (fp32, TF32
    off). That CPU run equals the official OpenCV path within 2e-3 (test_model.py)."""
    import cv2

    from engines.backends.torch_backend import TorchEngine
    from engines.inference import Predictor

    img = cv2.imread(str(media_dir / "coco_000785_skier.jpg"))
    boxes = [(280.0, 44.0, 220.0, 348.0), (10.0, 20.0, 200.0, 300.0)]
    cpu_pred = Predictor(TorchEngine(copy.deepcopy(s32)), body_model, device_path=True)
    cpu = cpu_pred.predict(img, boxes)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        gpu_pred = Predictor(TorchEngine(copy.deepcopy(s32), device="cuda", cuda_graph=graph), body_model)
        assert gpu_pred.is_async
        for _ in range(3):  # replays reuse the captured graphs and buffers
            gpu = gpu_pred.launch(img, boxes).result()
            assert len(gpu) == 2
            for g, c in zip(gpu, cpu):
                for k, v in c.person.params.to_dict().items():
                    got = g.person.params.to_dict()[k]
                    np.testing.assert_allclose(got, v, atol=1e-3, err_msg=f"{k}: max {np.abs(got - v).max()}")
                np.testing.assert_allclose(g.person.vertices, c.person.vertices, atol=1e-3)
                np.testing.assert_allclose(g.person.joints_2d, c.person.joints_2d, atol=0.2)
        if graph:
            assert not gpu_pred._cuda._body_call.disabled  # the SMPL-X layer ran as a CUDA graph
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_graphed_body_model_equals_eager(body_model):
    from engines.backends.cuda_graph import CudaGraphed

    gpu = copy.deepcopy(body_model).to("cuda")
    graphed = CudaGraphed(gpu, "SMPL-X layer")
    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        args = [(torch.rand(2, n, generator=g) * 0.6 - 0.3).cuda() for n in (3, 63, 45, 45, 3, 10, 10)]
        with torch.inference_mode():
            ref_v, ref_j = gpu(*args)
            v, j = graphed(*args)
            assert not graphed.disabled
            torch.testing.assert_close(v, ref_v, atol=1e-5, rtol=0)
            torch.testing.assert_close(j, ref_j, atol=1e-5, rtol=0)


def test_offline_default_engine_is_the_fastest_ready_one(tmp_path, monkeypatch, s32_ckpt):
    """mocap image/video without --engine: torch until the CPU engine is cached, then ONNX Runtime;
    fp32 on CUDA (never fp16 for result files); never a build."""
    from engines.backends import cached_onnx_path, offline_choice

    monkeypatch.setenv("MOCAP_CACHE_DIR", str(tmp_path / "cache"))
    kind, precision, why = offline_choice(s32_ckpt, "cpu")
    assert (kind, precision) == ("torch", None) and "PyTorch" in why
    assert not (tmp_path / "cache").exists()  # choosing built nothing
    path = cached_onnx_path(s32_ckpt)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in for a cached export")
    kind, precision, why = offline_choice(s32_ckpt, "cpu")
    assert (kind, precision) == ("onnx", None) and "ONNX Runtime" in why
    assert offline_choice(s32_ckpt, "cuda")[:2] == ("auto", "fp32")
