"""The official metrics and per-dataset rules against independent computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from engines.evaluation import metrics as M
from engines.evaluation import protocols as P
from engines.evaluation.model_files import SMPLXEvalFiles


def _similarity(points, scale, rotvec, offset):
    return scale * Rotation.from_rotvec(rotvec).apply(points) + offset


def _procrustes_independent(a, b):
    """Similarity alignment of a onto b via scipy's orthogonal Procrustes (Schoenemann), then the
    optimal scale in closed form: a different derivation from the official Umeyama code."""
    ca, cb = a.mean(0), b.mean(0)
    a0, b0 = a - ca, b - cb
    r, _ = orthogonal_procrustes(a0, b0)  # a0 @ r ~ b0, r orthogonal (may reflect)
    if np.linalg.det(r) < 0:  # a proper rotation: flip the weakest direction (as Umeyama does)
        u, s, vt = np.linalg.svd(a0.T @ b0)
        d = np.diag([1, 1, -1])
        r = u @ d @ vt
    scale = np.trace((a0 @ r).T @ b0) / np.trace(a0.T @ a0)
    return scale * a0 @ r + cb


def test_identical_prediction_gives_zero():
    rng = np.random.default_rng(0)
    gt = rng.normal(0, 0.3, (500, 3))
    assert M.mean_error_mm(gt, gt) == 0.0
    assert M.pa_error_mm(gt, gt) == pytest.approx(0.0, abs=1e-9)


def test_rigid_offset_removed_by_procrustes_not_by_pelvis_alignment():
    rng = np.random.default_rng(1)
    gt = rng.normal(0, 0.3, (400, 3))
    moved = _similarity(gt, 1.1, [0.3, -0.2, 0.5], [0.5, -0.1, 2.0])
    assert M.pa_error_mm(moved, gt) == pytest.approx(0.0, abs=1e-6)
    anchored = M.translated_onto(moved, moved[0], gt[0])  # a "pelvis" alignment keeps the rotation error
    independent = np.linalg.norm(anchored - gt, axis=1).mean() * 1000
    assert M.mean_error_mm(anchored, gt) == pytest.approx(independent)
    assert independent > 50.0


def test_known_offsets_give_their_mean():
    rng = np.random.default_rng(2)
    gt = rng.normal(0, 0.3, (300, 3))
    lengths = rng.uniform(0.0, 0.05, 300)
    dirs = rng.normal(size=(300, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    assert M.mean_error_mm(gt + lengths[:, None] * dirs, gt) == pytest.approx(lengths.mean() * 1000)
    valid = lengths > 0.025
    assert M.mean_error_mm(gt + lengths[:, None] * dirs, gt, valid) == pytest.approx(lengths[valid].mean() * 1000)
    # a translation is removed by Procrustes
    assert M.pa_error_mm(gt + [0.02, 0, 0], gt) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_rigid_align_equals_an_independent_procrustes(seed):
    rng = np.random.default_rng(seed)
    gt = rng.normal(0, 0.3, (50, 3))
    noisy = _similarity(gt, rng.uniform(0.7, 1.3), rng.normal(0, 1, 3), rng.normal(0, 1, 3)) + rng.normal(0, 0.05, gt.shape)
    np.testing.assert_allclose(M.rigid_align(noisy, gt), _procrustes_independent(noisy, gt), atol=1e-9)


def test_rigid_align_never_reflects():
    rng = np.random.default_rng(5)
    gt = rng.normal(0, 0.3, (60, 3))
    mirrored = gt * [-1, 1, 1]
    _, r, _ = M.rigid_transform(mirrored, gt)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_acceleration_error_and_jitter():
    t = np.arange(10, dtype=np.float64)[:, None, None]
    gt = np.zeros((10, 4, 3)) + np.array([0.1, 0.2, 3.0])
    a = np.array([0.002, -0.001, 0.0])  # constant acceleration, metres per frame^2
    pred = gt + 0.5 * a * t ** 2 + 0.3
    assert M.acceleration_error_mm(pred, gt) == pytest.approx(np.linalg.norm(a) * 1000)
    assert M.acceleration_error_mm(gt + 0.3, gt) == pytest.approx(0.0, abs=1e-9)
    c = np.array([0.0, 0.001, 0.0])
    assert M.jitter_mm(gt + c * t ** 3) == pytest.approx(6 * 0.001 * 1000)  # third difference of c t^3 = 6c
    with pytest.raises(ValueError):
        M.jitter_mm(gt[:3])


@pytest.fixture(scope="module")
def eval_files(tmp_path_factory):
    from engines.synthetic import write_synthetic_smplx
    from tests.eval_layouts import write_eval_extras

    root = tmp_path_factory.mktemp("bm_eval")
    write_synthetic_smplx(root)
    write_eval_extras(root)
    return SMPLXEvalFiles.load(root)


def test_extras_load_in_the_official_formats(eval_files):
    f = eval_files
    assert f.j_regressor.shape == (55, 10475) and f.j_regressor.dtype == np.float32
    assert f.j14_regressor.shape == (14, 10475)
    assert f.hand_vertex_idx["left_hand"].shape == (778,) and f.face_vertex_idx.shape == (5023,)
    left = f.hand_regressor["left"]
    assert left.shape == (21, 10475)
    np.testing.assert_array_equal(left[0], f.j_regressor[20])           # the wrist first
    np.testing.assert_array_equal(left[1:4], f.j_regressor[[37, 38, 39]])  # thumb joints
    assert left[4, 5361] == 1.0 and left[4].sum() == 1.0                 # then the thumb tip vertex
    np.testing.assert_array_equal(f.hand_regressor["right"][5:8], f.j_regressor[[40, 41, 42]])
    assert f.hand_regressor["right"][20, 8022] == 1.0


def test_smplx_metrics_zero_on_identical_and_pelvis_removes_translation(eval_files):
    rng = np.random.default_rng(3)
    gt = rng.normal(0, 0.3, (10475, 3)) + [0, 0, 4]
    zero = P.smplx_mesh_metrics(gt, gt, eval_files)
    assert set(zero) == set(P.SMPLX_KEYS)
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in zero.values())
    shifted = P.smplx_mesh_metrics(gt + [0.1, -0.2, 0.3], gt, eval_files)
    assert all(v == pytest.approx(0.0, abs=1e-3) for v in shifted.values())  # every alignment removes it
    assert P.smplx_mesh_metrics(gt, gt, eval_files, P.AGORA_KEYS).keys() == set(P.AGORA_KEYS)


def test_smplx_metrics_against_independent_computation(eval_files):
    f = eval_files
    rng = np.random.default_rng(4)
    gt = rng.normal(0, 0.3, (10475, 3)) + [0, 0, 4]
    out = _similarity(gt, 1.05, [0.2, 0.1, -0.3], [0.1, 0.0, 0.2]) + rng.normal(0, 0.01, gt.shape)
    m = P.smplx_mesh_metrics(out, gt, f)
    pelvis = lambda v: f.j_regressor.astype(np.float64)[0] @ v  # noqa: E731
    want_all = np.linalg.norm(out - pelvis(out) + pelvis(gt) - gt, axis=1).mean() * 1000
    assert m["mpvpe_all"] == pytest.approx(want_all, rel=1e-5)
    face = f.face_vertex_idx
    assert m["pa_mpvpe_face"] == pytest.approx(
        np.linalg.norm(_procrustes_independent(out[face], gt[face]) - gt[face], axis=1).mean() * 1000, rel=1e-6)
    j14 = f.j14_regressor
    assert m["pa_mpjpe_body"] == pytest.approx(
        np.linalg.norm(_procrustes_independent(j14 @ out, j14 @ gt) - j14 @ gt, axis=1).mean() * 1000, rel=1e-6)
    assert m["mpvpe_hand"] == pytest.approx((m["mpvpe_l_hand"] + m["mpvpe_r_hand"]) / 2)
    assert m["mpvpe_all"] > m["pa_mpvpe_all"] > 5.0


def test_ubody_counts_only_points_inside_the_image(eval_files):
    f = eval_files
    rng = np.random.default_rng(6)
    gt = rng.normal(0, 0.2, (10475, 3)) + [0, 0, 30.0]
    out = gt + rng.normal(0, 0.01, gt.shape)
    cam = np.array([0.0, 0.0, 30.0], np.float32)
    bb2img = np.array([[1.0, 0, 0], [0, 1.0, 0]], np.float32)  # crop pixels = image pixels
    h, w = 512, 384
    proj = P.project_through_crop(gt - cam, cam, bb2img)
    inside = (proj[:, 0] > 0) & (proj[:, 0] < w) & (proj[:, 1] > 0) & (proj[:, 1] < h)
    assert 0 < inside.sum() < len(inside)
    m = P.ubody_metrics(out, gt, cam, bb2img, (h, w), f)
    pelvis = lambda v: f.j_regressor.astype(np.float64)[0] @ v  # noqa: E731
    err = np.linalg.norm(out - pelvis(out) + pelvis(gt) - gt, axis=1)
    assert m["mpvpe_all"] == pytest.approx(err[inside].mean() * 1000, rel=1e-5)
    # a hand with no vertex inside contributes nothing
    far = gt.copy()
    far[f.hand_vertex_idx["left_hand"]] += [100.0, 0, 0]
    m2 = P.ubody_metrics(far, far, cam, bb2img, (h, w), f)
    assert m2["pa_mpvpe_hand"] == pytest.approx(0.0, abs=1e-6)
    assert set(P.summarise([m, {"pa_mpvpe_all": 1.0}], P.UBODY_KEYS)) == set(P.UBODY_KEYS)
    assert P.summarise([{"mpjpe_body": 2.0}, {"mpjpe_body": 4.0}, {}], ("mpjpe_body", "x")) == {"mpjpe_body": 3.0,
                                                                                                "x": None}


def test_pw3d_metrics_against_independent_computation(eval_files):
    f = eval_files
    rng = np.random.default_rng(7)
    smpl_reg = np.abs(rng.normal(size=(24, 6890)))
    smpl_reg /= smpl_reg.sum(1, keepdims=True)
    gt = rng.normal(0, 0.3, (6890, 3)) + [0, 0, 4]
    out = rng.normal(0, 0.3, (10475, 3)) + [0.2, 0, 4]
    m = P.pw3d_metrics(out, gt, f, smpl_reg)
    jr = f.j_regressor.astype(np.float64)
    gj = smpl_reg @ gt
    oj = jr @ out
    sel = list(P.PW3D_JOINTS)
    want = np.linalg.norm(oj[sel] - oj[0] + gj[0] - gj[sel], axis=1).mean() * 1000
    assert m["mpjpe_body"] == pytest.approx(want, rel=1e-5)
    want_pa = np.linalg.norm(_procrustes_independent(oj[sel], gj[sel]) - gj[sel], axis=1).mean() * 1000
    assert m["pa_mpjpe_body"] == pytest.approx(want_pa, rel=1e-5)


def test_official_batch_quirk_matches_the_official_cross_without_dim():
    import torch.nn.functional as F

    from engines import geometry as G
    from engines.evaluation.official_batching import apply_cross_quirk, official_chunks, quirk_groups

    torch.manual_seed(0)
    x = torch.randn(3, 6)
    m = x.view(-1, 3, 2)
    b1 = F.normalize(m[:, :, 0])
    b2 = F.normalize(m[:, :, 1] - torch.einsum("bi,bi->b", b1, m[:, :, 1]).unsqueeze(-1) * b1)
    official = G.rotmat_to_axis_angle(torch.stack((b1, b2, torch.linalg.cross(b1, b2, dim=0)), -1))
    ours = G.rot6d_to_axis_angle(x)
    assert (official - ours).abs().max() > 0.1  # the quirk changes the result
    np.testing.assert_allclose(apply_cross_quirk(ours.numpy()), official.numpy(), atol=2e-6)
    assert list(official_chunks(67, 32, 1)) == [(0, 32), (32, 32), (64, 3)]
    assert list(official_chunks(67, 32, 2)) == [(0, 32), (32, 32), (64, 2), (66, 1)]
    assert quirk_groups(3) == [(0, 1, 2)] and quirk_groups(4) == [] and quirk_groups(35) == [(32, 33, 34)]
