"""Images and videos on disk: the one place for extension lists, image decoding, video reading
(:class:`VideoReader`, the same rules for ``mocap video`` and ``mocap live``), colour-layout
normalisation and the H.264 writer used by the offline commands and the live sources.

Orientation: phones store pixels as the sensor saw them and say how to turn them for display
(an EXIF ``Orientation`` tag in photos, a rotation in the video track's display matrix). Every
reader here applies it by default, so people stand upright before detection and every result is
in the frame a player shows; ``orientation=False`` keeps the pixels as stored, which is what the
official ``load_img`` does (``cv2.IMREAD_IGNORE_ORIENTATION``).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np

from .stop import raise_if_stopped

log = logging.getLogger(__name__)

#: HEIC/HEIF photos (iPhones' default): read through ``pillow-heif`` when it is installed.
HEIF_EXTENSIONS = (".heic", ".heif")
#: Image files every command reads (``mocap image``, ``mocap live --source DIR``, batches): the
#: one list; a file of another type in a folder is reported by name, never skipped silently.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff") + HEIF_EXTENSIONS
#: Video files every command reads (``mocap video``, ``mocap live --source``, batches). An
#: animated GIF is a video (its frames are read in order).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".3gp", ".ts", ".mts",
                    ".m2ts", ".wmv", ".flv", ".ogv", ".gif")


def media_kind(path: Union[str, Path]) -> Optional[str]:
    """``"image"`` or ``"video"`` by the file's extension (case-insensitive), None for other files."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return None


def accepted_types() -> str:
    """The accepted extensions in one line, for messages."""
    return f"images: {' '.join(IMAGE_EXTENSIONS)}; videos: {' '.join(VIDEO_EXTENSIONS)}"


def unsupported_files(folder: Union[str, Path]) -> List[Path]:
    """The files of ``folder`` that no command reads (not images or videos by extension; hidden
    files are left out), in natural order, so that they can be named instead of skipped silently."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and media_kind(p) is None), key=natural_key)


def check_video_path(path: Union[str, Path]) -> None:
    """Raise ``VideoUnreadable`` naming the accepted types when ``path`` is not a video by its
    extension (an image, or an unknown type), before anything slow."""
    kind = media_kind(path)
    if kind == "video":
        return
    if kind == "image":
        raise VideoUnreadable(f"{path} is an image, not a video: use mocap image")
    raise VideoUnreadable(f"{path}: not a supported video type ({accepted_types()})")


def natural_key(path: Union[str, Path]):
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", Path(path).name)]


def list_images(folder: Union[str, Path]) -> List[Path]:
    """The image files of ``folder`` in natural order (not recursive)."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=natural_key)


#: EXIF orientation tag value -> what turns the stored pixels upright (as photo viewers show them).
EXIF_ORIENTATIONS = {
    1: "none", 2: "mirror horizontally", 3: "rotate 180", 4: "mirror vertically",
    5: "transpose", 6: "rotate 90 clockwise", 7: "transverse", 8: "rotate 90 counter-clockwise",
}
#: The EXIF tag that holds it.
EXIF_ORIENTATION_TAG = 0x0112


def exif_orientation(path: Union[str, Path]) -> int:
    """The EXIF ``Orientation`` (1-8) of an image file; 1 when it has none or cannot say."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            value = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # no Pillow, a format Pillow cannot parse, a damaged header: as stored
        return 1
    return int(value) if value in EXIF_ORIENTATIONS else 1


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` turned as EXIF ``orientation`` (1-8) says, the way photo viewers show it."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def read_image(path: Union[str, Path], orientation: bool = True) -> np.ndarray:
    """BGR uint8, decoded as the official ``load_img`` decodes it (OpenCV, EXIF ignored), then
    turned upright by its EXIF orientation unless ``orientation`` is False (the official
    behaviour). HEIC/HEIF files are decoded by ``pillow-heif`` (optional extra ``heif``)."""
    return image_with_orientation(path, orientation)[0]


def image_with_orientation(path: Union[str, Path], orientation: bool = True) -> Tuple[np.ndarray, Optional[str]]:
    """:func:`read_image` and what was applied: None when nothing was turned, else the
    :data:`EXIF_ORIENTATIONS` text (``"rotate 90 clockwise"``)."""
    path = Path(path)
    if path.suffix.lower() in HEIF_EXTENSIONS:
        return _read_heif(path), None  # libheif applies the file's own transforms while decoding
    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise IOError(f"cannot read image {path} (missing, unreadable or not an image)")
    if not orientation:
        return img, None
    tag = exif_orientation(path)
    if tag == 1:
        return img, None
    return apply_exif_orientation(img, tag), EXIF_ORIENTATIONS[tag]


def _read_heif(path: Path) -> np.ndarray:
    try:
        import pillow_heif
    except ImportError:
        raise IOError(f"cannot read {path.name}: HEIC/HEIF images need pillow-heif "
                      f"(pip install pillow-heif, or the 'heif' extra: pip install .[heif])") from None
    try:
        heif = pillow_heif.open_heif(str(path), convert_hdr_to_8bit=True)
        rgb = np.asarray(heif.to_pillow().convert("RGB"))
    except Exception as exc:
        raise IOError(f"cannot read image {path} ({exc})") from None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


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


#: Clockwise rotation in degrees -> the OpenCV rotation that applies it.
ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}

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

    def __init__(self, path: Union[str, Path], orientation: bool = True):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoUnreadable(f"video not found: {self.path}")
        #: Frames lost mid-file (undecodable), and frames the container lists but the file lacks.
        self.corrupt = 0
        self.missing_tail = 0
        #: Seconds into the video of every decoded frame, by position (its real timestamp: phones
        #: write variable-frame-rate files, whose frames are not on a ``k / fps`` grid).
        self.frame_times: Dict[int, float] = {}
        self._cap: Optional[cv2.VideoCapture] = None
        self._times_ms: Optional[np.ndarray] = None
        self._timeline_read = False
        self._open()
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps_known = bool(fps and np.isfinite(fps) and fps > 0)
        #: Frame rate from the container (30 when it does not say; the average for a
        #: variable-frame-rate file).
        self.fps = float(fps) if self.fps_known else 30.0
        meta = self._cap.get(cv2.CAP_PROP_ORIENTATION_META)
        #: Clockwise rotation (0, 90, 180, 270) the track's display matrix asks for.
        self.stored_rotation = int(round(meta)) % 360 if meta and np.isfinite(meta) else 0
        if self.stored_rotation not in ROTATIONS:
            self.stored_rotation = 0
        #: The rotation applied to every frame (0 with ``orientation=False``: pixels as stored).
        self.rotation = self.stored_rotation if orientation else 0
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self.rotation in (90, 270):
            w, h = h, w
        if w <= 0 or h <= 0:
            self.close()
            raise VideoUnreadable(f"cannot open video {self.path}: no video stream with a frame size")
        #: Size of the frames handed out (after the rotation).
        self.frame_size: Tuple[int, int] = (w, h)

    @property
    def orientation_note(self) -> Optional[str]:
        """What was done about the file's rotation, for results and summaries (None: nothing to do)."""
        if not self.stored_rotation:
            return None
        if self.rotation:
            return f"rotate {self.rotation} clockwise (the video's rotation metadata)"
        return f"not applied: the video asks to rotate {self.stored_rotation} clockwise"

    def _open(self) -> None:
        # FFmpeg only: when FFmpeg cannot open a file, OpenCV's fallback backends would try it as an
        # image sequence, and one in a thousand random files "opens" that way with no frame size.
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise VideoUnreadable(f"cannot open video {self.path}: not a video, damaged, or an unsupported codec")
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)  # the rotation is applied here, by choice, and reported
        self._cap = cap
        #: Frames the container says it holds (0: unknown).
        self.frame_count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        #: Position of the next frame expected.
        self.position = 0
        self._failures = 0  # failed reads in a row
        self.ended = False

    @property
    def variable_frame_rate(self) -> bool:
        """True when the container's frame times are not evenly spaced (a phone clip)."""
        times = self._timeline()
        if times is None or len(times) < 3:
            return False
        d = np.diff(times)
        med = float(np.median(d))
        return bool(med > 0 and float(np.max(np.abs(d - med))) > max(1.5, 0.25 * med))

    def _timeline(self) -> Optional[np.ndarray]:
        """The presentation times (ms from the stream's start, sorted) of every frame the
        container holds, read from its packets without decoding; None when PyAV cannot say or
        some packets are unreadable (then positions come from ``t * fps`` as before)."""
        if self._timeline_read:
            return self._times_ms
        self._timeline_read = True
        try:
            import av

            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                tb = float(stream.time_base)
                start = stream.start_time or 0
                pts = [p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0]
        except Exception as exc:  # PyAV missing, or a file it cannot demux: positions from the rate
            log.debug("%s: no packet timeline (%s)", self.path.name, exc)
            return None
        if self.frame_count and len(pts) != self.frame_count:
            log.debug("%s: %d of the %d indexed packets readable: positions from the rate", self.path.name,
                      len(pts), self.frame_count)  # a damaged or truncated file: its times have holes
        elif len(pts) >= 2:
            self._times_ms = np.unique((np.asarray(pts, np.float64) - start) * tb * 1000.0)
        return self._times_ms

    def _position_of_decoded(self, t_ms: Optional[float]) -> int:
        """The just-decoded frame's position, from its timestamp (never before the expected one):
        its place in the container's frame times, or ``t * fps`` when those are unknown."""
        if t_ms is None:
            return self.position
        times = self._timeline()
        if times is not None:
            i = int(np.searchsorted(times, t_ms))
            if i >= len(times) or (i > 0 and t_ms - times[i - 1] < times[i] - t_ms):
                i -= 1
            return max(self.position, i)
        if self.fps_known:
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
            t_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            t_ms = float(t_ms) if t_ms is not None and np.isfinite(t_ms) and t_ms >= 0 else None
            pos = self._position_of_decoded(t_ms)
            if pos > self.position:
                log.warning("%s: %d undecodable frame(s) skipped before frame %d", self.path.name,
                            pos - self.position, pos)
                self.corrupt += pos - self.position
            self.position = pos + 1
            self._failures = 0
            self.frame_times[pos] = t_ms / 1000.0 if t_ms is not None else pos / self.fps
            if self.rotation:
                image = cv2.rotate(image, ROTATIONS[self.rotation])
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

    def __init__(self, path: Path, fps: float, size, timestamps: bool = False):
        """``timestamps``: frames are written at the times given to :meth:`write` (a
        variable-frame-rate source keeps its timing), else at ``k / fps``."""
        self.path = Path(path)
        self._last_pts = -1
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
            if timestamps:
                from fractions import Fraction

                self._stream.codec_context.time_base = Fraction(1, 1000)
                self._stream.time_base = Fraction(1, 1000)
            self._ms = timestamps
        except Exception as exc:  # PyAV missing or no libx264: fall back to OpenCV
            raise_if_stopped()
            log.info("PyAV/libx264 unavailable (%s); writing mp4v with OpenCV", exc)
            if self._av is not None:
                self._av.close()
            self._av = None
            self._cv = cv2.VideoWriter(str(self.partial_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not self._cv.isOpened():
                raise IOError(f"cannot write video {self.partial_path}")

    def write(self, frame_bgr: np.ndarray, t: Optional[float] = None) -> None:
        """Append a frame; ``t``: its time in seconds (used when opened with ``timestamps``)."""
        if self._av is not None:
            import av

            f = frame_bgr[: self._stream.height, : self._stream.width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="bgr24")
            if self._ms and t is not None:
                from fractions import Fraction

                self._last_pts = max(self._last_pts + 1, int(round(t * 1000.0)))  # strictly increasing
                frame.pts, frame.time_base = self._last_pts, Fraction(1, 1000)
            for packet in self._stream.encode(frame):
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
