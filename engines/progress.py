"""A heartbeat for long, silent steps (building an engine: a minute or more on a CPU): says what
is being done, then every few seconds how long it has taken, and at the end the elapsed time, so a
first run never looks hung."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable, Iterator, Optional

log = logging.getLogger("mocap")


@contextlib.contextmanager
def ticking(what: str, every: float = 10.0, say: Optional[Callable[[str], None]] = None) -> Iterator[None]:
    """Announce ``what``, repeat ``what ... N s`` every ``every`` seconds while the block runs,
    then ``what: done in N s`` (or ``failed after N s``). ``say``: where the lines go (default:
    the ``mocap`` logger at INFO, i.e. stderr)."""
    say = say or log.info
    t0 = time.perf_counter()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            say(f"{what} ... {time.perf_counter() - t0:.0f} s")

    say(f"{what} ...")
    thread = threading.Thread(target=beat, name="progress", daemon=True)
    thread.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        thread.join(timeout=1.0)
        took = time.perf_counter() - t0
        say(f"{what}: done in {took:.0f} s" if ok else f"{what}: failed after {took:.0f} s")
