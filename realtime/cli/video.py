"""``mocap video``: SMPL-X from every frame of a video (official output format + overlay.mp4)."""
from __future__ import annotations

from pathlib import Path

from engines.errors import UserError

from .common import add_examples, add_offline_args, check_boxes, run_offline


def register(sub) -> None:
    p = sub.add_parser("video", help="SMPL-X from every frame of a video (official output format + overlay.mp4)")
    p.add_argument("video", type=Path, help="the video file (mp4, mov, avi, mkv...)")
    add_offline_args(p)
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    add_examples(p, "mocap video dance.mp4 --out results/dance",
                 "mocap video duet.mp4 --out results/duet --max-people 2 --checkpoint b32",
                 "mocap video clip.mp4 --out results/clip --device cuda --no-overlay")
    p.set_defaults(func=cmd_video)


def cmd_video(args) -> int:
    from engines.media import VideoReader, VideoUnreadable, check_video_path
    from realtime.results import check_output_dir

    check_boxes(args.bbox)
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError("--max-frames must be >= 1")
    try:
        check_video_path(args.video)
        VideoReader(args.video).close()  # an unreadable video fails before the slow model load
    except VideoUnreadable as exc:
        raise UserError(str(exc)) from None
    check_output_dir(args.out, args.overwrite)  # before the slow model load
    return run_offline(args, [args.video])
