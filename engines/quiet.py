"""Keeps third-party native chatter off the terminal unless the user asks for it (``mocap -v``).

MediaPipe (absl/TFLite: ``W0000 ... inference_feedback_manager``, ``Created TensorFlow Lite
XNNPACK delegate``, written from its own threads, at any time) and OpenCV/Open3D write from C++
straight to the process's standard error, where Python's logging settings cannot reach them.
:class:`StderrFilter` puts a pipe behind file descriptor 2 and a thread that forwards every line
to the real stderr except the ones matching :data:`NOISE` (progress bars and our own messages go
through unchanged, partial lines after 50 ms of quiet). Open3D's own notices go to stdout and are
turned off by :func:`quiet_open3d`; Python loggers of exporter internals (``torchvision is not
installed. Skipping ...``) by :func:`quiet_loggers`; libraries that print their progress to stdout
(Blender's FBX exporter, ``[torch.onnx]``) are wrapped in :func:`muted_stdout`. ``MOCAP_VERBOSE=1``
(set by ``mocap -v``) turns all of it off.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import sys
import threading
from typing import Optional

#: Notices dropped from stderr (each from where it starts to its line's end): absl/glog-style MediaPipe notices, TFLite's delegate notice, the
#: absl start-up banner, Open3D's and GLFW's display complaints, OpenCV's own warnings. TFLite writes
#: its notice in two pieces ("INFO: ", then the text), so a progress bar can land between them: either
#: piece is dropped on its own (the prefix only when nothing follows it in its segment).
NOISE = re.compile(rb"(?:[WIE]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+\.cc:\d+\]"
                   rb"|(?:INFO: )?Created TensorFlow Lite"
                   rb"|INFO: (?=\r?\Z)"
                   rb"|WARNING: All log messages before absl::InitializeLog"
                   rb"|error: XDG_RUNTIME_DIR"
                   rb"|(?:\x1b\[[0-9;]*m)?\[Open3D (?:INFO|WARNING)\]"
                   rb"|\[ ?(?:WARN|INFO):\d*@)")


def verbose() -> bool:
    return os.environ.get("MOCAP_VERBOSE") == "1"


#: Python loggers whose warnings are library internals, not news for a user (the ONNX exporter's
#: ``torchvision is not installed. Skipping torchvision::nms``): errors only, unless verbose.
#: ``import torch`` resets the level of its registered loggers (``torch.onnx``) but not of their
#: children, so the exporter's modules are named one by one.
CHATTY_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.onnx._internal.exporter._registration",
                  "torch.onnx._internal.exporter._core", "torch.onnx._internal.exporter._capture_strategies",
                  "torch.onnx._internal.exporter._decomp", "torch.onnx._internal.exporter._fx_passes")


def quiet_loggers() -> None:
    """Errors only from :data:`CHATTY_LOGGERS` (all of it with ``mocap -v``)."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose() else logging.ERROR)


@contextlib.contextmanager
def muted_stdout():
    """While active, drop what is written to standard output, from Python (``print``) and from
    native code (file descriptor 1): for libraries that print their progress (Blender's FBX
    exporter, the ONNX exporter). Does nothing when verbose."""
    if verbose():
        yield
        return
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no real fd 1: Python-level only
        with contextlib.redirect_stdout(open(os.devnull, "w")) as sink:
            try:
                yield
            finally:
                sink.close()
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def quiet_open3d(o3d) -> None:
    """Open3D prints INFO/WARNING notices (EGL fallback, GLFW) to stdout: errors only, unless verbose."""
    if not verbose():
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)


class StderrFilter:
    """While started, native and Python writes to file descriptor 2 pass through :data:`NOISE`."""

    def __init__(self):
        self._orig: Optional[int] = None
        self._read: Optional[int] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    def start(self) -> "StderrFilter":
        try:
            sys.stderr.flush()
            orig = os.dup(2)
            r, w = os.pipe()
            os.dup2(w, 2)
            os.close(w)
        except (OSError, ValueError, AttributeError):  # no real fd 2: nothing to filter
            return self
        self._orig, self._read = orig, r
        self._thread = threading.Thread(target=self._pump, name="stderr-filter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._orig is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        self._stop.set()
        self._thread.join(timeout=2.0)
        os.dup2(self._orig, 2)  # the pipe's write end at fd 2 goes away here
        os.close(self._orig)
        os.close(self._read)
        self._orig = self._read = None

    def _emit(self, data: bytes) -> None:
        # a native notice can land right after a progress bar's partial line (same segment):
        # the bar goes through, the notice (to the segment's end) does not
        m = NOISE.search(data)
        if m:  # a "\r" ending the segment belongs to the progress bar that follows: keep it
            data = data[:m.start()] + (b"\r" if data.endswith(b"\r") else b"")
        if data:
            os.write(self._orig, data)

    def _pump(self) -> None:
        buf = b""
        try:
            while True:
                ready, _, _ = select.select([self._read], [], [], 0.05)
                if ready:
                    chunk = os.read(self._read, 65536)
                    if not chunk:
                        break
                    buf += chunk
                while True:  # complete segments (a line, or a progress bar's "\r" refresh)
                    cut = min((i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0), default=-1)
                    if cut < 0:
                        break
                    self._emit(buf[:cut + 1])
                    buf = buf[cut + 1:]
                if buf and not ready:  # quiet for 50 ms: let a partial line (a progress bar) through
                    self._emit(buf)
                    buf = b""
                if self._stop.is_set() and not ready:
                    break
            self._emit(buf)
        except Exception:  # never leave writers blocked on a pipe nobody reads
            os.dup2(self._orig, 2)
