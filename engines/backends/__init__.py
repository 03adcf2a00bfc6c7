"""Inference backends behind :class:`engines.backends.base.Engine`; optional ones import lazily.

``load_engine(model, kind, device, precision, **options)`` with ``kind``:

* ``"torch"`` -- PyTorch (``model`` = checkpoint path or size name);
* ``"onnx"`` -- ONNX Runtime (``model`` = an ``.onnx`` file, or a checkpoint: exported once and
  cached, see :func:`cached_onnx`);
* ``"tensorrt"`` -- a mocap ``.engine`` file (``model`` = the engine, or a checkpoint whose
  cached engine exists);
* ``"aoti"`` -- an AOTInductor ``.pt2`` package (``model`` = the package, or a checkpoint: compiled
  once for the device and precision and cached, see :func:`cached_aoti`);
* ``"auto"`` -- the fastest engine available for ``device`` (:func:`auto_kind`):

  - **CPU**: ONNX Runtime on the exactly-rewritten network (BN folded, deconvs as sub-pixel
    convs, fused attention), exported once per checkpoint and cached with ORT's saved
    optimised graph in ``<cache>/engines/``; if onnxruntime/onnxscript are missing or the
    export fails, PyTorch with the same rewrites (``optimize=True``).
  - **CUDA**: TensorRT if ``tensorrt`` is importable and a cached engine for the checkpoint
    exists (``mocap export --to engine`` builds it); else AOTInductor if a package for the
    checkpoint, CUDA and the precision (fp16 unless asked otherwise) is cached and was built with
    this torch, CUDA and GPU (``mocap export --to aoti`` or a first ``--engine aoti`` builds it);
    otherwise PyTorch fp16 (autocast). ``auto`` never builds (a build takes minutes); a cached
    package it cannot use is named with its reason in one warning. AOTInductor and PyTorch run
    with CUDA graphs.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional, Tuple, Union

from ..stop import raise_if_stopped
from .base import INPUT_NAME, OUTPUT_NAMES, Engine  # noqa: F401

log = logging.getLogger(__name__)

KINDS = ("auto", "torch", "onnx", "tensorrt", "aoti")


def engines_cache_dir() -> Path:
    from ..paths import cache_dir

    return cache_dir() / "engines"


def checkpoint_key(path: Union[str, Path]) -> str:
    """Cache key of a checkpoint file: its name, size and modification time (no full read)."""
    st = Path(path).stat()
    tag = hashlib.sha1(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{Path(path).name.split('.')[0]}-{tag}"


def cached_onnx_path(checkpoint: Union[str, Path], optimized: bool = True, cache: Optional[Path] = None) -> Path:
    """Where the cache keeps the ONNX export of ``checkpoint`` (it may not exist yet)."""
    from ..checkpoints import resolve_checkpoint

    cache = Path(cache) if cache else engines_cache_dir()
    return cache / f"{checkpoint_key(resolve_checkpoint(checkpoint))}{'-opt' if optimized else ''}.onnx"


def offline_choice(model: Union[str, Path], device: str = "cpu") -> Tuple[str, Optional[str], str]:
    """The engine ``mocap image`` / ``mocap video`` use when ``--engine`` is not given: the fastest
    one that is ready now (never a build of minutes) and keeps results within the tolerance
    docs/engines.md documents against the official forward. Returns (kind, precision, why):

    * CUDA: ``auto`` in fp32 -- a cached fp32 AOTInductor package, else PyTorch fp32 with the
      device path and CUDA graphs (fp16, the live default, is not used for results files);
    * CPU: ONNX Runtime when this checkpoint's CPU engine is cached (``mocap live`` or ``mocap
      export --to onnx`` built it; max abs difference <= 5e-5, 1.05-1.2x faster), else PyTorch.
    ``--engine torch`` always runs the network op for op like the official code (bit-exact)."""
    if device.startswith("cuda"):
        return "auto", "fp32", "GPU engine in fp32 (fp16 is for live streams)"
    try:
        ready = cached_onnx_path(model).is_file()
    except (OSError, ValueError):
        ready = False
    if ready and not _too_big_for_onnx(model):
        import importlib.util

        if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
            return "onnx", None, "the cached CPU engine (ONNX Runtime, within 5e-5 of the official forward)"
    return "torch", None, ("PyTorch, the official forward op for op (the faster CPU engine is used once "
                           "`mocap live` or `mocap export --to onnx` has built it)")


def cached_onnx(checkpoint: Union[str, Path], optimized: bool = True, cache: Optional[Path] = None) -> Path:
    """The cached ONNX export of ``checkpoint`` (exported and checked against PyTorch on first use)."""
    from ..checkpoints import load_network, resolve_checkpoint

    ckpt = resolve_checkpoint(checkpoint)
    path = cached_onnx_path(ckpt, optimized, cache)
    cache = path.parent
    if path.is_file():
        return path
    from ..atomic import atomic_path
    from ..export import check_onnx, torch_to_onnx
    from ..optimize import optimize_for_cpu, rewrites_label

    import contextlib
    import io
    import time

    from ..progress import ticking
    from ..quiet import verbose

    net = load_network(ckpt)
    log.info("building the CPU engine for %s (once, about a minute; cached in %s)", ckpt.name, cache)
    t0 = time.perf_counter()
    chatter = io.StringIO()  # the exporter prints its own progress: shown with -v only
    # a failed or interrupted export or check leaves nothing half-written behind
    with atomic_path(path, keep_suffix=True) as tmp:
        with contextlib.redirect_stdout(chatter) if not verbose() else contextlib.nullcontext():
            with ticking("step 1/2: exporting the network to ONNX"):
                torch_to_onnx(optimize_for_cpu(net) if optimized else net, tmp,
                              metadata={"checkpoint": ckpt.name,
                                        "rewrites": rewrites_label() if optimized else "none"})
            with ticking("step 2/2: checking the engine against PyTorch"):
                check_onnx(tmp, net)
    log.info("CPU engine built in %.0f s (%.0f MB)", time.perf_counter() - t0, path.stat().st_size / 1e6)
    return path


def cached_engine(checkpoint: Union[str, Path], cache: Optional[Path] = None) -> Path:
    from ..checkpoints import resolve_checkpoint

    cache = Path(cache) if cache else engines_cache_dir()
    return cache / f"{checkpoint_key(resolve_checkpoint(checkpoint))}.engine"


def cached_aoti_path(checkpoint: Union[str, Path], device: str, precision: str,
                     cache: Optional[Path] = None) -> Path:
    """Where the cache keeps the AOTInductor package of ``checkpoint`` for ``device`` and ``precision``."""
    from ..checkpoints import resolve_checkpoint

    cache = Path(cache) if cache else engines_cache_dir()
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return cache / f"{checkpoint_key(resolve_checkpoint(checkpoint))}-aoti-{kind}-{precision}.pt2"


def cached_aoti(checkpoint: Union[str, Path], device: str = "cpu", precision: str = "fp32",
                cache: Optional[Path] = None) -> Path:
    """The cached AOTInductor package of ``checkpoint``, compiled on first use and again when its
    build record no longer matches this machine (another torch, CUDA or GPU)."""
    from ..checkpoints import load_network, resolve_checkpoint
    from .aoti_backend import package_problem

    ckpt = resolve_checkpoint(checkpoint)
    path = cached_aoti_path(ckpt, device, precision, cache)
    problem = package_problem(path, device)
    if problem is None:
        return path
    from ..export import torch_to_aoti

    if path.is_file():
        log.warning("rebuilding the cached AOTInductor package: %s", problem)
    log.info("compiling the %s %s AOTInductor package for %s (once, minutes; cached in %s)",
             device, precision, ckpt.name, path.parent)
    return torch_to_aoti(load_network(ckpt), path, device, precision, metadata={"checkpoint": ckpt.name})


def _tensorrt_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def auto_kind(model: Union[str, Path], device: str = "cpu", precision: Optional[str] = None) -> str:
    """The backend ``kind="auto"`` picks for ``device`` (rule in the module docstring)."""
    if device.startswith("cuda"):
        if _tensorrt_importable() and _cuda_available():
            try:
                if str(model).endswith(".engine") or cached_engine(model).is_file():
                    return "tensorrt"
            except (OSError, ValueError):
                pass
        if _cuda_available() and _usable_aoti(model, precision or "fp16")[0] is not None:
            return "aoti"
        return "torch"
    import importlib.util

    if _too_big_for_onnx(model):
        return "torch"
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        return "onnx"
    return "torch"


def _usable_aoti(model: Union[str, Path], precision: str) -> Tuple[Optional[Path], Optional[str]]:
    """For ``auto`` on CUDA: (the AOTInductor package it can use, None), or (None, why the one that
    exists cannot be used), or (None, None) when there is none."""
    from .aoti_backend import package_problem

    try:
        path = Path(model) if str(model).endswith(".pt2") else cached_aoti_path(model, "cuda", precision)
    except (OSError, ValueError):
        return None, None
    if not path.is_file():
        return None, None
    problem = package_problem(path, "cuda")
    return (None, problem) if problem else (path, None)


#: A single-file ONNX model must stay under protobuf's 2 GiB limit (H32 fp32 weights are 2.6 GB).
ONNX_MAX_BYTES = 1_900_000_000


def _too_big_for_onnx(model: Union[str, Path]) -> bool:
    """True for checkpoints whose weights cannot go into one ONNX file (H32): auto then uses torch."""
    if str(model).endswith(".onnx"):
        return False
    try:
        from ..checkpoints import resolve_checkpoint

        return resolve_checkpoint(model).stat().st_size > ONNX_MAX_BYTES
    except (OSError, ValueError):
        return False


#: Options each backend accepts besides ``device`` and ``precision`` (one signature for all:
#: ``Backend(source, device, precision, **options)``); anything else is refused by name.
OPTIONS = {
    "torch": ("fused_attention", "optimize", "cuda_graph", "compile", "threads"),
    "onnx": ("threads", "tensorrt_ep", "spinning", "optimized_path"),
    "tensorrt": (),
    "aoti": ("cuda_graph",),
}


def _check_options(kind: str, options: dict) -> None:
    unknown = sorted(set(options) - set(OPTIONS[kind]))
    if unknown:
        allowed = ", ".join(OPTIONS[kind]) or "none"
        raise ValueError(f"the {kind} engine has no option {', '.join(unknown)} (its options: {allowed})")


def load_engine(model: Union[str, Path], kind: str = "torch", device: str = "cpu",
                precision: Optional[str] = None, **options) -> Engine:
    """Open a model with a backend (see the module docstring for ``kind``).

    Every backend is built the same way, ``Backend(source, device, precision, **options)``:
    ``precision`` None means the backend's own (torch fp32; ONNX and TensorRT: the file's),
    a precision the file was not built with is an error, and an option the backend does not
    have is an error (:data:`OPTIONS`), never silently dropped. ``kind="auto"`` passes only
    the options of the backend it picks.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown engine '{kind}' (choose from {', '.join(KINDS)})")
    if kind == "auto":
        return _load_auto(model, device, precision, options)
    _check_options(kind, options)
    if kind == "torch":
        from ..checkpoints import load_network, resolve_checkpoint
        from .torch_backend import TorchEngine

        net = load_network(resolve_checkpoint(model))
        return TorchEngine(net, device, precision or "fp32", **options)
    if kind == "onnx":
        from .onnx_backend import OnnxEngine

        path = Path(model)
        if path.suffix != ".onnx":
            path = cached_onnx(model)
        if "optimized_path" not in options and str(path).startswith(str(engines_cache_dir())):
            options = dict(options, optimized_path=path.with_name(path.stem + ".ort.onnx"))
        return OnnxEngine(path, device, precision, **options)
    if kind == "aoti":
        from .aoti_backend import AotiEngine

        options.setdefault("cuda_graph", device.startswith("cuda"))  # on CUDA it replays graphs unless told not to
        if str(model).endswith(".pt2"):
            return AotiEngine(model, device, precision, **options)
        precision = precision or ("fp16" if device.startswith("cuda") else "fp32")
        if device.startswith("cuda") and not _cuda_available():
            raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA device "
                               "(CPU build of torch, or no driver). Use --device cpu.")
        path = cached_aoti(model, device, precision)
        try:
            return AotiEngine(path, device, precision, **options)
        except ValueError as exc:  # the cache's own package does not load (cut by a killed build?): build again
            log.warning("%s; compiling it again", exc)
            path.unlink(missing_ok=True)
            return AotiEngine(cached_aoti(model, device, precision), device, precision, **options)
    from .tensorrt_backend import TensorRTEngine

    path = Path(model)
    if path.suffix != ".engine":
        path = cached_engine(model)
        if not path.is_file():
            raise FileNotFoundError(f"no TensorRT engine for {model} at {path}; build one with "
                                    f"`mocap export --checkpoint {model} --to engine`")
    return TensorRTEngine(path, device, precision)


def _load_auto(model, device: str, precision: Optional[str], options: dict) -> Engine:
    """``kind="auto"``: the backend :func:`auto_kind` picks, given the options it understands."""
    def own(kind: str) -> dict:
        return {k: v for k, v in options.items() if k in OPTIONS[kind]}

    unknown = sorted(set(options) - set(OPTIONS["torch"]) - set(OPTIONS["onnx"]))
    if unknown:
        raise ValueError(f"no engine has the option {', '.join(unknown)}")
    chosen = auto_kind(model, device, precision)
    if chosen == "onnx" and precision in (None, "fp32"):
        try:
            return load_engine(model, "onnx", device, precision, **own("onnx"))
        except Exception as exc:  # export/runtime trouble must not stop the live pipeline ...
            raise_if_stopped()  # ... but a Ctrl-C that a library turned into an error must stop it
            log.warning("ONNX Runtime engine unavailable (%s: %s); using optimised PyTorch",
                        type(exc).__name__, exc)
    if chosen == "tensorrt":
        return load_engine(model, "tensorrt", device, precision)
    torch_options = own("torch")
    if device.startswith("cuda"):
        package, problem = _usable_aoti(model, precision or "fp16") if _cuda_available() else (None, None)
        if package is not None and chosen == "aoti":
            from .aoti_backend import AotiEngine

            try:
                return AotiEngine(package, device, precision or "fp16", cuda_graph=torch_options.get("cuda_graph", True))
            except Exception as exc:  # a package that does not load costs speed, never the session
                raise_if_stopped()
                problem = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"  # one line
        if problem:
            log.warning("AOTInductor package not used (%s); using PyTorch", problem)
        torch_options.setdefault("cuda_graph", True)
        return load_engine(model, "torch", device, precision or "fp16", **torch_options)
    torch_options.setdefault("optimize", True)
    return load_engine(model, "torch", device, precision, **torch_options)
