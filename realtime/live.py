"""``mocap live`` and ``mocap replay``: the streaming commands."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

from .cli import UserError, _add_model_args

log = logging.getLogger("mocap.live")


def _host_port(text: str, default_port: int):
    host, _, port = text.rpartition(":")
    if not host:
        return text, default_port
    try:
        return host, int(port)
    except ValueError:
        raise UserError(f"bad --osc value {text!r}: use HOST:PORT, e.g. 127.0.0.1:39539, or 'none'") from None


def _add_stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--osc", default="127.0.0.1:39539", metavar="HOST:PORT",
                   help="VMC/OSC receiver (Marionette), or 'none'. Default 127.0.0.1:39539")
    p.add_argument("--osc-split", action="store_true",
                   help="split bone bundles under 1400 bytes (for Wi-Fi / LAN receivers)")
    p.add_argument("--osc-no-raw", action="store_true", help="do not send the raw /SMPLX address space")
    p.add_argument("--zmq", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                   help="ZMQ PUB endpoint to bind, or 'none'. Default tcp://127.0.0.1:5555")


def register(sub) -> None:
    p = sub.add_parser("live", help="live capture: camera/video -> smoothed SMPL-X -> viewer, VMC/OSC, ZMQ, recording")
    p.add_argument("--source", default="0",
                   help="camera index (0), video file, image folder, or 'synthetic'. Default 0")
    _add_model_args(p)
    p.add_argument("--engine", default="auto", choices=["auto", "torch", "onnx", "tensorrt"],
                   help="inference backend (auto = fastest available)")
    _add_stream_args(p)
    p.add_argument("--viewer", default="auto", choices=["auto", "open3d", "preview", "none"],
                   help="auto = preview window when a display exists, else none")
    p.add_argument("--record", type=Path, default=None, metavar="DIR", help="record the session to DIR")
    p.add_argument("--record-video", action="store_true", help="also store the raw frames in the recording")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many processed frames")
    p.add_argument("--no-pace", action="store_true", help="read video files as fast as possible (lossless)")
    p.add_argument("--loop", action="store_true", help="loop video files / folders")
    p.add_argument("--fps", type=float, default=None, help="camera / folder frame rate")
    p.add_argument("--redetect-every", type=int, default=0,
                   help="run the detector every N frames even while tracking (0: only when lost)")
    p.add_argument("--no-filter", action="store_true", help="disable One-Euro smoothing")
    p.add_argument("--filter-config", type=Path, default=None, help="TOML/JSON file with filter settings")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="override a filter setting, e.g. body.min_cutoff=2.0 (repeatable)")
    p.add_argument("--summary-json", type=Path, default=None, help="write the end-of-run summary to this file")
    p.set_defaults(func=cmd_live)

    r = sub.add_parser("replay", help="send a recorded session or a `mocap video` result folder to the streams")
    r.add_argument("path", type=Path, help="recording directory, or a directory with smplx/ and meta/")
    _add_stream_args(r)
    r.add_argument("--body-models", default=None, metavar="DIR", help="SMPL-X model directory (for VMC rest offsets)")
    r.add_argument("--speed", type=float, default=1.0, help="playback speed factor")
    r.add_argument("--fps", type=float, default=30.0, help="frame rate of official result folders")
    r.add_argument("--loop", action="store_true")
    r.set_defaults(func=cmd_replay)


def _make_sinks(args, body_model, record_dir: Optional[Path] = None, record_video: bool = False,
                source_desc: str = "", fps: Optional[float] = None) -> List:
    sinks = []
    try:
        if args.osc and args.osc.lower() != "none":
            from .sinks.osc_vmc import VMCSink

            host, port = _host_port(args.osc, 39539)
            sinks.append(VMCSink(host, port, body_model, split_bundles=args.osc_split, send_raw=not args.osc_no_raw))
        if args.zmq and args.zmq.lower() != "none":
            from .sinks.zmq_pub import ZMQSink

            sinks.append(ZMQSink(args.zmq))
        if record_dir is not None:
            from .sinks.recorder import Recorder

            sinks.append(Recorder(record_dir, save_video=record_video, fps=fps, source=source_desc))
    except (OSError, FileExistsError, ValueError) as exc:
        for s in sinks:
            s.close()
        raise UserError(str(exc)) from exc
    return sinks


def _filter(args, body_model):
    if args.no_filter:
        return None
    from .filters import FilterSettings, SMPLXFilter

    try:
        settings = FilterSettings.from_file(args.filter_config) if args.filter_config else FilterSettings()
        if args.filter:
            settings = settings.with_overrides(args.filter)
    except (ValueError, OSError) as exc:
        raise UserError(f"filter settings: {exc}") from exc
    return SMPLXFilter(settings, hand_mean=(body_model.hand_mean_left, body_model.hand_mean_right))


def _viewer_choice(args) -> str:
    if args.viewer != "auto":
        return args.viewer
    from viewers.preview import display_available

    return "preview" if display_available() else "none"


def cmd_live(args) -> int:
    from engines.body_model import BodyModelNotFound
    from engines.checkpoints import CheckpointError
    from engines.detector import PersonDetector
    from engines.inference import Predictor

    from .capture import CaptureError, open_source
    from .pipeline import Pipeline
    from .tracking import PersonTracker

    viewer_kind = _viewer_choice(args)
    try:
        source = open_source(args.source, pace=not args.no_pace, loop=args.loop, fps=args.fps)
    except CaptureError as exc:
        raise UserError(str(exc)) from exc
    try:
        predictor = Predictor.from_files(args.checkpoint, args.body_models, device=args.device, engine=args.engine)
    except (CheckpointError, BodyModelNotFound, RuntimeError) as exc:
        raise UserError(str(exc)) from exc
    print(f"mocap live: engine {predictor.engine.describe()}, source {args.source}", file=sys.stderr)
    body = predictor.body_model
    filt = _filter(args, body)  # before the sinks: a bad setting must not leave a recording behind
    detector = PersonDetector(static=False)
    tracker = PersonTracker(detector, redetect_every=args.redetect_every)
    try:
        sinks = _make_sinks(args, body, args.record, args.record_video, str(args.source), source.fps)
    except BaseException:
        detector.close()
        raise
    pipe = Pipeline(source, predictor, tracker, filt, sinks,
                    mesh_after_filter=viewer_kind == "open3d" and not args.no_filter)

    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) if threading.current_thread() is threading.main_thread() else None
    viewer = None
    try:
        try:
            pipe.start(args.max_frames)
        except CaptureError as exc:
            raise UserError(str(exc)) from exc
        viewer = _open_viewer(viewer_kind, body.faces)
        last_status = 0.0
        deadline = None if args.duration is None else time.monotonic() + args.duration

        def tick() -> bool:
            nonlocal last_status
            if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                return False
            if viewer is not None and viewer(pipe) is False:
                return False
            now = time.monotonic()
            if now - last_status >= 1.0:
                last_status = now
                print("\r" + pipe.status_line(), end="", file=sys.stderr, flush=True)
            return True

        pipe.wait(on_tick=tick, tick=0.01 if viewer is not None else 0.1)
    finally:
        pipe.stop()
        detector.close()
        if viewer is not None:
            viewer.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    print(file=sys.stderr)
    if pipe.error is not None:
        raise UserError(f"the engine stage failed: {pipe.error}")
    summary = pipe.summary()
    if getattr(source, "error", None):
        print(f"mocap live: source error: {source.error}", file=sys.stderr)
    print(_format_summary(summary))
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2))
    return 0


def _format_summary(s) -> str:
    return (f"mocap live: {s['frames_out']} frames processed ({s['frames_with_person']} with a person) "
            f"in {s['elapsed_s']:.1f} s; input {s['in_fps']:.1f} fps, output {s['out_fps_mean']:.1f} fps, "
            f"dropped {s['dropped']}; capture-to-send latency median {s['latency_ms_median']:.1f} ms, "
            f"p95 {s['latency_ms_p95']:.1f} ms; detector calls per 100 frames {s['detector_calls_per_100']:.1f}")


class _PreviewLoop:
    def __init__(self):
        from viewers.preview import PreviewUnavailable, PreviewWindow, display_available

        if not display_available():  # show() would only fail on the first frame, as a traceback
            raise PreviewUnavailable("no display found ($DISPLAY and $WAYLAND_DISPLAY are unset): "
                                     "the preview window cannot open")
        self.window = PreviewWindow()

    def __call__(self, pipe) -> bool:
        result = pipe.latest.get(timeout=0)
        if result is None:
            return True
        st = pipe.status()
        stats = {"fps_in": st["in_fps"], "fps_out": st["out_fps"], "drops": st["dropped"],
                 "latency_ms": {k[:-3]: st[k] for k in ("track_ms", "infer_ms", "filter_ms")},
                 "detector calls": st["detector_calls"]}
        return self.window.show(self.window.compose(result, stats))

    def close(self):
        self.window.close()


class _Open3DLoop:
    def __init__(self, faces):
        from viewers.open3d_viewer import Open3DViewer

        self.viewer = Open3DViewer(faces)

    def __call__(self, pipe) -> bool:
        result = pipe.latest.get(timeout=0)
        if result is not None:  # a frame with nobody clears the mesh instead of freezing the last one
            self.viewer.update([p.vertices for p in result.persons if p.vertices is not None])
        return self.viewer.step()

    def close(self):
        self.viewer.close()


def _open_viewer(kind: str, faces):
    if kind == "none":
        return None
    try:
        return _PreviewLoop() if kind == "preview" else _Open3DLoop(faces)
    except RuntimeError as exc:  # no display: say how to run without a window
        raise UserError(f"{exc} (use --viewer none to run without a window)") from exc


def cmd_replay(args) -> int:
    from engines.body_model import BodyModel, BodyModelNotFound

    from .replay import replay

    if not args.path.exists():
        raise UserError(f"nothing to replay at {args.path}")
    body = None
    if args.osc and args.osc.lower() != "none":
        try:
            body = BodyModel(args.body_models)
        except BodyModelNotFound as exc:
            raise UserError(f"{exc} (VMC output needs the body model for bone offsets; or pass --osc none)") from exc
    sinks = _make_sinks(args, body)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stats = replay(args.path, sinks, speed=args.speed, loop=args.loop, stop_event=stop, fps=args.fps)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from exc
    finally:
        signal.signal(signal.SIGINT, previous)
        for s in sinks:
            s.close()
    print(f"mocap replay: {stats.frames_sent} frame(s) sent from {args.path}")
    return 0
