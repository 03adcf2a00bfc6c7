"""The live pipeline: capture -> track/detect -> SMPLer-X -> One-Euro -> sinks (+ viewer).

Threads: the source's grab thread owns the capture and keeps only the newest
frame; one worker thread runs detection/tracking, the network, the filter and
the sinks on the newest frame (older frames are dropped and counted, never
queued); the caller's thread (the main thread) runs the viewer and the status
line. Sinks must not block (each one drops rather than waits); the viewer only
ever reads the latest result from a :class:`LatestSlot`.

When the predictor works asynchronously (PyTorch on CUDA: ``Predictor.launch`` returns
before the GPU is done), the worker overlaps frames: it starts frame *t* on the GPU, then
filters and sends frame *t-1* on the CPU while the GPU runs, then waits for *t*. When no
newer frame is waiting it sends at once, so overlapping never delays a frame at camera rates.
"""
from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .slot import LatestSlot
from engines.types import FrameResult, Person

log = logging.getLogger(__name__)

#: Stage timestamps, in order; each stage's time is measured from the previous one (the first
#: from the capture): "wait" = in the newest-frame slot until the engine thread is free;
#: "track" = detector/tracker; "infer" = crops, network and SMPL-X layer until the result is on
#: the host, and the tracker learning from it; "hold" = result waiting while the worker started the next frame (overlap, GPU only);
#: "filter" = One-Euro (and mesh, when a viewer needs it); "send" = handing the result to the sinks.
STAGES = ("wait", "track", "infer", "hold", "filter", "send")


class Reservoir:
    """A uniform random sample of at most ``capacity`` values from a stream (Vitter's algorithm R):
    every value while there are at most ``capacity`` of them (percentiles exact), a uniform sample
    after that, so memory stays bounded however long a session runs."""

    def __init__(self, capacity: int = 20_000, seed: int = 0):
        self.capacity = int(capacity)
        self.values: List[float] = []
        self.count = 0
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.count += 1
        if len(self.values) < self.capacity:
            self.values.append(value)
        else:
            j = self._rng.randrange(self.count)
            if j < self.capacity:
                self.values[j] = value

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class PipelineStats:
    """Counters and recent timings; ``snapshot()`` is safe to call from another thread."""

    started_ns: int = field(default_factory=time.perf_counter_ns)
    frames_out: int = 0
    frames_with_person: int = 0
    #: People in the newest result, and the most seen in one frame.
    people: int = 0
    max_people: int = 0
    sink_errors: int = 0
    _latency_ms: deque = field(default_factory=lambda: deque(maxlen=2000))
    _stage_ms: Dict[str, deque] = field(default_factory=lambda: {s: deque(maxlen=2000) for s in STAGES})
    _out_times: deque = field(default_factory=lambda: deque(maxlen=120))
    _sink_ms: Dict[str, deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Capture-to-send latency of every frame (a bounded uniform sample after 20,000 frames).
    all_latency_ms: Reservoir = field(default_factory=Reservoir)

    def record(self, result: FrameResult, t_done_ns: int) -> None:
        t = result.t_stages
        with self._lock:
            self.frames_out += 1
            self.frames_with_person += bool(result.persons)
            self.people = len(result.persons)
            self.max_people = max(self.max_people, self.people)
            lat = (t.get("send", t_done_ns) - result.t_capture_ns) / 1e6
            self._latency_ms.append(lat)
            self.all_latency_ms.add(lat)
            prev = result.t_capture_ns
            for stage in STAGES:
                if stage in t:
                    self._stage_ms[stage].append((t[stage] - prev) / 1e6)
                    prev = t[stage]
            self._out_times.append(t_done_ns)

    def record_sink(self, name: str, ms: float) -> None:
        with self._lock:
            self._sink_ms.setdefault(name, deque(maxlen=2000)).append(ms)

    def sink_ms(self) -> Dict[str, float]:
        """Median time per frame spent in each sink's ``send`` (packing and handing off)."""
        with self._lock:
            return {name: float(np.median(v)) for name, v in self._sink_ms.items() if v}

    def snapshot(self) -> Dict[str, float]:
        with self._lock:
            lat = np.array(self._latency_ms) if self._latency_ms else np.array([np.nan])
            times = list(self._out_times)
            stages = {f"{s}_ms": float(np.median(v)) if v else float("nan") for s, v in self._stage_ms.items()}
            out_fps = (len(times) - 1) / ((times[-1] - times[0]) / 1e9) if len(times) > 1 and times[-1] > times[0] else 0.0
            return {"frames_out": self.frames_out, "frames_with_person": self.frames_with_person,
                    "people": self.people, "max_people": self.max_people,
                    "out_fps": out_fps, "latency_ms_median": float(np.median(lat)),
                    "latency_ms_p95": float(np.percentile(lat, 95)), "sink_errors": self.sink_errors, **stages}


def _filter_time(frame) -> float:
    """Seconds on the clock the frame was captured with: a file's own timeline when the source
    has one (so lossless ``--no-pace`` reading, which runs at the processing rate, does not look
    like slow motion), else the grab timestamp (cameras)."""
    if frame.source_time is not None:
        return float(frame.source_time)
    return frame.t_capture_ns / 1e9


@dataclass
class _InFlight:
    """One frame between the stages of the worker."""

    frame: object
    t: Dict[str, int]
    targets: list
    pending: object
    persons: List[Person] = field(default_factory=list)

    def boxes(self) -> list:
        return [target.bbox_xywh for target in self.targets]


class WorkerRun:
    """A run on a worker thread (``self._thread``): whether it still runs, and waiting for it."""

    _thread: Optional[threading.Thread] = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, duration: Optional[float] = None, on_tick: Optional[Callable[[], bool]] = None,
             tick: float = 0.05) -> None:
        """Block until the run ends (its sources did), ``duration`` passes, or ``on_tick`` returns False."""
        deadline = None if duration is None else time.monotonic() + duration
        while self.running:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if on_tick is not None and on_tick() is False:
                break
            time.sleep(tick)


class Pipeline(WorkerRun):
    """Wires a frame source, a tracker, a predictor, a filter and sinks.

    ``predictor``: :class:`engines.inference.Predictor`; ``tracker``:
    :class:`engines.detection_schedule.DetectionSchedule` (detector and tracker); ``filt``:
    :class:`realtime.filters.MultiPersonFilter` or None (one One-Euro state per track id,
    kept while the tracker may still bring the person back); ``sinks``: objects with
    ``send(FrameResult)`` / ``close()``. ``mesh_after_filter``: recompute the meshes
    from the filtered parameters (for the 3-D viewer). ``grounder``:
    :class:`realtime.grounding.LiveGrounder` or None (the "filter" stage includes it).
    """

    def __init__(self, source, predictor, tracker, filt=None, sinks: Sequence = (),
                 mesh_after_filter: bool = False, grounder=None):
        self.source = source
        self.predictor = predictor
        self.tracker = tracker
        self.filter = filt
        self.sinks = list(sinks)
        self.mesh_after_filter = mesh_after_filter
        #: :class:`realtime.grounding.LiveGrounder` or None: the root on the learned floor (after the filter).
        self.grounder = grounder
        self.stats = PipelineStats()
        self.latest: LatestSlot[FrameResult] = LatestSlot()
        self.stop_event = threading.Event()
        self.error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        self._max_frames: Optional[int] = None
        self._source_base: Dict[str, int] = {}  # source counters when the run began

    # ------------------------------------------------------------------ lifecycle
    def start(self, max_frames: Optional[int] = None) -> "Pipeline":
        self._max_frames = max_frames
        if not getattr(self.source, "started", False):  # the caller may have started it already
            self.source.start()
        else:  # count from now: frames a camera grabbed while the model loaded are not this run's input
            before = self.source.stats()
            self._source_base = {k: before.get(k, 0) for k in ("grabbed", "dropped")}
            self.stats.started_ns = time.perf_counter_ns()
        self._thread = threading.Thread(target=self._run, name="mocap-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop everything: worker joined, source stopped, sinks closed (idempotent)."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("engine thread did not stop within %.0f s", timeout)
        self.source.stop()
        close = getattr(self.tracker, "close", None)
        if close is not None:  # the tracker's background detector thread
            close()
        self.latest.close()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # a sink failing to close must not lose the others' data
                log.error("closing %s failed: %s", type(sink).__name__, exc)
        self.sinks = []

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        overlap = bool(getattr(self.predictor, "is_async", False))
        held: Optional[_InFlight] = None  # inferred, not yet filtered and sent (overlap only)
        try:
            while not self.stop_event.is_set():
                if self._max_frames is not None and self.stats.frames_out + (held is not None) >= self._max_frames:
                    break
                frame = self.source.read(timeout=0.0 if held is not None else 0.2)
                if frame is None:
                    if held is not None:  # nothing newer is waiting: send now, do not hold the result
                        self._post(held)
                        held = None
                        continue
                    if self.source.finished.is_set():
                        break
                    continue
                current = self._launch(frame)
                if held is not None:  # the CPU sends the previous frame while the GPU runs this one
                    self._post(held)
                    held = None
                self._complete(current)
                if overlap:
                    held = current
                else:
                    self._post(current)
            if held is not None:
                self._post(held)
        except BaseException as exc:  # surfaced to the caller by live(); the thread must not die silently
            self.error = exc
            log.exception("engine stage failed")
        finally:
            self.stop_event.set()

    def _launch(self, frame) -> "_InFlight":
        """Track, then start the prediction of every tracked person (asynchronous on a GPU)."""
        job = self._track(frame)
        boxes = job.boxes()
        job.pending = self.predictor.launch(frame.image, boxes) if boxes else None
        return job

    def _track(self, frame) -> "_InFlight":
        """The tracker's people of this frame (their prediction not started yet)."""
        t = {"wait": time.perf_counter_ns()}
        targets = self.tracker.update(frame.image, _filter_time(frame))
        t["track"] = time.perf_counter_ns()
        return _InFlight(frame, t, targets, None)

    def _complete(self, job: "_InFlight") -> None:
        """Wait for the predictions; the tracker learns where everyone is for the next frame."""
        preds = job.pending.result() if job.pending is not None else []
        by_box = {p.box_index: p.person for p in preds}
        h, w = job.frame.image.shape[:2]
        ids = self.tracker.identify(job.targets, by_box, _filter_time(job.frame), (w, h))  # {box index: track id}
        job.persons = sorted((dataclasses.replace(person, track_id=ids[i]) for i, person in by_box.items()),
                             key=lambda p: p.track_id)
        job.t["infer"] = time.perf_counter_ns()

    def _post(self, job: "_InFlight") -> None:
        """Filter, then hand the result to the sinks and the viewer."""
        t, persons, frame = job.t, job.persons, job.frame
        t["hold"] = time.perf_counter_ns()
        if self.filter is not None:
            filtered = self.filter(persons, _filter_time(frame), keep=self.tracker.alive_ids)
            if self.mesh_after_filter:
                for k, person in enumerate(filtered):
                    verts, joints = self.predictor.body_model.from_params(person.params.to_dict())
                    filtered[k] = dataclasses.replace(person, vertices=verts, joints=joints)
            persons = filtered
        if self.grounder is not None:
            persons = self.grounder(persons, _filter_time(frame), keep=self.tracker.alive_ids)
        t["filter"] = time.perf_counter_ns()
        h, w = frame.image.shape[:2]
        result = FrameResult(frame_id=frame.id, t_capture_ns=frame.t_capture_ns, image_size=(w, h),
                             persons=persons, t_stages=t, image=frame.image)
        t["send"] = time.perf_counter_ns()  # stamped before sending: sinks put it on the wire
        for sink in self.sinks:
            t0 = time.perf_counter_ns()
            try:
                sink.send(result)
            except Exception as exc:  # one broken sink must not stop capture or the other sinks
                self.stats.sink_errors += 1
                log.error("sink %s failed: %s", type(sink).__name__, exc)
            self.stats.record_sink(type(sink).__name__, (time.perf_counter_ns() - t0) / 1e6)
        done = time.perf_counter_ns()
        self.stats.record(result, done)
        self.latest.put(result)

    # ------------------------------------------------------------------ reporting
    def status(self) -> Dict[str, float]:
        snap = self.stats.snapshot()
        src = self.source.stats()
        base = self._source_base
        grabbed = src.get("grabbed", 0) - base.get("grabbed", 0)
        elapsed = (time.perf_counter_ns() - self.stats.started_ns) / 1e9
        snap.update({
            "in_fps": grabbed / elapsed if elapsed > 0 else 0.0,
            "grabbed": grabbed,
            "dropped": src.get("dropped", 0) - base.get("dropped", 0),
            "corrupt": src.get("corrupt", 0),
            "detector_calls": getattr(self.tracker, "detector_calls", 0),
            "elapsed_s": elapsed,
        })
        return snap

    def status_line(self, width: int = 80) -> str:
        """One line of live numbers that fits ``width`` columns (more detail when wider); never
        shows NaN: values not measured yet read as "-"."""
        s = self.status()

        def num(key, fmt="{:.1f}"):
            v = s.get(key)
            return fmt.format(v) if isinstance(v, (int, float)) and np.isfinite(v) else "-"

        if not s["frames_out"]:
            return f"waiting for the first frame... {s['elapsed_s']:.0f} s (in {num('in_fps')} fps)"[:width]
        people = f"{s['people']} {'person' if s['people'] == 1 else 'people'}"
        parts = [f"in {num('in_fps')} out {num('out_fps')} fps", people,
                 f"lat {num('latency_ms_median')} ms p95 {num('latency_ms_p95')}", f"drop {s['dropped']}"]
        wide = [f"track {num('track_ms')} infer {num('infer_ms')} filter {num('filter_ms')} ms",
                f"frames {s['frames_out']}", f"detector {s['detector_calls']}"]
        line = " | ".join(parts)
        for extra in wide:
            if len(line) + 3 + len(extra) > width:
                break
            line += " | " + extra
        return line[:width]

    def summary(self) -> Dict[str, float]:
        s = self.status()
        with self.stats._lock:
            lat = np.array(self.stats.all_latency_ms.values) if len(self.stats.all_latency_ms) else np.array([np.nan])
        s["latency_ms_median"] = float(np.median(lat))
        s["latency_ms_p95"] = float(np.percentile(lat, 95))
        s["detector_calls_per_100"] = 100.0 * s["detector_calls"] / max(1, s["frames_out"])
        s["out_fps_mean"] = s["frames_out"] / s["elapsed_s"] if s["elapsed_s"] > 0 else 0.0
        return s
