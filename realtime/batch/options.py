"""What every input of a batch is processed with, and which of it makes results differ
(the manifest keeps that part, so a rerun cannot mix results made with other settings)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from engines.errors import UserError


@dataclass(frozen=True)
class BatchOptions:
    """Options shared by ``mocap video`` / ``mocap image`` and the batch (same meaning)."""

    checkpoint: str
    body_models: Optional[str] = None
    device: str = "cpu"
    engine: str = "torch"
    bbox: Optional[Tuple[Tuple[float, float, float, float], ...]] = None
    save_mesh: bool = False
    overlay: bool = True
    max_frames: Optional[int] = None
    #: People per frame at most (``--max-people``; ``mocap video`` / ``image`` default 10).
    max_people: int = 10
    #: Overlays draw boxes and ids (``--no-boxes`` turns it off).
    boxes: bool = True

    def results_identity(self) -> Dict:
        """The settings results depend on (device and worker counts do not change what is written)."""
        d = asdict(self)
        for key in ("body_models", "device"):
            d.pop(key)
        d["bbox"] = [list(b) for b in self.bbox] if self.bbox else None
        return d

    def manual_boxes(self) -> Optional[List[List[float]]]:
        return [list(b) for b in self.bbox] if self.bbox else None


def resolve_options(checkpoint: str, body_models: Optional[str], device: str, engine: str, bbox, save_mesh: bool,
                    overlay: bool, max_frames: Optional[int], max_people: Optional[int] = None,
                    draw_boxes: bool = True) -> BatchOptions:
    """Options with the checkpoint resolved to a file and the body model found (clear errors first,
    before any worker starts)."""
    from engines.body_model import BodyModelNotFound, find_smplx_file
    from engines.checkpoints import CheckpointError, resolve_checkpoint

    try:
        ckpt = resolve_checkpoint(checkpoint).resolve()
        find_smplx_file(body_models)
    except (CheckpointError, BodyModelNotFound) as exc:
        raise UserError(str(exc)) from exc
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames must be at least 1, got {max_frames}")
    if max_people is not None and max_people < 1:
        raise UserError(f"--max-people must be at least 1, got {max_people}")
    boxes = tuple(tuple(float(v) for v in b) for b in bbox) if bbox else None
    return BatchOptions(checkpoint=str(ckpt), body_models=str(Path(body_models).expanduser()) if body_models else None,
                        device=device, engine=engine, bbox=boxes, save_mesh=bool(save_mesh), overlay=bool(overlay),
                        max_frames=max_frames, max_people=int(max_people or 10), boxes=bool(draw_boxes))
