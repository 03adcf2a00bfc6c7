"""Several cameras or videos in one ``mocap live`` (several ``--source`` values) on one GPU.

Each stream keeps everything of its own: its source, its detector schedule and tracker (ids are
per stream), its One-Euro filter, its grounder, its sinks (VMC targets, ZMQ endpoint, recording)
and its counters: each one is a :class:`realtime.pipeline.Pipeline` that does not run a thread of
its own. One worker thread drives them all in rounds: it takes the newest frame of every stream
that has one (``read(timeout=0)``: a stream with no new frame, a slow camera, is simply not in
this round, so nobody waits for it), tracks each, and predicts the people of all streams in ONE
network call (:meth:`engines.inference.Predictor.launch_many`: the crops of every frame in one
batch). On a GPU the rounds overlap as the single-stream pipeline's frames do: round *r* runs on
the GPU while the CPU filters and sends round *r-1*.

A stream whose camera or file fails (cannot open, read error, end of file) stops with a one-line
reason; the others go on. Out of GPU memory (many streams x many people in one batch) ends the run
with a one-line reason naming the batch.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from engines.errors import UserError

from .pipeline import Pipeline, Reservoir, WorkerRun
from .sinks.targets import StreamTargets, check_streams, osc_targets

log = logging.getLogger("mocap.live")


@dataclass(frozen=True)
class StreamSpec:
    """One stream of a several-source ``mocap live``: its source and its own outputs."""

    source: str
    streams: StreamTargets
    record: Optional[Path] = None


def stream_specs(sources: Sequence[str], streams: StreamTargets, osc: Optional[Sequence[str]],
                 zmq: Optional[Sequence[str]], record: Optional[Sequence[Path]]) -> List[StreamSpec]:
    """The per-stream outputs of several ``--source`` values (the rule ``mocap live --help`` states):
    ``--osc`` / ``--zmq`` / ``--record`` are given once per source in the order of ``--source``
    (one VMC target per stream; ``none`` turns that stream's output off), or not at all (stream
    *k*, counted from 0, gets VMC 127.0.0.1:39539+k and ZMQ tcp://127.0.0.1:5555+k, no recording),
    or ``--osc none`` / ``--zmq none`` once (off for every stream)."""
    n = len(sources)

    def per_stream(values, option, default):
        if not values:
            return [default(k) for k in range(n)]
        if len(values) == 1 and str(values[0]).lower() == "none":
            return ["none"] * n
        if len(values) != n:
            raise UserError(f"{option} given {len(values)} times for {n} --source values: give it once per "
                            f"source, in the order of --source (or not at all, or once as 'none')")
        return list(values)

    oscs = per_stream(osc, "--osc", lambda k: f"127.0.0.1:{39539 + k}")
    zmqs = per_stream(zmq, "--zmq", lambda k: f"tcp://127.0.0.1:{5555 + k}")
    if record and len(record) != n:
        raise UserError(f"--record given {len(record)} times for {n} --source values: give one folder per "
                        f"source, in the order of --source")
    records = list(record) if record else [None] * n
    specs = [StreamSpec(str(src), replace(streams, osc=[o], zmq=z), rec)
             for src, o, z, rec in zip(sources, oscs, zmqs, records)]
    _check_distinct(specs)
    return specs


def _check_distinct(specs: Sequence[StreamSpec]) -> None:
    """Two streams cannot share a ZMQ endpoint, a VMC target or a recording folder."""
    seen: Dict[str, int] = {}
    for k, spec in enumerate(specs, 1):
        check_streams(spec.streams)
        outs = [("--zmq", spec.streams.zmq)] if spec.streams.zmq.lower() != "none" else []
        outs += [("--osc", t) for t in osc_targets(spec.streams.osc)]
        if spec.record is not None:
            outs.append(("--record", str(Path(spec.record).resolve())))
        for option, value in outs:
            key = f"{option} {value}"
            if key in seen:
                raise UserError(f"streams {seen[key]} and {k} both use {option} {value}: each stream needs its own")
            seen[key] = k


class StreamLane:
    """One stream of a :class:`MultiPipeline`: its pipeline (source, tracker, filter, sinks,
    counters) and why it stopped."""

    def __init__(self, name: str, pipe: Optional[Pipeline], problem: Optional[str] = None):
        self.name = name
        self.pipe = pipe
        #: One line: why the stream stopped before its source ended (None while it is fine).
        self.problem = problem
        self.done = pipe is None
        self.source = None  # opened, not yet started (run_streams)
        self.taken = 0  # frames taken into a round
        self.sinks: list = []  # kept after the pipeline closed them (the recorder's problem)

    def fail(self, why: str) -> None:
        self.problem = why
        self.done = True
        log.error("stream %s stopped: %s", self.name, why)
        print(f"mocap live: stream {self.name} stopped: {why} (the other streams go on)", file=sys.stderr, flush=True)


class MultiPipeline(WorkerRun):
    """Drives several streams' pipelines with one predictor, one batched call per round (see the
    module docstring). ``lanes``: :class:`StreamLane` objects (a lane without a pipeline is a stream
    that failed to open). ``max_frames``: per stream."""

    def __init__(self, predictor, lanes: Sequence[StreamLane]):
        self.predictor = predictor
        self.lanes = list(lanes)
        self.stop_event = threading.Event()
        self.error: Optional[BaseException] = None
        self.rounds = 0
        self.round_ms = Reservoir()
        self.crops = Reservoir()
        self._thread: Optional[threading.Thread] = None
        self._max_frames: Optional[int] = None
        self.started_ns = time.perf_counter_ns()

    def start(self, max_frames: Optional[int] = None) -> "MultiPipeline":
        self._max_frames = max_frames
        for lane in self.lanes:
            if lane.pipe is None:
                continue
            pipe = lane.pipe
            try:
                if not getattr(pipe.source, "started", False):
                    pipe.source.start()
                else:  # count from now, as Pipeline.start does: frames grabbed while the rest loaded are not this run's
                    before = pipe.source.stats()
                    pipe._source_base = {k: before.get(k, 0) for k in ("grabbed", "dropped")}
                    pipe.stats.started_ns = time.perf_counter_ns()
            except Exception as exc:  # CaptureError and driver surprises: this stream only
                lane.fail(str(exc))
        self.started_ns = time.perf_counter_ns()
        self._thread = threading.Thread(target=self._run, name="mocap-streams", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for lane in self.lanes:
            if lane.pipe is not None:
                lane.pipe.stop()

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        overlap = bool(getattr(self.predictor, "is_async", False))
        held: list = []  # (lane, job) inferred, not yet filtered and sent (overlap only)
        try:
            while not self.stop_event.is_set():
                jobs = self._take_frames()
                if not jobs:
                    if held:  # nothing newer is waiting: send now
                        self._post_all(held)
                        held = []
                        continue
                    if all(lane.done for lane in self.lanes):
                        break
                    time.sleep(0.001)
                    continue
                t0 = time.perf_counter_ns()
                batch = self._launch(jobs)
                if held:  # the CPU sends the previous round while the GPU runs this one
                    self._post_all(held)
                    held = []
                if batch is not None:
                    batch.result()  # one wait for every stream (a failure here is the engine's: all stop)
                for lane, job in jobs:
                    self._guard(lane, lane.pipe._complete, job)
                self.rounds += 1
                self.round_ms.add((time.perf_counter_ns() - t0) / 1e6)
                jobs = [(lane, job) for lane, job in jobs if not lane.done]
                if overlap:
                    held = jobs
                else:
                    self._post_all(jobs)
            if held:
                self._post_all(held)
        except BaseException as exc:
            self.error = _explain(exc, self)
            log.error("engine stage failed: %s", self.error)
        finally:
            self.stop_event.set()

    def _take_frames(self) -> list:
        """The newest frame of every stream that has one now (none waits for a slow stream)."""
        jobs = []
        for lane in self.lanes:
            if lane.done:
                continue
            pipe = lane.pipe
            if self._max_frames is not None and lane.taken >= self._max_frames:  # in flight ones count too
                lane.done = True
                continue
            try:
                frame = pipe.source.read(timeout=0.0)
            except Exception as exc:
                lane.fail(f"reading the source failed: {exc}")
                continue
            if frame is None:
                if pipe.source.finished.is_set():
                    lane.done = True
                    why = getattr(pipe.source, "error", None)
                    if why:
                        lane.fail(why)
                continue
            lane.taken += 1
            job = self._guard(lane, pipe._track, frame)
            if job is not None:
                jobs.append((lane, job))
        return jobs

    def _launch(self, jobs: list):
        """One network call for the people of every stream in this round."""
        with_people = [(lane, job) for lane, job in jobs if job.targets]
        if not with_people:
            return None
        self.crops.add(sum(len(job.targets) for _, job in with_people))
        batch = self.predictor.launch_many([(job.frame.image, job.boxes()) for _, job in with_people])
        for k, (_, job) in enumerate(with_people):
            job.pending = batch.part(k)
        return batch

    def _post_all(self, jobs: list) -> None:
        for lane, job in jobs:
            if not lane.done or lane.problem is None:
                self._guard(lane, lane.pipe._post, job)

    @staticmethod
    def _guard(lane: StreamLane, step, *args):
        """Run one stream's step; its failure stops that stream only."""
        try:
            return step(*args)
        except Exception as exc:
            lane.fail(f"{type(exc).__name__}: {exc}")
            return None

    # ------------------------------------------------------------------ reporting
    def status_line(self, width: int = 200) -> str:
        parts = []
        for lane in self.lanes:
            if lane.pipe is None or lane.problem is not None:
                parts.append(f"{lane.name}: stopped")
                continue
            s = lane.pipe.status()
            parts.append(f"{lane.name}: out {s['out_fps']:.1f} fps, {s['people']} people")
        return " | ".join(parts)[:width]

    def summary(self) -> dict:
        elapsed = (time.perf_counter_ns() - self.started_ns) / 1e9
        streams = []
        for lane in self.lanes:
            entry = {"name": lane.name}
            if lane.pipe is not None:
                entry.update(lane.pipe.summary())
            if lane.problem is not None:
                entry["problem"] = lane.problem
            streams.append(entry)
        rounds = np.array(self.round_ms.values) if len(self.round_ms) else np.array([np.nan])
        crops = np.array(self.crops.values) if len(self.crops) else np.array([0.0])
        return {"streams": streams, "rounds": self.rounds, "elapsed_s": elapsed,
                "round_ms_median": float(np.median(rounds)), "round_ms_p95": float(np.percentile(rounds, 95)),
                "crops_per_call_mean": float(np.mean(crops)), "crops_per_call_max": int(np.max(crops))}


def _explain(exc: BaseException, multi: MultiPipeline) -> BaseException:
    """Out of GPU memory becomes one line naming the batch; anything else is kept."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        live = sum(1 for lane in multi.lanes if not lane.done)
        biggest = int(max(multi.crops.values)) if len(multi.crops) else 0
        return UserError(f"out of GPU memory with {live} streams (up to {biggest} people in one batch): "
                         f"run fewer --source values or a smaller --max-people")
    return exc


def run_streams(args, specs: Sequence[StreamSpec]) -> int:
    """``mocap live`` with several sources: ``args`` (:class:`realtime.live.LiveOptions`) holds the
    shared settings (model, engine, people, filter, duration); ``specs`` each stream's source and
    outputs. Prints one summary line per stream; exit code 1 when a stream stopped on a problem or
    a recording lost records, else 0. Raises :class:`UserError` when no stream can open."""
    from engines.detection_schedule import DetectionSchedule
    from engines.detector import PersonDetector
    from engines.inference import Predictor
    from engines.stop import signal_name, stop_requested
    from engines.tracking import PersonTracker

    from . import signals
    from .capture import CaptureError, open_source
    from .live import _filter, _filter_settings, _format_summary, check_options
    from .sinks.recorder import Recorder
    from .sinks.targets import make_sinks

    if len(specs) < 2:
        raise UserError("several streams need at least two --source values")
    if args.viewer not in ("auto", "none"):
        raise UserError(f"--viewer {args.viewer} shows one stream: with several --source values use --viewer none "
                        f"(each stream's results go to its own --osc / --zmq / --record)")
    redetect = check_options(args)
    _check_distinct(specs)
    settings = _filter_settings(args)
    lanes: List[StreamLane] = []
    for k, spec in enumerate(specs, 1):
        try:
            source = open_source(spec.source, pace=not args.no_pace, loop=args.loop, fps=args.fps)
        except (CaptureError, ValueError) as exc:
            lanes.append(StreamLane(f"{k} ({spec.source})", None, str(exc)))
            print(f"mocap live: stream {k} ({spec.source}) not started: {exc}", file=sys.stderr)
            continue
        lanes.append(StreamLane(f"{k} ({spec.source})", None))
        lanes[-1].source = source
    if all(lane.source is None for lane in lanes):
        raise UserError("no stream could open: " + "; ".join(lane.problem or "" for lane in lanes))
    stop = threading.Event()
    detectors = []
    multi = None
    try:
        predictor = Predictor.from_files(args.checkpoint, args.body_models, device=args.device, engine=args.engine)
        predictor.with_mesh = False  # no viewer: the streams need parameters only
        body = predictor.body_model
        print(f"mocap live: engine {predictor.engine.describe()}, {len(specs)} streams in one batch per round",
              file=sys.stderr)
        with signals.deliver_to(stop):
            for lane, spec in zip(lanes, specs):
                source = lane.source
                if source is None or lane.problem is not None:
                    continue
                try:
                    source.start()  # a stream that cannot open stops here; the others go on
                except (CaptureError, OSError) as exc:
                    lane.fail(str(exc))
                    continue
                detector = PersonDetector(static=False, max_people=args.max_people)
                detectors.append(detector)
                tracker = DetectionSchedule(detector, PersonTracker(max_people=args.max_people, grace_s=args.grace),
                                            redetect_every=redetect, background=True)
                sinks = make_sinks(spec.streams, body, spec.record, args.record_video, spec.source, source.fps)
                grounder = None
                if args.ground:
                    from .grounding import LiveGrounder

                    grounder = LiveGrounder.from_body_model(body)
                lane.sinks = sinks
                lane.pipe = Pipeline(source, predictor, tracker, _filter(settings, body), sinks, grounder=grounder)
                lane.done = False
                from .sinks import describe_sinks

                print(f"mocap live: stream {lane.name} sends to {describe_sinks(sinks)}", file=sys.stderr)
            if all(lane.pipe is None for lane in lanes):
                raise UserError("no stream could open: " + "; ".join(lane.problem or "" for lane in lanes))
            multi = MultiPipeline(predictor, lanes)
            multi.start(args.max_frames)
            deadline = None if args.duration is None else time.monotonic() + args.duration
            last = time.monotonic()

            def tick() -> bool:
                nonlocal last
                if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    return False
                if time.monotonic() - last >= 5.0:
                    last = time.monotonic()
                    print(multi.status_line(), file=sys.stderr, flush=True)
                return True

            if not stop.is_set():
                multi.wait(on_tick=tick, tick=0.1)
    finally:
        with signals.deliver_to(stop):
            if multi is not None:
                multi.stop()
            else:
                for lane in lanes:
                    if lane.pipe is not None:
                        lane.pipe.stop()
                    elif lane.source is not None:
                        lane.source.stop()
            for detector in detectors:
                detector.close()
    if multi.error is not None:
        if isinstance(multi.error, UserError):
            raise multi.error
        raise UserError(f"the engine stage failed: {multi.error}")
    summary = multi.summary()
    if stop.is_set() and stop_requested() is not None:
        summary["stopped_by"] = signal_name(stop_requested())
    bad = False
    for lane, entry, spec in zip(lanes, summary["streams"], specs):
        if lane.pipe is not None:
            source_problem = getattr(lane.pipe.source, "error", None) or getattr(lane.pipe.source, "problem", None)
            if source_problem and "problem" not in entry:
                entry["problem"] = source_problem
            recorder = next((s for s in lane.sinks if isinstance(s, Recorder)), None)
            if recorder is not None:
                entry["recording"] = str(spec.record)
                if recorder.problem is not None:
                    entry["recording_problem"] = recorder.problem
                    bad = True
            print(f"stream {lane.name}: " + _format_summary(entry)[len("mocap live: "):])
        if "problem" in entry:
            bad = True
            print(f"stream {lane.name}: stopped: {entry['problem']}")
    print(f"mocap live: {summary['rounds']} rounds (one network call for every stream's people), median {summary['round_ms_median']:.1f} ms "
          f"per round, {summary['crops_per_call_mean']:.1f} people per call on average")
    if args.summary_json:
        from engines.atomic import write_json_atomic

        try:
            write_json_atomic(args.summary_json, summary)
        except OSError as exc:
            raise UserError(f"cannot write --summary-json {args.summary_json}: {exc.strerror or exc}") from None
        print(f"mocap live: summary in {args.summary_json}")
    return 1 if bad else 0
