"""Official SMPLer-X checkpoints: resolve, download, recognise and load strictly.

The released files (``smpler_x_{s32,b32,l32,h32}.pth.tar``) hold
``{'network': state_dict, 'optimizer': ..., 'epoch': ...}`` saved from a
DataParallel model (keys start with ``module.``), possibly with the older names
``backbone`` / ``body_rotation_net`` / ``hand_rotation_net``. The official loader
renames and loads with ``strict=False``, silently accepting a wrong file; we
rename with the rules below and then load strictly, naming every problem.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

import torch

from .errors import CheckpointError
from .paths import weights_dir
from .smplerx import VARIANTS, SMPLerX, Variant

log = logging.getLogger(__name__)

HF_REPO = "caizhongang/SMPLer-X"
ENV_HF_ENDPOINT = "MOCAP_HF_ENDPOINT"  # e.g. a mirror; default https://huggingface.co

#: Downloadable files by name. ``h32_correct`` is the H32 re-release with fixed camera estimation.
FILES = {name: v.filename for name, v in VARIANTS.items()}
FILES["h32_correct"] = "smpler_x_h32_correct.pth.tar"

#: Rename rules applied in order to every key (after stripping ``module.``): (pattern, replacement).
RENAME_RULES: Tuple[Tuple[str, str], ...] = (
    (r"^backbone\.", "encoder."),
    (r"^body_rotation_net\.", "body_regressor."),
    (r"^hand_rotation_net\.", "hand_regressor."),
)
#: Keys dropped before loading: SMPL-X layer buffers come from the body-model file.
IGNORED_KEY_PREFIXES = ("smplx_layer.",)
#: Top-level entries of the checkpoint that are not the network.
IGNORED_TOP_LEVEL = ("optimizer", "epoch")




# --------------------------------------------------------------------------- resolve
def resolve_checkpoint(spec: Union[str, Path]) -> Path:
    """A path, or a size name (s32, b32, l32, h32, h32_correct) looked up in the weights cache."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    name = str(spec).lower()
    if name in FILES:
        cached = weights_dir() / FILES[name]
        if cached.is_file():
            return cached
        raise CheckpointError(
            f"checkpoint '{name}' is not downloaded yet (expected {cached}). "
            f"Run `mocap weights download {name}` first, or pass --checkpoint PATH.")
    if path.suffix or os.sep in str(spec):
        raise CheckpointError(f"checkpoint file not found: {path}")
    raise CheckpointError(
        f"unknown checkpoint '{spec}': give a file path or one of {', '.join(FILES)}")


def cached_checkpoints() -> Dict[str, Path]:
    """The official checkpoints present in the weights cache, by size name (what ``mocap weights
    list`` shows as downloaded), in :data:`FILES` order."""
    root = weights_dir()
    return {name: root / fname for name, fname in FILES.items() if (root / fname).is_file()}


# --------------------------------------------------------------------------- load
def _unwrap(obj) -> Dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "network" in obj and isinstance(obj["network"], dict):
        return obj["network"]
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return obj["state_dict"]
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"no network weights found in the checkpoint (top-level entries: {keys}); "
                          "expected an official SMPLer-X .pth.tar with a 'network' entry")


def convert_state_dict(raw: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official key layout -> ours: strip ``module.``, apply :data:`RENAME_RULES`, drop ignored keys."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        k = key[len("module."):] if key.startswith("module.") else key
        if k.startswith(IGNORED_KEY_PREFIXES):
            continue
        for pattern, repl in RENAME_RULES:
            k = re.sub(pattern, repl, k)
        if k in out:
            raise CheckpointError(f"two checkpoint keys map to '{k}' (both naming schemes present?)")
        out[k] = value
    return out


def detect_variant(state: Dict[str, torch.Tensor]) -> Variant:
    """Recognise S32/B32/L32/H32 from the encoder width and depth."""
    pos = state.get("encoder.pos_embed")
    if pos is None or pos.ndim != 3:
        raise CheckpointError("not an SMPLer-X checkpoint: 'encoder.pos_embed' (or 'backbone.pos_embed') is missing")
    dim = int(pos.shape[-1])
    depth = len({m.group(1) for k in state for m in [re.match(r"encoder\.blocks\.(\d+)\.", k)] if m})
    for v in VARIANTS.values():
        if v.embed_dim == dim and v.depth == depth:
            return v
    raise CheckpointError(f"unknown SMPLer-X size: encoder width {dim}, depth {depth} "
                          f"(known: {', '.join(f'{v.name}={v.embed_dim}x{v.depth}' for v in VARIANTS.values())})")


def _fmt(keys: Iterable[str], limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_network(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> SMPLerX:
    """Load an official (or our own) checkpoint into a fresh :class:`SMPLerX`, strictly."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.__class__.__name__}: {exc}. "
                              "Is the download complete? Re-run `mocap weights download`.") from exc
    state = convert_state_dict(_unwrap(obj))
    variant = detect_variant(state)
    model = SMPLerX(variant)
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    mismatched = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    problems: List[str] = []
    if missing:
        problems.append(f"missing keys: {_fmt(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_fmt(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_fmt(mismatched)}")
    if problems:
        raise CheckpointError(f"{path} does not match SMPLer-X-{variant.name.upper()}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def write_random_checkpoint(path: Union[str, Path], variant: str = "s32", naming: str = "new",
                            module_prefix: bool = True, seed: int = 0, with_optimizer: bool = True,
                            extra: Optional[Dict[str, torch.Tensor]] = None) -> Path:
    """A random-weight checkpoint in the official layout (for tests and benchmarks only).

    ``naming='new'`` uses ``encoder``/``*_regressor`` keys, ``'old'`` uses
    ``backbone``/``*_rotation_net``. BatchNorm statistics are randomised too, so
    that eval-mode BN is exercised.
    """
    gen = torch.Generator().manual_seed(seed)
    model = SMPLerX(variant)
    state = {}
    for k, t in model.state_dict().items():
        if t.dtype == torch.long:
            state[k] = torch.tensor(int(torch.randint(0, 1000, (1,), generator=gen)))
        elif k.endswith("running_var"):
            state[k] = torch.rand(t.shape, generator=gen) + 0.5
        elif k.endswith("weight") and t.ndim == 1:  # norm scales
            state[k] = 1.0 + 0.1 * torch.randn(t.shape, generator=gen)
        else:
            fan_in = t[0].numel() if t.ndim > 1 else 1
            state[k] = torch.randn(t.shape, generator=gen) * (0.02 if t.ndim == 1 else fan_in ** -0.5)
    if naming == "old":
        state = {re.sub(r"^encoder\.", "backbone.", re.sub(r"^body_regressor\.", "body_rotation_net.",
                 re.sub(r"^hand_regressor\.", "hand_rotation_net.", k))): v for k, v in state.items()}
    elif naming != "new":
        raise ValueError("naming must be 'new' or 'old'")
    if extra:
        state.update(extra)
    if module_prefix:
        state = {"module." + k: v for k, v in state.items()}
    ckpt = {"network": state, "epoch": 9}
    if with_optimizer:
        ckpt["optimizer"] = {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, str(path))
    return path


# --------------------------------------------------------------------------- download
def hf_url(filename: str) -> str:
    base = os.environ.get(ENV_HF_ENDPOINT, "https://huggingface.co").rstrip("/")
    return f"{base}/{HF_REPO}/resolve/main/{filename}?download=true"


def _remote_info(url: str, timeout: float) -> Tuple[Optional[int], Optional[str]]:
    """(size, sha256) from the hub's headers when it publishes them (LFS files do)."""
    req = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            headers = resp.headers
    except urllib.error.HTTPError as exc:
        exc.close()  # release the connection (the error object holds it open)
        if exc.code == 405:  # HEAD not allowed: nothing known (the error's Content-Length is not the file's)
            return None, None
        if exc.code >= 400:
            raise
        headers = exc.headers
    size = headers.get("X-Linked-Size") or headers.get("Content-Length")
    etag = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").strip('"').removeprefix("W/").strip('"')
    sha = etag if re.fullmatch(r"[0-9a-f]{64}", etag or "") else None
    return (int(size) if size and size.isdigit() else None), sha


def download(name: str, dest_dir: Optional[Path] = None, force: bool = False, timeout: float = 30.0,
             progress: bool = True) -> Path:
    """Download ``smpler_x_<name>.pth.tar`` from the HuggingFace repo into the cache.

    Resumes a partial ``.part`` file, checks the size (and the SHA-256 the hub
    publishes for LFS files), then checks that the file is a loadable SMPLer-X
    checkpoint of the expected size before moving it into place.
    """
    name = name.lower()
    if name not in FILES:
        raise CheckpointError(f"unknown model '{name}': choose one of {', '.join(FILES)}")
    dest_dir = Path(dest_dir) if dest_dir else weights_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / FILES[name]
    if target.is_file() and not force:
        log.info("%s already present", target)
        return target
    url = hf_url(FILES[name])
    try:
        size, sha = _remote_info(url, timeout)
    except (urllib.error.URLError, OSError) as exc:
        raise CheckpointError(f"cannot reach {url}: {exc}. Check the network, or download the file by hand "
                              f"and put it at {target}") from exc
    part = target.with_suffix(target.suffix + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    hasher = hashlib.sha256()
    if have:
        with open(part, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                hasher.update(chunk)
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        if size is None or have < size:  # else: all bytes are already in the .part file
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if have and resp.status != 206:  # server ignored the range: start over
                    have = 0
                    hasher = hashlib.sha256()
                    part.unlink(missing_ok=True)
                total = size or (have + int(resp.headers.get("Content-Length", 0) or 0)) or None
                _stream(resp, part, hasher, have, total, progress, FILES[name])
    except urllib.error.HTTPError as exc:
        exc.close()
        if not (exc.code == 416 and have):  # 416 on a resume: the .part file is already complete
            raise CheckpointError(f"download of {url} failed: {exc}; run the command again to resume") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # incl. IncompleteRead
        raise CheckpointError(f"download of {url} failed: {exc}; run the command again to resume") from exc
    got = part.stat().st_size
    if size is not None and got != size:
        raise CheckpointError(f"incomplete download: {got} of {size} bytes in {part}; run the command again to resume")
    if sha is not None and hasher.hexdigest() != sha:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"SHA-256 mismatch for {FILES[name]}: got {hasher.hexdigest()}, hub says {sha}; "
                              "the partial file was removed, please retry")
    try:
        variant = load_network(part).variant.name  # integrity: must load strictly as an SMPLer-X network
    except CheckpointError:
        part.unlink(missing_ok=True)  # complete but unusable: a rerun must fetch it afresh, not resume it
        raise
    expected = name.split("_")[0]
    if variant != expected:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"{FILES[name]} holds an SMPLer-X-{variant.upper()} network, expected {expected.upper()}")
    shutil.move(str(part), str(target))
    return target


def _stream(resp, part: Path, hasher, have: int, total: Optional[int], progress: bool, label: str) -> None:
    from tqdm import tqdm

    with open(part, "ab") as fh, tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                                       desc=label, disable=not progress, file=sys.stderr) as bar:
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            fh.write(chunk)
            hasher.update(chunk)
            bar.update(len(chunk))
