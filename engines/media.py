"""Images and videos on disk: the one place for extension lists, image decoding, colour-layout
normalisation and the H.264 writer used by the offline commands and the live sources."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import List, Union

import cv2
import numpy as np

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


class VideoWriter:
    """H.264 through PyAV when available (plays everywhere), else OpenCV mp4v."""

    def __init__(self, path: Path, fps: float, size):
        self.path = Path(path)
        self.size = size
        self._av = None
        self._cv = None
        try:
            import av

            self._av = av.open(str(path), mode="w")
            self._stream = self._av.add_stream("libx264", rate=int(round(fps)) or 30)
            self._stream.width, self._stream.height = size[0] - size[0] % 2, size[1] - size[1] % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "20", "preset": "veryfast"}
        except Exception as exc:  # PyAV missing or no libx264: fall back to OpenCV
            log.info("PyAV/libx264 unavailable (%s); writing mp4v with OpenCV", exc)
            if self._av is not None:
                self._av.close()
            self._av = None
            self._cv = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)

    def write(self, frame_bgr: np.ndarray) -> None:
        if self._av is not None:
            import av

            f = frame_bgr[: self._stream.height, : self._stream.width]
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="bgr24")):
                self._av.mux(packet)
        else:
            self._cv.write(frame_bgr)

    def close(self) -> None:
        if self._av is not None:
            for packet in self._stream.encode():
                self._av.mux(packet)
            self._av.close()
            self._av = None
        if self._cv is not None:
            self._cv.release()
            self._cv = None
