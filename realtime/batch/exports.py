"""``--export``: animation files (``mocap convert``'s formats) written into a result folder before it
is moved into place, so that a folder counts as done only with every file that was asked for."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence


def write_exports(folder: Path, name: str, formats: Sequence[str], body_models: Optional[str],
                  smooth: bool = True, ground: bool = True) -> List[str]:
    """``<name>.<ext>`` per format (``<name>_<id>.<ext>`` per person when there are several) in
    ``folder``; the names written. Nothing when nobody was seen. Raises UserError on failure.
    ``smooth`` / ``ground``: as ``mocap convert --smooth --ground`` (the result files stay raw)."""
    folder = Path(folder)
    if not formats or not any((folder / "smplx").glob("*.npz")):
        return []
    from realtime.animation.convert import FORMATS, convert

    written: List[str] = []
    for fmt in formats:
        report = convert(folder, folder / f"{name}{FORMATS[fmt].suffix}", to=fmt, body_models=body_models,
                         smooth=smooth, ground=ground)
        written += [w.path.name for w in report.files]
    return written
