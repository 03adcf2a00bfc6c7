"""One engine, one job at a time, a bounded line of waiting jobs.

Jobs run on a single long-lived worker thread, so the models and the offscreen renderer (whose GL
context is bound to the thread that made it) live on one thread for the whole server. A job that
cannot get in line (``max_waiting`` jobs already wait) is refused with :class:`Busy`; a waiting
job knows how many are ahead of it (:meth:`Job.ahead`), and a stopped job that has not started
leaves the line without running.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional

from engines.errors import UserError


class Busy(UserError):
    """The line of waiting jobs is full."""


class Job:
    """A function to run on the engine thread: ``fn(job)``; its return value or exception
    is kept. ``stop`` asks a running job to end early (the job's code checks it)."""

    def __init__(self, fn: Callable[["Job"], Any], owner: Any = None):
        self.fn = fn
        self.owner = owner
        self.stop = threading.Event()
        self.done = threading.Event()
        self.started = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        #: (fraction 0..1 or None, text): what the job says it is doing.
        self.progress = (None, "")
        #: Called on the engine thread when the job ends, whether it ran or not (before ``done`` is set).
        self.on_done: Optional[Callable[["Job"], None]] = None
        self._line: Optional["JobLine"] = None

    def ahead(self) -> int:
        """Jobs that will run before this one (0 once it runs)."""
        return 0 if self._line is None else self._line.ahead(self)

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self.done.wait(timeout)


class JobLine:
    """The engine thread and its line: :meth:`submit` a :class:`Job`, watch ``job.done``."""

    def __init__(self, max_waiting: int = 4, name: str = "mocap-web-engine"):
        if max_waiting < 0:
            raise ValueError("max_waiting must be >= 0")
        self.max_waiting = int(max_waiting)
        self._cond = threading.Condition()
        self._waiting: List[Job] = []
        self._running: Optional[Job] = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Job:
        """Put ``job`` in line; :class:`Busy` (with the number ahead) when the line is full."""
        with self._cond:
            if self._closed:
                raise Busy("the server is shutting down: try again later")
            busy = self._running is not None or self._waiting
            if busy and len(self._waiting) >= self.max_waiting:
                ahead = len(self._waiting) + (self._running is not None)
                raise Busy(f"busy: {ahead} job(s) ahead and the line is full "
                           f"({self.max_waiting} waiting at most); try again in a minute")
            job._line = self
            self._waiting.append(job)
            self._cond.notify_all()
        return job

    def ahead(self, job: Job) -> int:
        with self._cond:
            if job is self._running or job.done.is_set():
                return 0
            try:
                index = self._waiting.index(job)
            except ValueError:
                return 0
            return index + (self._running is not None)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    return
                job = self._waiting.pop(0)
                self._running = job
            try:
                if not job.stop.is_set():  # stopped while waiting: never runs
                    job.started.set()
                    job.result = job.fn(job)
            except BaseException as exc:  # noqa: BLE001 -- handed to whoever waits for the job
                job.error = exc
            finally:
                if job.on_done is not None:
                    try:
                        job.on_done(job)
                    except Exception:  # noqa: BLE001 -- clean-up trouble must not stop the line
                        pass
                with self._cond:
                    self._running = None
                    job.done.set()
                    self._cond.notify_all()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the engine thread ahead of the line's bound (for cleanup) and return its result."""
        job = Job(lambda _job: fn())
        with self._cond:
            if self._closed:
                raise Busy("the server is shutting down")
            job._line = self
            self._waiting.append(job)
            self._cond.notify_all()
        job.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def close(self, timeout: Optional[float] = 30.0) -> None:
        """Stop the waiting jobs, let the running one end, and end the thread."""
        with self._cond:
            self._closed = True
            for job in self._waiting:
                job.stop.set()
            if self._running is not None:
                self._running.stop.set()
            self._cond.notify_all()
        self._thread.join(timeout)
