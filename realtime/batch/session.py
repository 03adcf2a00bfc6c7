"""One run of a batch as the executors (local worker processes, Ray) report it: every state change
goes to the manifest at once, complete result folders are moved into place, and one progress bar
shows inputs, frames, frames per second and the time left."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .inputs import MediaInput
from .manifest import BatchDir

log = logging.getLogger(__name__)


def error_text(exc: BaseException) -> str:
    """One line for the manifest and the summary: the original error of a failed input (also the one
    a Ray task error wraps), or what died."""
    cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError keeps the original exception
    if isinstance(cause, BaseException) and cause is not exc:
        return error_text(cause)
    name = type(exc).__name__
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if name in ("ActorDiedError", "RayActorError", "ActorUnavailableError"):
        return f"a Ray worker process died ({first[:200]})" if first else "a Ray worker process died"
    if name == "WorkerCrashedError":
        return "the Ray worker process died while processing this input"
    if isinstance(exc, OSError) and first:
        return first
    return f"{name}: {first}" if first else name


@dataclass
class InputResult:
    """What processing one input produced (reported by a worker or the Ray writer)."""

    frames: int = 0
    persons: int = 0
    empty_frames: int = 0
    #: The video reader's one-line account of damage (undecodable frames, a cut tail), or None.
    input_problem: Optional[str] = None
    #: Animation files written into the folder (``--export``).
    exports: List[str] = field(default_factory=list)

    def error(self, media: MediaInput) -> Optional[str]:
        """Why the input does not count as done (None when it does)."""
        if self.frames:
            return None
        if media.kind == "image":
            return f"cannot read image {media.path} (unreadable or not an image)"
        return f"no frame could be decoded from {media.path}"


@dataclass
class Task:
    """An input to process now: where its results go first (``tmp``) and in the end (``name``)."""

    media: MediaInput
    name: str
    tmp: Path
    #: Frames it is expected to have (for the progress bar; 1 for an image).
    frames_expected: int = 1


class BatchSession:
    """Book-keeping of one run; the executors call :meth:`started`, :meth:`frames_done`,
    :meth:`finished` and :meth:`failed` from one thread."""

    def __init__(self, bdir: BatchDir, tasks: List[Task], progress: bool = True):
        from tqdm import tqdm

        self.bdir = bdir
        self.tasks = tasks
        self.done: List[MediaInput] = []
        self.failures: List[Tuple[MediaInput, str]] = []
        self._t0: Dict[str, float] = {}
        self._frames_seen: Dict[str, int] = {}
        total = sum(t.frames_expected for t in tasks)
        self.bar = tqdm(total=total, unit="frame", desc="batch", disable=not progress, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames "
                                   "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"inputs {len(self.done) + len(self.failures)}/{len(self.tasks)}"
                                 + (f", {len(self.failures)} failed" if self.failures else ""))

    def started(self, task: Task, worker: str) -> None:
        media = task.media
        try:
            st = media.path.stat()
            source = {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}
        except OSError:
            source = {}
        self._t0[media.key] = time.monotonic()
        self.bdir.record(media, output=task.name, state="running", worker=worker, error=None, **source)

    def frames_done(self, task: Task, count: int = 1) -> None:
        self._frames_seen[task.media.key] = self._frames_seen.get(task.media.key, 0) + count
        self.bar.update(count)

    def finished(self, task: Task, result: InputResult) -> None:
        """The worker wrote ``task.tmp`` completely: commit it, or fail the input if it holds nothing."""
        error = result.error(task.media)
        if error:
            self.failed(task, error)
            return
        self.bdir.commit(task.name, task.tmp)
        seconds = time.monotonic() - self._t0.get(task.media.key, time.monotonic())
        self.bdir.record(task.media, state="done", error=None, frames=result.frames, persons=result.persons,
                         empty_frames=result.empty_frames, input_problem=result.input_problem,
                         exports=result.exports, seconds=round(seconds, 3))
        self.done.append(task.media)
        self._settle_bar(task, result.frames)
        if result.input_problem:
            self.bar.write(f"warning: {task.media.path}: {result.input_problem}")

    def failed(self, task: Task, error: str) -> None:
        self.bdir.discard(task.tmp)
        self.bdir.record(task.media, output=task.name, state="failed", error=error)
        self.failures.append((task.media, error))
        self._settle_bar(task, 0)
        self.bar.write(f"failed: {task.media.path}: {error}")

    def interrupted(self, task: Task) -> None:
        """The run stopped while ``task`` was in progress (its partial results are dropped)."""
        self.bdir.discard(task.tmp)
        self.bdir.record(task.media, output=task.name, state="interrupted",
                         error="interrupted: the batch stopped while this input was in progress")

    def _settle_bar(self, task: Task, frames: int) -> None:
        """Correct the bar's total once an input's real frame count is known."""
        seen = self._frames_seen.pop(task.media.key, 0)
        if frames > seen:
            self.bar.update(frames - seen)
        self.bar.total = max(self.bar.n, self.bar.total - task.frames_expected + max(frames, seen))
        self._postfix()
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
