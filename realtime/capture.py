"""Frame sources (camera, video file, image folder, synthetic) behind one interface.

Every source runs one grab thread that *owns* its capture: only that thread
opens, reads and releases it. Frames go through a :class:`LatestSlot`:

* live and paced sources keep only the newest frame (a slow consumer drops
  older ones, counted in ``stats()["dropped"]``);
* unpaced file sources (``pace=False``, the CLI's ``--no-pace``) are lossless:
  the grab thread waits until the consumer has taken the previous frame.

Each frame is stamped with ``time.perf_counter_ns()`` right after the grab and
numbered consecutively from 0 in grab order (a consumer that is too slow sees
gaps in the ids, never an older frame than the one before).

Typical use::

    with open_source("clip.mp4", pace=False) as src:
        for frame in src:
            ...
"""
from __future__ import annotations

import abc
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple, Union

import cv2
import numpy as np

from engines.media import (IMAGE_EXTENSIONS, VideoReader, VideoUnreadable, accepted_types, list_images, media_kind,
                           read_image)
from engines.types import Frame

from .slot import LatestSlot

logger = logging.getLogger(__name__)

#: Stream URL schemes opened as live (reconnecting) sources.
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://", "http://", "https://")

# What a sequence source's ``_read_one`` returns: (image or None if unusable, position)
# or None at the end of the data.
_Read = Optional[Tuple[Optional[np.ndarray], int]]


class CaptureError(RuntimeError):
    """A frame source could not be opened (or found)."""


class FrameSource(abc.ABC):
    """Base class: a grab thread filling a :class:`LatestSlot` with :class:`Frame` s.

    Subclasses implement ``_open`` (in the grab thread; raise
    :class:`CaptureError` on failure), ``_loop`` (grab until done or stopped,
    handing frames to ``_emit``) and ``_release``.

    Attributes:
        finished: set once the grab thread is done: end of a file / folder /
            frame-limited synthetic source, a failed camera, or ``stop()``.
            A frame grabbed just before the end can still be read.
        error: None, or a message saying why a running source gave up.
    """

    def __init__(self, name: str, lossless: bool = False) -> None:
        self.name = name
        self._lossless = lossless
        self._slot: LatestSlot[Frame] = LatestSlot()
        self._stop_event = threading.Event()
        self._ready = threading.Event()
        self.finished = threading.Event()
        self.error: Optional[str] = None
        self._open_error: Optional[CaptureError] = None
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._fps: Optional[float] = None
        self._frame_size: Optional[Tuple[int, int]] = None
        self._next_id = 0
        self._grabbed = 0
        self._delivered = 0
        self._corrupt = 0
        self._reconnects = 0

    # ----------------------------------------------------------------- public
    @property
    def fps(self) -> Optional[float]:
        """Nominal frame rate (known after ``start()`` for cameras and files)."""
        return self._fps

    @property
    def frame_size(self) -> Optional[Tuple[int, int]]:
        """(width, height) of the frames, known after ``start()``."""
        return self._frame_size

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        """True once ``start()`` has been called (the grab thread may have finished since)."""
        return self._thread is not None

    def start(self) -> "FrameSource":
        """Start the grab thread and wait until the capture is open.

        Raises :class:`CaptureError` if it cannot be opened.
        """
        with self._start_lock:
            if self._thread is not None:
                raise RuntimeError(f"{self.name}: start() called twice")
            self._thread = threading.Thread(target=self._run, name=f"capture:{self.name}", daemon=True)
            self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            self._thread.join()
            raise self._open_error
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop grabbing, wake every waiter and join the grab thread. Idempotent."""
        self._stop_event.set()
        self._slot.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%s: grab thread still busy %.1f s after stop()", self.name, timeout)

    def read(self, timeout: Optional[float] = 1.0) -> Optional[Frame]:
        """The newest unread frame, waiting up to ``timeout`` seconds.

        Returns None on timeout, after ``stop()``, or when the source has
        finished and every frame has been read.
        """
        if self._thread is None:
            raise RuntimeError(f"{self.name}: read() before start()")
        if self._stop_event.is_set():
            return None
        frame = self._slot.get(timeout)
        if frame is None or self._stop_event.is_set():
            return None
        with self._stats_lock:
            self._delivered += 1
        return frame

    def stats(self) -> Dict[str, int]:
        """Counters: grabbed, delivered, dropped, corrupt, reconnects."""
        with self._stats_lock:
            return {
                "grabbed": self._grabbed,
                "delivered": self._delivered,
                "dropped": self._slot.dropped,
                "corrupt": self._corrupt,
                "reconnects": self._reconnects,
            }

    def __iter__(self) -> Iterator[Frame]:
        """Yield frames until the source finishes or is stopped."""
        while not self._stop_event.is_set():
            frame = self.read(timeout=0.5)
            if frame is None:
                if not self.finished.is_set():
                    continue
                frame = self.read(timeout=0)  # a last frame put just before finishing
                if frame is None:
                    return
            yield frame

    def __enter__(self) -> "FrameSource":
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------- for subclasses
    @abc.abstractmethod
    def _open(self) -> None:
        """Open the capture (grab thread). Raise CaptureError on failure."""

    @abc.abstractmethod
    def _loop(self) -> None:
        """Grab frames until the end or until ``_stop_event`` is set."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Release the capture (grab thread; also after a failed open)."""

    def _emit(self, image: np.ndarray, t_capture_ns: int, source_time: Optional[float]) -> bool:
        """Number, stamp and publish a frame; False once the source is stopping."""
        frame = Frame(id=self._next_id, t_capture_ns=t_capture_ns, image=image, source_time=source_time)
        self._next_id += 1
        with self._stats_lock:
            self._grabbed += 1
        if self._frame_size is None:
            self._frame_size = (int(image.shape[1]), int(image.shape[0]))
        return self._slot.put(frame, block=self._lossless)

    def _add_corrupt(self, n: int = 1) -> None:
        with self._stats_lock:
            self._corrupt += n

    def _add_reconnect(self) -> None:
        with self._stats_lock:
            self._reconnects += 1

    def _sleep_until(self, deadline_ns: int) -> bool:
        """Wait until ``perf_counter_ns() >= deadline_ns``; False if stopped meanwhile."""
        remaining = (deadline_ns - time.perf_counter_ns()) / 1e9
        if remaining > 0:
            return not self._stop_event.wait(remaining)
        return not self._stop_event.is_set()

    def _run(self) -> None:
        try:
            try:
                self._open()
            except CaptureError as exc:
                self._open_error = exc
                return
            except Exception as exc:  # cv2.error, OSError, driver surprises: report them typed
                self._open_error = CaptureError(f"{self.name} could not be opened: {exc}")
                return
            finally:
                self._ready.set()
            self._loop()
        except Exception as exc:  # the grab thread must report, not die silently
            logger.exception("%s: grab thread failed", self.name)
            self.error = f"{self.name}: {exc}"
        finally:
            try:
                self._release()
            finally:
                self._slot.close()
                self.finished.set()


class CameraSource(FrameSource):
    """A live camera (index, ``/dev/videoN`` path or stream URL), newest frame only.

    The capture asks for a one-frame driver buffer (``CAP_PROP_BUFFERSIZE=1``).
    When reads fail while running (camera unplugged, stream cut), the source
    re-opens it up to ``reconnect_attempts`` times, ``reconnect_delay`` seconds
    apart (the budget refills after every good frame); each successful re-open
    counts in ``stats()["reconnects"]``. When the budget is spent, ``error`` says
    so and ``finished`` is set.
    """

    def __init__(
        self,
        index: Union[int, str] = 0,
        width: Optional[int] = None,
        height: Optional[int] = None,
        fps: Optional[float] = None,
        reconnect_attempts: int = 5,
        reconnect_delay: float = 0.5,
        backend: int = cv2.CAP_ANY,
    ) -> None:
        super().__init__(name=f"camera {index}", lossless=False)
        self.index = index
        self.width = width
        self.height = height
        self.requested_fps = fps
        self.reconnect_attempts = max(0, int(reconnect_attempts))
        self.reconnect_delay = float(reconnect_delay)
        self.backend = backend
        self._cap: Optional[cv2.VideoCapture] = None

    def _open_message(self) -> str:
        if isinstance(self.index, int):
            return (
                f"camera {self.index} could not be opened: is it connected and not used by another "
                "program? List devices with `v4l2-ctl --list-devices` on Linux"
            )
        return f"camera stream {self.index!r} could not be opened: check the device path or URL and that it is reachable"

    def _open_capture(self) -> Optional[cv2.VideoCapture]:
        cap = cv2.VideoCapture(self.index, self.backend)
        if not cap.isOpened():
            cap.release()
            return None
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(self.width))
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(self.height))
        if self.requested_fps:
            cap.set(cv2.CAP_PROP_FPS, float(self.requested_fps))
        return cap

    def _open(self) -> None:
        self._cap = self._open_capture()
        if self._cap is None:
            raise CaptureError(self._open_message())
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if fps and fps > 0 else float(self.requested_fps or 30.0)
        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w > 0 and h > 0:
            self._frame_size = (w, h)

    def _loop(self) -> None:
        attempts_left = self.reconnect_attempts
        while not self._stop_event.is_set():
            ok = self._cap.grab()
            t_ns = time.perf_counter_ns()
            image = None
            if ok:
                ok, image = self._cap.retrieve()
            if ok and image is not None:
                attempts_left = self.reconnect_attempts
                if not self._emit(image, t_ns, None):
                    return
                continue
            logger.warning("%s: read failed, re-opening (%d attempts left)", self.name, attempts_left)
            self._cap.release()
            self._cap = None
            while self._cap is None:
                if attempts_left <= 0:
                    self.error = (
                        f"{self.name} stopped delivering frames and could not be re-opened after "
                        f"{self.reconnect_attempts} attempts"
                    )
                    logger.error("%s", self.error)
                    return
                attempts_left -= 1
                if self._stop_event.wait(self.reconnect_delay):
                    return
                self._cap = self._open_capture()
            self._add_reconnect()
            logger.info("%s: re-opened", self.name)

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class _SequenceSource(FrameSource):
    """A source of numbered frames at a nominal rate: paced (latest-frame) or lossless.

    ``pace=True`` releases frame ``k`` at ``t0 + k / fps`` (``t0`` = when the
    loop began; the schedule never drifts); ``pace=False`` reads as fast as the
    consumer takes frames, never dropping one. Subclasses implement
    ``_read_one`` (one position: an image, ``(None, pos)`` for an unusable
    frame, or None at the end) and ``_rewind`` (for ``loop=True``).
    """

    def __init__(self, name: str, pace: bool, loop: bool) -> None:
        super().__init__(name=name, lossless=not pace)
        self.pace = bool(pace)
        self.loop = bool(loop)

    @abc.abstractmethod
    def _read_one(self) -> _Read:
        """Read the next position."""

    def _rewind(self) -> bool:
        """Go back to the first frame; False if that is impossible."""
        return False

    def _loop(self) -> None:
        period_ns = 1e9 / float(self._fps)
        t0 = time.perf_counter_ns()
        slot_index = 0  # schedule position (counts unusable frames and loops too)
        good_in_pass = 0
        while not self._stop_event.is_set():
            if self.pace and not self._sleep_until(t0 + round(slot_index * period_ns)):
                return
            item = self._read_one()
            t_ns = time.perf_counter_ns()
            if item is None:
                if self.loop and good_in_pass > 0 and self._rewind():
                    good_in_pass = 0
                    continue
                return
            slot_index += 1
            image, position = item
            if image is None:
                continue
            good_in_pass += 1
            if not self._emit(image, t_ns, self._source_time(position)):
                return

    def _source_time(self, position: int) -> float:
        """Seconds into the source of the frame at ``position``."""
        return position / float(self._source_fps())

    def _source_fps(self) -> float:
        """Rate that converts a position into ``source_time``."""
        return float(self._fps)


class VideoFileSource(_SequenceSource):
    """A video file, paced at its frame rate (``pace=True``) or read losslessly.

    Frames come from :class:`engines.media.VideoReader`, the reader ``mocap video`` uses too,
    with the same rules: sequential reads, positions from the frames' timestamps, undecodable
    frames mid-file and a missing tail (a truncated file) counted in ``stats()["corrupt"]``,
    frames turned upright by the file's rotation metadata (``orientation=False``: as stored).
    ``fps`` overrides the playback (pacing) rate; ``source_time`` is always the frame's own
    timestamp in the file (real also in a variable-frame-rate phone clip).
    """

    def __init__(self, path: Union[str, os.PathLike], pace: bool = True, loop: bool = False,
                 fps: Optional[float] = None, orientation: bool = True) -> None:
        self.path = Path(path)
        super().__init__(name=f"video {self.path}", pace=pace, loop=loop)
        if not self.path.is_file():
            raise CaptureError(f"video file not found: {self.path}")
        self._fps_override = fps
        self._orientation = orientation
        self._file_fps = 30.0
        self._reader: Optional[VideoReader] = None
        self._damage = 0

    @property
    def problem(self) -> Optional[str]:
        """The reader's one-line account of what could not be decoded, or None."""
        return self._reader.problem if self._reader is not None else None

    def _open(self) -> None:
        try:
            self._reader = VideoReader(self.path, orientation=self._orientation)
        except VideoUnreadable as exc:
            raise CaptureError(str(exc)) from None
        if not self._reader.fps_known:
            logger.warning("%s: unknown frame rate, assuming 30 fps", self.name)
        self._file_fps = self._reader.fps
        self._fps = float(self._fps_override) if self._fps_override else self._file_fps
        self._frame_size = self._reader.frame_size
        if self._reader.orientation_note:
            logger.info("%s: %s", self.name, self._reader.orientation_note)

    @property
    def orientation(self) -> Optional[str]:
        """What was turned to bring the frames upright (None: nothing)."""
        return self._reader.orientation_note if self._reader is not None else None

    def _source_fps(self) -> float:
        return self._file_fps

    def _source_time(self, position: int) -> float:
        t = self._reader.frame_times.get(position) if self._reader is not None else None
        return float(t) if t is not None else position / self._file_fps

    def _read_one(self) -> _Read:
        item = self._reader.step()
        damage = self._reader.corrupt + self._reader.missing_tail
        if damage > self._damage:
            self._add_corrupt(damage - self._damage)
            self._damage = damage
        if item is None:
            return None
        position, image = item
        return image, position

    def _rewind(self) -> bool:
        self._reader.rewind()
        return True

    def _release(self) -> None:
        if self._reader is not None:
            self._reader.close()


class ImageFolderSource(_SequenceSource):
    """The images of a folder (:data:`engines.media.IMAGE_EXTENSIONS`, natural name order) at
    ``fps``, each turned upright by its EXIF orientation (``orientation=False``: as stored).

    Unreadable images are skipped and counted in ``stats()["corrupt"]``.
    """

    def __init__(self, path: Union[str, os.PathLike], fps: float = 30.0, pace: bool = True,
                 loop: bool = False, orientation: bool = True) -> None:
        self.path = Path(path)
        super().__init__(name=f"folder {self.path}", pace=pace, loop=loop)
        if not self.path.is_dir():
            raise CaptureError(f"image folder not found: {self.path}")
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.files = list_images(self.path)
        if not self.files:
            raise CaptureError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {self.path}")
        self._fps = float(fps)
        self._pos = 0
        self._orientation = orientation

    def _read_image(self, path: Path) -> Optional[np.ndarray]:
        try:
            return read_image(path, self._orientation)
        except IOError:
            return None

    def _open(self) -> None:
        for path in self.files:
            image = self._read_image(path)
            if image is not None:
                self._frame_size = (int(image.shape[1]), int(image.shape[0]))
                return
        raise CaptureError(f"none of the {len(self.files)} images in {self.path} could be read")

    def _read_one(self) -> _Read:
        pos = self._pos
        if pos >= len(self.files):
            return None
        self._pos += 1
        image = self._read_image(self.files[pos])
        if image is None:
            self._add_corrupt()
            logger.warning("%s: skipping unreadable image %s", self.name, self.files[pos].name)
        return image, pos

    def _rewind(self) -> bool:
        self._pos = 0
        return True

    def _release(self) -> None:
        pass


class SyntheticSource(_SequenceSource):
    """A moving stick figure on a textured background, for tests and demos.

    The image of frame ``k`` depends only on (size, fps, seed, k): see
    :meth:`render`. ``num_frames=None`` runs until stopped.
    """

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0,
                 num_frames: Optional[int] = None, pace: bool = True, seed: int = 0) -> None:
        super().__init__(name=f"synthetic {width}x{height}@{fps:g}", pace=pace, loop=False)
        if width < 16 or height < 16:
            raise ValueError(f"synthetic frames must be at least 16x16, got {width}x{height}")
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.num_frames = num_frames
        self.seed = seed
        self._fps = float(fps)
        self._frame_size = (int(width), int(height))
        self._background = self._make_background(int(width), int(height), seed)
        self._pos = 0

    @staticmethod
    def _make_background(width: int, height: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        base = rng.uniform(40, 160, size=3)
        ramp = np.linspace(0.0, 60.0, height, dtype=np.float32)[:, None, None]
        noise = rng.normal(0.0, 6.0, size=(height, width, 3)).astype(np.float32)
        return np.clip(base[None, None, :] + ramp + noise, 0, 255).astype(np.uint8)

    def render(self, index: int) -> np.ndarray:
        """The BGR image of frame ``index`` (deterministic)."""
        w, h = self._frame_size
        image = self._background.copy()
        t = index / self._fps
        s = h / 480.0  # figure scale
        cx = w * (0.5 + 0.25 * np.sin(2 * np.pi * 0.1 * t))
        hip = np.array([cx, h * 0.62])
        neck = hip + np.array([0.0, -120.0 * s])
        swing = 0.6 * np.sin(2 * np.pi * 0.8 * t)

        def limb(start: np.ndarray, angle: float, length: float) -> np.ndarray:
            # angle 0 points straight down
            return start + length * s * np.array([np.sin(angle), np.cos(angle)])

        color = (30, 30, 230)
        thick = max(2, int(round(8 * s)))
        pts = []
        for sign in (1.0, -1.0):
            knee = limb(hip, sign * swing, 70.0)
            pts.append((hip, knee))
            pts.append((knee, limb(knee, sign * swing - 0.3 * abs(swing), 70.0)))
            elbow = limb(neck, -sign * swing * 0.8 + sign * 0.3, 55.0)
            pts.append((neck, elbow))
            pts.append((elbow, limb(elbow, -sign * swing * 0.8 + sign * 0.1 - 0.5, 50.0)))
        pts.append((hip, neck))
        for a, b in pts:
            cv2.line(image, tuple(int(v) for v in np.round(a)), tuple(int(v) for v in np.round(b)),
                     color, thick, cv2.LINE_AA)
        head = neck + np.array([0.0, -32.0 * s])
        cv2.circle(image, tuple(int(v) for v in np.round(head)), int(round(24 * s)), (60, 180, 240), -1, cv2.LINE_AA)
        return image

    def _open(self) -> None:
        pass

    def _read_one(self) -> _Read:
        pos = self._pos
        if self.num_frames is not None and pos >= self.num_frames:
            return None
        self._pos += 1
        return self.render(pos), pos

    def _release(self) -> None:
        pass


_SYNTHETIC_RE = re.compile(r"^synthetic(?::(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?)?$")


def open_source(
    spec: Union[int, str, os.PathLike],
    pace: bool = True,
    loop: bool = False,
    fps: Optional[float] = None,
    *,
    width: Optional[int] = None,
    height: Optional[int] = None,
) -> FrameSource:
    """Make a (not yet started) source from a CLI-style spec.

    * ``"synthetic"`` or ``"synthetic:WxH"`` / ``"synthetic:WxH@FPS"``;
    * an int or digit string: a camera index; ``/dev/videoN`` or a stream URL
      (rtsp://, http://, ...): a live camera source;
    * an existing folder: :class:`ImageFolderSource`;
    * anything else: a video file (a missing one raises :class:`CaptureError`).

    ``fps`` is the camera's requested rate, the folder / synthetic rate, or a
    video's playback-rate override.
    """
    if isinstance(spec, bool):
        raise CaptureError(f"not a frame source: {spec!r}")
    if isinstance(spec, int):
        return CameraSource(spec, width=width, height=height, fps=fps)
    text = os.fspath(spec)
    match = _SYNTHETIC_RE.match(text)
    if match:
        w = int(match.group(1)) if match.group(1) else (width or 640)
        h = int(match.group(2)) if match.group(2) else (height or 480)
        rate = float(match.group(3)) if match.group(3) else (fps or 30.0)
        return SyntheticSource(width=w, height=h, fps=rate, pace=pace)
    if text.startswith("synthetic"):
        raise CaptureError(f"bad synthetic source {text!r}: use 'synthetic' or 'synthetic:640x480@30'")
    if text.isdigit():
        return CameraSource(int(text), width=width, height=height, fps=fps)
    if text.startswith("/dev/video") or text.lower().startswith(STREAM_SCHEMES):
        return CameraSource(text, width=width, height=height, fps=fps)
    path = Path(text)
    if path.is_dir():
        return ImageFolderSource(path, fps=fps or 30.0, pace=pace, loop=loop)
    if not path.exists():
        raise CaptureError(
            f"input not found: {text} (expected a camera index, 'synthetic', an image folder or a video file)"
        )
    if media_kind(path) is None:  # the one list of types every command reads
        raise CaptureError(f"{text}: not a supported video type ({accepted_types()})")
    return VideoFileSource(path, pace=pace, loop=loop, fps=fps)
