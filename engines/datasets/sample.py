"""What a test-set reader hands the evaluation: one person in one image, with the official crop box."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import UserError


@dataclass
class EvalSample:
    """One entry of an official test datalist, in the official order."""

    index: int                      # position in the official datalist (batching follows it)
    key: str                        # stable name (per-sample predictions are saved under it)
    img_path: Path
    img_shape: Tuple[int, int]      # (height, width) as the annotation gives it
    bbox: np.ndarray                # the crop box, xywh float32 (after the official process_bbox)
    gt: Dict[str, Any] = field(default_factory=dict)  # reader-specific ground truth
    sequence: Optional[str] = None  # for temporal figures: which clip and person
    frame: Optional[int] = None     # frame number within the sequence


def need_file(path: Path, what: str, hint: str = "") -> Path:
    """``path`` if it is a file, else a one-line :class:`UserError` naming it."""
    if not Path(path).is_file():
        raise UserError(f"{path} not found ({what}){'; ' + hint if hint else ''}")
    return Path(path)


def trailing_number(name: str) -> Optional[int]:
    """The last run of digits in a file name's stem (the frame number of ``image_00012.jpg``), or None."""
    stem = Path(name).stem
    digits = ""
    for ch in reversed(stem):
        if ch.isdigit():
            digits = ch + digits
        elif digits:
            break
    return int(digits) if digits else None
