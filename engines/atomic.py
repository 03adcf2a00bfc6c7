"""Files that appear whole or not at all: write to a temporary name beside the target, fsync,
then rename over it (``os.replace`` is atomic on one file system). A killed process leaves at
most a ``*.tmp`` file, never a half-written result under the real name."""
from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from .errors import UserError

PathLike = Union[str, os.PathLike]


def temporary_name(path: PathLike) -> Path:
    """Where a file is written before it is renamed to ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


@contextmanager
def atomic_file(path: PathLike, mode: str = "wb", fsync: bool = True) -> Iterator[Any]:
    """Open ``path``'s temporary name for writing; on success it is renamed to ``path``,
    on any error it is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """For writers that need a file name rather than a handle (Blender, glTF, video muxers): a
    temporary path beside ``path``, renamed onto ``path`` when the block succeeds and removed on
    any error (``path`` is then left as it was). ``keep_suffix``: the temporary name keeps the
    extension (``.NAME.PID.partial.EXT``) for writers that choose the format by it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}") if keep_suffix else temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: PathLike, data: bytes, fsync: bool = True) -> None:
    with atomic_file(path, "wb", fsync) as fh:
        fh.write(data)


def write_text_atomic(path: PathLike, text: str, fsync: bool = True) -> None:
    with atomic_file(path, "w", fsync) as fh:
        fh.write(text)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so the JSON written is valid
    (``json.dump`` would write the non-standard ``NaN`` / ``Infinity``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(path: PathLike, data: Any, indent: int = 2, fsync: bool = True) -> None:
    """Valid JSON (non-finite floats written as null), atomically."""
    write_text_atomic(path, json.dumps(json_safe(data), indent=indent, allow_nan=False), fsync)


def check_output_file(path: Optional[Path], option: str) -> None:
    """Fail before any work when ``path`` (an output file option) cannot be written."""
    if path is None:
        return
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder: give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        why = "is not a folder" if parent.exists() else "does not exist"
        raise UserError(f"{option} {path}: the folder {parent} {why}")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{option} {path}: the folder {parent} is not writable")
