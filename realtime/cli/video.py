"""``mocap video``: SMPL-X from every frame of a video (official output format + overlay.mp4)."""
from __future__ import annotations

from pathlib import Path

from engines.errors import UserError

from .common import add_offline_args, load_detector, load_predictor
from .image import _overlay


def register(sub) -> None:
    p = sub.add_parser("video", help="SMPL-X from every frame of a video (official output format + overlay.mp4)")
    p.add_argument("video", type=Path)
    add_offline_args(p)
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.set_defaults(func=cmd_video)


def cmd_video(args) -> int:
    from engines.offline import run_video

    if not args.video.is_file():
        raise UserError(f"video not found: {args.video}")
    predictor = load_predictor(args)
    detector = load_detector(args)
    overlay = _overlay(args, predictor)
    try:
        stats = run_video(args.video, predictor, args.out, detector=detector, manual_boxes=args.bbox,
                          save_mesh=args.save_mesh, overlay=overlay, max_frames=args.max_frames)
    except (IOError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc
    finally:
        if detector is not None:
            detector.close()
        if overlay is not None:
            overlay.close()
    print(f"mocap video: {stats.summary()}; results in {args.out}")
    return 0 if stats.frames else 1
