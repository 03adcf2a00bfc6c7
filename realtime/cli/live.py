"""``mocap live``: camera or video -> smoothed SMPL-X -> viewer, VMC/OSC, ZMQ, recording."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .common import add_examples, add_model_args, add_stream_args, stream_targets


def register(sub) -> None:
    p = sub.add_parser("live", help="live capture: camera/video -> smoothed SMPL-X -> viewer, VMC/OSC, ZMQ, recording")
    p.add_argument("--source", action="append", default=None, metavar="SOURCE",
                   help="camera index (0), video file, image folder, or 'synthetic'. Default 0. Repeat for several "
                        "streams on one GPU (the people of all streams in one network call per round, each stream "
                        "with its own tracker, filter and outputs): then --osc, --zmq and --record are given once "
                        "per source in the same order (or left out: stream k from 0 sends VMC to "
                        "127.0.0.1:39539+k and ZMQ on tcp://127.0.0.1:5555+k), and --viewer is none; a stream "
                        "whose camera or file fails stops with its reason, the others go on")
    add_model_args(p)
    p.add_argument("--engine", default="auto", choices=["auto", "torch", "onnx", "tensorrt", "aoti"],
                   help="inference backend (auto = fastest available)")
    add_stream_args(p, per_source=True)
    p.add_argument("--viewer", default="auto", choices=["auto", "open3d", "overlay", "preview", "web", "none"],
                   help="open3d: 3-D meshes over a floor with the camera image behind them; overlay: the video with "
                        "the shaded meshes, boxes, ids and numbers; preview: the video with skeletons (lightest); "
                        "web: a page for any number of browsers (the video with meshes, ids and live numbers; "
                        "no display needed); auto (default) = preview when a display exists, else none. "
                        "Keys: Q/Esc quit, R reset the 3-D view, P pause it")
    p.add_argument("--web-host", default="127.0.0.1", metavar="H",
                   help="--viewer web: address of the page (default 127.0.0.1, this machine only; another only "
                        "when asked, e.g. 0.0.0.0 for the local network)")
    p.add_argument("--web-port", type=int, default=8765, metavar="P", help="--viewer web: port of the page (default 8765)")
    p.add_argument("--record", type=Path, action="append", default=None, metavar="DIR",
                   help="record the session to DIR (with several --source values: one DIR per source, in order)")
    p.add_argument("--record-video", action="store_true", help="also store the raw frames in the recording")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many processed frames")
    p.add_argument("--no-pace", action="store_true", help="read video files as fast as possible (lossless)")
    p.add_argument("--loop", action="store_true", help="loop video files / folders")
    p.add_argument("--fps", type=float, default=None, help="camera / folder frame rate")
    p.add_argument("--max-people", type=int, default=1, metavar="N",
                   help="people tracked at once (default 1: the fastest path; more people cost a detector pass "
                        "every --redetect-every frames and one batched network call per frame)")
    p.add_argument("--redetect-every", type=int, default=None, metavar="N",
                   help="run the detector every N frames even while tracking, to find newcomers "
                        "and to drop a person the model follows on its own (default 30 with --max-people 1, 15 otherwise; "
                        "0 = only when someone is lost)")
    p.add_argument("--grace", type=float, default=1.0, metavar="S",
                   help="seconds a hidden person keeps their id (and filter state) before being dropped (default 1)")
    p.add_argument("--performer", type=int, default=None, metavar="ID",
                   help="track id that drives the first --osc avatar (default: the largest person)")
    p.add_argument("--no-filter", action="store_true", help="disable One-Euro smoothing")
    p.add_argument("--filter-config", type=Path, default=None, help="TOML/JSON file with filter settings")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="override a filter setting, e.g. body.min_cutoff=2.0 (repeatable)")
    p.add_argument("--ground", action="store_true",
                   help="learn the floor from the feet (first 3 s, again when the camera moves) and send the root "
                        "on it: y up, floor at y = 0 (VMC Root/Pos; ZMQ/recordings gain a 'grounded' field, raw "
                        "values kept)")
    p.add_argument("--summary-json", type=Path, default=None, help="write the end-of-run summary to this file")
    add_examples(p, "mocap live --source 0 --viewer preview",
                 "mocap live --source 0 --osc 127.0.0.1:39539 --record takes/take1",
                 "mocap live --source 0 --ground --filter predict=true --osc 127.0.0.1:39539",
                 "mocap live --source duet.mp4 --max-people 2 --osc 127.0.0.1:39539 --osc 127.0.0.1:39540",
                 "mocap live --source 0 --source 1 --osc 127.0.0.1:39539 --osc 127.0.0.1:39540 "
                 "--zmq tcp://127.0.0.1:5555 --zmq tcp://127.0.0.1:5556 --record takes/cam0 --record takes/cam1")
    p.set_defaults(func=cmd_live)


def cmd_live(args) -> int:
    from engines.errors import UserError
    from realtime.live import LiveOptions, run

    sources = args.source or ["0"]
    targets = stream_targets(args)
    records = args.record or []
    one = len(sources) == 1
    if one and len(records) > 1:
        raise UserError(f"--record given {len(records)} times for one --source: several --record folders go with "
                        f"several --source values, one each")
    options = LiveOptions(
        source=sources[0], checkpoint=args.checkpoint, body_models=args.body_models, device=args.device,
        engine=args.engine, streams=replace(targets, zmq=(args.zmq or ["tcp://127.0.0.1:5555"])[-1]),
        viewer=args.viewer, record=records[0] if (one and records) else None,
        record_video=args.record_video, duration=args.duration, max_frames=args.max_frames, no_pace=args.no_pace,
        loop=args.loop, fps=args.fps, max_people=args.max_people, redetect_every=args.redetect_every,
        grace=args.grace, no_filter=args.no_filter, filter_config=args.filter_config, filter=tuple(args.filter),
        summary_json=args.summary_json, web_host=args.web_host, web_port=args.web_port, ground=args.ground)
    if one:
        return run(options)
    from realtime.multistream import run_streams, stream_specs

    return run_streams(options, stream_specs(sources, targets, args.osc, args.zmq, records))
