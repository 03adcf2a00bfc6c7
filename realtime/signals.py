"""SIGINT, SIGTERM and SIGHUP as a stop request, the same for every command.

While the program starts up (:func:`install`), a stop signal raises
:class:`engines.stop.StopRequested` (a KeyboardInterrupt) in the main thread, which
interrupts whatever is loading; the process-wide flag of :mod:`engines.stop` is set too,
so fallbacks re-raise instead of carrying on. Inside :func:`deliver_to` (the run loop)
a signal only sets an event: the loop winds down, writes its summary and finalises
its files. A third signal during the wind-down raises, for a user who insists.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

from engines.stop import StopRequested, clear_stop, request_stop

#: The signals that stop a command cleanly (SIGHUP: the terminal went away).
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
#: Signals during a wind-down after which the handler raises instead of waiting.
FORCE_AFTER = 3

_previous: Dict[int, object] = {}
_event: Optional[threading.Event] = None
_count = 0


def _handler(signum, frame) -> None:
    global _count
    request_stop(signum)
    _count += 1
    event = _event
    if event is not None and _count < FORCE_AFTER:
        event.set()
        return
    raise StopRequested(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """Route the stop signals to :func:`_handler` (main thread only; elsewhere a no-op)."""
    global _count, _event
    if not _in_main_thread():
        return
    clear_stop()
    _count, _event = 0, None
    for s in STOP_SIGNALS:
        old = signal.getsignal(s)
        if old == signal.SIG_IGN:  # ignored on purpose (``nohup`` ignores SIGHUP): keep it that way,
            continue  # as Python itself leaves an ignored SIGINT alone
        if s not in _previous:
            _previous[s] = old
        signal.signal(s, _handler)


def uninstall() -> None:
    """Put back the handlers that were there before :func:`install`."""
    global _event
    if not _in_main_thread():
        return
    _event = None
    for s, old in list(_previous.items()):
        signal.signal(s, old if old is not None else signal.SIG_DFL)
        del _previous[s]


@contextmanager
def deliver_to(event: threading.Event) -> Iterator[threading.Event]:
    """Within the block, a stop signal sets ``event`` instead of raising (a signal that
    came before the block sets it at once)."""
    global _event
    from engines.stop import stop_requested

    previous = _event
    _event = event
    if stop_requested() is not None:
        event.set()
    try:
        yield event
    finally:
        _event = previous
