"""Live 3-D view of the newest SMPL-X mesh(es) in an Open3D window.

The viewer never blocks the pipeline: producers only overwrite the newest vertices
(:meth:`Open3DViewer.update`, any thread, O(1)) or the viewer polls a ``source``
callable (e.g. a latest-value slot's ``get``) on its own schedule. All Open3D calls
happen in :meth:`Open3DViewer.step` / :meth:`Open3DViewer.run`, which must run on
the thread that created the viewer (the main thread for a visible window: GLFW
requires it).

Meshes arrive in the OpenCV camera frame (x right, y down, z forward); they are
shown rotated 180 degrees about x (Y up, the person facing the viewer). Around them: a floor
grid under the lowest foot (1 m cells with 0.25 m lines), the capture camera's axes at the
origin, and, when :meth:`update` gets the frame, the camera image as a backdrop one metre behind
the furthest person, placed through the first person's camera. Once the frame is known the view
*is* the capture camera: the whole frame fits the window (:func:`fit_camera`) and the meshes
are drawn in the camera's perspective over the people; drag to orbit, R comes back. The
numbers (FPS, latency, people, ids) and the keys are on a status panel fixed to the window's
top-left corner (a small textured quad re-placed in front of the current view every frame).
The default window, 1024x576, fits a 1280x720 screen with its title bar.
Keys: Q or Esc quits, R resets the view, P pauses updates.

``headless=True`` renders offscreen (EGL, no display needed) so tests and servers can
:meth:`~Open3DViewer.screenshot` or :meth:`~Open3DViewer.capture` the view.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from engines.stop import raise_if_stopped

log = logging.getLogger(__name__)

#: OpenCV camera frame -> Y-up viewing frame (180 degrees about x).
FLIP = np.array([1.0, -1.0, -1.0])
BACKGROUND = (0.12, 0.12, 0.14)
#: One colour per person (RGB, 0..1), by track id; the first matches the single-person colour.
PERSON_COLORS = ((0.75, 0.75, 0.68), (0.95, 0.55, 0.25), (0.35, 0.65, 0.95), (0.45, 0.8, 0.4),
                 (0.85, 0.4, 0.85), (0.95, 0.85, 0.3))

VerticesLike = Union[None, np.ndarray, Sequence[np.ndarray]]


#: The keys, on the status panel.
KEYS_LINE = "Q/Esc quit  R camera view  P pause  drag: orbit"
#: Depth (metres) of the status panel in front of the view: just beyond the near plane, before anything shown.
PANEL_DEPTH = 0.45
#: Base colours are scaled by this in the camera view (the default light then faces the meshes).
CAMERA_VIEW_SHADE = 0.6
NEAR = 0.4  # the capture camera's own axes (0.3 m at the origin) stay out of its view


def panel_image(lines: Sequence[str], scale: float = 0.55) -> np.ndarray:
    """The status panel: white lines on a dark box (RGB uint8), as small as its text."""
    import cv2

    thick = 1
    sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thick) for line in lines]
    pad, gap = 8, 6
    width = max(tw for (tw, _), _ in sizes) + 2 * pad
    height = sum(th + base for (_, th), base in sizes) + gap * (len(lines) - 1) + 2 * pad
    img = np.full((height, width, 3), 24, np.uint8)
    y = pad
    for line, ((_, th), base) in zip(lines, sizes):
        cv2.putText(img, line, (pad, y + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += th + base + gap
    return img


def fit_camera(focal, princpt, image_size, window_size):
    """The capture camera scaled so that the whole ``image_size`` frame fits ``window_size``:
    ``((fx, fy), (cx, cy))`` in window pixels. Open3D's legacy view keeps the principal point at
    the window's centre (it ignores another one), so the scale is chosen with the principal point
    there: the frame lies around it, whole, off-centre when the camera's principal point is (a
    principal point only shifts the picture, so the meshes stay over the people)."""
    (fx, fy), (cx, cy) = focal, princpt
    w, h = image_size
    ww, wh = window_size
    half_w = max(cx, w - cx, 1e-6)
    half_h = max(cy, h - cy, 1e-6)
    s = min((ww / 2.0) / half_w, (wh / 2.0) / half_h)
    return (fx * s, fy * s), ((ww - 1) / 2.0, (wh - 1) / 2.0)


def _write_lines(img: np.ndarray, lines: Sequence[str]) -> None:
    """White text on dark boxes in the top-left corner of a BGR image (in place)."""
    import cv2

    scale = max(0.5, img.shape[0] / 900.0)
    thick = max(1, int(round(scale * 1.5)))
    y = int(8 * scale)
    for line in lines:
        (tw, th), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cv2.rectangle(img, (4, y), (int(4 + tw + 8 * scale), int(y + th + base + 6 * scale)), (20, 20, 20), -1)
        cv2.putText(img, line, (int(8 * scale), int(y + th + 3 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thick, cv2.LINE_AA)
        y += int(th + base + 10 * scale)


class ViewerUnavailable(RuntimeError):
    """The 3-D viewer cannot open a window here."""


def display_available() -> bool:
    """True when an X11 or Wayland display is configured ($DISPLAY / $WAYLAND_DISPLAY)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _vertices_of(item) -> Optional[List[np.ndarray]]:
    """Normalise what a source gives (array, list of arrays, FrameResult, None) to a list."""
    if item is None:
        return None
    persons = getattr(item, "persons", None)
    if persons is not None:  # a FrameResult
        return [np.asarray(p.vertices) for p in persons if p.vertices is not None]
    if isinstance(item, np.ndarray) and item.ndim == 2:
        return [item]
    return [np.asarray(v) for v in item]


class Open3DViewer:
    """A window showing the newest mesh(es); ``faces`` (F, 3) is shared by every person.

    ``source``: optional, polled once per :meth:`step` without waiting. Either a
    :class:`realtime.slot.LatestSlot` (anything with ``get(timeout=...)``; it is called
    with ``timeout=0``, so the viewer takes the slot's items) or a zero-argument callable
    returning the newest item. Items are vertices (N, 3), a list of them, a
    ``FrameResult``, or None for "nothing new"; they are compared by identity, so
    returning the same object again costs nothing.
    """

    def __init__(self, faces: np.ndarray, width: int = 1024, height: int = 576, headless: bool = False,
                 source: Optional[Union[Callable[[], object], object]] = None, title: str = "SMPL-X mocap",
                 scene: bool = True):
        if not headless and not display_available():
            raise ViewerUnavailable(
                "no display found ($DISPLAY and $WAYLAND_DISPLAY are unset): the live 3-D viewer "
                "needs a desktop session; run with --viewer none, or use Open3DViewer(headless=True) "
                "to render offscreen")
        try:
            import open3d as o3d
        except (ImportError, OSError) as exc:
            raise_if_stopped()
            raise ViewerUnavailable(f"cannot import open3d: {exc}") from exc
        self._o3d = o3d
        self.faces = np.asarray(faces, dtype=np.int32).reshape(-1, 3)
        self.width, self.height, self.headless = int(width), int(height), bool(headless)
        self.source = source
        getter = getattr(source, "get", None)
        if callable(getter):  # a LatestSlot-like mailbox: never wait on it
            self._poll = lambda: getter(timeout=0)
        else:
            self._poll = source
        self._vis = o3d.visualization.VisualizerWithKeyCallback()
        self._vis.register_key_callback(ord("Q"), lambda vis: self._request_quit())
        self._vis.register_key_callback(256, lambda vis: self._request_quit())  # Esc
        self._vis.register_key_callback(ord("R"), lambda vis: self.reset_view() or False)
        self._vis.register_key_callback(ord("P"), lambda vis: self._toggle_pause())
        self._quit = False
        from engines.quiet import quiet_open3d

        quiet_open3d(o3d)  # Open3D's EGL/GLFW notices
        created = self._vis.create_window(window_name=title, width=self.width, height=self.height,
                                          visible=not headless)
        if not created:
            raise ViewerUnavailable("Open3D could not create a window (OpenGL / EGL missing?); "
                                    "run with --viewer none")
        opt = self._vis.get_render_option()
        opt.background_color = np.asarray(BACKGROUND)
        opt.mesh_show_back_face = True
        opt.mesh_shade_option = o3d.visualization.MeshShadeOption.Color
        self._mesh = None
        self._persons = 0
        self._pending_ids: Optional[List[int]] = None
        self._taken_ids: Optional[List[int]] = None  # the ids taken with the vertices being shown
        self._ids: Optional[tuple] = None
        self._pending_backdrop = None
        self._backdrop = None
        self._floor = None
        self._paused = False
        #: (focal, princpt, (w, h)) of the frame shown as backdrop: the default view.
        self._capture_cam = None
        self._camera_view = False
        self._panel = None
        self._panel_lines: Optional[List[str]] = None
        self._panel_size = (0, 0)
        self._panel_pose = None
        self.scene = bool(scene)  # floor grid, axes and backdrop (off: the meshes alone)
        if self.scene:
            self._add_axes()
        self._view_set = False
        self._lock = threading.Lock()
        self._pending: Optional[List[np.ndarray]] = None
        self._last_item = None
        self._closed = False

    # --------------------------------------------------------------- producers
    def update(self, vertices: VerticesLike, ids: Optional[Sequence[int]] = None,
               image: Optional[np.ndarray] = None, camera: Optional[tuple] = None,
               lines: Sequence[str] = ()) -> None:
        """Overwrite the newest mesh(es); safe from any thread, never blocks on rendering.

        ``vertices``: (N, 3) camera-space array, a list of them (several people), or an
        empty list / None to show nobody. ``ids``: the people's track ids, which pick their
        colours (default: their order). ``image`` (BGR) with ``camera`` = (focal, princpt) of
        the first person: the backdrop; ``lines``: text written on it (numbers).
        """
        verts = _vertices_of(vertices) or []
        with self._lock:
            self._pending = verts
            self._pending_ids = list(ids) if ids is not None else None
            if image is not None:
                self._pending_backdrop = (image, camera, list(lines))

    # ---------------------------------------------------------- viewer thread
    def _take(self) -> Optional[List[np.ndarray]]:
        if self._poll is not None:
            item = self._poll()
            if item is not None and item is not self._last_item:
                self._last_item = item
                with self._lock:
                    self._pending = _vertices_of(item) or []
        with self._lock:  # the ids that came with these vertices (update() may run on another thread)
            verts, self._pending = self._pending, None
            self._taken_ids = self._pending_ids
        return verts

    def _add_axes(self) -> None:
        """The capture camera's axes at the origin (x red, y green, z blue; 0.3 m)."""
        axes = self._o3d.geometry.TriangleMesh.create_coordinate_frame(size=0.3)
        self._vis.add_geometry(axes, reset_bounding_box=True)

    def _ensure_floor(self, stacked: np.ndarray) -> None:
        """A floor grid under the lowest point of the first people seen (once)."""
        if self._floor is not None:  # drawn (or False: dropped for the camera frame)
            return
        o3d = self._o3d
        y = float(stacked[:, 1].min())
        cx, cz = float(np.median(stacked[:, 0])), float(np.median(stacked[:, 2]))
        half, step = 3.0, 0.25
        ticks = np.arange(-half, half + 1e-9, step)
        pts, segs = [], []
        for k, t in enumerate(ticks):
            pts += [(cx + t, y, cz - half), (cx + t, y, cz + half), (cx - half, y, cz + t), (cx + half, y, cz + t)]
            segs += [(4 * k, 4 * k + 1), (4 * k + 2, 4 * k + 3)]
        grid = o3d.geometry.LineSet(o3d.utility.Vector3dVector(np.asarray(pts)), o3d.utility.Vector2iVector(segs))
        major = [abs((t / 1.0) - round(t / 1.0)) < 1e-6 for t in ticks]
        colors = [(0.55, 0.55, 0.6) if major[k] else (0.3, 0.3, 0.34) for k in range(len(ticks)) for _ in range(2)]
        grid.colors = o3d.utility.Vector3dVector(np.asarray(colors))
        self._vis.add_geometry(grid, reset_bounding_box=False)
        self._floor = grid

    def _show_backdrop(self, item, stacked: Optional[np.ndarray]) -> None:
        """The camera image on a quad behind the people, through the first person's camera."""
        import cv2

        o3d = self._o3d
        image, camera, lines = item
        # a new array (the caller's frame is never drawn on); the text's grey and white are the same in BGR and RGB
        img = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2RGB)
        self._panel_lines = list(lines)
        h, w = img.shape[:2]
        if camera is None:
            f = 1.2 * max(w, h)
            camera = ((f, f), (w / 2.0, h / 2.0))
        (fx, fy), (cx, cy) = camera
        self._capture_cam = ((float(fx), float(fy)), (float(cx), float(cy)), (w, h))
        depth = (float(-stacked[:, 2].min()) + 1.0) if stacked is not None and len(stacked) else 6.0
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
        xyz = np.stack([(corners[:, 0] - cx) / fx * depth, (corners[:, 1] - cy) / fy * depth,
                        np.full(4, depth)], 1) * FLIP
        quad = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(xyz),
                                         o3d.utility.Vector3iVector(np.array([[0, 2, 1], [0, 3, 2]])))
        uv = np.array([[0, 0], [1, 1], [1, 0], [0, 0], [0, 1], [1, 1]], np.float64)
        quad.triangle_uvs = o3d.utility.Vector2dVector(uv)
        quad.triangle_material_ids = o3d.utility.IntVector([0, 0])
        quad.textures = [o3d.geometry.Image(img)]
        if self._backdrop is not None:
            self._vis.remove_geometry(self._backdrop, reset_bounding_box=False)
        self._vis.add_geometry(quad, reset_bounding_box=False)
        self._backdrop = quad

    def reset_view(self) -> None:
        """Back to the capture camera's viewpoint (key R)."""
        self._view_set = False
        self._camera_view = False
        if self._capture_cam is not None:
            self._set_camera_view()
        elif self._mesh is not None:
            self._set_default_view(np.asarray(self._mesh.vertices))

    def _set_camera_view(self) -> None:
        """Look through the capture camera: the whole frame fits the window, the meshes in its perspective."""
        o3d = self._o3d
        focal, princpt, size = self._capture_cam
        (fx, fy), (cx, cy) = fit_camera(focal, princpt, size, (self.width, self.height))
        params = o3d.camera.PinholeCameraParameters()
        params.intrinsic = o3d.camera.PinholeCameraIntrinsic(self.width, self.height, fx, fy, cx, cy)
        params.extrinsic = np.diag([1.0, -1.0, -1.0, 1.0])  # viewing frame (Y up) -> OpenCV camera
        vc = self._vis.get_view_control()
        vc.set_constant_z_near(NEAR)
        vc.set_constant_z_far(1000.0)
        if vc.convert_from_pinhole_camera_parameters(params, True):
            self._camera_view = self._view_set = True
        else:  # an Open3D that refuses an off-centre principal point: the old framing
            log.debug("Open3D refused the capture camera view")
            self._camera_view = True

    def _place_panel(self) -> None:
        """The status panel at the window's top-left corner, in front of the current view."""
        if self._panel_lines is None or not self.scene:
            return
        o3d = self._o3d
        ids = self._ids if self._ids is not None else ()
        lines = self._panel_lines + ([f"ids {' '.join(str(i) for i in ids)}"] if ids else []) + [KEYS_LINE]
        cam = self._vis.get_view_control().convert_to_pinhole_camera_parameters()
        pose = (tuple(lines), cam.extrinsic.tobytes(), cam.intrinsic.intrinsic_matrix.tobytes())
        if pose == self._panel_pose:
            return
        self._panel_pose = pose
        img = panel_image(lines, scale=max(0.45, self.height / 1100.0))
        ph, pw = img.shape[:2]
        k = cam.intrinsic.intrinsic_matrix
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
        u = np.array([6, 6 + pw, 6 + pw, 6], np.float64)
        v = np.array([6, 6, 6 + ph, 6 + ph], np.float64)
        d = PANEL_DEPTH
        in_cam = np.stack([(u - cx) / fx * d, (v - cy) / fy * d, np.full(4, d), np.ones(4)], 1)
        world = (np.linalg.inv(cam.extrinsic) @ in_cam.T).T[:, :3]
        quad = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(world),
                                         o3d.utility.Vector3iVector(np.array([[0, 2, 1], [0, 3, 2]])))
        quad.triangle_uvs = o3d.utility.Vector2dVector(
            np.array([[0, 0], [1, 1], [1, 0], [0, 0], [0, 1], [1, 1]], np.float64))
        quad.triangle_material_ids = o3d.utility.IntVector([0, 0])
        quad.textures = [o3d.geometry.Image(np.ascontiguousarray(img))]
        if self._panel is not None:
            self._vis.remove_geometry(self._panel, reset_bounding_box=False)
        self._vis.add_geometry(quad, reset_bounding_box=False)
        self._panel = quad

    def _show(self, verts: List[np.ndarray]) -> None:
        o3d = self._o3d
        with self._lock:
            backdrop, self._pending_backdrop = self._pending_backdrop, None
        stacked_all = (np.concatenate([np.asarray(v, np.float64).reshape(-1, 3) for v in verts], 0) * FLIP
                       if verts else None)
        if stacked_all is not None and self.scene and self._capture_cam is None and backdrop is None:
            self._ensure_floor(stacked_all)  # with the camera frame behind them the people need no floor
        if backdrop is not None and self.scene:
            self._show_backdrop(backdrop, stacked_all)
            if self._floor not in (None, False):  # seen from the camera's height the grid is a smear across the frame
                self._vis.remove_geometry(self._floor, reset_bounding_box=False)
                self._floor = False
            if not self._camera_view:
                self._set_camera_view()
        if not verts:
            if self._mesh is not None:
                self._vis.remove_geometry(self._mesh, reset_bounding_box=False)
                self._mesh, self._persons = None, 0
            return
        stacked = stacked_all
        ids = tuple(self._taken_ids) if self._taken_ids is not None else tuple(range(len(verts)))
        if self._mesh is None or len(verts) != self._persons or ids != self._ids:
            n = len(verts[0]) if verts else 0
            faces = np.concatenate([self.faces + i * n for i in range(len(verts))], 0)
            if self._mesh is not None:
                self._vis.remove_geometry(self._mesh, reset_bounding_box=False)
            mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(stacked),
                                             o3d.utility.Vector3iVector(faces))
            mesh.compute_vertex_normals()
            colors = np.concatenate([np.tile(PERSON_COLORS[int(i) % len(PERSON_COLORS)], (len(v), 1))
                                     for i, v in zip(ids, verts)], 0)
            if self._camera_view:  # lit head-on from the camera: darker base colours keep the shading visible
                colors = colors * CAMERA_VIEW_SHADE
            mesh.vertex_colors = o3d.utility.Vector3dVector(colors)
            cam = self._vis.get_view_control().convert_to_pinhole_camera_parameters()
            self._vis.add_geometry(mesh, reset_bounding_box=not self._view_set)
            self._mesh, self._persons, self._ids = mesh, len(verts), ids
            if self._camera_view:  # adding geometry may move the view: keep the one in use
                self._vis.get_view_control().convert_from_pinhole_camera_parameters(cam, True)
            elif not self._view_set:
                self._set_default_view(stacked)
        else:
            self._mesh.vertices = o3d.utility.Vector3dVector(stacked)
            self._mesh.compute_vertex_normals()
            self._vis.update_geometry(self._mesh)

    def _set_default_view(self, points: np.ndarray) -> None:
        """Look at the people from the capture camera's side, Y up."""
        vc = self._vis.get_view_control()
        centre = 0.5 * (points.min(0) + points.max(0))
        vc.set_lookat(centre)
        vc.set_front((0.0, 0.0, 1.0))
        vc.set_up((0.0, 1.0, 0.0))
        vc.set_zoom(0.8)
        self._view_set = True

    def step(self) -> bool:
        """Show the newest mesh (if any arrived) and process window events.

        Returns False once the window was closed. Call from the viewer's own thread.
        """
        if self._closed:
            return False
        verts = self._take()
        if verts is not None and not self._paused:
            self._show(verts)
        self._place_panel()
        alive = self._vis.poll_events()
        self._vis.update_renderer()
        if self._quit:
            return False
        return bool(alive) or self.headless

    def _request_quit(self) -> bool:
        self._quit = True
        return False

    def _toggle_pause(self) -> bool:
        self._paused = not self._paused
        return False

    def run(self, stop: Optional[threading.Event] = None, fps: float = 60.0) -> None:
        """Render at up to ``fps`` until the window closes or ``stop`` is set."""
        period = 1.0 / max(fps, 1e-3)
        while stop is None or not stop.is_set():
            t0 = time.perf_counter()
            if not self.step():
                break
            rest = period - (time.perf_counter() - t0)
            if rest > 0:
                time.sleep(rest)
        self.close()

    def screenshot(self) -> np.ndarray:
        """Render the current view and return it as RGB uint8 (H, W, 3)."""
        self.step()
        # rendered again for the read-back: a visible GLX window (a desktop, Xvfb) reads back black otherwise
        buf = np.asarray(self._vis.capture_screen_float_buffer(do_render=True))
        return np.clip(buf * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def capture(self, path) -> None:
        """Save the current view as an image file (PNG/JPEG by extension)."""
        import cv2

        from engines.atomic import write_bytes_atomic

        ok, buf = cv2.imencode(Path(path).suffix or ".png", self.screenshot()[:, :, ::-1])
        if not ok:
            raise OSError(f"could not encode {path} (unknown image extension?)")
        write_bytes_atomic(path, buf.tobytes())

    def close(self) -> None:
        """Destroy the window (idempotent)."""
        if not self._closed:
            self._closed = True
            self._vis.destroy_window()

    def __enter__(self) -> "Open3DViewer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
