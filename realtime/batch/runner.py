"""A batch from INPUT arguments to a summary: expand the inputs, open the output folder, skip what
is done, process the rest locally or on Ray, and say what failed."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

from engines.errors import UserError
from engines.media import accepted_types

from .inputs import MediaInput, expand_inputs
from .manifest import BatchDir
from .options import BatchOptions
from .session import BatchSession, Task

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    out: Path
    inputs: int = 0
    done: List[MediaInput] = field(default_factory=list)  # in this run
    already_done: List[MediaInput] = field(default_factory=list)
    failures: List[Tuple[str, str]] = field(default_factory=list)  # (path, error), problems included
    #: Files in INPUT folders of a type no command reads (named, not failures).
    not_read: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        parts = [f"{len(self.done)} done", f"{len(self.already_done)} already done", f"{len(self.failures)} failed"]
        lines = [f"{self.inputs} input(s): {', '.join(parts)}; results in {self.out}"]
        lines += [f"  failed: {path}: {error}" for path, error in self.failures]
        if self.not_read:
            lines.append(f"  not read ({len(self.not_read)} file(s) of another type; accepted: {accepted_types()}): "
                         + ", ".join(self.not_read[:10]) + (" ..." if len(self.not_read) > 10 else ""))
        return "\n".join(lines)


def frames_expected(media: MediaInput, max_frames: Optional[int]) -> int:
    """Frames the progress bar expects from an input (its container's count; 1 when unknown)."""
    if media.kind == "image":
        return 1
    from realtime.offline import VideoFrames

    try:
        with VideoFrames(media.path, max_frames) as frames:
            return frames.total or 1
    except (IOError, OSError):
        return 1


def import_ray_runner():
    """:mod:`.ray_runner` (it imports Ray), or a one-line error when the ``batch`` extra is missing."""
    try:
        from . import ray_runner
    except ImportError as exc:
        raise UserError(f"--ray needs Ray: pip install 'smplerx-mocap[batch]' ({exc})") from exc
    return ray_runner


def run_batch(items: Iterable[Path], out: Path, options: BatchOptions, workers: Optional[int] = None,
              ray_address: Optional[str] = None, use_ray: bool = False, batch_size: Optional[int] = None,
              progress: bool = True, verbose: bool = False, overwrite: bool = False) -> BatchReport:
    """Process every media file named by ``items`` into ``out/<name>/`` (see the module docstring).

    ``use_ray``: on Ray, joining ``ray_address`` (``HOST:PORT``) or starting a local instance
    (None); ``workers`` then counts engine actors, else local worker processes. ``overwrite``: start
    over, removing the batch already in ``out``.
    """
    inputs, problems = expand_inputs(items)
    report = BatchReport(Path(out), inputs=len(inputs))
    report.failures += [(p.path, p.message) for p in problems if not p.not_read]
    report.not_read = [p.path for p in problems if p.not_read]
    if not inputs:
        raise UserError("nothing to process: " + "; ".join(p.message for p in problems[:5]) if problems
                        else "nothing to process: no INPUT given")
    ray_runner = None
    if use_ray:
        ray_runner = import_ray_runner()
        if ray_address is not None:
            ray_runner.check_address(ray_address)  # before anything is written
    with BatchDir.open(Path(out), options.results_identity(), overwrite) as bdir:
        for path in report.not_read:  # named in the manifest too
            bdir.record(MediaInput(Path(path).resolve(), "unsupported"), state="not read",
                        error="not an image or video type")
        tasks, refused = [], []
        for media in inputs:
            if bdir.is_done(media):
                report.already_done.append(media)
                continue
            name = bdir.output_name(media)
            task = Task(media, name, bdir.new_tmp(name))
            error = media.preflight_error()
            if error:
                refused.append((task, error))
            else:
                if progress:  # only the progress bar's total uses it, and it opens each video
                    task.frames_expected = frames_expected(media, options.max_frames)
                tasks.append(task)
        session = BatchSession(bdir, tasks + [t for t, _ in refused], progress=progress and bool(tasks))
        try:
            for task, error in refused:
                session.failed(task, error)
            if tasks:
                if ray_runner is not None:
                    started = ray_runner.connect(ray_address, verbose)
                    try:
                        ray_runner.run_ray(session, tasks, options, engines=workers, batch_size=batch_size)
                    finally:
                        if started:
                            ray_runner.disconnect()
                else:
                    from .local import default_workers, run_local

                    run_local(session, tasks, options, workers or default_workers(options.device),
                              quiet=not verbose)
        finally:
            session.close()
        report.done = list(session.done)
        report.failures += [(str(m.path), e) for m, e in session.failures]
    return report
