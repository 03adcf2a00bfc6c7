"""Offscreen mesh rendering and image overlays (the SMPLer-X demo overlay, done with Open3D).

:class:`MeshRenderer` draws a lit, smooth-shaded mesh through a pinhole camera that
matches the OpenCV projection used everywhere in this project::

    x = fx * X / Z + cx,    y = fy * Y / Z + cy     (x right, y down, z forward)

with identity camera pose, as the official demo does (``render_mesh`` in SMPLer-X's
``common/utils/vis.py``), base colour (1.0, 1.0, 0.9), and the composite
``render * mask + image * (1 - mask)``.

Open3D's legacy ``Visualizer`` (hidden window, always through EGL: see :func:`_headless_gl`) only
supports a principal point at the canvas centre, ``((w - 1) / 2, (h - 1) / 2)``, and a
symmetric frustum driven by ``fy``. Arbitrary principal points are therefore handled by
rendering on a larger canvas centred on ``(cx, cy)`` and cropping the frame out of it.
The crop offset is an integer; the sub-pixel rest (at most half a pixel) is removed by
shifting the mesh sideways by ``rest * Z0 / f`` metres (``Z0`` the median vertex depth),
which is exact at depth ``Z0`` and off by ``rest * (Z0 / Z - 1)`` pixels elsewhere
(hundredths of a pixel for a person). ``fx != fy`` is handled by scaling X by ``fx / fy``.

Thread note: an Open3D ``Visualizer`` owns a GL context that is bound to the thread
that created it. Create a :class:`MeshRenderer` and call all of its methods from one
single thread (for example the thread of a preview or recording sink), never from
several threads.

When Open3D cannot render (no EGL, missing libraries), :class:`MeshRenderer` logs a
warning once and :meth:`MeshRenderer.overlay` falls back to :func:`draw_vertices`,
the official ``--show_verts`` style (projected vertices as dots).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from engines.stop import raise_if_stopped

log = logging.getLogger(__name__)

#: Base colour of the mesh (RGB, 0..1), as in the official renderer.
MESH_COLOR = (1.0, 1.0, 0.9)
#: Open3D's legacy Phong lights are brighter than the official ambient 0.3 plus three
#: 0.8 directional lights: the base colour is scaled by this to keep shading unsaturated.
BRIGHTNESS = 0.7
#: Vertices closer than this (metres) count as "not in front of the camera".
Z_NEAR = 0.05
Z_FAR = 1000.0
#: Extra pixels kept around the projected box of the mesh when choosing the canvas.
_MARGIN = 4
#: Canvas sizes are rounded up to a multiple of this (fewer window re-creations).
_CANVAS_STEP = 64


@contextlib.contextmanager
def _headless_gl():
    """Hide the display while Open3D creates its GL context, so that it renders through EGL
    (headless) also on a desktop or under Xvfb: a hidden GLX window there is never mapped and reads
    back as a flat black silhouette, while the EGL context renders the shaded mesh. The variables
    are restored at once; Open3D's windowing starts once per process, so the first renderer
    decides (the live Open3D viewer, which needs the display, never shares a process with it)."""
    hidden = {k: os.environ.pop(k) for k in ("DISPLAY", "WAYLAND_DISPLAY") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(hidden)


class RendererUnavailable(RuntimeError):
    """Open3D offscreen rendering could not be started on this machine."""


def project(vertices: np.ndarray, focal, princpt) -> Tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of (N, 3) camera-space points; returns (uv (N, 2), in_front (N,))."""
    from engines.geometry import project_points

    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    in_front = v[:, 2] > Z_NEAR
    safe = np.where(in_front[:, None], v, np.array([0.0, 0.0, 1.0]))  # behind the camera: no division by ~0
    uv = project_points(safe, focal, princpt)
    return uv, in_front


def draw_vertices(image: np.ndarray, vertices: np.ndarray, focal, princpt,
                  color=(255, 0, 0), radius: int = 2, alpha: float = 0.8) -> np.ndarray:
    """Draw projected vertices as filled dots (official ``--show_verts``), returns a new image.

    The official demo draws RGB (0, 0, 255) on an RGB image, which is blue, so the BGR
    default here is (255, 0, 0). Points behind the camera are skipped.
    """
    uv, in_front = project(vertices, focal, princpt)
    h, w = image.shape[:2]
    uv = uv[in_front]
    keep = (uv[:, 0] > -radius) & (uv[:, 0] < w + radius) & (uv[:, 1] > -radius) & (uv[:, 1] < h + radius)
    canvas = image.copy()
    for x, y in np.round(uv[keep]).astype(np.int64):
        cv2.circle(canvas, (int(x), int(y)), radius, color, -1, cv2.LINE_AA)
    return cv2.addWeighted(image, 1.0 - alpha, canvas, alpha, 0.0)


def _split_cameras(cameras, count: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """``cameras`` is one ``(focal, princpt)`` pair shared by all, or one pair per person."""
    cams = list(cameras)
    if len(cams) == 2 and np.asarray(cams[0], dtype=np.float64).ndim == 1:
        return [(np.asarray(cams[0], np.float64), np.asarray(cams[1], np.float64))] * count
    if len(cams) != count:
        raise ValueError(f"got {len(cams)} cameras for {count} meshes")
    return [(np.asarray(f, np.float64), np.asarray(c, np.float64)) for f, c in cams]


class MeshRenderer:
    """Reusable offscreen renderer for frames of ``width`` x ``height`` pixels.

    The hidden Open3D window is created lazily on first use and re-created only when
    the frame size changes or a larger canvas is needed for an off-centre principal
    point (the canvas only grows, up to ``max_canvas`` pixels a side). Use one instance
    from one thread only (see the module docstring).
    """

    def __init__(self, width: int, height: int, color=MESH_COLOR, brightness: float = BRIGHTNESS,
                 max_canvas: int = 4096):
        self.width = int(width)
        self.height = int(height)
        self.color = tuple(float(c) * float(brightness) for c in color)
        self.max_canvas = int(max_canvas)
        self._o3d = None
        self._vis = None
        self._mesh = None
        self._faces_key = None
        self._canvas = (0, 0)
        self._failed: Optional[str] = None
        self._warned_clip = False

    # ------------------------------------------------------------------ setup
    @property
    def available(self) -> bool:
        """True when Open3D offscreen rendering works (tries to start it once)."""
        if self._failed is None and self._vis is None:
            try:
                self._ensure_canvas(self.width, self.height)
            except RendererUnavailable:
                pass
        return self._failed is None

    def _fail(self, why: str) -> None:
        raise_if_stopped()  # a stop signal that interrupted the import is not "Open3D unavailable"
        self._failed = why
        log.warning("Open3D mesh rendering unavailable (%s); overlays fall back to projected "
                    "vertices (draw_vertices)", why)
        raise RendererUnavailable(why)

    def _ensure_canvas(self, cw: int, ch: int) -> None:
        """Make sure the hidden window is at least ``cw`` x ``ch`` pixels."""
        if self._failed is not None:
            raise RendererUnavailable(self._failed)
        if self._vis is not None and self._canvas[0] >= cw and self._canvas[1] >= ch:
            return
        cw = max(cw, self._canvas[0], self.width)
        ch = max(ch, self._canvas[1], self.height)
        self._close_window()
        if self._o3d is None:
            try:
                import open3d as o3d
            except (ImportError, OSError) as exc:
                self._fail(f"cannot import open3d: {exc}")
            self._o3d = o3d
        o3d = self._o3d
        from engines.quiet import quiet_open3d

        quiet_open3d(o3d)  # Open3D's EGL/GLFW notices
        with _headless_gl():
            vis = o3d.visualization.Visualizer()
            created = vis.create_window(window_name="mesh-renderer", width=cw, height=ch, visible=False)
        if not created:
            self._fail("Visualizer.create_window(visible=False) failed (no EGL / OpenGL?)")
        opt = vis.get_render_option()
        opt.background_color = np.zeros(3)
        opt.light_on = True
        opt.mesh_show_back_face = True
        opt.mesh_shade_option = o3d.visualization.MeshShadeOption.Color
        opt.mesh_color_option = o3d.visualization.MeshColorOption.Color
        vc = vis.get_view_control()
        vc.set_constant_z_near(Z_NEAR)
        vc.set_constant_z_far(Z_FAR)
        self._vis = vis
        self._canvas = (cw, ch)
        self._mesh = None
        self._faces_key = None
        log.debug("offscreen canvas %dx%d for %dx%d frames", cw, ch, self.width, self.height)

    def _close_window(self) -> None:
        if self._vis is not None:
            self._vis.destroy_window()
        self._vis = None
        self._mesh = None
        self._faces_key = None
        self._canvas = (0, 0)

    def resize(self, width: int, height: int) -> None:
        """Switch to another frame size (the window is re-created on next render)."""
        if (int(width), int(height)) != (self.width, self.height):
            self.width, self.height = int(width), int(height)
            self._close_window()

    def close(self) -> None:
        """Destroy the hidden window (call from the thread that rendered)."""
        self._close_window()

    def __enter__(self) -> "MeshRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- render
    def _set_mesh(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        o3d = self._o3d
        same = self._faces_key is not None and np.array_equal(self._faces_key, faces)
        if self._mesh is None or not same:
            if self._mesh is not None:
                self._vis.remove_geometry(self._mesh, reset_bounding_box=False)
            mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices),
                                             o3d.utility.Vector3iVector(faces.astype(np.int32)))
            mesh.compute_vertex_normals()
            mesh.paint_uniform_color(self.color)
            self._vis.add_geometry(mesh, reset_bounding_box=True)
            self._mesh, self._faces_key = mesh, faces.copy()
        else:
            self._mesh.vertices = o3d.utility.Vector3dVector(vertices)
            self._mesh.compute_vertex_normals()
            self._vis.update_geometry(self._mesh)

    def render_with_depth(self, vertices, faces, focal, princpt):
        """Like :meth:`render`, also returning the depth map (float32 metres, 0 = empty)."""
        w, h = self.width, self.height
        rgb = np.zeros((h, w, 3), np.uint8)
        depth = np.zeros((h, w), np.float32)
        v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
        f = np.asarray(faces).reshape(-1, 3)
        fx, fy = (float(x) for x in np.asarray(focal, np.float64).reshape(2))
        cx, cy = (float(x) for x in np.asarray(princpt, np.float64).reshape(2))
        uv, in_front = project(v, (fx, fy), (cx, cy))
        if not in_front.any() or len(f) == 0:
            return rgb, depth > 0, depth
        # Frame region the mesh can cover (whole frame if it crosses the camera plane).
        if in_front.all():
            x0 = max(0, int(math.floor(uv[:, 0].min())) - _MARGIN)
            x1 = min(w, int(math.ceil(uv[:, 0].max())) + _MARGIN + 1)
            y0 = max(0, int(math.floor(uv[:, 1].min())) - _MARGIN)
            y1 = min(h, int(math.ceil(uv[:, 1].max())) + _MARGIN + 1)
        else:
            x0, x1, y0, y1 = 0, w, 0, h
        if x0 >= x1 or y0 >= y1:
            return rgb, depth > 0, depth
        # Canvas centred on the principal point: canvas centre (cw/2 - 0.5) <-> (cx + ox).
        need_w = 2 * int(math.ceil(max(cx - x0, x1 - cx) + 1.0))
        need_h = 2 * int(math.ceil(max(cy - y0, y1 - cy) + 1.0))
        if need_w > self.max_canvas or need_h > self.max_canvas:
            if not self._warned_clip:
                log.warning("principal point (%.0f, %.0f) is far from the mesh; the render is "
                            "clipped to a %d px canvas", cx, cy, self.max_canvas)
                self._warned_clip = True
            need_w, need_h = min(need_w, self.max_canvas), min(need_h, self.max_canvas)
        step = _CANVAS_STEP
        self._ensure_canvas(min(self.max_canvas, -(-need_w // step) * step),
                            min(self.max_canvas, -(-need_h // step) * step))
        cw, ch = self._canvas
        ccx, ccy = cw / 2.0 - 0.5, ch / 2.0 - 0.5
        ox, oy = int(round(ccx - cx)), int(round(ccy - cy))
        rest_x, rest_y = cx + ox - ccx, cy + oy - ccy
        z0 = float(np.median(v[in_front, 2]))
        vr = v.copy()
        vr[:, 0] = v[:, 0] * (fx / fy) + rest_x * z0 / fy
        vr[:, 1] = v[:, 1] + rest_y * z0 / fy

        o3d = self._o3d
        self._set_mesh(vr, f)
        vis = self._vis
        vis.reset_view_point(True)  # refresh the view's bounding box for the moved mesh
        params = o3d.camera.PinholeCameraParameters()
        params.intrinsic = o3d.camera.PinholeCameraIntrinsic(cw, ch, fy, fy, ccx, ccy)
        params.extrinsic = np.eye(4)
        if not vis.get_view_control().convert_from_pinhole_camera_parameters(params, True):
            raise RendererUnavailable("Open3D refused the camera parameters")
        vis.poll_events()
        vis.update_renderer()
        img = np.asarray(vis.capture_screen_float_buffer(do_render=False))
        dep = np.asarray(vis.capture_depth_float_buffer(do_render=False))

        # Copy the part of the canvas that lands inside the frame.
        fx0, fy0 = max(0, -ox), max(0, -oy)
        fx1, fy1 = min(w, cw - ox), min(h, ch - oy)
        if fx0 < fx1 and fy0 < fy1:
            crop = img[fy0 + oy:fy1 + oy, fx0 + ox:fx1 + ox]
            rgb[fy0:fy1, fx0:fx1] = np.clip(crop * 255.0 + 0.5, 0, 255).astype(np.uint8)
            depth[fy0:fy1, fx0:fx1] = dep[fy0 + oy:fy1 + oy, fx0 + ox:fx1 + ox]
        mask = depth > 0
        rgb[~mask] = 0
        return rgb, mask, depth

    def render(self, vertices, faces, focal, princpt) -> Tuple[np.ndarray, np.ndarray]:
        """Render one mesh (camera-space metres) at frame size.

        Returns ``(rgb uint8 (H, W, 3), mask bool (H, W))``; pixels outside the mask are 0.
        Raises :class:`RendererUnavailable` if Open3D cannot render here.
        """
        rgb, mask, _ = self.render_with_depth(vertices, faces, focal, princpt)
        return rgb, mask

    # ---------------------------------------------------------------- overlay
    def overlay(self, image_bgr: np.ndarray, persons_vertices_list: Sequence[np.ndarray],
                faces: np.ndarray, cameras, alpha: float = 1.0) -> np.ndarray:
        """Composite the shaded meshes of several people over a BGR frame (new image).

        ``cameras``: one ``(focal, princpt)`` pair per person, or a single pair for all.
        Overlapping people are ordered by depth. Pixels outside every mask are unchanged.
        Falls back to :func:`draw_vertices` (with a logged warning) when rendering is
        unavailable.
        """
        h, w = image_bgr.shape[:2]
        verts = list(persons_vertices_list)
        cams = _split_cameras(cameras, len(verts))
        if not verts:
            return image_bgr.copy()
        self.resize(w, h)
        if not self.available:
            out = image_bgr
            for v, (f, c) in zip(verts, cams):
                out = draw_vertices(out, v, f, c)
            return out if out is not image_bgr else image_bgr.copy()
        color = np.zeros((h, w, 3), np.uint8)
        zbuf = np.full((h, w), np.inf, np.float32)
        for v, (f, c) in zip(verts, cams):
            rgb, mask, depth = self.render_with_depth(v, faces, f, c)
            closer = mask & (depth < zbuf)
            color[closer] = rgb[closer, ::-1]  # RGB -> BGR
            zbuf[closer] = depth[closer]
        covered = np.isfinite(zbuf)
        out = image_bgr.copy()
        if alpha >= 1.0:
            out[covered] = color[covered]
        else:
            blend = alpha * color[covered].astype(np.float32) + (1.0 - alpha) * image_bgr[covered].astype(np.float32)
            out[covered] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
        return out


def overlay(image_bgr: np.ndarray, persons_vertices_list: Sequence[np.ndarray], faces: np.ndarray,
            cameras, renderer: Optional[MeshRenderer] = None, alpha: float = 1.0) -> np.ndarray:
    """One-off overlay; pass a long-lived ``renderer`` in loops (window creation is slow)."""
    if renderer is not None:
        return renderer.overlay(image_bgr, persons_vertices_list, faces, cameras, alpha)
    h, w = image_bgr.shape[:2]
    with MeshRenderer(w, h) as r:
        return r.overlay(image_bgr, persons_vertices_list, faces, cameras, alpha)


#: Distinct colours (BGR) for people, by track id.
PERSON_COLORS = ((0, 200, 255), (255, 140, 0), (80, 220, 80), (220, 80, 220), (255, 255, 0), (60, 60, 255),
                 (0, 160, 120), (180, 120, 255))


def person_color(track_id: int) -> Tuple[int, int, int]:
    return PERSON_COLORS[int(track_id) % len(PERSON_COLORS)]


def draw_boxes(image_bgr: np.ndarray, persons: Sequence) -> np.ndarray:
    """Each person's box (the detector/tracker box) and track id, in the person's colour (in place)."""
    h, w = image_bgr.shape[:2]
    thick = max(1, int(round(min(w, h) / 320)))
    for p in persons:
        box = np.asarray(p.bbox_detector, np.float64)
        if box.shape != (4,) or not np.isfinite(box).all():
            continue
        x, y, bw, bh = (int(round(v)) for v in box)
        color = person_color(p.track_id)
        cv2.rectangle(image_bgr, (x, y), (x + bw, y + bh), color, thick)
        label = f"id {p.track_id}"
        scale = 0.5 * thick
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = max(y, th + base + 2)
        cv2.rectangle(image_bgr, (x, ty - th - base - 2), (x + tw + 4, ty), color, -1)
        cv2.putText(image_bgr, label, (x + 2, ty - base - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick,
                    cv2.LINE_AA)
    return image_bgr


class PersonOverlay:
    """Draws the meshes of a frame's people over it (``overlay(image_bgr, persons)``), and their
    boxes and ids unless ``boxes=False``, with one renderer kept for the whole run; the offline
    commands pass it to ``realtime.offline``. Create, call and close it on one thread (see the
    thread note above)."""

    def __init__(self, faces: np.ndarray, boxes: bool = True):
        self.faces = faces
        self.boxes = boxes
        self._renderer: Optional[MeshRenderer] = None

    def __call__(self, image_bgr: np.ndarray, persons: Sequence) -> np.ndarray:
        h, w = image_bgr.shape[:2]
        if self._renderer is None:
            self._renderer = MeshRenderer(w, h)
        shown = [p for p in persons if p.vertices is not None]
        out = image_bgr.copy() if not shown else self._renderer.overlay(
            image_bgr, [p.vertices for p in shown], self.faces, [(tuple(p.focal), tuple(p.princpt)) for p in shown])
        return draw_boxes(out, persons) if self.boxes else out

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self._renderer = None

    def __enter__(self) -> "PersonOverlay":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
