"""Where the tool keeps downloaded weights and looks for body models."""
from __future__ import annotations

import os
from pathlib import Path

#: Environment variables a user can set instead of passing flags.
ENV_CACHE = "MOCAP_CACHE_DIR"
ENV_BODY_MODELS = "MOCAP_BODY_MODELS"


def cache_dir() -> Path:
    """Root of the tool's cache: ``$MOCAP_CACHE_DIR`` or ``~/.cache/smplerx-mocap``."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "smplerx-mocap"


def weights_dir() -> Path:
    return cache_dir() / "weights"


def default_body_models_dir() -> Path:
    return cache_dir() / "body_models"
