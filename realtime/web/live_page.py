"""``mocap live --viewer web``: the live session on a web page, for any number of browsers.

The pipeline's viewer tick hands each new result to :meth:`LivePage.publish`, which only puts it
in a :class:`realtime.slot.LatestSlot` (never waits: an unread result is replaced, as in every
other sink). A render thread takes the newest one, draws the meshes, boxes and ids over the frame
with :class:`viewers.mesh_overlay.PersonOverlay`, encodes a JPEG and keeps it with the numbers
(fps, latency, people, ids). Browsers ask for the next frame with ``/frame.jpg?after=N`` (held
until a newer frame exists, at most :data:`LONG_POLL_S`) and for the numbers with
``/stats.json``; each request is served on its own thread from the kept copy, so a slow or stalled
browser delays only itself. The page, its script and its style are files of this package
(``static/``), served by name from a fixed table: no request path is used as a file path, and
nothing is fetched from the internet.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Optional
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from engines.errors import UserError

from ..slot import LatestSlot

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: URL -> (file in ``static/``, content type): everything the page needs.
ASSETS = {"/": ("live.html", "text/html; charset=utf-8"),
          "/live.js": ("live.js", "text/javascript; charset=utf-8"),
          "/live.css": ("live.css", "text/css; charset=utf-8")}
#: Longest wait of a ``/frame.jpg?after=N`` request for a newer frame (seconds).
LONG_POLL_S = 5.0
#: Frames wider than this are scaled down before encoding (pixels).
MAX_WIDTH = 1280
JPEG_QUALITY = 80


def live_numbers(status: Dict) -> Dict:
    """The numbers the page shows, from :meth:`realtime.pipeline.Pipeline.status` (None = not measured yet)."""

    def num(key):
        v = status.get(key)
        return float(v) if isinstance(v, (int, float)) and np.isfinite(v) else None

    return {"fps_in": num("in_fps"), "fps_out": num("out_fps"), "latency_ms": num("latency_ms_median"),
            "latency_p95_ms": num("latency_ms_p95"), "dropped": int(status.get("dropped", 0) or 0),
            "frames": int(status.get("frames_out", 0) or 0)}


class LivePage:
    """The page server (see the module docstring). :meth:`start`, :meth:`publish` often, :meth:`close`."""

    def __init__(self, faces: Optional[np.ndarray], host: str = "127.0.0.1", port: int = 8765,
                 max_width: int = MAX_WIDTH):
        self.faces = faces
        self.host = host
        self.port = int(port)
        self.max_width = int(max_width)
        self.slot: LatestSlot = LatestSlot()
        self._cond = threading.Condition()
        self._seq = 0
        self._jpeg: Optional[bytes] = None
        self._stats: Dict = {"seq": 0, "frames": 0, "people": 0, "ids": []}
        self._stop = threading.Event()
        self._server: Optional[ThreadingHTTPServer] = None
        self._threads = []
        self.rendered = 0
        self._render_times = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # ------------------------------------------------------------------ server
    def start(self) -> "LivePage":
        handler = _handler_for(self)
        server_cls = ThreadingHTTPServer
        if ":" in self.host:
            import socket

            server_cls = type("V6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        try:
            self._server = server_cls((self.host, self.port), handler)
        except OSError as exc:
            raise UserError(f"cannot serve the live page on {self.host}:{self.port}: {exc.strerror or exc} "
                            f"(choose another --web-port or --web-host)") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]  # port 0: the one the system chose
        for target, name in ((self._server.serve_forever, "live-page-http"), (self._render_loop, "live-page-render")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def publish(self, result, numbers: Optional[Dict] = None) -> None:
        """Offer the newest result (never waits; an unread one is replaced)."""
        self.slot.put((result, numbers or {}))

    def close(self) -> None:
        self._stop.set()
        self.slot.close()
        with self._cond:
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(5.0)

    # ------------------------------------------------------------------ render
    def _render_loop(self) -> None:
        overlay = None
        try:
            if self.faces is not None:
                from viewers.mesh_overlay import PersonOverlay

                overlay = PersonOverlay(self.faces)  # its GL context lives on this thread
            while not self._stop.is_set():
                item = self.slot.get(timeout=0.5)
                if item is None:
                    if self.slot.closed:
                        return
                    continue
                try:
                    self._render(item, overlay)
                except Exception:  # noqa: BLE001 -- one bad frame must not end the page
                    log.exception("live page: a frame could not be drawn")
        finally:
            if overlay is not None:
                overlay.close()

    def _render(self, item, overlay) -> None:
        from viewers.mesh_overlay import draw_boxes

        result, numbers = item
        t0 = time.perf_counter()
        jpeg = None
        if result.image is not None:
            image = result.image
            if overlay is not None:
                image = overlay(image, result.persons)
            else:
                image = draw_boxes(image.copy(), result.persons)
            h, w = image.shape[:2]
            if w > self.max_width:
                image = cv2.resize(image, (self.max_width, int(round(h * self.max_width / w))),
                                   interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            jpeg = buf.tobytes() if ok else None
        now = time.perf_counter()
        self._render_times = [t for t in self._render_times if now - t < 2.0] + [now]
        self.rendered += 1
        stats = {**numbers, "frame_id": int(result.frame_id), "people": len(result.persons),
                 "ids": sorted(int(p.track_id) for p in result.persons),
                 "shown_fps": (len(self._render_times) - 1) / max(1e-6, now - self._render_times[0])
                 if len(self._render_times) > 1 else None,
                 "draw_ms": 1000.0 * (now - t0), "size": list(result.image_size)}
        with self._cond:
            self._seq += 1
            if jpeg is not None:
                self._jpeg = jpeg
            self._stats = {**stats, "seq": self._seq}
            self._cond.notify_all()

    # ---------------------------------------------------------------- requests
    def next_frame(self, after: int, timeout: float = LONG_POLL_S):
        """(seq, jpeg) of a frame newer than ``after``, waiting up to ``timeout``; the current one
        (maybe None) on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._seq <= after and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._seq, self._jpeg

    def stats(self) -> Dict:
        with self._cond:
            return dict(self._stats)


def _handler_for(page: LivePage):
    class Handler(BaseHTTPRequestHandler):
        server_version = "mocap-live"

        def log_message(self, fmt, *args):  # no line per request on the terminal
            log.debug("live page: " + fmt, *args)

        def _send(self, status, body: bytes, ctype: str, extra: Optional[Dict] = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            parts = urlsplit(self.path)
            try:
                if parts.path in ASSETS:
                    name, ctype = ASSETS[parts.path]
                    self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), ctype)
                elif parts.path == "/frame.jpg":
                    query = parse_qs(parts.query)
                    try:
                        after = int(query.get("after", ["0"])[0])
                    except ValueError:
                        after = 0
                    seq, jpeg = page.next_frame(after)
                    if jpeg is None:
                        self._send(HTTPStatus.NO_CONTENT, b"", "image/jpeg", {"X-Frame-Seq": str(seq)})
                    else:
                        self._send(HTTPStatus.OK, jpeg, "image/jpeg", {"X-Frame-Seq": str(seq)})
                elif parts.path == "/stats.json":
                    self._send(HTTPStatus.OK, json.dumps(page.stats()).encode(), "application/json")
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser went away

    return Handler


class LiveWebViewer:
    """The ``--viewer web`` choice of ``mocap live``: called on each tick with the pipeline, it
    passes the newest result and numbers to a :class:`LivePage`; never ends the session itself
    (closing a browser tab leaves the capture running)."""

    def __init__(self, faces, host: str = "127.0.0.1", port: int = 8765, announce=None):
        self.page = LivePage(faces, host, port).start()
        if announce is not None:
            announce(f"live page on {self.page.url}" + ("" if host in ("127.0.0.1", "localhost", "::1") else
                                                        " (reachable from the network)"))

    def __call__(self, pipe) -> bool:
        result = pipe.latest.get(timeout=0)
        if result is not None:
            self.page.publish(result, live_numbers(pipe.status()))
        return True

    def close(self) -> None:
        self.page.close()
