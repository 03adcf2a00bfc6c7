"""A real X display for tests: an Xvfb server on a free display number (skipped when Xvfb is
missing; CI installs it, see .ci/run)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


@contextmanager
def xvfb(size: str = "1280x720x24") -> Iterator[str]:
    """Start Xvfb, yield its ``DISPLAY`` value (``:N``), stop it."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    for n in range(90, 130):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            break
    proc = subprocess.Popen([exe, f":{n}", "-screen", "0", size, "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                break
            if proc.poll() is not None:
                pytest.skip(f"Xvfb :{n} did not start")
            time.sleep(0.05)
        yield f":{n}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def env_with_display(display: str) -> dict:
    env = dict(os.environ, DISPLAY=display, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env.pop("WAYLAND_DISPLAY", None)
    return env
