"""Live 3-D view of the newest SMPL-X mesh(es) in an Open3D window.

The viewer never blocks the pipeline: producers only overwrite the newest vertices
(:meth:`Open3DViewer.update`, any thread, O(1)) or the viewer polls a ``source``
callable (e.g. a latest-value slot's ``get``) on its own schedule. All Open3D calls
happen in :meth:`Open3DViewer.step` / :meth:`Open3DViewer.run`, which must run on
the thread that created the viewer (the main thread for a visible window: GLFW
requires it).

Meshes arrive in the OpenCV camera frame (x right, y down, z forward); they are
shown rotated 180 degrees about x (Y up, the person facing the viewer), seen from the
capture camera's side.

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
MESH_COLOR = (0.75, 0.75, 0.68)

VerticesLike = Union[None, np.ndarray, Sequence[np.ndarray]]


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

    def __init__(self, faces: np.ndarray, width: int = 960, height: int = 720, headless: bool = False,
                 source: Optional[Union[Callable[[], object], object]] = None, title: str = "SMPL-X mocap"):
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
        self._vis = o3d.visualization.Visualizer()
        if not self._vis.create_window(window_name=title, width=self.width, height=self.height,
                                       visible=not headless):
            raise ViewerUnavailable("Open3D could not create a window (OpenGL / EGL missing?); "
                                    "run with --viewer none")
        opt = self._vis.get_render_option()
        opt.background_color = np.asarray(BACKGROUND)
        opt.mesh_show_back_face = True
        opt.mesh_shade_option = o3d.visualization.MeshShadeOption.Color
        self._mesh = None
        self._persons = 0
        self._view_set = False
        self._lock = threading.Lock()
        self._pending: Optional[List[np.ndarray]] = None
        self._last_item = None
        self._closed = False

    # --------------------------------------------------------------- producers
    def update(self, vertices: VerticesLike) -> None:
        """Overwrite the newest mesh(es); safe from any thread, never blocks on rendering.

        ``vertices``: (N, 3) camera-space array, a list of them (several people), or an
        empty list / None to show nobody.
        """
        verts = _vertices_of(vertices) or []
        with self._lock:
            self._pending = verts

    # ---------------------------------------------------------- viewer thread
    def _take(self) -> Optional[List[np.ndarray]]:
        if self._poll is not None:
            item = self._poll()
            if item is not None and item is not self._last_item:
                self._last_item = item
                with self._lock:
                    self._pending = _vertices_of(item) or []
        with self._lock:
            verts, self._pending = self._pending, None
        return verts

    def _show(self, verts: List[np.ndarray]) -> None:
        o3d = self._o3d
        if not verts:
            if self._mesh is not None:
                self._vis.remove_geometry(self._mesh, reset_bounding_box=False)
                self._mesh, self._persons = None, 0
            return
        stacked = np.concatenate([np.asarray(v, np.float64).reshape(-1, 3) for v in verts], 0) * FLIP
        if self._mesh is None or len(verts) != self._persons:
            n = len(verts[0]) if verts else 0
            faces = np.concatenate([self.faces + i * n for i in range(len(verts))], 0)
            if self._mesh is not None:
                self._vis.remove_geometry(self._mesh, reset_bounding_box=False)
            mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(stacked),
                                             o3d.utility.Vector3iVector(faces))
            mesh.compute_vertex_normals()
            mesh.paint_uniform_color(MESH_COLOR)
            self._vis.add_geometry(mesh, reset_bounding_box=not self._view_set)
            self._mesh, self._persons = mesh, len(verts)
            if not self._view_set:
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
        if verts is not None:
            self._show(verts)
        alive = self._vis.poll_events()
        self._vis.update_renderer()
        return bool(alive) or self.headless

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
        buf = np.asarray(self._vis.capture_screen_float_buffer(do_render=False))
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
