"""A thread-safe single-slot mailbox between one producer and its consumers.

Live stages want the *newest* item, not a queue of stale ones: ``put`` overwrites
an unread item and counts it in :attr:`LatestSlot.dropped`. Lossless readers
(files read as fast as possible) use ``put(item, block=True)``, which waits until
the consumer has taken the previous item instead of overwriting it.
"""
from __future__ import annotations

import threading
import time
from typing import Generic, Optional, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one item; ``put`` replaces, ``get`` takes.

    After :meth:`close`, ``put`` refuses new items and returns False, and ``get``
    still hands out an item that was stored before closing (so the last frame
    of a file is not lost), then returns None without waiting. Waiters on
    either side are woken by ``close``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._item: Optional[T] = None
        self._full = False
        self._closed = False
        #: Items overwritten before anyone read them.
        self.dropped = 0
        #: Items accepted by ``put`` (including later-dropped ones).
        self.put_count = 0
        #: Items handed out by ``get``.
        self.get_count = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def full(self) -> bool:
        """True while an unread item is waiting."""
        with self._cond:
            return self._full

    def put(self, item: T, block: bool = False, timeout: Optional[float] = None) -> bool:
        """Store ``item``; returns True if stored, False if closed (or timed out).

        ``block=False`` (latest-value semantics): an unread item is replaced and
        counted as dropped. ``block=True`` waits until the slot is empty (or
        ``timeout`` seconds pass, or the slot is closed) and never drops.
        """
        with self._cond:
            if block:
                deadline = None if timeout is None else time.monotonic() + timeout
                while self._full and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            if self._closed:
                return False
            if self._full:
                self.dropped += 1
            self._item = item
            self._full = True
            self.put_count += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: Optional[float] = None) -> Optional[T]:
        """Take the stored item, waiting up to ``timeout`` seconds (None: forever).

        Returns None on timeout, or when the slot is closed and empty.
        """
        with self._cond:
            if not self._full and not self._closed:
                deadline = None if timeout is None else time.monotonic() + timeout
                while not self._full and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._cond.wait(remaining)
            if not self._full:
                return None
            item = self._item
            self._item = None
            self._full = False
            self.get_count += 1
            self._cond.notify_all()  # a blocked put may proceed
            return item

    def clear(self) -> None:
        """Discard an unread item without counting it as dropped."""
        with self._cond:
            self._item = None
            self._full = False
            self._cond.notify_all()

    def close(self) -> None:
        """Refuse further puts and wake every waiter. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
