"""What ``mocap batch INPUT...`` means: video files, image files, folders (their videos and images,
not recursive) and text files listing such paths, expanded into one list of media files.

Every media file is one input of the batch. Paths that lead to nothing (missing, a folder without
media, a file that is neither image nor video, an empty list) are *problems*: reported, never fatal
for the others. A zero-byte or unreadable media file is an input that fails without being opened.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

from engines.media import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, list_images, media_kind, natural_key,
                           unsupported_files)

#: Suffixes of text files that list inputs, one path a line (``#`` starts a comment; relative
#: paths are relative to the list file's folder).
LIST_EXTENSIONS = (".txt", ".list")


@dataclass(frozen=True)
class MediaInput:
    """One input: a video or an image file (absolute, resolved path)."""

    path: Path
    kind: str  # "video" or "image"

    @property
    def key(self) -> str:
        """The input's identity in the manifest."""
        return str(self.path)

    def preflight_error(self) -> Optional[str]:
        """Why this file cannot be processed, found without decoding it (None when it may be)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return f"not found: {self.path}"
        except OSError as exc:
            return f"cannot read {self.path}: {exc.strerror or exc}"
        if size == 0:
            return f"empty file (0 bytes): {self.path}"
        if not os.access(self.path, os.R_OK):
            return f"not readable (permission denied): {self.path}"
        return None


@dataclass(frozen=True)
class Problem:
    """An INPUT argument (or list line) that yields no media file, or (``not_read``) a file of a
    type no command reads found in an INPUT folder: named in the summary and the manifest, not a
    failure of the batch."""

    path: str
    message: str
    not_read: bool = False


def list_videos(folder: Path) -> List[Path]:
    """The video files of ``folder`` in natural order (not recursive)."""
    return sorted((p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS),
                  key=natural_key)


def _read_list(path: Path) -> List[Path]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        item = Path(line).expanduser()
        out.append(item if item.is_absolute() else path.parent / item)
    return out


def _expand_one(item: Path, from_list: bool) -> Tuple[List[MediaInput], List[Problem]]:
    if item.is_dir():
        try:
            found = list_videos(item) + list_images(item)
            other = unsupported_files(item)
        except OSError as exc:
            return [], [Problem(str(item), f"cannot list folder {item}: {exc.strerror or exc}")]
        not_read = [Problem(str(p), f"not read (not an image or video type): {p}", not_read=True) for p in other]
        if not found:
            return [], [Problem(str(item), f"no image or video files in folder {item} "
                                           f"(looked for {', '.join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)})")] + not_read
        return [MediaInput(p.resolve(), media_kind(p)) for p in found], not_read
    kind = media_kind(item)
    if kind is not None:  # missing, empty or unreadable files fail as inputs (see preflight_error)
        return [MediaInput(item.resolve(), kind)], []
    if not item.exists():
        return [], [Problem(str(item), f"not found: {item}")]
    if item.suffix.lower() in LIST_EXTENSIONS and not from_list:
        try:
            listed = _read_list(item)
        except (OSError, UnicodeError) as exc:
            return [], [Problem(str(item), f"cannot read list {item}: {exc}")]
        if not listed:
            return [], [Problem(str(item), f"list {item} names no paths")]
        inputs, problems = [], []
        for entry in listed:
            i, p = _expand_one(entry, from_list=True)
            inputs += i
            problems += p
        return inputs, problems
    return [], [Problem(str(item), f"not an image, video, folder or list of paths: {item} "
                                   f"(videos: {', '.join(VIDEO_EXTENSIONS)}; images: {', '.join(IMAGE_EXTENSIONS)}; "
                                   f"lists: {', '.join(LIST_EXTENSIONS)})")]


def expand_inputs(items: Iterable[Path]) -> Tuple[List[MediaInput], List[Problem]]:
    """All media files named by ``items`` in the order given (each file once) and the problems."""
    inputs: List[MediaInput] = []
    problems: List[Problem] = []
    seen = set()
    for item in items:
        found, bad = _expand_one(Path(item).expanduser(), from_list=False)
        problems += bad
        for media in found:
            if media.key not in seen:
                seen.add(media.key)
                inputs.append(media)
    return inputs, problems
