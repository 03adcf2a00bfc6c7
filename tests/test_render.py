"""Offscreen mesh rendering (real Open3D/EGL renders, no mocks)."""
from __future__ import annotations

import logging
import sys

import cv2
import numpy as np
import pytest

from engines.types import PARAM_SHAPES
from viewers.mesh_overlay import MeshRenderer, draw_vertices, overlay, project

W, H = 640, 480
FOCAL = (800.0, 800.0)
PRINCPT = (300.3, 250.6)  # deliberately off the image centre (319.5, 239.5)


@pytest.fixture(scope="module")
def body(body_model):
    """Synthetic SMPL-X body: (vertices in the model's camera-space rest pose, faces)."""
    model = body_model
    params = {k: np.zeros(s, np.float32) for k, s in PARAM_SHAPES.items()}
    params["global_orient"][0] = (np.pi, 0.0, 0.0)  # SMPL-X y-up -> camera y-down
    verts, _ = model.from_params(params)
    return verts.astype(np.float64), model.faces


def place(verts: np.ndarray, centre_px, z: float, focal=FOCAL, princpt=PRINCPT) -> np.ndarray:
    """Move the body so its box centre is at depth z and projects to pixel ``centre_px``."""
    mid = 0.5 * (verts.min(0) + verts.max(0))
    target = np.array([(centre_px[0] - princpt[0]) * z / focal[0], (centre_px[1] - princpt[1]) * z / focal[1], z])
    return verts - mid + target


@pytest.fixture(scope="module")
def renderer():
    r = MeshRenderer(W, H)
    if not r.available:
        pytest.fail("Open3D offscreen rendering (EGL) should work on this machine")
    yield r
    r.close()


def mask_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)


def projected_box(verts, focal, princpt):
    uv, front = project(verts, focal, princpt)
    assert front.all()
    lo = np.clip(uv.min(0), 0, [W - 1, H - 1])
    hi = np.clip(uv.max(0), 0, [W - 1, H - 1])
    return np.array([lo[0], lo[1], hi[0], hi[1]])


@pytest.mark.parametrize("z,centre,princpt", [
    (3.0, (310.0, 240.0), PRINCPT),          # the person fills the frame height
    (4.0, (330.0, 250.0), (420.7, 190.2)),   # whole person inside, principal point far right
    (3.0, (200.0, 260.0), (120.25, 330.75)),  # principal point near a corner
])
def test_mask_matches_projection(body, renderer, z, centre, princpt):
    verts = place(body[0], centre, z, FOCAL, princpt)
    rgb, mask = renderer.render(verts, body[1], FOCAL, princpt)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert mask.shape == (H, W) and mask.dtype == bool
    assert mask.sum() > 2000
    np.testing.assert_allclose(mask_box(mask), projected_box(verts, FOCAL, princpt), atol=2.0)
    # Not only the box: (almost) every projected vertex lands on the silhouette.
    uv, _ = project(verts, FOCAL, princpt)
    px = np.round(uv).astype(int)
    inside = (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H)
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert grown[px[inside, 1], px[inside, 0]].mean() > 0.995
    assert not rgb[~mask].any()


def test_principal_point_shifts_render(body, renderer):
    verts = place(body[0], (320.0, 240.0), 4.0)
    _, m0 = renderer.render(verts, body[1], FOCAL, PRINCPT)
    # A whole-pixel shift of the principal point moves the silhouette by exactly that much.
    _, m1 = renderer.render(verts, body[1], FOCAL, (PRINCPT[0] + 37, PRINCPT[1] - 21))
    shifted = np.zeros_like(m0)
    shifted[:H - 21, 37:] = m0[21:, :W - 37]
    assert (shifted & m1).sum() / (shifted | m1).sum() > 0.99
    # A sub-pixel shift moves the silhouette's centroid by a sub-pixel amount.
    _, m2 = renderer.render(verts, body[1], FOCAL, (PRINCPT[0] + 0.5, PRINCPT[1] + 0.25))
    c0 = np.array(np.nonzero(m0)[::-1]).mean(1)
    c2 = np.array(np.nonzero(m2)[::-1]).mean(1)
    np.testing.assert_allclose(c2 - c0, [0.5, 0.25], atol=0.15)


def test_non_square_focal(body, renderer):
    focal = (760.0, 840.0)
    verts = place(body[0], (330.0, 240.0), 4.0, focal)
    _, mask = renderer.render(verts, body[1], focal, PRINCPT)
    np.testing.assert_allclose(mask_box(mask), projected_box(verts, focal, PRINCPT), atol=2.0)


def test_shading_and_depth(body, renderer):
    verts = place(body[0], (320.0, 240.0), 3.0)
    rgb, mask, depth = renderer.render_with_depth(verts, body[1], FOCAL, PRINCPT)
    lum = rgb[mask].astype(np.float64).mean(1)
    assert lum.std() > 15, "the mesh should be lit (shading varies), not a flat colour"
    assert len(np.unique(rgb[mask][:, 0])) > 30
    assert lum.max() > 120 and (lum < 250).mean() > 0.9  # visible and mostly not saturated
    zs = depth[mask]
    assert zs.min() >= verts[:, 2].min() - 0.01 and zs.max() <= verts[:, 2].max() + 0.01
    assert not depth[~mask].any()


def test_mesh_behind_or_outside_renders_nothing(body, renderer):
    verts = place(body[0], (320.0, 240.0), 3.0)
    behind = verts * np.array([1.0, 1.0, -1.0])
    rgb, mask = renderer.render(behind, body[1], FOCAL, PRINCPT)
    assert not mask.any() and not rgb.any()
    aside = verts + np.array([10.0, 0.0, 0.0])  # far to the right of the frame
    rgb, mask = renderer.render(aside, body[1], FOCAL, PRINCPT)
    assert not mask.any() and not rgb.any()


def test_overlay_keeps_image_outside_mask(body, renderer, tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    verts = place(body[0], (320.0, 240.0), 3.0)
    out = renderer.overlay(image, [verts], body[1], (FOCAL, PRINCPT))
    rgb, mask = renderer.render(verts, body[1], FOCAL, PRINCPT)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], image[~mask])
    assert np.array_equal(out[mask], rgb[mask][:, ::-1])  # RGB render -> BGR frame
    half = renderer.overlay(image, [verts], body[1], (FOCAL, PRINCPT), alpha=0.5)
    expected = (0.5 * rgb[mask][:, ::-1].astype(float) + 0.5 * image[mask]).round()
    assert np.abs(half[mask].astype(float) - expected).max() <= 1
    assert np.array_equal(half[~mask], image[~mask])
    path = tmp_path / "overlay.png"
    frame = np.full((H, W, 3), 60, np.uint8)
    frame[::24] = (0, 120, 0)
    assert cv2.imwrite(str(path), renderer.overlay(frame, [verts], body[1], (FOCAL, PRINCPT)))
    assert cv2.imread(str(path)).shape == (H, W, 3)


def test_overlay_two_people_depth_order(body, renderer):
    image = np.zeros((H, W, 3), np.uint8)
    near = place(body[0], (300.0, 240.0), 3.0)
    far = place(body[0], (360.0, 240.0), 5.0, FOCAL, (330.0, 250.0))
    cams = [(FOCAL, PRINCPT), (FOCAL, (330.0, 250.0))]
    a = renderer.overlay(image, [near, far], body[1], cams)
    b = renderer.overlay(image, [far, near], body[1], cams[::-1])
    assert np.array_equal(a, b)
    rgb_n, m_n = renderer.render(near, body[1], *cams[0])
    _, m_f = renderer.render(far, body[1], *cams[1])
    both = m_n & m_f
    assert both.sum() > 50
    assert np.array_equal(a[both], rgb_n[both][:, ::-1])  # the nearer person wins
    assert a[m_f & ~m_n].any()


def test_renderer_follows_frame_size(body):
    verts = place(body[0], (160.0, 120.0), 6.0, FOCAL, (150.0, 110.0))
    small = np.zeros((240, 320, 3), np.uint8)
    with MeshRenderer(640, 480) as r:
        out = r.overlay(small, [verts], body[1], (FOCAL, (150.0, 110.0)))
        assert (r.width, r.height) == (320, 240)
    assert out.shape == small.shape and out.any()
    assert np.array_equal(overlay(small, [], body[1], []), small)


def test_draw_vertices_dots(body):
    image = np.zeros((H, W, 3), np.uint8)
    verts = place(body[0], (320.0, 240.0), 3.0)
    out = draw_vertices(image, verts, FOCAL, PRINCPT)
    uv, _ = project(verts, FOCAL, PRINCPT)
    px = np.round(uv).astype(int)
    ok = (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H)
    hits = out[px[ok, 1], px[ok, 0]]
    assert (hits[:, 0] > 150).mean() > 0.95 and hits[:, 2].max() == 0  # blue dots (BGR)
    assert not out[:, :int(uv[:, 0].min()) - 5].any()


def test_overlay_falls_back_to_dots_without_open3d(body, monkeypatch, caplog):
    """Simulate a machine where open3d cannot load: overlay warns and draws vertices."""
    monkeypatch.setitem(sys.modules, "open3d", None)  # makes `import open3d` raise ImportError
    verts = place(body[0], (320.0, 240.0), 3.0)
    image = np.zeros((H, W, 3), np.uint8)
    with caplog.at_level(logging.WARNING, logger="viewers.mesh_overlay"):
        r = MeshRenderer(W, H)
        out = r.overlay(image, [verts], body[1], (FOCAL, PRINCPT))
    assert not r.available
    assert "unavailable" in caplog.text
    assert np.array_equal(out, draw_vertices(image, verts, FOCAL, PRINCPT))


_SHADED_SPHERE = r"""
import sys, numpy as np, open3d as o3d
from viewers.mesh_overlay import MeshRenderer
m = o3d.geometry.TriangleMesh.create_sphere(radius=0.5, resolution=40)
v = np.asarray(m.vertices) + np.array([0.0, 0.0, 3.0])
with MeshRenderer(320, 240) as r:
    out = r.overlay(np.full((240, 320, 3), 128, np.uint8), [v], np.asarray(m.triangles), ((300.0, 300.0), (160.0, 120.0)))
np.save(sys.argv[1], out)
"""


@pytest.mark.slow
@pytest.mark.parametrize("with_display", [False, True])
def test_overlay_is_shaded_with_and_without_a_display(tmp_path, with_display):
    """With a display (a desktop, Xvfb) Open3D's hidden GLX window read back as a flat black
    silhouette; the renderer now always renders through EGL. Fresh processes: Open3D's windowing
    starts once per process."""
    import subprocess

    from tests.xvfb import env_with_display, xvfb

    script = tmp_path / "sphere.py"
    script.write_text(_SHADED_SPHERE)
    out_file = tmp_path / "out.npy"

    def run(env):
        done = subprocess.run([sys.executable, str(script), str(out_file)], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return np.load(out_file)

    if with_display:
        with xvfb() as display:
            out = run(env_with_display(display))
    else:
        env = env_with_display("")
        env.pop("DISPLAY")
        out = run(env)
    covered = np.any(out != 128, axis=-1)
    assert covered.sum() > 5000  # the sphere: about pi * 50^2 pixels
    lum = out[covered].astype(float).mean(-1)
    assert lum.mean() > 80 and lum.std() > 20  # lit and shaded, not a black (or flat) silhouette
    b, g, r = out[covered].astype(float).mean(0)
    assert r > b and g > b  # the official base colour (1.0, 1.0, 0.9): warm white
