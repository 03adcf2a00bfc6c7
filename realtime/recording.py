"""The recording file format: a directory with ``meta.json``, ``frames.bin`` and optional JPEGs.

Layout of a recording directory::

    DIR/meta.json        written at start, rewritten (atomically) when the image size
                         becomes known and on close ("complete": true)
    DIR/frames.bin       one record per frame: 8-byte header <uint32 length, uint32 crc32>
                         (little-endian) then a msgpack map (the message of
                         :mod:`realtime.codec`, plus "index" and "image")
    DIR/video/000000.jpg optional: one JPEG per frame, written to a temporary name and
                         renamed, so a file is either whole or absent

:class:`realtime.sinks.recorder.Recorder` writes it during a session; :func:`load_recording`
reads one back. The reader stops at the first incomplete or corrupt record (length and
CRC32 checked), so a truncated tail is tolerated.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from engines.types import FrameResult

from .codec import result_from_dict, unpack

log = logging.getLogger(__name__)

RECORDING_SCHEMA = "smplerx-mocap-recording/1"
FRAMES_FILE = "frames.bin"
META_FILE = "meta.json"
VIDEO_DIR = "video"
HEADER = struct.Struct("<II")
MAX_RECORD = 64 << 20


def tool_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version("smplerx-mocap")
    except (ImportError, PackageNotFoundError):
        return "unknown"


def write_json_atomic(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)



def encode_record(payload: bytes) -> bytes:
    """One ``frames.bin`` record: header (length, CRC32) then the payload."""
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass
class Recording:
    """A recording read back: metadata, frames (no images) and where the images are."""

    path: Path
    meta: Dict[str, Any]
    frames: List[FrameResult]
    #: Per frame: the JPEG file, or None (no video, or the image was dropped / lost).
    image_paths: List[Optional[Path]] = field(default_factory=list)
    #: True when the frames file ended in an incomplete or corrupt record.
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.frames)

    def load_image(self, i: int) -> Optional[np.ndarray]:
        """Frame ``i``'s image (BGR) or None."""
        import cv2

        p = self.image_paths[i]
        return None if p is None or not p.is_file() else cv2.imread(str(p))


def read_records(frames_path: Union[str, Path]) -> Tuple[List[Dict[str, Any]], bool]:
    """All complete records of a frames file and whether it ended early (truncated/corrupt)."""
    records: List[Dict[str, Any]] = []
    with open(frames_path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        if pos + HEADER.size > len(data):
            return records, True
        length, crc = HEADER.unpack_from(data, pos)
        start = pos + HEADER.size
        if length > MAX_RECORD or start + length > len(data):
            return records, True
        payload = data[start:start + length]
        if zlib.crc32(payload) != crc:
            return records, True
        records.append(unpack(payload))
        pos = start + length
    return records, False


def load_recording(path: Union[str, Path]) -> Recording:
    """Read a recording directory (or its ``frames.bin``), tolerating a truncated tail."""
    path = Path(path)
    directory = path.parent if path.is_file() else path
    frames_path = path if path.is_file() else path / FRAMES_FILE
    if not frames_path.is_file():
        raise FileNotFoundError(f"not a recording: {frames_path} does not exist")
    meta_path = directory / META_FILE
    meta: Dict[str, Any] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"unreadable recording metadata {meta_path}: {exc}") from exc
    try:
        records, truncated = read_records(frames_path)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"corrupt recording {frames_path}: {exc}") from exc
    if truncated:
        log.warning("recording %s ends in an incomplete record; read %d frames", frames_path, len(records))
    frames, images = [], []
    for r in records:
        try:
            frames.append(result_from_dict(r))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"corrupt record {r.get('index')} in {frames_path}: {exc}") from exc
        images.append(directory / r["image"] if r.get("image") else None)
    return Recording(path=directory, meta=meta, frames=frames, image_paths=images, truncated=truncated)
