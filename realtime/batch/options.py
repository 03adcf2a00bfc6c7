"""What every input of a batch is processed with, and which of it makes results differ
(the manifest keeps that part, so a rerun cannot mix results made with other settings)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from engines.errors import UserError

#: Animation formats ``--export`` writes into each result folder (``mocap convert``'s formats).
EXPORT_FORMATS = ("npz", "bvh", "glb", "fbx")


@dataclass(frozen=True)
class BatchOptions:
    """Options shared with ``mocap video`` / ``mocap image`` (same meaning), plus ``exports``."""

    checkpoint: str
    body_models: Optional[str] = None
    device: str = "cpu"
    engine: str = "torch"
    bbox: Optional[Tuple[Tuple[float, float, float, float], ...]] = None
    max_people: int = 1
    save_mesh: bool = False
    overlay: bool = True
    boxes: bool = True
    max_frames: Optional[int] = None
    #: Animation files to write into each result folder (``mocap convert``), in this order.
    exports: Tuple[str, ...] = ()
    #: The exports smoothed and grounded as ``mocap convert``'s defaults (the smplx/ results stay raw).
    export_smooth: bool = True
    export_ground: bool = True
    #: Turn photos / videos by their EXIF orientation / rotation metadata (``--ignore-orientation``: False).
    orientation: bool = True

    def results_identity(self) -> Dict:
        """The settings results depend on (device and worker counts do not change what is written)."""
        d = asdict(self)
        for key in ("body_models", "device"):
            d.pop(key)
        d["bbox"] = [list(b) for b in self.bbox] if self.bbox else None
        d["exports"] = list(self.exports)
        if not self.exports:  # they change only the export files
            d.pop("export_smooth")
            d.pop("export_ground")
        if d["orientation"]:  # the default: batches written before the option existed stay resumable
            d.pop("orientation")
        return d

    def manual_boxes(self) -> Optional[List[List[float]]]:
        return [list(b) for b in self.bbox] if self.bbox else None


def resolve_options(checkpoint: str, body_models: Optional[str], device: str, engine: str, bbox, max_people: int,
                    save_mesh: bool, overlay: bool, boxes: bool, max_frames: Optional[int],
                    exports: Sequence[str] = (), export_smooth: bool = True, export_ground: bool = True,
                    orientation: bool = True) -> BatchOptions:
    """Options with the checkpoint resolved to a file, the body model found and the export formats
    checked (clear errors first, before any worker starts)."""
    from engines.body_model import find_smplx_file
    from engines.checkpoints import resolve_checkpoint

    ckpt = resolve_checkpoint(checkpoint).resolve()  # CheckpointError / BodyModelNotFound: UserErrors
    find_smplx_file(body_models)
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames must be at least 1, got {max_frames}")
    if max_people < 1:
        raise UserError("--max-people must be at least 1")
    unknown = [f for f in exports if f not in EXPORT_FORMATS]
    if unknown:
        raise UserError(f"unknown --export format(s) {', '.join(unknown)}: use {', '.join(EXPORT_FORMATS)}")
    if "fbx" in exports:
        from realtime.animation.fbx import require_bpy

        require_bpy()  # the FBX writer is Blender itself: say so now, not after the first input
    boxes_t = tuple(tuple(float(v) for v in b) for b in bbox) if bbox else None
    return BatchOptions(checkpoint=str(ckpt), body_models=str(Path(body_models).expanduser()) if body_models else None,
                        device=device, engine=engine, bbox=boxes_t, max_people=int(max_people),
                        save_mesh=bool(save_mesh), overlay=bool(overlay), boxes=bool(boxes), max_frames=max_frames,
                        exports=tuple(dict.fromkeys(exports)), export_smooth=bool(export_smooth),
                        export_ground=bool(export_ground), orientation=bool(orientation))
