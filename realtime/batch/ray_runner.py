"""The batch on Ray (``mocap batch --ray [ADDRESS]``); imported only then (``pip install .[batch]``).

Stages (see :mod:`realtime.batch.stages`), scheduled by Ray:

* **inputs**: one streaming task per input (1 CPU, anywhere in the cluster) decodes its frames,
  finds and follows the people exactly as ``mocap video`` does and makes their crops; the tracker
  learns from each frame's predictions, so the task asks an engine for every frame and waits for
  the answer (Ray lends its CPU to others meanwhile), then yields chunks of frames with their people;
* **engines**: asynchronous actors holding the network and SMPL-X layer, one per GPU
  (``num_gpus=1``) or a few on CPU; the crops of all calls waiting when a forward ends -- frames of
  different inputs -- go through the next forward together, ``batch_size`` crops at most;
* **writers**: actors on this machine (results land in ``--out`` here), one input each at a time,
  writing frames in order and, at the end, the ``--export`` files.

This process drives them: it starts a task for as many inputs as there are writers, hands each
chunk to the input's writer, and commits a result folder (rename) and its manifest line when the
writer closes it. Memory stays bounded: a task pauses while its input has a few chunks not yet
written.
"""
from __future__ import annotations

import logging
import os
import socket
from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Any, Deque, Dict, List, Optional, Tuple

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home

import ray  # noqa: E402  (after the environment above)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

from engines.errors import UserError  # noqa: E402

from .options import BatchOptions  # noqa: E402
from .session import BatchSession, InputResult, Task, error_text  # noqa: E402
from .stages import (CHUNK_FRAMES, CropChunk, EngineStage, InputEnd, InputStart, InputWriter,  # noqa: E402
                     PeopleChunk, crop_predictor, track_and_predict)

log = logging.getLogger(__name__)

#: Chunks of one input that may wait (done, not yet written) before its task pauses.
MAX_UNWRITTEN_CHUNKS = 4
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
        raise UserError("--ray takes the cluster's HOST:PORT (run mocap on a node of the cluster, "
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


def cluster_plan(device: str, engines: Optional[int] = None) -> RayPlan:
    """:func:`plan_resources` for the connected cluster (this process runs on the driver's node)."""
    resources = ray.cluster_resources()
    node = ray.get_runtime_context().get_node_id()
    driver_cpus = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node), 1)
    return plan_resources(resources.get("CPU", 0), resources.get("GPU", 0), driver_cpus, device, engines)


# ------------------------------------------------------------------------------------------ Ray parts
@ray.remote
def _input_task(path: str, kind: str, options: Dict, engine, chunk_frames: int):
    """Streaming task: InputStart, then per chunk a small dict and the PeopleChunk, then InputEnd
    (the dict says a chunk follows without fetching it)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    opts = BatchOptions(**options)
    predict = crop_predictor(lambda chunk: ray.get(engine.infer.remote(chunk)))
    for item in track_and_predict(path, kind, predict, opts.manual_boxes(), opts.max_people, opts.max_frames,
                                  chunk_frames, orientation=opts.orientation):
        if isinstance(item, PeopleChunk):
            yield {"frames": len(item.frames)}
        yield item


@ray.remote
class _EngineActor:
    """Runs :class:`EngineStage` on the crops of every call waiting when the previous forward ends
    (calls from many inputs at once), ``batch_size`` crops per forward at most."""

    def __init__(self, options: Dict, batch_size: int, threads: int):
        from concurrent.futures import ThreadPoolExecutor

        import torch

        from engines.inference import Predictor

        torch.set_num_threads(max(1, threads))
        opts = BatchOptions(**options)
        self.stage = EngineStage(Predictor.from_files(opts.checkpoint, opts.body_models, device=opts.device,
                                                      engine=opts.engine), batch_size)
        self._queue: Deque = deque()
        self._busy = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")  # the event loop stays free

    async def ready(self) -> str:
        return socket.gethostname()

    async def infer(self, chunk: CropChunk):
        import asyncio

        future = asyncio.get_running_loop().create_future()
        self._queue.append((chunk, future))
        if not self._busy:
            self._busy = True
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                await asyncio.sleep(0)  # calls that arrived together go together
                batch, crops = [], 0
                while self._queue and (not batch or crops + self._queue[0][0].crops <= self.stage.batch_size):
                    item = self._queue.popleft()
                    batch.append(item)
                    crops += item[0].crops
                try:
                    results = await loop.run_in_executor(self._pool, self.stage.infer, [c for c, _ in batch])
                except Exception as exc:  # the callers get the error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._busy = False


@ray.remote
class _WriterActor:
    """Writes one input at a time (two Open3D renderers interleaved in one thread corrupt each other's
    images); a fresh renderer per video (as each `mocap video` run starts one), one shared by images
    (as in `mocap image DIR`); the ``--export`` files when the input is complete."""

    def __init__(self, options: Dict):
        from engines.body_model import BodyModel

        self.opts = BatchOptions(**options)
        self.faces = BodyModel(self.opts.body_models).faces
        self.input: Optional[InputWriter] = None
        self.name = ""
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

    def open(self, out_dir: str, name: str, source: str, start: InputStart) -> None:
        self.abort()
        self.name = name
        self.input = InputWriter(out_dir, source, start, self.faces, self.opts.save_mesh, self._renderer(start.kind))

    def write(self, chunk: PeopleChunk) -> int:
        return self.input.write(chunk)

    def close(self, end: InputEnd) -> Tuple[int, int, int, List[str]]:
        """The input is complete: finalise its files (``run.json`` says complete), then the exports."""
        from .exports import write_exports

        w, self.input = self.input, None
        self._close_input(w, end)
        exports = write_exports(w.writer.out_dir, self.name, self.opts.exports, self.opts.body_models,
                                self.opts.export_smooth, self.opts.export_ground) if w.frames else []
        return w.frames, w.persons, w.empty_frames, exports

    def abort(self) -> None:
        if self.input is not None:
            w, self.input = self.input, None
            self._close_input(w)

    def _close_input(self, w: InputWriter, end: Optional[InputEnd] = None) -> None:
        w.close(end)
        if self.overlay is not None:
            self.overlay.close()
            self.overlay = None


# ------------------------------------------------------------------------------------------ driver
@dataclass
class _Active:
    task: Task
    writer: int
    gen: Any
    started: bool = False
    end: Optional[InputEnd] = None
    writes: int = 0  # write calls in flight
    closing: bool = False
    error: Optional[str] = None  # set once the input failed; its writer is being stopped


class _Driver:
    def __init__(self, session: BatchSession, options: BatchOptions, plan: RayPlan, batch_size: int):
        self.session = session
        self.options = options
        self.plan = plan
        self.opts = asdict(options)
        log.info("Ray: %d engine(s) (%d CPU, %d GPU each), %d inputs at once, batches of up to %d crops",
                 plan.engines, plan.engine_cpus, plan.engine_gpus, plan.active, batch_size)
        self.engines = [_EngineActor.options(num_cpus=plan.engine_cpus, num_gpus=plan.engine_gpus, max_restarts=2,
                                             max_task_retries=2).remote(self.opts, batch_size, plan.engine_cpus)
                        for _ in range(plan.engines)]
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self._new_writer = lambda: _WriterActor.options(num_cpus=0, scheduling_strategy=here).remote(self.opts)
        self.writers = [self._new_writer() for _ in range(plan.active)]
        self.free_writers = list(range(plan.active))
        try:
            ray.get([e.ready.remote() for e in self.engines] + [w.__ray_ready__.remote() for w in self.writers])
        except ray.exceptions.RayError as exc:
            for actor in self.engines + self.writers:
                ray.kill(actor)
            raise UserError(f"the Ray workers could not load the engine: {error_text(exc)}") from exc
        self.handlers: Dict[Any, Tuple] = {}  # waitable -> (what, ...)
        self.active: List[_Active] = []
        self.started = 0

    # --------------------------------------------------------------------------- run
    def run(self, tasks: List[Task]) -> None:
        queue = deque(tasks)
        active = self.active = []
        while queue or active:
            while queue and self.free_writers:
                active.append(self._start(queue.popleft()))
            waitables = list(self.handlers)
            polled = []
            for a in active:
                if a.error is None and a.end is None and a.writes < MAX_UNWRITTEN_CHUNKS:
                    waitables.append(a.gen)
                    polled.append(a)
                    self.handlers[a.gen] = ("gen", a)
            if waitables:
                ready, _ = ray.wait(waitables, num_returns=1, timeout=1.0)
                if ready:
                    ready, _ = ray.wait(waitables, num_returns=len(waitables), timeout=0)
                for w in ready:
                    what = self.handlers.pop(w)
                    getattr(self, f"_on_{what[0]}")(w, *what[1:])
            for a in polled:
                self.handlers.pop(a.gen, None)
            for a in list(active):
                self._advance(a)
                if a.task is None:  # finished or failed, writer released
                    active.remove(a)

    def _start(self, task: Task) -> _Active:
        writer = self.free_writers.pop(0)
        engine = self.engines[self.started % len(self.engines)]
        self.started += 1
        self.session.started(task, "ray")
        gen = _input_task.options(num_cpus=1, max_retries=0, num_returns="streaming",
                                  _generator_backpressure_num_objects=2 * MAX_UNWRITTEN_CHUNKS + 2).remote(
            str(task.media.path), task.media.kind, self.opts, engine, CHUNK_FRAMES)
        return _Active(task, writer, gen)

    # --------------------------------------------------------------------------- events
    def _on_gen(self, gen, a: _Active) -> None:
        try:
            ref = next(gen)
        except StopIteration:
            if a.end is None:
                self._fail(a, "the input's task stopped early")
            return
        try:
            item = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._fail(a, error_text(exc))
            return
        writer = self.writers[a.writer]
        if isinstance(item, InputStart):
            writer.open.remote(str(a.task.tmp), a.task.name, str(a.task.media.path), item)
            a.started = True
        elif isinstance(item, InputEnd):
            a.end = item
        else:  # a chunk follows: straight to the writer, in order
            ref = writer.write.remote(next(gen))
            a.writes += 1
            self.handlers[ref] = ("write", a, item["frames"])

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
            frames, persons, empty, exports = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._replace_dead_writer(a, exc)
            self._release(a, error_text(exc))
            return
        self.session.finished(a.task, InputResult(frames, persons, empty, a.end.problem, exports))
        self._release(a, None)

    def _on_abort(self, ref, a: _Active, error: str) -> None:
        try:
            ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._replace_dead_writer(a, exc)
        self._release(a, error)

    # --------------------------------------------------------------------------- steps
    def _advance(self, a: _Active) -> None:
        """Close the input when its task ended and everything is written."""
        if a.error is not None or a.closing or a.end is None or a.writes:
            return
        if not a.started:
            self._fail(a, "the input's task produced nothing")
            return
        a.closing = True
        self.handlers[self.writers[a.writer].close.remote(a.end)] = ("close", a)

    def _fail(self, a: _Active, error: str) -> None:
        if a.error is not None:
            return
        a.error = error
        try:
            ray.cancel(a.gen)
        except Exception:  # already finished
            pass
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


def run_ray(session: BatchSession, tasks: List[Task], options: BatchOptions, engines: Optional[int] = None,
            batch_size: Optional[int] = None) -> None:
    """Process ``tasks`` on the connected Ray cluster, reporting to ``session``."""
    plan = cluster_plan(options.device, engines)
    plan = replace(plan, active=min(plan.active, max(1, len(tasks))))
    size = batch_size or (16 if options.device.startswith("cuda") else 4)
    driver = _Driver(session, options, plan, size)
    try:
        driver.run(tasks)
    finally:
        driver.shutdown(driver.active)
