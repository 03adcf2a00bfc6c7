"""The recording file format: a directory with ``meta.json``, ``frames.bin`` and optional JPEGs.

Layout of a recording directory::

    DIR/meta.json        written at start, rewritten (atomically) when the image size
                         becomes known and on close ("complete": true)
    DIR/frames.bin       one record per frame (framing below), each holding a msgpack map
                         (the message of :mod:`realtime.codec`, plus "index" and "image")
    DIR/video/000000.jpg optional: one JPEG per frame, written to a temporary name and
                         renamed, so a file is either whole or absent

Record framing, version 2 (``meta.json`` ``"schema": "smplerx-mocap-recording/2"``)::

    SYNC (4 bytes: AB 4D 52 32) | uint32 length | uint32 crc | payload (length bytes)

little-endian, ``crc = crc32(length as 4 bytes + payload)``, ``1 <= length <= MAX_RECORD``.
The sync marker lets a reader find the next record after a damaged one, and an all-zero
header (what a power loss leaves in a file's tail) fails it. Version 1 (``.../1``) has no
marker: ``uint32 length | uint32 crc32(payload) | payload``; it is still read, and resynced
by trying every offset for a header whose CRC holds.

:class:`realtime.sinks.recorder.Recorder` writes it during a session; :func:`load_recording`
reads one back. The reader skips damaged stretches (bad marker, length out of bounds, CRC
mismatch, a payload that is not a frame) and reads every intact record after them; what it
skipped is reported in :attr:`Recording.damaged` / :meth:`Recording.problems`, so a
truncated or zero-filled tail loses only itself.
"""
from __future__ import annotations

import json
import logging
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from engines.types import FrameResult

from .codec import result_from_dict, unpack

log = logging.getLogger(__name__)

RECORDING_SCHEMA = "smplerx-mocap-recording/2"
#: Recordings written before the sync marker (still read).
RECORDING_SCHEMA_V1 = "smplerx-mocap-recording/1"
FRAMES_FILE = "frames.bin"
META_FILE = "meta.json"
VIDEO_DIR = "video"
#: Start of every version-2 record.
SYNC = b"\xabMR2"
HEADER_V2 = struct.Struct("<4sII")
HEADER_V1 = struct.Struct("<II")
MAX_RECORD = 64 << 20
#: First byte of a msgpack map (fixmap, map16, map32): every record's payload starts with one.
_MAP_MARKERS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}


def remembered_body_models(path: Union[str, Path]) -> Optional[str]:
    """The SMPL-X model file a recording was made with (its ``meta.json``), when it still exists;
    None for other folders, older recordings or a model that has moved."""
    path = Path(path)
    directory = path.parent if path.is_file() else path
    try:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = meta.get("body_models") if isinstance(meta, dict) else None
    return found if isinstance(found, str) and Path(found).is_file() else None


def tool_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version("smplerx-mocap")
    except (ImportError, PackageNotFoundError):
        return "unknown"


def encode_record(payload: bytes) -> bytes:
    """One ``frames.bin`` record (version 2): sync marker, length, CRC, then the payload."""
    if not 1 <= len(payload) <= MAX_RECORD:
        raise ValueError(f"record payload of {len(payload)} bytes is outside 1..{MAX_RECORD}")
    length = struct.pack("<I", len(payload))
    return SYNC + length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length))) + payload


def encode_record_v1(payload: bytes) -> bytes:
    """A version-1 record (no marker; CRC over the payload only). For tests of old recordings."""
    return HEADER_V1.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass
class DamagedSpan:
    """A stretch of ``frames.bin`` the reader skipped: bytes ``[start, end)`` and why."""

    start: int
    end: int
    reason: str

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class ScanResult:
    """What :func:`scan_records` found: intact records (with their byte offsets) and what it skipped."""

    records: List[Dict[str, Any]]
    offsets: List[int]
    damaged: List[DamagedSpan]
    size: int
    version: int

    @property
    def truncated(self) -> bool:
        """True when the file ends in a damaged or incomplete stretch (a torn or zero-filled tail)."""
        return bool(self.damaged) and self.damaged[-1].end >= self.size


def _record_v2(data: bytes, pos: int) -> Optional[Tuple[int, bytes]]:
    """(end offset, payload) of an intact version-2 record at ``pos``, else None."""
    if data[pos:pos + 4] != SYNC or pos + HEADER_V2.size > len(data):
        return None
    _, length, crc = HEADER_V2.unpack_from(data, pos)
    start = pos + HEADER_V2.size
    if not 1 <= length <= MAX_RECORD or start + length > len(data):
        return None
    payload = data[start:start + length]
    if zlib.crc32(payload, zlib.crc32(data[pos + 4:pos + 8])) != crc:
        return None
    return start + length, payload


def _record_v1(data: bytes, pos: int) -> Optional[Tuple[int, bytes]]:
    """(end offset, payload) of an intact version-1 record at ``pos``, else None.

    Version 1 has no marker, so a header of zeros would pass its CRC (``crc32(b"") == 0``);
    a record is also required to be non-empty and to start like a msgpack map."""
    if pos + HEADER_V1.size >= len(data):
        return None
    length, crc = HEADER_V1.unpack_from(data, pos)
    start = pos + HEADER_V1.size
    if not 1 <= length <= MAX_RECORD or start + length > len(data) or data[start] not in _MAP_MARKERS:
        return None
    payload = data[start:start + length]
    if zlib.crc32(payload) != crc:
        return None
    return start + length, payload


def _why_damaged(data: bytes, pos: int, version: int) -> str:
    """A short reason for the record at ``pos`` not being intact (for the report)."""
    header = HEADER_V2 if version == 2 else HEADER_V1
    if pos + header.size > len(data):
        return "incomplete record header at the end of the file"
    if not any(data[pos:pos + header.size]):
        return "zero-filled bytes"
    if version == 2 and data[pos:pos + 4] != SYNC:
        return "no record marker"
    length = header.unpack_from(data, pos)[-2]
    if not 1 <= length <= MAX_RECORD:
        return f"record length {length} out of bounds"
    if pos + header.size + length > len(data):
        return "record cut short at the end of the file"
    return "CRC mismatch"


def _next_record(data: bytes, pos: int, version: int) -> int:
    """Offset of the next intact record after ``pos`` (``len(data)`` when there is none)."""
    if version == 2:
        cand = data.find(SYNC, pos + 1)
        while cand != -1:
            if _record_v2(data, cand) is not None:
                return cand
            cand = data.find(SYNC, cand + 1)
        return len(data)
    for cand in range(pos + 1, len(data) - HEADER_V1.size):
        if data[cand + HEADER_V1.size] in _MAP_MARKERS and _record_v1(data, cand) is not None:
            return cand
    return len(data)


def sniff_version(data: bytes, meta: Optional[Dict[str, Any]] = None) -> int:
    """The framing version of a frames file: from ``meta.json``'s schema, else from the bytes."""
    schema = (meta or {}).get("schema")
    if schema == RECORDING_SCHEMA_V1:
        return 1
    if schema == RECORDING_SCHEMA or data[:4] == SYNC:
        return 2
    if not data or _record_v1(data, 0) is not None:
        return 1
    return 2 if SYNC in data else 1


def scan_records(data: bytes, version: Optional[int] = None) -> ScanResult:
    """Every intact record of a frames file's bytes, resynchronising after damage.

    A damaged stretch (bad marker, length out of bounds, CRC mismatch, a payload that does not
    decode to a map) is skipped up to the next intact record and listed in ``damaged``.
    """
    version = version or sniff_version(data)
    read = _record_v2 if version == 2 else _record_v1
    records: List[Dict[str, Any]] = []
    offsets: List[int] = []
    damaged: List[DamagedSpan] = []
    pos = 0
    while pos < len(data):
        found = read(data, pos)
        if found is not None:
            end, payload = found
            record = _decode(payload)
            if isinstance(record, dict):
                records.append(record)
                offsets.append(pos)
            else:
                damaged.append(DamagedSpan(pos, end, f"intact framing but {record}"))
            pos = end
            continue
        nxt = _next_record(data, pos, version)
        damaged.append(DamagedSpan(pos, nxt, _why_damaged(data, pos, version)))
        pos = nxt
    return ScanResult(records, offsets, damaged, len(data), version)


def _decode(payload: bytes) -> Union[Dict[str, Any], str]:
    """The payload's map, or a description of why it is not one."""
    try:
        value = unpack(payload)
    except Exception as exc:  # msgpack raises ValueError subclasses and its own UnpackException
        return f"undecodable payload ({type(exc).__name__})"
    if not isinstance(value, dict):
        return f"payload is a {type(value).__name__}, not a map"
    return value


@dataclass
class Recording:
    """A recording read back: metadata, frames (no images), where the images are, what was skipped."""

    path: Path
    meta: Dict[str, Any]
    frames: List[FrameResult]
    #: Per frame: the JPEG file, or None (no video, or the image was dropped / lost).
    image_paths: List[Optional[Path]] = field(default_factory=list)
    #: True when the frames file ended in an incomplete or damaged record (torn or zero-filled tail).
    truncated: bool = False
    #: Stretches of ``frames.bin`` that were skipped, in file order.
    damaged: List[DamagedSpan] = field(default_factory=list)
    #: Records that were lost, going by the gaps in the records' ``index`` (damage before the
    #: first or after the last intact record is counted in ``damaged`` only).
    missing_indices: List[int] = field(default_factory=list)
    #: Framing version of ``frames.bin`` (1 or 2).
    version: int = 2

    def __len__(self) -> int:
        return len(self.frames)

    def problems(self) -> List[str]:
        """One line per damaged stretch and a line for lost records; empty for a clean file."""
        out = [f"skipped {d.size} byte(s) at offset {d.start} of {FRAMES_FILE}: {d.reason}" for d in self.damaged]
        if self.missing_indices:
            shown = ", ".join(map(str, self.missing_indices[:10])) + (" ..." if len(self.missing_indices) > 10 else "")
            out.append(f"{len(self.missing_indices)} record(s) lost (index {shown}); "
                       f"{len(self.frames)} intact frame(s) read")
        return out

    def load_image(self, i: int) -> Optional[np.ndarray]:
        """Frame ``i``'s image (BGR) or None."""
        import cv2

        p = self.image_paths[i]
        return None if p is None or not p.is_file() else cv2.imread(str(p))


def read_records(frames_path: Union[str, Path]) -> Tuple[List[Dict[str, Any]], bool]:
    """All intact records of a frames file and whether it ended in a damaged or torn tail."""
    with open(frames_path, "rb") as f:
        scan = scan_records(f.read())
    return scan.records, scan.truncated


def _missing(indices: List[int]) -> List[int]:
    out: List[int] = []
    for a, b in zip(indices, indices[1:]):
        if b > a + 1:
            out.extend(range(a + 1, b))
    return out


def load_recording(path: Union[str, Path]) -> Recording:
    """Read a recording directory (or its ``frames.bin``), skipping damaged records.

    Raises FileNotFoundError when there is no frames file and ValueError when ``meta.json``
    is unreadable; damage inside ``frames.bin`` is skipped and reported (``Recording.damaged``,
    ``Recording.problems()``), never fatal.
    """
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
            raise ValueError(f"unreadable recording metadata {meta_path}: {exc} "
                             f"(move it aside to read {FRAMES_FILE} alone)") from exc
        if not isinstance(meta, dict):
            raise ValueError(f"unreadable recording metadata {meta_path}: not a JSON object")
    try:
        data = frames_path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {frames_path}: {exc}") from exc
    scan = scan_records(data, sniff_version(data, meta))
    damaged = list(scan.damaged)
    frames, images, indices = [], [], []
    for record, offset in zip(scan.records, scan.offsets):
        try:
            frames.append(result_from_dict(record))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            damaged.append(DamagedSpan(offset, offset, f"record {record.get('index')} is not a frame "
                                                       f"({type(exc).__name__}: {exc})"))
            continue
        image = record.get("image")
        images.append(directory / image if isinstance(image, str) and image else None)
        if isinstance(record.get("index"), int):
            indices.append(record["index"])
    damaged.sort(key=lambda d: d.start)
    rec = Recording(path=directory, meta=meta, frames=frames, image_paths=images, truncated=scan.truncated,
                    damaged=damaged, missing_indices=_missing(indices), version=scan.version)
    for line in rec.problems():
        log.warning("recording %s: %s", directory, line)
    return rec
