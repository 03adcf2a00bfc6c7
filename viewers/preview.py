"""2-D preview: the camera frame with boxes, skeletons, track ids and live statistics.

:func:`compose` (also :meth:`PreviewWindow.compose`) is a pure function of a
:class:`~engines.types.FrameResult` and a stats dict; it works headless and is what
recordings and tests use. :meth:`PreviewWindow.show` puts the image in an OpenCV
window, only when a display exists: without one ``cv2.imshow`` aborts the whole
process (SIGABRT), so :meth:`~PreviewWindow.show` raises :class:`PreviewUnavailable`
instead. OpenCV HighGUI calls should come from a single thread (the main thread).

``stats`` keys understood (all optional): ``fps_in``, ``fps_out`` (float), ``drops``
(int), ``latency_ms`` (dict stage -> milliseconds). Other scalar entries are listed
as ``key: value``. Without ``latency_ms`` the per-stage latency is taken from
``result.t_stages`` (milliseconds since ``result.t_capture_ns``).
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Mapping, Optional

import cv2
import numpy as np

from engines.body_model import NUM_JOINTS, PARENTS
from engines.types import FrameResult, Person

from .mesh_overlay import person_color, project

log = logging.getLogger(__name__)

#: BGR colours (constants so tests and docs can refer to them).
DETECTOR_BOX_COLOR = (0, 0, 255)      # raw detector box: red, like the official --show_bbox
MODEL_BOX_COLOR = (0, 255, 255)       # processed box the model saw: yellow
SKELETON_COLOR = (0, 255, 0)          # bones: green
JOINT_COLOR = (255, 255, 255)         # joints: white dots
VERTEX_COLOR = (255, 0, 0)            # projected vertices: blue, like --show_verts
TEXT_COLOR = (255, 255, 255)
TEXT_BG_COLOR = (0, 0, 0)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FIRST_HAND_JOINT = 25
_MAX_VERTEX_DOTS = 1500


class PreviewUnavailable(RuntimeError):
    """No display to show the preview window on."""


def display_available() -> bool:
    """True when an X11 or Wayland display is configured ($DISPLAY / $WAYLAND_DISPLAY)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


#: What each ``--viewer`` opens, for the start-up line.
VIEWER_WINDOWS = {"preview": "the preview window (video with skeletons)",
                  "overlay": "the overlay window (video with shaded meshes)",
                  "open3d": "the Open3D window (camera frame with the meshes, status panel)"}


def describe_viewer(requested: str, chosen: str) -> str:
    """Which viewer ``mocap live`` opened, or why none (``requested``: the ``--viewer`` value)."""
    if chosen != "none":
        return VIEWER_WINDOWS.get(chosen, chosen)
    if requested == "auto":
        return ("no window: no display found ($DISPLAY and $WAYLAND_DISPLAY are unset; "
                "the streams and the recording work without one)")
    return "no window (--viewer none)"


def _pt(p) -> tuple:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _draw_box(img: np.ndarray, xywh, color, thickness: int = 2) -> None:
    if xywh is None:
        return
    b = np.asarray(xywh, dtype=np.float64).reshape(-1)
    if b.size != 4 or not np.isfinite(b).all():
        return
    x, y, w, h = b
    cv2.rectangle(img, _pt((x, y)), _pt((x + w, y + h)), color, thickness)


def _draw_skeleton(img: np.ndarray, joints_2d: np.ndarray) -> None:
    j = np.asarray(joints_2d, dtype=np.float64).reshape(-1, 2)
    n = min(len(j), NUM_JOINTS)
    ok = np.isfinite(j[:n]).all(axis=1)
    for child in range(1, n):
        parent = int(PARENTS[child])
        if ok[child] and ok[parent]:
            width = 1 if child >= _FIRST_HAND_JOINT else 2
            cv2.line(img, _pt(j[parent]), _pt(j[child]), SKELETON_COLOR, width, cv2.LINE_AA)
    for i in np.nonzero(ok)[0]:
        cv2.circle(img, _pt(j[i]), 2 if i >= _FIRST_HAND_JOINT else 3, JOINT_COLOR, -1, cv2.LINE_AA)


def _draw_vertices(img: np.ndarray, person: Person) -> None:
    v = np.asarray(person.vertices, dtype=np.float64).reshape(-1, 3)
    step = max(1, len(v) // _MAX_VERTEX_DOTS)
    v = v[::step]
    uv, in_front = project(v, person.focal, person.princpt)
    uv = uv[in_front]
    if not len(uv):
        return
    h, w = img.shape[:2]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    for p in uv[inside]:
        cv2.circle(img, _pt(p), 1, VERTEX_COLOR, -1)


def _label_anchor(person: Person) -> Optional[tuple]:
    for box in (person.bbox_detector, person.bbox):
        if box is not None:
            b = np.asarray(box, np.float64).reshape(-1)
            if b.size == 4 and np.isfinite(b).all():
                return _pt((b[0], b[1] - 6))
    return None


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.1f}"
    return str(value)


def stats_lines(result: Optional[FrameResult], stats: Optional[Mapping]) -> List[str]:
    """The text block's lines (FPS in/out, drops, per-stage latency, extra stats)."""
    stats = dict(stats or {})
    lines = []
    fps_in, fps_out = stats.pop("fps_in", None), stats.pop("fps_out", None)
    if fps_in is not None or fps_out is not None:
        lines.append(f"FPS in {_fmt(fps_in) if fps_in is not None else '-'}"
                     f"  out {_fmt(fps_out) if fps_out is not None else '-'}")
    drops = stats.pop("drops", None)
    if drops is not None:
        lines.append(f"drops {drops}")
    latency = stats.pop("latency_ms", None)
    if not latency and result is not None and result.t_stages:
        latency = {k: (t - result.t_capture_ns) / 1e6 for k, t in result.t_stages.items()}
    if latency:
        lines.append("latency ms: " + "  ".join(f"{k} {_fmt(float(v))}" for k, v in latency.items()))
    if result is not None:
        lines.append(f"frame {result.frame_id}  people {len(result.persons)}")
    for k, v in stats.items():
        if isinstance(v, (int, float, str, np.integer, np.floating)):
            lines.append(f"{k}: {_fmt(v)}")
    return lines


def _draw_text_block(img: np.ndarray, lines: List[str], scale: float = 0.5) -> None:
    if not lines:
        return
    y = 6
    for line in lines:
        (tw, th), base = cv2.getTextSize(line, _FONT, scale, 1)
        cv2.rectangle(img, (4, y), (4 + tw + 6, y + th + base + 4), TEXT_BG_COLOR, -1)
        cv2.putText(img, line, (7, y + th + 2), _FONT, scale, TEXT_COLOR, 1, cv2.LINE_AA)
        y += th + base + 6


def compose(result: FrameResult, stats: Optional[Mapping] = None) -> np.ndarray:
    """Draw one result over (a copy of) its frame; pure, headless, returns BGR uint8.

    Per person: detector box, processed box, skeleton from ``joints_2d`` (first 55
    joints, SMPL-X kinematic tree) or, without it, projected mesh vertices, and the
    track id. A black canvas of ``result.image_size`` is used when the result has no image.
    """
    if result.image is not None:
        img = np.ascontiguousarray(result.image).copy()
    else:
        w, h = result.image_size
        img = np.zeros((int(h), int(w), 3), np.uint8)
    for person in result.persons:
        _draw_box(img, person.bbox_detector, person_color(person.track_id) if len(result.persons) > 1
                  else DETECTOR_BOX_COLOR)
        _draw_box(img, person.bbox, MODEL_BOX_COLOR, 1)
        if person.joints_2d is not None:
            _draw_skeleton(img, person.joints_2d)
        elif person.vertices is not None:
            _draw_vertices(img, person)
        anchor = _label_anchor(person)
        if anchor is not None:
            cv2.putText(img, f"id {person.track_id}", (anchor[0], max(12, anchor[1])), _FONT, 0.5,
                        person_color(person.track_id) if len(result.persons) > 1 else DETECTOR_BOX_COLOR, 1,
                        cv2.LINE_AA)
    _draw_text_block(img, stats_lines(result, stats))
    return img


def compose_overlay(result: FrameResult, stats: Optional[Mapping], overlay) -> np.ndarray:
    """The frame with every person's shaded mesh, box and id (``overlay``: a
    :class:`viewers.mesh_overlay.PersonOverlay`), and the numbers; returns BGR uint8."""
    if result.image is not None:
        img = np.ascontiguousarray(result.image)
    else:
        w, h = result.image_size
        img = np.zeros((int(h), int(w), 3), np.uint8)
    out = overlay(img, result.persons)
    _draw_text_block(out, stats_lines(result, stats) + ["q/Esc quit"])
    return out


class PreviewWindow:
    """An OpenCV preview window; :meth:`compose` works anywhere, :meth:`show` needs a display."""

    def __init__(self, title: str = "mocap preview"):
        self.title = title
        self._opened = False

    @staticmethod
    def compose(result: FrameResult, stats: Optional[Dict] = None) -> np.ndarray:
        """See :func:`compose`."""
        return compose(result, stats)

    def show(self, image: np.ndarray) -> bool:
        """Display ``image``; returns False when the user pressed q or Esc.

        Raises :class:`PreviewUnavailable` when there is no display (``cv2.imshow`` would
        abort the process).
        """
        if not display_available():
            raise PreviewUnavailable(
                "no display found ($DISPLAY and $WAYLAND_DISPLAY are unset): the preview window "
                "cannot open; run without the preview (e.g. --viewer none) or record to a file")
        cv2.imshow(self.title, image)
        self._opened = True
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), ord("Q"), 27)

    def close(self) -> None:
        """Close the window if it was opened."""
        if self._opened:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self._opened = False
