"""When the person detector runs, and handing what it finds to the tracker.

The tracker (:class:`engines.tracking.PersonTracker`) takes detections and never runs the
detector; :class:`DetectionSchedule` owns the detector and decides, frame by frame:

* **at once** when the tracker needs it (:attr:`PersonTracker.needs_detection`: nobody tracked,
  someone lost), the frame waiting for the pass;
* **every** ``redetect_every`` frames otherwise (newcomers are found while fewer than
  ``max_people`` are tracked, joint-followed tracks are confirmed; 0 = only when needed). With
  ``background=True`` (live) these periodic passes run on a worker thread while tracking goes
  on, so that a slow multi-person pass does not stall the frames; the tracker gets the
  detections on the first frame after the pass came back. Passes the tracker needs at once
  still wait. All detector calls then go through the worker (the detector is not thread-safe).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from .detector import Detection
from .tracking import PersonTracker, Target
from .types import Person


class DetectionSchedule:
    """Runs ``detector`` for ``tracker`` (see the module docstring for when).

    Per frame: ``targets = schedule.update(image, t)``, predict the targets' boxes, then
    ``ids = schedule.identify(targets, people, t, image_size)`` ({box index: track id}, see
    :meth:`PersonTracker.identify`).
    """

    def __init__(self, detector, tracker: PersonTracker, redetect_every: int = 0, background: bool = False):
        if redetect_every < 0:
            raise ValueError("redetect_every must be >= 0")
        self.detector = detector
        self.tracker = tracker
        self.redetect_every = int(redetect_every)
        self.detector_calls = 0
        self._since_detect = 0
        self._worker = None
        self._pending = None
        if background:
            from concurrent.futures import ThreadPoolExecutor

            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector")

    def close(self) -> None:
        """Stop the background detector thread (if any); detection goes on synchronously."""
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
            self._worker = None
            self._pending = None

    @property
    def alive_ids(self) -> List[int]:
        """The tracker's ids followed now or still within their grace period."""
        return self.tracker.alive_ids

    def update(self, image: np.ndarray, t: float) -> List[Target]:
        """The people to predict in this frame (by track id), [] when nobody is found."""
        self._since_detect += 1
        if image is None or np.asarray(image).ndim < 2 or np.asarray(image).size == 0:
            self.tracker.skip(t)
            return []
        due = self.redetect_every > 0 and self._since_detect >= self.redetect_every
        found = None
        if self._pending is not None and self._pending.done():  # a background pass came back
            found, self._pending = self._pending.result(), None
        elif self.tracker.needs_detection:
            self._wait_for_pending()
            found = self._detect_now(image)
        elif due and self._worker is not None:
            if self._pending is None:
                self._count_pass()
                self._pending = self._worker.submit(self.detector.detect, np.array(image, copy=True))
        elif due:
            found = self._detect_now(image)
        return self.tracker.step(t, found)

    def identify(self, targets: Sequence[Target], people: Mapping[int, Person], t: float,
                 image_size: Tuple[int, int]) -> Dict[int, int]:
        """{box index: track id} for this frame's predicted people (:meth:`PersonTracker.identify`)."""
        return self.tracker.identify(targets, people, t, image_size)

    def _count_pass(self) -> None:
        self.detector_calls += 1
        self._since_detect = 0

    def _detect_now(self, image: np.ndarray) -> List[Detection]:
        self._count_pass()
        if self._worker is not None:  # the detector belongs to the worker thread
            return self._worker.submit(self.detector.detect, image).result()
        return self.detector.detect(image)

    def _wait_for_pending(self) -> None:
        """An urgent pass is due: a background one still running is left to finish and dropped."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None
