"""Images and videos on disk: the one place for extension lists, image decoding, video reading
(:class:`VideoReader`, the same rules for ``mocap video`` and ``mocap live``), colour-layout
normalisation and the H.264 writer used by the offline commands and the live sources."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np

from .stop import raise_if_stopped

log = logging.getLogger(__name__)

#: Image files every command reads (``mocap image DIR``, ``mocap live --source DIR``, batches).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Video files the batch and live commands recognise by name.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def natural_key(path: Union[str, Path]):
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", Path(path).name)]


def list_images(folder: Union[str, Path]) -> List[Path]:
    """The image files of ``folder`` in natural order (not recursive)."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=natural_key)


def read_image(path: Union[str, Path]) -> np.ndarray:
    """BGR uint8 as the official ``load_img`` reads it (EXIF orientation ignored)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise IOError(f"cannot read image {path} (missing, unreadable or not an image)")
    return img


def to_bgr(image: np.ndarray) -> np.ndarray:
    """A grey (H, W) / (H, W, 1), BGR or BGRA frame as contiguous 3-channel BGR, the way
    ``cv2.imread(..., IMREAD_COLOR)`` brings files to BGR (grey replicated, alpha dropped)."""
    img = np.asarray(image)
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img.reshape(img.shape[0], img.shape[1]), cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    raise ValueError(f"expected an (H, W, 3) BGR image, got shape {img.shape}")


#: Failed reads in a row that end a video (the end of a truncated file or an unreadable tail).
MAX_CONSECUTIVE_FAILURES = 5


class VideoUnreadable(IOError):
    """A video file that cannot be opened (missing, not a video, unsupported codec)."""


class VideoReader:
    """Reads a video file frame by frame, in order, with one set of rules for every command.

    * Frames are read sequentially and never by seeking: seeking in a damaged file makes FFmpeg
      hand back copies of neighbouring frames, which would become results for frames that were
      never decoded.
    * A decoded frame's position (0-based frame number in the file) comes from its timestamp, not
      from counting reads: a failed read does not always consume a frame (an H.264 decoder that
      chokes on a cut packet still delivers the frames it held back), and a frame that cannot be
      decoded leaves a gap. Positions strictly increase; a gap mid-file is counted in
      :attr:`corrupt`.
    * The end: a failed read once the container's frame count is reached, or
      :data:`MAX_CONSECUTIVE_FAILURES` failed reads in a row. When the container promised more
      frames than could be decoded (a truncated file whose index sits at the front) the missing
      ones are counted in :attr:`missing_tail`; :attr:`problem` sums up the damage in one line.

    ``step()`` is the low-level read: ``(position, image)`` for a decoded frame, ``(position,
    None)`` for a failed read (``position`` = the next frame expected), None at the end.
    Iterating yields the decoded ``(position, image)`` pairs only.
    """

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoUnreadable(f"video not found: {self.path}")
        #: Frames lost mid-file (undecodable), and frames the container lists but the file lacks.
        self.corrupt = 0
        self.missing_tail = 0
        self._cap: Optional[cv2.VideoCapture] = None
        self._open()
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps_known = bool(fps and np.isfinite(fps) and fps > 0)
        #: Frame rate from the container (30 when it does not say).
        self.fps = float(fps) if self.fps_known else 30.0
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.frame_size: Optional[Tuple[int, int]] = (w, h) if w > 0 and h > 0 else None

    def _open(self) -> None:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise VideoUnreadable(f"cannot open video {self.path}: not a video, damaged, or an unsupported codec")
        self._cap = cap
        #: Frames the container says it holds (0: unknown).
        self.frame_count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        #: Position of the next frame expected.
        self.position = 0
        self._failures = 0  # failed reads in a row
        self.ended = False

    def _position_of_decoded(self) -> int:
        """The just-decoded frame's position, from its timestamp (never before the expected one)."""
        if self.fps_known:
            t_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            if t_ms is not None and np.isfinite(t_ms) and t_ms >= 0:
                return max(self.position, int(round(t_ms * self.fps / 1000.0)))
        return self.position

    def step(self) -> Optional[Tuple[int, Optional[np.ndarray]]]:
        """Read once: ``(position, image)``, ``(position, None)`` after a failed read, None at the end."""
        if self.ended:
            return None
        if self._cap is None:
            raise ValueError(f"{self.path}: reader is closed")
        ok, image = self._cap.read()
        if ok and image is not None:
            pos = self._position_of_decoded()
            if pos > self.position:
                log.warning("%s: %d undecodable frame(s) skipped before frame %d", self.path.name,
                            pos - self.position, pos)
                self.corrupt += pos - self.position
            self.position = pos + 1
            self._failures = 0
            return pos, image
        self._failures += 1
        if (self.frame_count and self.position >= self.frame_count) or self._failures >= MAX_CONSECUTIVE_FAILURES:
            self.ended = True
            if self.frame_count and self.position < self.frame_count:
                self.missing_tail += self.frame_count - self.position
                log.warning("%s", self.problem)
            return None
        return self.position, None

    @property
    def problem(self) -> Optional[str]:
        """What could not be read, in one line, or None."""
        parts = []
        if self.corrupt:
            parts.append(f"{self.corrupt} undecodable frame(s) skipped")
        if self.missing_tail:
            parts.append(f"the last {self.missing_tail} of the {self.frame_count} frames its index lists could not "
                         f"be decoded (truncated file?)")
        return f"{self.path.name}: " + "; ".join(parts) if parts else None

    def __iter__(self) -> Iterator[Tuple[int, np.ndarray]]:
        while True:
            item = self.step()
            if item is None:
                return
            if item[1] is not None:
                yield item

    def rewind(self) -> None:
        """Start again at the first frame (re-opens the file; the damage counters keep counting)."""
        self.close()
        self._open()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def partial_name(path: Union[str, Path]) -> Path:
    """Where :class:`VideoWriter` writes ``path`` until it is finalised (``overlay.partial.mp4``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


class VideoWriter:
    """H.264 through PyAV when available (plays everywhere), else OpenCV mp4v.

    The video is written under :func:`partial_name` and renamed to ``path`` by :meth:`close`,
    so ``path`` only ever holds a finalised, playable file; a killed run leaves the partial
    one, which says what it is by its name."""

    def __init__(self, path: Path, fps: float, size):
        self.path = Path(path)
        self.partial_path = partial_name(self.path)
        self.size = size
        self._av = None
        self._cv = None
        try:
            import av

            self._av = av.open(str(self.partial_path), mode="w", format=self.path.suffix.lstrip(".") or "mp4")
            self._stream = self._av.add_stream("libx264", rate=int(round(fps)) or 30)
            self._stream.width, self._stream.height = size[0] - size[0] % 2, size[1] - size[1] % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "20", "preset": "veryfast"}
        except Exception as exc:  # PyAV missing or no libx264: fall back to OpenCV
            raise_if_stopped()
            log.info("PyAV/libx264 unavailable (%s); writing mp4v with OpenCV", exc)
            if self._av is not None:
                self._av.close()
            self._av = None
            self._cv = cv2.VideoWriter(str(self.partial_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not self._cv.isOpened():
                raise IOError(f"cannot write video {self.partial_path}")

    def write(self, frame_bgr: np.ndarray) -> None:
        if self._av is not None:
            import av

            f = frame_bgr[: self._stream.height, : self._stream.width]
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="bgr24")):
                self._av.mux(packet)
        elif self._cv is not None:
            self._cv.write(frame_bgr)
        else:
            raise ValueError(f"{self.path}: writer is closed")

    def close(self) -> None:
        """Flush the encoder, finish the container and rename it to ``path`` (idempotent)."""
        finished = False
        if self._av is not None:
            try:
                for packet in self._stream.encode():
                    self._av.mux(packet)
            finally:
                self._av.close()
                self._av = None
            finished = True
        if self._cv is not None:
            self._cv.release()
            self._cv = None
            finished = True
        if finished:
            os.replace(self.partial_path, self.path)
