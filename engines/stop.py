"""The process-wide stop request: the command line's signal handlers set it (SIGINT, SIGTERM,
SIGHUP); code that falls back to a slower path when something fails checks it first, so a
Ctrl-C that a library turned into another exception (an ImportError half-way through an
import, say) stops the program instead of switching engines or renderers."""
from __future__ import annotations

import signal
import threading
from typing import Optional

_lock = threading.Lock()
_signum: Optional[int] = None


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopRequested(KeyboardInterrupt):
    """Raised when a stop signal arrives while the program is starting up."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(f"stopped by {signal_name(signum)}")
        self.signum = signum


def request_stop(signum: int = signal.SIGINT) -> None:
    """Record that the program was asked to stop (the first signal is kept)."""
    global _signum
    with _lock:
        if _signum is None:
            _signum = int(signum)


def stop_requested() -> Optional[int]:
    """The signal that asked the program to stop, or None."""
    return _signum


def clear_stop() -> None:
    global _signum
    with _lock:
        _signum = None


def raise_if_stopped() -> None:
    """Raise :class:`StopRequested` when a stop was requested (call before any fallback)."""
    signum = _signum
    if signum is not None:
        raise StopRequested(signum)
