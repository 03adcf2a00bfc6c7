"""What this machine has for the tool, checked in seconds: ``mocap doctor`` and ``mocap cache``.

Every check returns a :class:`Check` (status ``ok`` / ``warn`` / ``fail``, what was found, and
how to fix it). ``fail`` means ``mocap live`` cannot run as configured; ``warn`` means something
optional is missing (a camera, CUDA, a display for windows).
"""
from __future__ import annotations

import importlib
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

#: Packages whose versions the doctor reports (import name, shown name).
PACKAGES = (("torch", "torch"), ("numpy", "numpy"), ("cv2", "opencv"), ("mediapipe", "mediapipe"),
            ("smplx", "smplx"), ("open3d", "open3d"), ("onnxruntime", "onnxruntime"), ("zmq", "pyzmq"),
            ("pythonosc", "python-osc"), ("av", "av"))

REGISTRATION_URL = "https://smpl-x.is.tue.mpg.de"


@dataclass
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str = ""


def _version(module: str) -> Optional[str]:
    try:
        mod = importlib.import_module(module)
    except Exception:  # broken installs report as missing; the doctor must not crash on them
        return None
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version({"pythonosc": "python-osc", "zmq": "pyzmq"}.get(module, module))
        except Exception:
            version = "installed"
    return str(version)


def check_packages() -> List[Check]:
    out = []
    for module, shown in PACKAGES:
        v = _version(module)
        required = shown not in ("open3d", "onnxruntime", "av")
        if v is None:
            out.append(Check(f"package {shown}", "fail" if required else "warn", "not importable",
                             "reinstall: bash install.sh"))
        else:
            out.append(Check(f"package {shown}", "ok", v))
    return out


def check_weights(checkpoint: str = "s32") -> List[Check]:
    from engines.checkpoints import FILES, CheckpointError, resolve_checkpoint
    from engines.paths import weights_dir

    out = []
    try:
        path = resolve_checkpoint(checkpoint)
        out.append(Check(f"checkpoint {checkpoint}", "ok", f"{path} ({human_size(path.stat().st_size)})"))
    except (CheckpointError, OSError) as exc:
        name = checkpoint if checkpoint in FILES else "s32"
        out.append(Check(f"checkpoint {checkpoint}", "fail", str(exc).split("\n")[0],
                         f"mocap weights download {name}"))
    present = [n for n, f in FILES.items() if (weights_dir() / f).is_file()]
    out.append(Check("weights cache", "ok", f"{weights_dir()}: {', '.join(present) or 'no checkpoints yet'}"))
    return out


def check_body_model(body_models: Optional[str] = None) -> Check:
    from engines.body_model import BodyModelNotFound, find_smplx_file

    try:
        path = find_smplx_file(body_models)
    except BodyModelNotFound:
        return Check("SMPL-X body model", "fail", "SMPLX_NEUTRAL.npz not found",
                     f"register (free) at {REGISTRATION_URL}, download 'SMPL-X v1.1 (NPZ+PKL)' and put "
                     "SMPLX_NEUTRAL.npz at DIR/smplx/ (then --body-models DIR or MOCAP_BODY_MODELS=DIR)")
    try:
        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table")
                       if k not in data.files]
    except Exception as exc:  # not a zip, truncated...
        return Check("SMPL-X body model", "fail", f"{path} is not a readable SMPL-X npz ({type(exc).__name__})",
                     f"download SMPL-X v1.1 again from {REGISTRATION_URL}")
    if missing:
        return Check("SMPL-X body model", "fail", f"{path} lacks {', '.join(missing)}",
                     f"download SMPL-X v1.1 again from {REGISTRATION_URL}")
    return Check("SMPL-X body model", "ok", str(path))


def check_cameras(indices: Sequence[int] = (0, 1, 2)) -> Check:
    import cv2

    found = []
    # cv2.setLogLevel/getLogLevel are the pip wheels' public names (cv2.utils.logging is absent there);
    # 0 is LOG_LEVEL_SILENT: "can't open camera" is our answer, not OpenCV's warnings.
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)
    try:
        for i in indices:
            cap = cv2.VideoCapture(i)
            try:
                if cap.isOpened() and cap.read()[0]:
                    found.append(i)
            finally:
                cap.release()
    finally:
        cv2.setLogLevel(level)
    if found:
        return Check("cameras", "ok", "opened and read: " + ", ".join(f"--source {i}" for i in found))
    return Check("cameras", "warn", f"none of the camera indices {list(indices)} opened",
                 "plug a camera in, or run on a video file: mocap live --source FILE.mp4")


def check_display() -> Check:
    from viewers.preview import display_available

    if display_available():
        return Check("display", "ok", os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or "")
    return Check("display", "warn", "no $DISPLAY or $WAYLAND_DISPLAY: no preview or 3-D window",
                 "run with --viewer none (streams and recordings work without a display)")


def check_accelerators() -> List[Check]:
    out = []
    try:
        import torch

        if torch.cuda.is_available():
            out.append(Check("CUDA", "ok", f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"))
        else:
            out.append(Check("CUDA", "warn", f"not available to torch {torch.__version__}: the CPU engine is used",
                             "a CUDA build of torch and an NVIDIA driver give --device cuda"))
    except Exception as exc:
        out.append(Check("CUDA", "warn", f"torch failed to load ({exc})"))
    try:
        import onnxruntime as ort

        out.append(Check("ONNX Runtime providers", "ok", ", ".join(ort.get_available_providers())))
    except Exception:
        out.append(Check("ONNX Runtime providers", "warn", "onnxruntime not importable: PyTorch is used instead"))
    spec = importlib.util.find_spec("tensorrt")
    out.append(Check("TensorRT", "ok" if spec else "warn", "importable" if spec else "not installed",
                     "" if spec else "optional: pip install .[tensorrt] on an NVIDIA machine"))
    return out


def check_port(endpoint: str = "tcp://127.0.0.1:5555") -> Check:
    """Whether the ZMQ endpoint can be bound now (someone else may hold it)."""
    host, _, port = endpoint.replace("tcp://", "").rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host == "*":
        host = "0.0.0.0"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, int(port)))
    except (OSError, ValueError) as exc:
        return Check(f"ZMQ port {endpoint}", "warn", f"cannot bind: {exc}",
                     "another program holds it: pass --zmq tcp://127.0.0.1:OTHERPORT, or --zmq none")
    return Check(f"ZMQ port {endpoint}", "ok", "free")


def cache_entries() -> Dict[str, Path]:
    from engines.paths import cache_dir

    root = cache_dir()
    return {"weights": root / "weights", "engines": root / "engines", "body_models": root / "body_models"}


def folder_size(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


def check_caches() -> Check:
    parts = [f"{name} {human_size(folder_size(path))}" for name, path in cache_entries().items()]
    from engines.paths import cache_dir

    return Check("caches", "ok", f"{cache_dir()}: " + ", ".join(parts), "mocap cache list / mocap cache clear")


def clear_cache(which: Sequence[str]) -> Dict[str, int]:
    """Remove the named cache folders; returns the bytes freed per folder."""
    freed = {}
    entries = cache_entries()
    for name in which:
        path = entries[name]
        freed[name] = folder_size(path)
        if path.exists():
            shutil.rmtree(path)
    return freed


def run_all(checkpoint: str = "s32", body_models: Optional[str] = None, zmq: str = "tcp://127.0.0.1:5555",
            cameras: bool = True) -> List[Check]:
    checks = check_packages()
    checks += check_weights(checkpoint)
    checks.append(check_body_model(body_models))
    if cameras:
        checks.append(check_cameras())
    checks.append(check_display())
    checks += check_accelerators()
    checks.append(check_port(zmq))
    checks.append(check_caches())
    return checks
