"""``mocap replay``: send a recording or a ``mocap video`` result folder to the streams."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

from engines.errors import UserError

from .. import signals
from .common import add_examples, add_stream_args, stream_targets


def register(sub) -> None:
    r = sub.add_parser("replay", help="send a recorded session or a `mocap video` result folder to the streams")
    r.add_argument("path", type=Path, help="recording directory, or a directory with smplx/ and meta/")
    add_stream_args(r)
    r.add_argument("--body-models", default=None, metavar="DIR", help="SMPL-X model directory (for VMC rest offsets; default: the one a recording "
                        "was made with, else $MOCAP_BODY_MODELS or the cache)")
    r.add_argument("--speed", type=float, default=1.0, help="playback speed factor")
    r.add_argument("--fps", type=float, default=None,
                   help="frame rate of official result folders, placing frames on a k/F grid (default: each "
                        "frame's timestamp from the folder's video.json, else its fps, else 30)")
    r.add_argument("--loop", action="store_true", help="start over at the end until stopped (Ctrl-C)")
    r.add_argument("--settle", type=float, default=0.5, metavar="S",
                   help="seconds to wait after opening the streams before the first frame, so that ZMQ "
                        "subscribers already waiting receive it (ZMQ drops what is published before a "
                        "subscriber has joined). Default 0.5; 0 to start at once")
    add_examples(r, "mocap replay takes/rec1 --osc 127.0.0.1:39539",
                 "mocap replay results/clip --zmq tcp://127.0.0.1:5555 --osc none --speed 0.5",
                 "mocap replay takes/rec1 --loop --osc 127.0.0.1:39539 --osc 127.0.0.1:39540")
    r.set_defaults(func=cmd_replay)


def cmd_replay(args) -> int:
    from engines.body_model import BodyModel, BodyModelNotFound

    from realtime.replay import load_timeline, replay, replay_banner
    from realtime.sinks.targets import check_streams, make_sinks, osc_targets

    if not args.speed > 0 or (args.fps is not None and not args.fps > 0):
        raise UserError("--speed and --fps must be > 0")
    if not args.settle >= 0:
        raise UserError("--settle must be >= 0 seconds")
    streams = stream_targets(args)
    check_streams(streams)
    if not args.path.exists():
        raise UserError(f"nothing to replay at {args.path}")
    fps = args.fps
    if fps is None:  # a mocap video folder says its rate in video.json
        from realtime.results import read_video_info

        fps = (read_video_info(args.path) or {}).get("fps") or 30.0
    try:
        timeline = load_timeline(args.path, fps=fps, frame_times=args.fps is None)  # damaged input is found before any sink opens
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None
    body = None
    if osc_targets(streams.osc):
        from realtime.recording import remembered_body_models

        try:
            body = BodyModel(args.body_models or remembered_body_models(args.path))
        except BodyModelNotFound as exc:
            raise UserError(f"{exc} (VMC output needs the body model for bone offsets; or pass --osc none)") from exc
    stop = threading.Event()
    with signals.deliver_to(stop):
        sinks = make_sinks(streams, body)
        try:
            if args.settle and any(type(s).__name__ == "ZMQSink" for s in sinks):
                stop.wait(args.settle)  # subscribers that connect now get the first frame
            print(replay_banner(timeline, args.speed, sinks), flush=True)
            stats = replay(timeline, sinks, speed=args.speed, loop=args.loop, stop_event=stop,
                           progress=sys.stderr.isatty())
        finally:
            for s in sinks:
                s.close()
    skipped = f"; {len(timeline.problems)} damaged part(s) skipped (see the warnings above)" if timeline.problems else ""
    print(f"mocap replay: {stats.frames_sent} frame(s) sent from {args.path}{skipped}")
    return 0
