"""Live 3-D viewer (headless Open3D renders) and the 2-D preview composer."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.slot import LatestSlot
from engines.types import PARAM_SHAPES, FrameResult, Person, SMPLXParams
from viewers import preview
from viewers.open3d_viewer import Open3DViewer, ViewerUnavailable
from viewers.preview import (DETECTOR_BOX_COLOR, JOINT_COLOR, MODEL_BOX_COLOR, SKELETON_COLOR,
                             PreviewUnavailable, PreviewWindow, compose)


@pytest.fixture(scope="module")
def body(body_model):
    model = body_model
    params = {k: np.zeros(s, np.float32) for k, s in PARAM_SHAPES.items()}
    params["global_orient"][0] = (np.pi, 0.0, 0.0)
    params["transl"][0] = (0.0, 0.0, 3.0)
    verts, _ = model.from_params(params)
    return verts.astype(np.float64), model.faces


def zero_params() -> SMPLXParams:
    return SMPLXParams.from_dict({k: np.zeros(s, np.float32) for k, s in PARAM_SHAPES.items()})


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int32) - b.astype(np.int32)).sum(-1) > 0


# ----------------------------------------------------------------- 3-D viewer
def test_headless_viewer_screenshot(body, tmp_path):
    verts, faces = body
    with Open3DViewer(faces, width=320, height=240, headless=True, scene=False) as viewer:
        empty = viewer.screenshot()
        assert empty.shape == (240, 320, 3) and empty.dtype == np.uint8
        assert not changed(empty, empty[:1, :1]).any()  # background only
        viewer.update(verts)
        first = viewer.screenshot()
        assert changed(first, empty).sum() > 500
        # The person is upright (Y up): the head (narrow top) is above the wide arms row.
        rows = np.nonzero(changed(first, empty).any(1))[0]
        assert rows.min() < 120 < rows.max()
        viewer.update(verts + np.array([0.4, 0.0, 0.0]))
        moved = viewer.screenshot()
        diff = changed(moved, first)
        assert diff.sum() > 300
        # Moving towards camera +x moves the person to the right in the view.
        cols_first = np.nonzero(changed(first, empty).any(0))[0]
        cols_moved = np.nonzero(changed(moved, empty).any(0))[0]
        assert cols_moved.mean() > cols_first.mean() + 5
        viewer.update(None)
        assert not changed(viewer.screenshot(), empty).any()
        path = tmp_path / "viewer.png"
        viewer.update([verts, verts + np.array([0.8, 0.0, 0.5])])
        viewer.capture(path)
        saved = cv2.imread(str(path))
        assert saved is not None and saved.shape == (240, 320, 3)
        assert changed(saved[:, :, ::-1], empty).sum() > changed(first, empty).sum()


def test_every_person_has_their_own_colour(body):
    """Two people side by side: the left mesh (id 0) and the right one (id 1) are drawn in
    different hues; the same ids keep the same colours when the order changes."""
    verts, faces = body
    left, right = verts - np.array([0.5, 0.0, 0.0]), verts + np.array([0.5, 0.0, 0.0])
    with Open3DViewer(faces, width=320, height=240, headless=True, scene=False) as viewer:
        empty = viewer.screenshot()
        viewer.update([left, right], ids=[0, 1])
        shot = viewer.screenshot()
        mask = changed(shot, empty)
        cols = np.nonzero(mask.any(0))[0]
        mid = int(cols.mean())
        left_mask, right_mask = mask.copy(), mask.copy()
        left_mask[:, mid:] = False
        right_mask[:, :mid] = False
        mean_left, mean_right = shot[left_mask].mean(0), shot[right_mask].mean(0)
        assert np.abs(mean_left - mean_right).max() > 20, (mean_left, mean_right)
        viewer.update([right, left], ids=[1, 0])  # same people, other order: same picture
        again = viewer.screenshot()
        assert np.abs(again.astype(int) - shot.astype(int)).mean() < 1.0


def test_scene_has_floor_axes_and_the_camera_image_with_numbers(body):
    """The 3-D view shows more than the mesh: a floor grid below the feet (before a camera frame
    arrives), then the whole camera frame seen through the capture camera with the meshes in its
    perspective over the people, and a status panel fixed to the window's top-left corner."""
    from engines.geometry import project_points
    from viewers.open3d_viewer import fit_camera

    verts, faces = body
    with Open3DViewer(faces, width=480, height=360, headless=True, scene=False) as bare:
        bare.update(verts)
        mesh_only = bare.screenshot()
    frame = np.zeros((270, 480, 3), np.uint8)
    frame[:, :, 2] = 200  # a red camera frame (BGR)
    camera = ((600.0, 600.0), (240.0, 135.0))
    with Open3DViewer(faces, width=480, height=360, headless=True) as viewer:
        viewer.update(verts)
        with_floor = viewer.screenshot()
        viewer.update(verts, ids=[7], image=frame, camera=camera, lines=["FPS in 30.0 out 29.8", "latency 12.0 ms"])
        full = viewer.screenshot()
        viewer.update(verts, ids=[7], image=frame, camera=camera, lines=["FPS in 30.0 out 29.8", "latency 12.0 ms"])
        again = viewer.screenshot()
    grey_lines = (np.abs(with_floor.astype(int) - mesh_only.astype(int)).sum(-1) > 30)
    assert grey_lines[int(0.6 * 360):].sum() > 300  # the grid below the person
    red = (full[:, :, 0] > 150) & (full[:, :, 1] < 80) & (full[:, :, 2] < 80)  # RGB screenshot
    ys, xs = np.nonzero(red)
    # the whole frame, scaled to fit the window: its four sides are inside the view
    (fx, fy), (cx, cy) = fit_camera(*camera, (480, 270), (480, 360))
    left, right = cx - camera[1][0] * fx / camera[0][0], cx + (480 - camera[1][0]) * fx / camera[0][0]
    top, bottom = cy - camera[1][1] * fy / camera[0][1], cy + (270 - camera[1][1]) * fy / camera[0][1]
    assert abs(xs.min() - left) <= 3 and abs(xs.max() - right) <= 3
    assert abs(ys.max() - bottom) <= 3 and right - left > 470
    # the mesh is where the capture camera projects it (vertices flipped into the viewing frame by the viewer)
    uv = project_points(np.asarray(verts, np.float64), (fx, fy), (cx, cy))
    x0, x1 = np.percentile(uv[:, 0], [5, 95])
    y0, y1 = np.percentile(uv[:, 1], [5, 95])
    drawn = ~red  # inside the frame, what is not the red image is the mesh (id 7's orange) or the panel
    assert drawn[int(y0):int(y1), int(x0):int(x1)].mean() > 0.3
    below_panel = slice(130, int(bottom) - 4)
    assert drawn[below_panel, int(left) + 4:int(uv[:, 0].min()) - 4].mean() < 0.02  # beside it: the frame
    assert drawn[below_panel, int(uv[:, 0].max()) + 4:int(right) - 4].mean() < 0.02
    # the panel: white text on a dark box at the window's top-left corner, with the ids and the keys
    corner = full[4:60, 4:200]
    assert (corner.min(-1) > 150).sum() > 30 and (corner.max(-1) < 40).sum() > 500
    assert np.abs(again.astype(int) - full.astype(int)).mean() < 1.0  # the panel stays put


def test_viewer_polls_source(body):
    verts, faces = body
    person = Person(track_id=1, params=zero_params(), bbox=np.zeros(4), bbox_detector=np.zeros(4),
                    focal=np.array([800.0, 800.0]), princpt=np.array([320.0, 240.0]), vertices=verts)
    slot = {"item": None}
    with Open3DViewer(faces, width=200, height=150, headless=True, source=lambda: slot["item"]) as viewer:
        empty = viewer.screenshot()
        slot["item"] = FrameResult(frame_id=0, t_capture_ns=0, image_size=(640, 480), persons=[person])
        assert changed(viewer.screenshot(), empty).sum() > 200
        assert viewer.step() is True


def test_viewer_polls_latest_slot_without_blocking(body):
    verts, faces = body
    slot = LatestSlot()
    with Open3DViewer(faces, width=200, height=150, headless=True, source=slot) as viewer:
        empty = viewer.screenshot()  # an empty slot must not block the viewer
        slot.put(verts)
        shown = viewer.screenshot()
        assert changed(shown, empty).sum() > 200
        assert not slot.full()
        assert np.array_equal(viewer.screenshot(), shown)  # nothing new: same view


def test_viewer_without_display_raises(monkeypatch, body):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ViewerUnavailable, match="--viewer none"):
        Open3DViewer(body[1], headless=False)


# -------------------------------------------------------------------- preview
def make_result(with_joints: bool = True, vertices=None) -> FrameResult:
    image = np.full((480, 640, 3), 40, np.uint8)
    joints = np.full((144, 2), np.nan)
    joints[0] = (400, 300)  # pelvis
    joints[1] = (440, 380)  # left hip (child of pelvis)
    joints[3] = (400, 220)  # spine1 (child of pelvis)
    person = Person(
        track_id=7, params=zero_params(),
        bbox=np.array([340.0, 160.0, 180.0, 260.0]),
        bbox_detector=np.array([360.0, 180.0, 140.0, 220.0]),
        focal=np.array([800.0, 800.0]), princpt=np.array([320.0, 240.0]),
        vertices=vertices, joints_2d=joints if with_joints else None,
    )
    return FrameResult(frame_id=12, t_capture_ns=1_000_000_000, image_size=(640, 480), persons=[person],
                       t_stages={"detect": 1_012_000_000, "infer": 1_095_500_000}, image=image)


def test_preview_draws_boxes_and_skeleton():
    result = make_result()
    before = result.image.copy()
    img = compose(result, {"fps_in": 30.0, "fps_out": 11.5, "drops": 4,
                           "latency_ms": {"detect": 12.0, "infer": 95.5}})
    assert np.array_equal(result.image, before)  # pure: the frame is not modified
    assert img.shape == (480, 640, 3)
    assert tuple(img[250, 360]) == DETECTOR_BOX_COLOR  # left edge of the detector box
    assert tuple(img[400, 430]) == DETECTOR_BOX_COLOR  # bottom edge (y = 180 + 220)
    assert tuple(img[300, 340]) == MODEL_BOX_COLOR     # left edge of the processed box
    assert tuple(img[260, 400]) == SKELETON_COLOR      # middle of pelvis -> spine1
    assert tuple(img[340, 420]) == SKELETON_COLOR      # middle of pelvis -> left hip
    assert tuple(img[300, 400]) == JOINT_COLOR         # pelvis joint dot
    assert tuple(img[300, 470]) == (40, 40, 40)        # nothing drawn between bones
    assert changed(img[:60, :300], before[:60, :300]).sum() > 200  # the text block


def test_preview_vertices_without_joints(body):
    verts = body[0]
    result = make_result(with_joints=False, vertices=verts)
    img = compose(result, {})
    uv = verts[:, :2] * 800.0 / verts[:, 2:3] + np.array([320.0, 240.0])
    px = np.round(uv[::7]).astype(int)
    px = px[(px[:, 0] >= 0) & (px[:, 0] < 640) & (px[:, 1] >= 60) & (px[:, 1] < 480)]
    assert len(px) > 500
    hits = img[px[:, 1], px[:, 0]]
    assert (hits == preview.VERTEX_COLOR).all(1).mean() > 0.5
    assert tuple(img[240, 100]) == (40, 40, 40)


def test_preview_text_edge_cases():
    empty = FrameResult(frame_id=0, t_capture_ns=0, image_size=(320, 240))
    img = PreviewWindow.compose(empty, {})
    assert img.shape == (240, 320, 3)
    assert compose(empty, None).shape == (240, 320, 3)
    lines = preview.stats_lines(make_result(), {"fps_in": 30.0, "queue": 2})
    text = "\n".join(lines)
    assert "FPS in 30.0" in text and "detect 12.0" in text and "infer 95.5" in text
    assert "queue: 2" in text and "people 1" in text


def test_preview_show_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)

    def must_not_run(*args, **kwargs):  # cv2.imshow without a display aborts the process
        raise AssertionError("cv2.imshow called without a display")

    monkeypatch.setattr(cv2, "imshow", must_not_run)
    with pytest.raises(PreviewUnavailable, match="no display"):
        PreviewWindow().show(np.zeros((10, 10, 3), np.uint8))


def test_overlay_view_shows_frame_mesh_box_id_and_numbers(body, media_dir):
    """`--viewer overlay`: the camera frame with the shaded mesh, the person's box and id, and the
    numbers block (composed headless, as the window shows it)."""
    from viewers.mesh_overlay import PersonOverlay
    from viewers.preview import compose_overlay

    verts, faces = body
    frame = cv2.imread(str(media_dir / "coco_000785_skier.jpg"))
    h, w = frame.shape[:2]
    person = Person(4, zero_params(), np.array([200, 20, 240, 400], np.float32),
                    np.array([220, 30, 200, 380], np.float32), np.array([900.0, 900.0]),
                    np.array([w / 2, h / 2]), vertices=verts)
    result = FrameResult(7, 0, (w, h), [person], image=frame)
    with PersonOverlay(faces) as overlay:
        out = compose_overlay(result, {"fps_in": 30.0, "fps_out": 29.5}, overlay)
    assert out.shape == frame.shape
    diff = np.abs(out.astype(int) - frame.astype(int)).sum(-1) > 40
    u = verts[:, 0] / verts[:, 2] * 900 + w / 2
    v = verts[:, 1] / verts[:, 2] * 900 + h / 2
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    assert inside.sum() > 5000
    assert diff[v[inside].astype(int), u[inside].astype(int)].mean() > 0.8  # the mesh is drawn where it projects
    assert diff[40:400, 218:223].any(1).mean() > 0.9         # the box's left edge
    text = out[:60, :200]
    assert (text.min(-1) > 200).sum() > 30                    # white numbers on the dark block
