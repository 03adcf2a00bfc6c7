"""The batch on Ray (``mocap batch --ray [ADDRESS]``); imported only then (``pip install .[batch]``).

Stages (see :mod:`realtime.batch.stages`), scheduled by Ray:

* **decode + detect**: one streaming task per input (1 CPU, anywhere in the cluster) yields chunks
  of a few frames: the crops for the engines and, separately, the frames for the writer;
* **engines**: actors holding the network and SMPL-X layer, one per GPU (``num_gpus=1``) or a few
  on CPU; each call takes the crops of several chunks -- frames of different inputs -- and runs
  them ``batch_size`` at a time;
* **writers**: actors on this machine (results land in ``--out`` here), one input each at a time,
  writing frames in order as their predictions come back.

This process drives the stages: it starts decoders for as many inputs as there are writers,
batches ready crops into engine calls, hands predictions to writers in frame order, and commits a
result folder (rename) and its manifest line when the writer closes it. Memory stays bounded: a
decoder pauses while its input has more than a few chunks not yet written.
"""
from __future__ import annotations

import logging
import os
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home

import ray  # noqa: E402  (after the environment above)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

from engines.errors import UserError  # noqa: E402

from .options import BatchOptions  # noqa: E402
from .session import BatchSession, InputResult, Task, error_text  # noqa: E402
from .stages import CHUNK_FRAMES, CropChunk, EngineStage, InputEnd, InputStart, InputWriter, decode_and_detect  # noqa: E402

log = logging.getLogger(__name__)

#: Chunks of one input that may wait (decoded, not yet written) before its decoder pauses.
MAX_UNWRITTEN_CHUNKS = 4
#: Engine calls in flight per engine actor (one running, one ready to go).
CALLS_PER_ENGINE = 2
#: Seconds to wait for a TCP answer from a cluster address before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0


# ------------------------------------------------------------------------------------------ connect
def connect(address: Optional[str], verbose: bool = False) -> bool:
    """Join the cluster at ``address`` (``HOST:PORT`` of its head) or start a local instance
    (``address`` None). Returns True when this call started Ray (then :func:`disconnect` it)."""
    if address is not None:
        check_address(address)
    if ray.is_initialized():  # already connected in this process (a test, a notebook)
        return False
    quiet = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.WARNING}
    try:
        if address is None:
            ray.init(include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except Exception as exc:
        where = "start a local Ray instance" if address is None else f"join the Ray cluster at {address}"
        raise UserError(f"cannot {where}: {exc}") from exc
    return True


def check_address(address: str) -> None:
    """A clear error for an address that is malformed, a Ray Client URL, or does not answer."""
    if address.startswith("ray://"):
        raise UserError("--ray takes the cluster's HOST:PORT (run mocap batch on a node of the cluster, "
                        "e.g. the head); Ray Client addresses (ray://) are not supported")
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"bad --ray address {address!r}: give HOST:PORT of the cluster's head, e.g. 10.0.0.1:6379 "
                        "(put --ray after the inputs, or write --ray=ADDRESS)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); "
                        "is `ray start --head` running there?") from None


def disconnect() -> None:
    ray.shutdown()


# ------------------------------------------------------------------------------------------ resources
@dataclass(frozen=True)
class RayPlan:
    engines: int
    engine_cpus: int
    engine_gpus: int
    #: Inputs processed at once (= writer actors = decode tasks running).
    active: int


def plan_resources(cluster_cpus: float, cluster_gpus: float, driver_cpus: float, device: str,
                   engines: Optional[int] = None) -> RayPlan:
    """How many engine actors, with what, and how many inputs at once (pure; unit-tested)."""
    cpus, gpus = int(cluster_cpus), int(cluster_gpus)
    if device.startswith("cuda"):
        if gpus < 1:
            raise UserError("--device cuda, but the Ray cluster has no GPU (ray status lists its resources)")
        n = engines or gpus
        if n > gpus:
            raise UserError(f"{n} engines asked for, but the cluster has {gpus} GPU(s)")
        engine_cpus, engine_gpus = 1, 1
    else:
        engine_cpus = 2 if cpus >= 4 else 1
        n = engines or max(1, (cpus - max(1, cpus // 4)) // engine_cpus)
        engine_gpus = 0
    decode_cpus = cpus - n * engine_cpus
    if decode_cpus < 1:
        raise UserError(f"the Ray cluster has {cpus} CPU(s): too few for {n} engine(s) of {engine_cpus} CPU(s) "
                        "and one decoder; ask for fewer engines (--workers)")
    active = max(2, min(decode_cpus, max(1, int(driver_cpus))))
    return RayPlan(n, engine_cpus, engine_gpus, active)


# ------------------------------------------------------------------------------------------ Ray parts
@ray.remote
def _decode(path: str, kind: str, manual_boxes, max_frames, chunk_frames: int, max_people: int = 10):
    """Streaming task: InputStart, then per chunk a small dict, the CropChunk and the ImageChunk,
    then InputEnd (the dict says what the next two objects are without fetching them)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    for item in decode_and_detect(path, kind, manual_boxes, max_frames, chunk_frames, max_people):
        if isinstance(item, tuple):
            crops, images = item
            yield {"crops": crops.crops, "frames": len(images.frames)}
            yield crops
            yield images
        else:
            yield item


@ray.remote
class _EngineActor:
    def __init__(self, options: Dict, batch_size: int, threads: int):
        import torch

        from engines.inference import Predictor

        torch.set_num_threads(max(1, threads))
        opts = BatchOptions(**options)
        self.stage = EngineStage(Predictor.from_files(opts.checkpoint, opts.body_models, device=opts.device,
                                                      engine=opts.engine), batch_size)

    def ready(self) -> str:
        return socket.gethostname()

    def infer(self, *chunks: CropChunk):
        results = self.stage.infer(chunks)
        return results[0] if len(results) == 1 else tuple(results)


@ray.remote
class _WriterActor:
    """Writes one input at a time (two Open3D renderers interleaved in one thread corrupt each other's
    images); a fresh renderer per video (as each `mocap video` run starts one), one shared by images
    (as in `mocap image DIR`)."""

    def __init__(self, options: Dict):
        from engines.body_model import BodyModel

        self.opts = BatchOptions(**options)
        self.faces = BodyModel(self.opts.body_models).faces
        self.input: Optional[InputWriter] = None
        self.overlay = None
        self.image_overlay = None

    def _renderer(self, kind: str):
        if not self.opts.overlay:
            return None
        from viewers.mesh_overlay import PersonOverlay

        if kind == "image":
            self.image_overlay = self.image_overlay or PersonOverlay(self.faces, boxes=self.opts.boxes)
            return self.image_overlay
        self.overlay = PersonOverlay(self.faces, boxes=self.opts.boxes)
        return self.overlay

    def open(self, out_dir: str, source: str, start: InputStart) -> None:
        self.abort()
        self.input = InputWriter(out_dir, source, start, self.faces, self.opts.save_mesh, self._renderer(start.kind))

    def write(self, images, predictions) -> int:
        return self.input.write(images, predictions)

    def close(self) -> Tuple[int, int, int]:
        w, self.input = self.input, None
        self._close_input(w, complete=True)
        return w.frames, w.persons, w.empty_frames

    def abort(self) -> None:
        if self.input is not None:
            w, self.input = self.input, None
            self._close_input(w)

    def _close_input(self, w: InputWriter, complete: bool = False) -> None:
        w.close(complete)
        if self.overlay is not None:
            self.overlay.close()
            self.overlay = None


# ------------------------------------------------------------------------------------------ driver
@dataclass
class _Chunk:
    crops: int
    frames: int
    crops_ref: Any
    images_ref: Any
    preds_ref: Any = None
    ready: bool = False


@dataclass
class _Active:
    task: Task
    writer: int
    gen: Any
    started: bool = False
    end: Optional[InputEnd] = None
    chunks: Deque[_Chunk] = field(default_factory=deque)  # decoded, not yet handed to the writer
    writes: int = 0  # write calls in flight
    closing: bool = False
    error: Optional[str] = None  # set once the input failed; its writer is being stopped


class _Driver:
    def __init__(self, session: BatchSession, options: BatchOptions, plan: RayPlan, batch_size: int):
        self.session = session
        self.options = options
        self.plan = plan
        self.batch_size = batch_size
        opts = _asdict(options)
        log.info("Ray: %d engine(s) (%d CPU, %d GPU each), %d inputs at once, batches of %d crops",
                 plan.engines, plan.engine_cpus, plan.engine_gpus, plan.active, batch_size)
        self.engines = [_EngineActor.options(num_cpus=plan.engine_cpus, num_gpus=plan.engine_gpus, max_restarts=2,
                                             max_task_retries=2).remote(opts, batch_size, plan.engine_cpus)
                        for _ in range(plan.engines)]
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self._new_writer = lambda: _WriterActor.options(num_cpus=0, scheduling_strategy=here).remote(opts)
        self.writers = [self._new_writer() for _ in range(plan.active)]
        self.free_writers = list(range(plan.active))
        try:
            ray.get([e.ready.remote() for e in self.engines] + [w.__ray_ready__.remote() for w in self.writers])
        except ray.exceptions.RayError as exc:
            for actor in self.engines + self.writers:
                ray.kill(actor)
            raise UserError(f"the Ray workers could not load the engine: {error_text(exc)}") from exc
        self.engine_calls = [0] * plan.engines
        self.waiting: Deque[Tuple[_Active, _Chunk]] = deque()  # chunks waiting for an engine
        self.handlers: Dict[Any, Tuple] = {}  # waitable -> (what, ...)
        self.active: List[_Active] = []

    # --------------------------------------------------------------------------- run
    def run(self, tasks: List[Task]) -> None:
        queue = deque(tasks)
        active = self.active = []
        while queue or active:
            while queue and self.free_writers:
                active.append(self._start(queue.popleft()))
            waitables = list(self.handlers)
            for a in active:
                if a.error is None and a.end is None and len(a.chunks) < MAX_UNWRITTEN_CHUNKS:
                    waitables.append(a.gen)
                    self.handlers[a.gen] = ("gen", a)
            if not waitables:  # nothing in flight (cannot last: every active input waits on something)
                self._feed_engines()
                continue
            ready, _ = ray.wait(waitables, num_returns=1, timeout=1.0)
            if ready:
                ready, _ = ray.wait(waitables, num_returns=len(waitables), timeout=0)
            for w in ready:
                what = self.handlers.pop(w)
                getattr(self, f"_on_{what[0]}")(w, *what[1:])
            for a in active:
                if a.gen in self.handlers and self.handlers[a.gen][0] == "gen":
                    del self.handlers[a.gen]
            self._feed_engines()
            for a in list(active):
                self._advance(a)
                if a.task is None:  # finished or failed, writer released
                    active.remove(a)

    def _start(self, task: Task) -> _Active:
        writer = self.free_writers.pop(0)
        self.session.started(task, "ray")
        gen = _decode.options(num_cpus=1, max_retries=0, num_returns="streaming",
                              _generator_backpressure_num_objects=3 * MAX_UNWRITTEN_CHUNKS).remote(
            str(task.media.path), task.media.kind, self.options.manual_boxes(), self.options.max_frames, CHUNK_FRAMES,
            self.options.max_people)
        return _Active(task, writer, gen)

    # --------------------------------------------------------------------------- events
    def _on_gen(self, gen, a: _Active) -> None:
        try:
            ref = next(gen)
        except StopIteration:
            if a.end is None:
                self._fail(a, "the decoder stopped early")
            return
        try:
            item = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._fail(a, error_text(exc))
            return
        if isinstance(item, InputStart):
            self.writers[a.writer].open.remote(str(a.task.tmp), str(a.task.media.path), item)
            a.started = True
        elif isinstance(item, InputEnd):
            a.end = item
        else:
            chunk = _Chunk(item["crops"], item["frames"], next(gen), next(gen))
            a.chunks.append(chunk)
            if chunk.crops:
                self.waiting.append((a, chunk))
            else:
                chunk.ready = True  # nobody in these frames: straight to the writer

    def _on_engine(self, ref, a: _Active, chunk: _Chunk, engine: int, last: bool) -> None:
        if last:
            self.engine_calls[engine] -= 1
        if a.error is not None:
            return
        try:
            ray.get(ref)  # on this node anyway (the writers are here); a failed engine call shows here
        except ray.exceptions.RayError as exc:
            self._fail(a, f"engine: {error_text(exc)}")
            return
        chunk.ready = True

    def _on_write(self, ref, a: _Active, frames: int) -> None:
        a.writes -= 1
        try:
            ray.get(ref)
        except ray.exceptions.RayError as exc:
            if a.error is None:
                self._replace_dead_writer(a, exc)
                self._fail(a, error_text(exc))
            return
        if a.error is None:
            self.session.frames_done(a.task, frames)

    def _on_close(self, ref, a: _Active) -> None:
        try:
            frames, persons, empty = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._replace_dead_writer(a, exc)
            self._release(a, error_text(exc))
            return
        end = a.end or InputEnd(frames)
        self.session.finished(a.task, InputResult(frames, persons, empty, list(end.skipped_frames)))
        self._release(a, None)

    def _on_abort(self, ref, a: _Active, error: str) -> None:
        try:
            ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._replace_dead_writer(a, exc)
        self._release(a, error)

    # --------------------------------------------------------------------------- steps
    def _feed_engines(self) -> None:
        while self.waiting:
            free = [i for i, n in enumerate(self.engine_calls) if n < CALLS_PER_ENGINE]
            if not free:
                return
            engine = min(free, key=lambda i: self.engine_calls[i])
            batch, crops = [], 0
            while self.waiting and (not batch or crops + self.waiting[0][1].crops <= self.batch_size):
                a, chunk = self.waiting.popleft()
                if a.error is not None:
                    continue
                batch.append((a, chunk))
                crops += chunk.crops
            if not batch:
                return
            refs = self.engines[engine].infer.options(num_returns=len(batch)).remote(*[c.crops_ref for _, c in batch])
            refs = [refs] if len(batch) == 1 else refs
            self.engine_calls[engine] += 1
            for k, ((a, chunk), ref) in enumerate(zip(batch, refs)):
                chunk.preds_ref = ref
                self.handlers[ref] = ("engine", a, chunk, engine, k == len(refs) - 1)

    def _advance(self, a: _Active) -> None:
        """Hand ready chunks to the writer in order; close the input when everything is written."""
        if a.error is not None or a.closing:
            return
        writer = self.writers[a.writer]
        while a.started and a.chunks and a.chunks[0].ready:
            chunk = a.chunks.popleft()
            ref = writer.write.remote(chunk.images_ref, chunk.preds_ref)
            a.writes += 1
            self.handlers[ref] = ("write", a, chunk.frames)
        if a.end is not None and not a.chunks and a.writes == 0:
            if not a.started:
                self._fail(a, "the decoder produced nothing")
                return
            a.closing = True
            self.handlers[writer.close.remote()] = ("close", a)

    def _fail(self, a: _Active, error: str) -> None:
        if a.error is not None:
            return
        a.error = error
        try:
            ray.cancel(a.gen)
        except Exception:  # already finished
            pass
        a.chunks.clear()
        self.handlers[self.writers[a.writer].abort.remote()] = ("abort", a, error)

    def _replace_dead_writer(self, a: _Active, exc: Exception) -> None:
        """Writer calls only fail with an actor error when the writer process died: start another."""
        if isinstance(exc, ray.exceptions.RayActorError):
            ray.kill(self.writers[a.writer])
            self.writers[a.writer] = self._new_writer()

    def _release(self, a: _Active, error: Optional[str]) -> None:
        if a.task is None:
            return
        if error is not None:
            self.session.failed(a.task, error)
        self.free_writers.append(a.writer)
        a.task = None

    def shutdown(self, active: List[_Active]) -> None:
        for a in active:  # stopped early (Ctrl-C, an error): these inputs are not done
            if a.task is not None:
                self.session.interrupted(a.task)
        for actor in self.engines + self.writers:
            ray.kill(actor)


def _asdict(options: BatchOptions) -> Dict:
    from dataclasses import asdict

    return asdict(options)


def run_ray(session: BatchSession, tasks: List[Task], options: BatchOptions, engines: Optional[int] = None,
            batch_size: Optional[int] = None) -> None:
    """Process ``tasks`` on the connected Ray cluster, reporting to ``session``."""
    resources = ray.cluster_resources()
    node = ray.get_runtime_context().get_node_id()
    driver_cpus = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node), 1)
    plan = plan_resources(resources.get("CPU", 0), resources.get("GPU", 0), driver_cpus, options.device, engines)
    plan = RayPlan(plan.engines, plan.engine_cpus, plan.engine_gpus, min(plan.active, max(1, len(tasks))))
    size = batch_size or (16 if options.device.startswith("cuda") else 4)
    driver = _Driver(session, options, plan, size)
    try:
        driver.run(tasks)
    finally:
        driver.shutdown(driver.active)
