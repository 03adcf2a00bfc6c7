"""Pre/post-processing and rotation helpers against literal re-derivations and scipy."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from engines import geometry as G


def test_process_bbox_matches_hand_computation():
    # a tall box inside a 640x480 frame: width grows to 0.75*h, then both x1.25 around the centre
    box = G.process_bbox([100, 50, 60, 200], 640, 480)
    w, h = 59.0, 199.0  # sanitised: x2 = x1 + w - 1
    cx, cy = 100 + w / 2, 50 + h / 2
    w = 0.75 * h
    expect = np.array([cx - w * 1.25 / 2, cy - h * 1.25 / 2, w * 1.25, h * 1.25], np.float32)
    assert box.dtype == np.float32
    np.testing.assert_allclose(box, expect, rtol=1e-6)
    assert box[2] / box[3] == pytest.approx(0.75)


def test_process_bbox_clips_and_rejects():
    box = G.process_bbox([-50, -20, 100, 100], 200, 200)
    # clipped to x1 = y1 = 0 first; x2 measured from the clipped x1
    assert box is not None and box[2] / box[3] == pytest.approx(0.75)
    assert G.process_bbox([300, 300, 50, 50], 200, 200) is None  # fully outside
    assert G.process_bbox([10, 10, 0, 50], 200, 200) is None      # zero width


def test_process_bboxes_keeps_indices_of_usable_boxes_and_warns_about_the_rest(caplog):
    """The one box loop of the CPU path, the device path and the stand-in."""
    raws = [[10, 10, 80, 120], [300, 300, 50, 50], [50, 20, 100, 150]]
    with caplog.at_level("WARNING", logger="engines.geometry"):
        kept, boxes, invs = G.process_bboxes(raws, 200, 200)
    assert kept == [0, 2]  # the second lies outside the frame
    assert "degenerate" in caplog.text and "[300, 300, 50, 50]" in caplog.text
    for i, box, inv in zip(kept, boxes, invs):
        np.testing.assert_array_equal(box, G.process_bbox(raws[i], 200, 200))
        np.testing.assert_array_equal(inv, G.crop_image(np.zeros((200, 200, 3), np.float32), box)[2])
    assert G.process_bboxes([], 200, 200) == ([], [], [])


def test_crop_and_inverse_roundtrip():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    img = np.stack([0.5 * xx + 0.3 * yy, 0.2 * xx + 10, 0.6 * yy + 5], -1).astype(np.float32)
    box = G.process_bbox([120, 40, 100, 220], 400, 300)
    patch, trans, inv = G.crop_image(img, box)
    assert patch.shape == (512, 384, 3) and patch.dtype == np.float32
    # box centre maps to the crop centre, box corners to the crop corners
    c = G.apply_affine([[box[0] + box[2] / 2, box[1] + box[3] / 2]], trans)[0]
    np.testing.assert_allclose(c, [192, 256], atol=1e-3)
    tl = G.apply_affine([[box[0], box[1]]], trans)[0]
    np.testing.assert_allclose(tl, [0, 0], atol=1e-3)
    pts = rng.uniform(0, 380, (20, 2))
    back = G.apply_affine(G.apply_affine(pts, trans), inv)
    np.testing.assert_allclose(back, pts, atol=1e-3)
    # the crop samples the image: an interior crop pixel equals bilinear image lookup
    y, x = 300, 200
    src = G.apply_affine([[x, y]], inv)[0]
    x0, y0 = int(np.floor(src[0])), int(np.floor(src[1]))
    fx, fy = src[0] - x0, src[1] - y0
    bil = (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
           + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)
    # cv2 quantises sample positions to 1/32 pixel; on this smooth image that is < 0.05
    np.testing.assert_allclose(patch[y, x], bil, atol=0.05)


def test_full_frame_camera_maps_crop_camera():
    box = np.array([50.0, 20.0, 150.0, 200.0], np.float32)
    cam = G.full_frame_camera(box)
    assert cam.focal == pytest.approx((5000 / 192 * 150, 5000 / 256 * 200))
    assert cam.princpt == pytest.approx((50 + 75, 20 + 100))
    # a point seen by the 256x192 crop camera at pixel p is seen by the frame camera at the box image of p
    X = np.array([[0.1, -0.2, 8.0]])
    crop_px = X[0, :2] / X[0, 2] * 5000 + np.array([96, 128])
    frame_px = cam.project(X)[0]
    np.testing.assert_allclose(frame_px, box[:2] + crop_px * box[2:] / np.array([192, 256]), rtol=1e-6)


def test_camera_translation_depth_scale():
    cam = torch.tensor([[0.1, -0.2, 0.0], [0.0, 0.0, 100.0]])
    t = G.camera_translation(cam)
    k = np.sqrt(5000 * 5000 * 2.5 * 2.5 / (256 * 192))
    assert t[0, 2].item() == pytest.approx(k / 2, rel=1e-6)
    assert t[1, 2].item() == pytest.approx(k, rel=1e-6)
    assert t[0, :2].tolist() == pytest.approx([0.1, -0.2])


def _rot6d_reference(x):
    """The 6D convention spelled out: columns a1 = x[0::2], a2 = x[1::2], Gram-Schmidt."""
    a1, a2 = x[0::2], x[1::2]
    b1 = a1 / np.linalg.norm(a1)
    b2 = a2 - b1 * (b1 @ a2)
    b2 /= np.linalg.norm(b2)
    return np.stack([b1, b2, np.cross(b1, b2)], axis=1)


def test_rot6d_to_axis_angle_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 6)).astype(np.float32)
    aa = G.rot6d_to_axis_angle(torch.from_numpy(x)).numpy()
    ref = np.stack([Rotation.from_matrix(_rot6d_reference(v.astype(np.float64))).as_rotvec() for v in x])
    # compare as rotations (axis-angle is unique below pi)
    err = (Rotation.from_rotvec(aa) * Rotation.from_rotvec(ref).inv()).magnitude()
    assert err.max() < 2e-5


def test_rot6d_near_180_degrees_and_identity():
    mats = [np.eye(3), Rotation.from_rotvec([np.pi - 1e-4, 0, 0]).as_matrix(),
            Rotation.from_rotvec([0, 0.0, np.pi]).as_matrix(), Rotation.from_rotvec([0, np.pi, 0]).as_matrix(),
            Rotation.from_rotvec(np.array([1.0, 1.0, 0.0]) / np.sqrt(2) * np.pi).as_matrix()]
    x = torch.tensor(np.stack([np.stack([m[:, 0], m[:, 1]], 1).reshape(6) for m in mats]), dtype=torch.float32)
    aa = G.rot6d_to_axis_angle(x).numpy()
    for a, m in zip(aa, mats):
        err = (Rotation.from_rotvec(a) * Rotation.from_matrix(m).inv()).magnitude()
        assert err < 1e-3, (a, m)
    assert np.all(np.isfinite(aa))


def test_rot6d_independent_of_batch_size():
    """The official torch.cross without dim breaks batch size 3; ours must not."""
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(3, 6)).astype(np.float32))
    batched = G.rot6d_to_axis_angle(x)
    single = torch.cat([G.rot6d_to_axis_angle(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single)


def test_soft_argmax_peaks():
    hm = torch.full((1, 2, 4, 5, 6), -50.0)
    hm[0, 0, 1, 2, 3] = 50.0
    hm[0, 1, 3, 4, 0] = 50.0
    c = G.soft_argmax_3d(hm)
    torch.testing.assert_close(c[0], torch.tensor([[3.0, 2.0, 1.0], [0.0, 4.0, 3.0]]))
    hm2 = torch.full((1, 1, 7, 9), -50.0)
    hm2[0, 0, 5, 8] = 50.0
    torch.testing.assert_close(G.soft_argmax_2d(hm2)[0, 0], torch.tensor([8.0, 5.0]))


def test_sample_joint_features_at_pixels():
    feat = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 2, 5, 7)
    xy = torch.tensor([[[0.0, 0.0], [6.0, 4.0], [2.5, 1.0]]])
    out = G.sample_joint_features(feat, xy)
    assert out.shape == (1, 3, 2)
    torch.testing.assert_close(out[0, 0], feat[0, :, 0, 0])
    torch.testing.assert_close(out[0, 1], feat[0, :, 4, 6])
    torch.testing.assert_close(out[0, 2], (feat[0, :, 1, 2] + feat[0, :, 1, 3]) / 2)


def test_restore_bbox_square_and_extended():
    center = torch.tensor([[6.0, 8.0]])  # grid units (x of 12, y of 16)
    size = torch.tensor([[2.0, 1.0]])
    box = G.restore_bbox(center, size, 1.0, 2.0)[0]
    # centre (96, 128) px; w = 32 px, h = 16 px -> square 32, doubled -> 64
    torch.testing.assert_close(box, torch.tensor([64.0, 96.0, 128.0, 160.0]))


def test_bgr_to_rgb_float_grey_and_bgra_like_imread_color():
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    rgb = G.bgr_to_rgb_float(bgr)
    assert rgb.dtype == np.float32 and rgb.shape == (7, 5, 3)
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1].astype(np.float32))
    # BGRA: alpha dropped, as cv2.imread(IMREAD_COLOR) does for an RGBA file
    bgra = np.concatenate([bgr, rng.integers(0, 256, (7, 5, 1), dtype=np.uint8)], 2)
    np.testing.assert_array_equal(G.bgr_to_rgb_float(bgra), rgb)
    # grey (2-D or one channel): replicated to three channels
    grey = bgr[:, :, 0]
    for g in (grey, grey[:, :, None]):
        out = G.bgr_to_rgb_float(g)
        assert out.shape == (7, 5, 3)
        np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, 2).astype(np.float32))
    with pytest.raises(ValueError):
        G.bgr_to_rgb_float(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.parametrize("raw", [(280, 44, 220, 348), (-50, -30, 300, 500), (500, 300, 200, 200)])
def test_torch_crop_matches_opencv_crop(media_dir, raw):
    """The GPU path's crop (grid_sample, run here on the CPU) gives OpenCV's crop within 0.05 of a
    grey level, boxes reaching outside the frame included (zeros there, as BORDER_CONSTANT)."""
    import cv2

    img = cv2.imread(str(media_dir / "coco_000785_skier.jpg"))
    box = G.process_bbox(raw, img.shape[1], img.shape[0])
    patch, _, inv = G.crop_image(G.bgr_to_rgb_float(img), box)
    ref = G.to_input_batch([patch])[0]
    got = G.crop_batch_torch(torch.from_numpy(img), torch.from_numpy(inv[None]))[0].numpy()
    assert got.shape == ref.shape == (3, 512, 384)
    diff = np.abs(got - ref) * 255
    assert diff.max() < 0.05, diff.max()
    assert diff.mean() < 1e-3


def test_constants_made_while_tracing_are_not_kept():
    """A constant first asked for under tracing (the ONNX export does this before any eager call)
    is a fake tensor: it must not be cached, or the next eager forward would get it."""
    from torch._subclasses.fake_tensor import FakeTensorMode, is_fake

    values = (1.25, 7.5, 0.125)  # a key no other code uses
    with FakeTensorMode():
        traced = G.constant(values, torch.zeros(2))
        assert is_fake(traced)
    real = G.constant(values, torch.zeros(2))
    assert not is_fake(real) and real.tolist() == list(values)
    assert G.constant(values, torch.zeros(3)) is real  # eager constants are still made once
