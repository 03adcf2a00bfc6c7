"""Real media turned into what phones write: photos with an EXIF orientation tag, MP4s whose track
says how to rotate them (the display matrix of ``tkhd``), variable-frame-rate clips. Made with
Pillow and PyAV, the display matrix written into the file's own bytes (what a phone's muxer does)."""
from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

#: The EXIF ``Orientation`` tag.
ORIENTATION = 0x0112


def stored_for(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores so that applying EXIF ``orientation`` gives ``upright`` (the
    inverse of each transform, written out with numpy so that it does not share code with the
    reader under test)."""
    inverse = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
               5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, 1),  # rot90 k=1: counter-clockwise
               7: lambda a: np.rot90(a, 2).transpose(1, 0, 2), 8: lambda a: np.rot90(a, -1)}
    return np.ascontiguousarray(inverse[orientation](upright))


def write_exif_jpeg(path: Path, stored_bgr: np.ndarray, orientation: int) -> Path:
    """A JPEG of ``stored_bgr`` as it is stored, with EXIF ``Orientation`` = ``orientation``."""
    from PIL import Image

    im = Image.fromarray(cv2.cvtColor(stored_bgr, cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    im.save(path, quality=95, exif=exif.tobytes())
    return path


def write_clip(path: Path, frames_bgr: Sequence[np.ndarray], times_ms: Optional[Sequence[int]] = None,
               fps: int = 30) -> Path:
    """An H.264 MP4 of ``frames_bgr``; frame k at ``times_ms[k]`` (variable frame rate) or ``k / fps``."""
    import av

    h, w = frames_bgr[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for k, image in enumerate(frames_bgr):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[: h - h % 2, : w - w % 2]), format="bgr24")
            frame.pts = int(times_ms[k]) if times_ms is not None else int(round(k * 1000 / fps))
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def set_rotation(path: Path, degrees: int) -> Path:
    """Write a display matrix turning the video ``degrees`` clockwise into its track header (``tkhd``),
    as phones do for a portrait or upside-down clip."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0, "no track header"
    version = data[at + 4]
    # version/flags (4), times and track id (20 or 32), reserved (8), layer, group, volume, reserved (8)
    matrix_at = at + 4 + 4 + (32 if version == 1 else 20) + 8 + 8
    c, s = round(math.cos(math.radians(degrees))), round(math.sin(math.radians(degrees)))
    struct.pack_into(">9i", data, matrix_at, c << 16, s << 16, 0, (-s) << 16, c << 16, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return path


def frames_from(image_bgr: np.ndarray, n: int, size=(160, 96)) -> list:
    """``n`` different frames cut from a real photo (a window sliding right), each numbered."""
    h, w = image_bgr.shape[:2]
    out = []
    for k in range(n):
        x = int(k * (w - w // 2) / max(1, n))
        frame = cv2.resize(image_bgr[:, x:x + w // 2], size)
        cv2.putText(frame, str(k), (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 255), 2)
        out.append(frame)
    return out
