"""The live session of ``mocap live``: camera or video -> smoothed SMPL-X -> viewer, VMC/OSC, ZMQ,
recording; the viewer loops and the status line."""
from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from engines.atomic import check_output_file, write_json_atomic
from engines.errors import UserError
from engines.stop import signal_name, stop_requested

from . import signals
from .sinks.targets import StreamTargets, check_streams, make_sinks

log = logging.getLogger("mocap.live")


@dataclass(frozen=True)
class LiveOptions:
    """What ``mocap live`` runs with (the options' meaning: ``mocap live --help``), as plain values."""

    source: str = "0"
    checkpoint: str = "s32"
    body_models: Optional[str] = None
    device: str = "cpu"
    engine: str = "auto"
    streams: StreamTargets = field(default_factory=StreamTargets)
    viewer: str = "auto"
    record: Optional[Path] = None
    record_video: bool = False
    duration: Optional[float] = None
    max_frames: Optional[int] = None
    no_pace: bool = False
    loop: bool = False
    fps: Optional[float] = None
    max_people: int = 1
    redetect_every: Optional[int] = None
    grace: float = 1.0
    no_filter: bool = False
    filter_config: Optional[Path] = None
    filter: Sequence[str] = ()
    summary_json: Optional[Path] = None
    web_host: str = "127.0.0.1"
    web_port: int = 8765
    ground: bool = False


def _filter_settings(args):
    """The One-Euro settings (None with --no-filter); a bad file or override is a UserError."""
    if args.no_filter:
        return None
    from realtime.filters import FilterSettings

    try:
        settings = FilterSettings.from_file(args.filter_config) if args.filter_config else FilterSettings()
        if args.filter:
            settings = settings.with_overrides(args.filter)
    except (ValueError, OSError) as exc:
        raise UserError(f"filter settings: {exc}") from exc
    return settings


def _filter(settings, body_model):
    if settings is None:
        return None
    from realtime.filters import MultiPersonFilter

    return MultiPersonFilter(settings, hand_mean=(body_model.hand_mean_left, body_model.hand_mean_right))


def _viewer_choice(args) -> str:
    if args.viewer != "auto":
        return args.viewer
    from viewers.preview import display_available

    return "preview" if display_available() else "none"


def run(args: LiveOptions) -> int:
    """The live session: checks, loads, runs until the source ends, ``duration``, ``max_frames``, a
    stop signal or the viewer closes; prints the summary; the exit code (1 when the recording lost
    records, else 0). What a user can fix raises :class:`UserError` before anything slow."""
    from engines.detector import PersonDetector
    from engines.inference import Predictor

    from realtime.capture import CameraSource, CaptureError, open_source
    from realtime.pipeline import Pipeline
    from realtime.sinks.recorder import Recorder
    from engines.detection_schedule import DetectionSchedule
    from engines.tracking import PersonTracker

    # everything a user can get wrong is checked before the slow loads
    redetect = check_options(args)
    check_streams(args.streams)
    settings = _filter_settings(args)
    viewer_kind = _viewer_choice(args)
    try:
        source = open_source(args.source, pace=not args.no_pace, loop=args.loop, fps=args.fps)
    except (CaptureError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    stop = threading.Event()
    detector = None
    sinks = []
    pipe = None
    viewer = None
    status = None
    try:
        if isinstance(source, CameraSource):
            _start(source)  # a missing camera is found now, not after the model load (it keeps only its newest frame)
        predictor = Predictor.from_files(args.checkpoint, args.body_models, device=args.device, engine=args.engine)
        # full meshes only for a consumer that draws them (the 3-D and overlay views); streams need parameters
        predictor.with_mesh = viewer_kind in MESH_VIEWERS
        body = predictor.body_model
        filt = _filter(settings, body)
        detector = PersonDetector(static=False, max_people=args.max_people)
        tracker = DetectionSchedule(detector, PersonTracker(max_people=args.max_people, grace_s=args.grace),
                                    redetect_every=redetect, background=True)
        # files and folders start now (a paced one then starts at its beginning), and before the sinks:
        # a source that cannot open leaves no recording behind, and the recording gets its frame rate
        if not source.started:
            _start(source)
        print(f"mocap live: engine {predictor.engine.describe()}, source {args.source}", file=sys.stderr)
        with signals.deliver_to(stop):  # from here on a stop signal ends the run cleanly
            sinks = make_sinks(args.streams, body, args.record, args.record_video, str(args.source), source.fps)
            grounder = None
            if args.ground:
                from realtime.grounding import LiveGrounder

                grounder = LiveGrounder.from_body_model(body)
            pipe = Pipeline(source, predictor, tracker, filt, sinks,
                            mesh_after_filter=viewer_kind in MESH_VIEWERS and not args.no_filter,
                            grounder=grounder)
            pipe.start(args.max_frames)
            viewer = _open_viewer(viewer_kind, body.faces, args)
            from realtime.sinks import describe_sinks
            from viewers.preview import describe_viewer

            print(f"mocap live: sending to {describe_sinks(sinks)}; viewer: {describe_viewer(args.viewer, viewer_kind)}",
                  file=sys.stderr, flush=True)
            status = StatusLine(sys.stderr)
            last_status = time.monotonic()  # the first status line after a second, when its rates mean something
            deadline = None if args.duration is None else time.monotonic() + args.duration

            def tick() -> bool:
                nonlocal last_status
                if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    return False
                if viewer is not None and viewer(pipe) is False:
                    return False
                now = time.monotonic()
                if now - last_status >= (1.0 if status.live else 5.0):
                    last_status = now
                    status.show(pipe.status_line(status.width()))
                return True

            if not stop.is_set():
                pipe.wait(on_tick=tick, tick=0.01 if viewer is not None else 0.1)
    finally:
        with signals.deliver_to(stop):  # a second Ctrl-C must not cut the recording's finalisation short
            if pipe is not None:
                pipe.stop()
            else:
                source.stop()
                for sink in sinks:
                    sink.close()
            if detector is not None:
                detector.close()
            if viewer is not None:
                viewer.close()
    if status is not None:
        status.end()
    if pipe.error is not None:
        raise UserError(f"the engine stage failed: {pipe.error}")
    summary = pipe.summary()
    if stop.is_set() and stop_requested() is not None:
        summary["stopped_by"] = signal_name(stop_requested())
    problem = getattr(source, "error", None) or getattr(source, "problem", None)
    if problem:
        summary["source_problem"] = problem
        print(f"mocap live: source: {problem}", file=sys.stderr)
    recorder = next((s for s in sinks if isinstance(s, Recorder)), None)
    if recorder is not None:
        summary["recording"] = str(args.record)
        if recorder.problem is not None:  # the disk filled up or went read-only: the summary says so
            summary["sink_errors"] = summary.get("sink_errors", 0) + recorder.lost
            summary["recording_problem"] = recorder.problem
    print(_format_summary(summary))
    if recorder is not None and recorder.problem is not None:
        print(f"mocap live: the recording in {args.record} is incomplete: {recorder.problem}", file=sys.stderr)
    elif args.record is not None:
        print(f"mocap live: recording in {args.record} (mocap replay / mocap convert read it)")
    if args.summary_json:
        try:
            write_json_atomic(args.summary_json, summary)
        except OSError as exc:
            raise UserError(f"cannot write --summary-json {args.summary_json}: {exc.strerror or exc} "
                            f"(the summary is printed above)") from None
        print(f"mocap live: summary in {args.summary_json}")
    return 1 if recorder is not None and recorder.problem is not None else 0


def check_options(args: LiveOptions) -> int:
    """The checks of the options every stream shares (before anything slow); the detector's
    re-detection interval."""
    check_output_file(args.summary_json, "--summary-json")
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError("--max-frames must be >= 1")
    if args.duration is not None and not args.duration > 0:
        raise UserError("--duration must be > 0 seconds")
    if args.fps is not None and not args.fps > 0:
        raise UserError("--fps must be > 0")
    if args.max_people < 1:
        raise UserError("--max-people must be at least 1")
    if args.grace < 0:
        raise UserError("--grace must be >= 0 seconds")
    if not 1 <= args.web_port <= 65535:
        raise UserError(f"--web-port {args.web_port} is outside 1-65535")
    redetect = args.redetect_every if args.redetect_every is not None else (30 if args.max_people == 1 else 15)
    if redetect < 0:
        raise UserError("--redetect-every must be >= 0")
    return redetect


def _start(source) -> None:
    from realtime.capture import CaptureError

    try:
        source.start()
    except CaptureError as exc:
        raise UserError(str(exc)) from None


def _format_summary(s) -> str:
    return (f"mocap live: {s['frames_out']} frames processed ({s['frames_with_person']} with a person, "
            f"at most {s.get('max_people', 0)} at once) "
            f"in {s['elapsed_s']:.1f} s; input {s['in_fps']:.1f} fps, output {s['out_fps_mean']:.1f} fps, "
            f"dropped {s['dropped']}; capture-to-send latency median {s['latency_ms_median']:.1f} ms, "
            f"p95 {s['latency_ms_p95']:.1f} ms; detector calls per 100 frames {s['detector_calls_per_100']:.1f}")


def viewer_stats(pipe) -> dict:
    """The numbers the windows show."""
    st = pipe.status()
    return {"fps_in": st["in_fps"], "fps_out": st["out_fps"], "drops": st["dropped"],
            "latency_ms": {k[:-3]: st[k] for k in ("track_ms", "infer_ms", "filter_ms")},
            "detector calls": st["detector_calls"]}


class _PreviewLoop:
    """The video with skeletons (``preview``) or with the shaded meshes (``overlay``), boxes, ids and
    numbers, in an OpenCV window on the main thread."""

    def __init__(self, faces=None, meshes: bool = False):
        from viewers.preview import PreviewUnavailable, PreviewWindow, display_available

        if not display_available():  # show() would only fail on the first frame, as a traceback
            raise PreviewUnavailable("no display found ($DISPLAY and $WAYLAND_DISPLAY are unset): "
                                     "the preview window cannot open")
        self.window = PreviewWindow()
        self.overlay = None
        if meshes:
            from viewers.mesh_overlay import PersonOverlay

            self.overlay = PersonOverlay(faces)

    def __call__(self, pipe) -> bool:
        from viewers.preview import compose, compose_overlay

        result = pipe.latest.get(timeout=0)
        if result is None:
            return True
        stats = viewer_stats(pipe)
        image = compose_overlay(result, stats, self.overlay) if self.overlay is not None else compose(result, stats)
        return self.window.show(image)

    def close(self):
        self.window.close()
        if self.overlay is not None:
            self.overlay.close()


class _Open3DLoop:
    def __init__(self, faces):
        from viewers.open3d_viewer import Open3DViewer

        self.viewer = Open3DViewer(faces)

    def __call__(self, pipe) -> bool:
        from viewers.preview import stats_lines

        result = pipe.latest.get(timeout=0)
        if result is not None:  # a frame with nobody clears the mesh instead of freezing the last one
            shown = [p for p in result.persons if p.vertices is not None]
            camera = (tuple(shown[0].focal), tuple(shown[0].princpt)) if shown else None
            self.viewer.update([p.vertices for p in shown], ids=[p.track_id for p in shown], image=result.image,
                               camera=camera, lines=stats_lines(result, viewer_stats(pipe)))
        return self.viewer.step()

    def close(self):
        self.viewer.close()


#: Viewers that draw meshes (the predictor computes vertices for them).
MESH_VIEWERS = ("open3d", "overlay", "web")


def _open_viewer(kind: str, faces, args: LiveOptions):
    from viewers.mesh_overlay import RendererUnavailable
    from viewers.open3d_viewer import ViewerUnavailable
    from viewers.preview import PreviewUnavailable

    if kind == "none":
        return None
    if kind == "web":  # a page server, no display needed
        from realtime.web.live_page import LiveWebViewer

        return LiveWebViewer(faces, args.web_host, args.web_port,
                             announce=lambda line: print(f"mocap live: {line}", file=sys.stderr, flush=True))
    try:
        if kind in ("preview", "overlay"):
            return _PreviewLoop(faces, meshes=kind == "overlay")
        return _Open3DLoop(faces)
    except (PreviewUnavailable, ViewerUnavailable, RendererUnavailable) as exc:  # no display: run without a window
        raise UserError(f"{exc} (use --viewer none to run without a window)") from exc


class StatusLine:
    """The live status line: redrawn in place (fitted to the terminal's width) on a terminal; a
    plain line every few seconds when stderr is a file or a pipe (no carriage returns in logs)."""

    def __init__(self, stream):
        self.stream = stream
        self.live = bool(getattr(stream, "isatty", lambda: False)())
        self._shown = False

    def width(self) -> int:
        import shutil

        return max(40, shutil.get_terminal_size((80, 24)).columns - 1) if self.live else 200

    def show(self, line: str) -> None:
        if self.live:
            print("\r" + line.ljust(self.width()), end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)
        self._shown = True

    def end(self) -> None:
        if self.live and self._shown:
            print(file=self.stream)
