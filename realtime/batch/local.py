"""Worker processes on this machine: each loads the engine once and runs inputs one after another
through exactly what ``mocap video`` / ``mocap image`` run (:func:`realtime.offline.run_video` /
:func:`realtime.offline.run_images`), writing into the temporary folder it is given.

The parent hands out one input at a time, records every report in the manifest and watches the
workers: a worker that dies fails only the input it held and is replaced. Workers die with the
parent (``PR_SET_PDEATHSIG`` on Linux, a parent check elsewhere), so a killed batch leaves no
process behind that could still move results into place.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

from engines.errors import UserError

from .options import BatchOptions
from .session import BatchSession, InputResult, Task, error_text

log = logging.getLogger(__name__)

#: Seconds between liveness checks of the workers while waiting for reports.
POLL_S = 0.5
#: Fresh workers that may die before loading the engine, in a row, before the batch gives up.
MAX_SETUP_DEATHS = 3


def default_workers(device: str) -> int:
    """One worker per GPU on CUDA; one on CPU, where the engine already uses every core: it keeps
    ``mocap video``'s thread count, so its files are byte-identical to ``mocap video``'s. More
    workers split the cores (faster on a busy or large machine, see docs/benchmarks.md), which
    changes float32 rounding, and the tracker carries that rounding from frame to frame."""
    if device.startswith("cuda"):
        try:
            import torch

            return max(1, torch.cuda.device_count())
        except Exception:  # no torch CUDA: the worker will report the device error
            return 1
    return 1


# ---------------------------------------------------------------------------------------- worker side
def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _worker_main(worker_id: int, options: Dict, threads: Optional[int], gpu: Optional[int], parent_pid: int,
                 log_path: Optional[str], conn) -> None:
    """Entry point of a worker process (spawned); ``conn`` brings tasks and takes reports."""
    _die_with_parent(parent_pid)
    if log_path:  # native libraries (mediapipe, Open3D) write to fd 2: keep that off the progress bar
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s worker {worker_id}: %(message)s")
    opts = BatchOptions(**options)
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        from engines.inference import Predictor

        predictor = Predictor.from_files(opts.checkpoint, opts.body_models, device=opts.device, engine=opts.engine)
        image_overlay = _new_overlay(predictor, opts)  # images share one renderer, as in `mocap image DIR`
    except Exception as exc:  # a bad checkpoint / body model / device: the same for every worker
        conn.send(("setup_failed", error_text(exc)))
        return
    conn.send(("ready", os.getpid()))
    image_detector = None
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:  # the parent is gone
                break
            if job is None:
                break
            key, path, kind, tmp, name = job

            def on_frame(index, preds):
                if os.getppid() != parent_pid:
                    os._exit(1)
                conn.send(("frame",))

            try:
                if kind == "image" and image_detector is None and not opts.bbox:
                    from engines.detector import PersonDetector

                    image_detector = PersonDetector(static=True, max_people=opts.max_people)
                result = _process(Path(path), kind, Path(tmp), predictor, opts, image_overlay, image_detector,
                                  on_frame)
                if result.frames:
                    from .exports import write_exports

                    result.exports = write_exports(Path(tmp), name, opts.exports, opts.body_models,
                                                   opts.export_smooth, opts.export_ground)
                conn.send(("finished", key, asdict(result)))
            except Exception as exc:
                log.debug("input %s failed", path, exc_info=True)
                conn.send(("failed", key, error_text(exc)))
    finally:
        if image_overlay is not None:
            image_overlay.close()
        if image_detector is not None:
            image_detector.close()


def _new_overlay(predictor, opts: BatchOptions):
    if not opts.overlay:
        return None
    from viewers.mesh_overlay import PersonOverlay

    return PersonOverlay(predictor.body_model.faces, boxes=opts.boxes)


def _process(path: Path, kind: str, tmp: Path, predictor, opts: BatchOptions, image_overlay, image_detector,
             on_frame) -> InputResult:
    """One input, exactly as ``mocap video`` / ``mocap image`` process it, into ``tmp``."""
    from realtime.offline import run_images, run_video

    if kind == "image":
        stats = run_images([path], predictor, tmp, detector=image_detector, manual_boxes=opts.manual_boxes(),
                           save_mesh=opts.save_mesh, overlay=image_overlay, progress=False,
                           run_info={"command": "batch"}, orientation=opts.orientation)
        if stats.frames:
            on_frame(1, [])
        return InputResult(stats.frames, stats.persons, stats.empty_frames)
    # a fresh tracker and renderer per video, as each `mocap video` run starts them
    detector = None
    if not opts.bbox:
        from engines.detector import PersonDetector

        detector = PersonDetector(static=False, max_people=opts.max_people)
    overlay = _new_overlay(predictor, opts)
    try:
        stats = run_video(path, predictor, tmp, detector=detector, manual_boxes=opts.manual_boxes(),
                          save_mesh=opts.save_mesh, overlay=overlay, progress=False, max_frames=opts.max_frames,
                          on_frame=on_frame, run_info={"command": "batch"}, orientation=opts.orientation)
    finally:
        if detector is not None:
            detector.close()
        if overlay is not None:
            overlay.close()
    return InputResult(stats.frames, stats.persons, stats.empty_frames, stats.input_problem)


# ---------------------------------------------------------------------------------------- parent side
class _Worker:
    """The parent's handle on one worker process and the input it holds."""

    def __init__(self, ctx, worker_id: int, args: tuple):
        self.id = worker_id
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(worker_id, *args, child),
                                   name=f"mocap-batch-worker-{worker_id}", daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.pid: Optional[int] = None
        self.task: Optional[Task] = None

    def send(self, message) -> None:
        try:
            self.conn.send(message)
        except (OSError, EOFError):  # died meanwhile; its sentinel reports it
            pass

    def give(self, task: Task) -> None:
        self.task = task
        self.send((task.media.key, str(task.media.path), task.media.kind, str(task.tmp), task.name))

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


def run_local(session: BatchSession, tasks: List[Task], options: BatchOptions, workers: int,
              quiet: bool = True) -> None:
    """Process ``tasks`` with ``workers`` processes, reporting to ``session``. ``quiet``: the workers'
    output goes to ``DIR/.logs/worker-<n>.log`` instead of this terminal."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")  # no forked copies of torch / mediapipe / OpenGL state
    workers = max(1, min(workers, len(tasks)))
    try:
        import torch

        parent_threads = torch.get_num_threads()
    except ImportError:
        parent_threads = os.cpu_count() or 1
    # one worker keeps the parent's thread count (the numbers `mocap video` gives in this process);
    # several share the cores
    threads = parent_threads if workers == 1 else max(1, parent_threads // workers)
    gpus = default_workers(options.device) if options.device.startswith("cuda") else 0
    pending = list(tasks)
    pool: Dict[int, _Worker] = {}
    next_id = 0
    setup_deaths = 0

    logs = session.bdir.logs_dir() if quiet else None

    def spawn() -> None:
        nonlocal next_id
        gpu = next_id % gpus if gpus > 1 else None
        log_path = str(logs / f"worker-{next_id}.log") if logs else None
        pool[next_id] = _Worker(ctx, next_id, (asdict(options), threads, gpu, os.getpid(), log_path))
        next_id += 1

    def hand_out(w: _Worker) -> None:
        if pending:
            task = pending.pop(0)
            session.started(task, f"pid {w.pid}")
            w.give(task)
        else:
            w.send(None)

    def on_message(w: _Worker, msg) -> None:
        nonlocal setup_deaths
        kind = msg[0]
        if kind == "ready":
            w.ready, w.pid = True, msg[1]
            setup_deaths = 0
            hand_out(w)
        elif kind == "setup_failed":
            raise UserError(f"a worker could not load the engine: {msg[1]}")
        elif kind == "frame" and w.task is not None:
            session.frames_done(w.task)
        elif kind in ("finished", "failed") and w.task is not None and msg[1] == w.task.media.key:
            task, w.task = w.task, None
            if kind == "finished":
                session.finished(task, InputResult(**msg[2]))
            else:
                session.failed(task, msg[2])
            hand_out(w)

    def on_exit(w: _Worker) -> None:
        nonlocal setup_deaths
        del pool[w.id]
        w.process.join(timeout=5)
        code = w.process.exitcode
        if w.task is not None:
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            task, w.task = w.task, None
            session.failed(task, f"worker process died ({how}) while processing this input")
        elif not w.ready:
            setup_deaths += 1
            if setup_deaths >= MAX_SETUP_DEATHS:
                raise UserError(f"worker processes die while starting (exit code {code}); "
                                "run `mocap video` on one input to see why")
        w.conn.close()

    for _ in range(workers):
        spawn()
    try:
        while pending or any(w.task is not None for w in pool.values()):
            if not pool:
                spawn()
            handles = {}
            for w in pool.values():
                handles[w.conn] = w
                handles[w.process.sentinel] = w
            for handle in wait(list(handles), timeout=POLL_S):
                w = handles[handle]
                if w.id not in pool:
                    continue
                if handle is w.conn:
                    try:
                        while w.conn.poll():
                            on_message(w, w.conn.recv())
                    except (EOFError, OSError):  # the worker closed its end: it exited
                        w.process.join(timeout=5)
                        on_exit(w)
                elif not w.conn.poll():  # exited, and every report it sent has been read
                    on_exit(w)
            if pending and len(pool) < workers:
                spawn()
    finally:
        for w in pool.values():
            if w.task is not None:  # stopped early (Ctrl-C, an error): drop what it was writing
                w.kill()
                session.interrupted(w.task)
            else:
                w.send(None)
        deadline = time.monotonic() + 10
        for w in pool.values():
            w.process.join(timeout=max(0.1, deadline - time.monotonic()))
            w.kill()
