"""Helpers shared by the test modules (fixtures live in conftest.py): where the repository and the
real media are, a prerequisite that is missing (skip locally, fail under CI), the ``mocap`` command
in its own process, waiting for a condition, and comparing result folders and files -- byte for byte
where the computation is deterministic across processes, within rounding where it is not, and
always with a short failure report (pytest's own diff of two large ``bytes`` took 18 minutes)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def missing(reason: str):
    """A prerequisite of a test is absent: skip it locally; under CI (``CI`` set) fail, since CI
    installs everything (.ci/run) and a skip there would hide a test that never ran."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must have it: .ci/run installs it)")
    pytest.skip(reason)


def media_root() -> Path:
    from engines.benchmark import media_dir  # the scripts' lookup: $MOCAP_MEDIA_DIR, then ../shared/media

    return media_dir()


MEDIA = media_root()


def media_file(name: str) -> Path:
    """A file of the real test media (skipped locally, failed under CI, when absent)."""
    path = MEDIA / name
    if not path.is_file():
        missing(f"real test media not found: {path} (put shared/media beside the checkout or set MOCAP_MEDIA_DIR)")
    return path


# ------------------------------------------------------------------------------------------ processes


def mocap_subprocess(args, **kw) -> subprocess.Popen:
    """``mocap ARGS`` in its own process from this checkout, stdout and stderr merged."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "realtime.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def local_ray(num_cpus: int):
    """A local Ray instance with ``num_cpus`` logical CPUs for a module's tests (a generator for a
    fixture): yields its GCS address, shuts it down after."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# ------------------------------------------------------------------------------------------ comparing


def files_under(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_same_bytes(a: Path, b: Path, what: str = "") -> None:
    """Byte equality with a one-line report (size and first differing offset), never a byte diff."""
    x, y = Path(a).read_bytes(), Path(b).read_bytes()
    if x == y:
        return
    n = min(len(x), len(y))
    first = next((i for i in range(0, n, 4096) if x[i:i + 4096] != y[i:i + 4096]), n)
    first = next((i for i in range(first, min(n, first + 4096)) if x[i] != y[i]), first)
    raise AssertionError(f"{what or b}: bytes differ ({len(x)} vs {len(y)} bytes, first at offset {first})")


_NUMBER = re.compile(rb"-?\d+(?:\.(\d*))?(?:[eE][-+]?\d+)?")


def assert_same_text_numbers(a: Path, b: Path, what: str = "") -> None:
    """Two text files (BVH, JSON) the same but for the last printed digit of their numbers: the text
    between numbers equal, each number within one unit of its last printed decimal (a float64
    rounding difference upstream can flip that digit, nothing more)."""
    x, y = Path(a).read_bytes(), Path(b).read_bytes()
    if x == y:
        return
    nx, ny = list(_NUMBER.finditer(x)), list(_NUMBER.finditer(y))
    assert _NUMBER.sub(b"#", x) == _NUMBER.sub(b"#", y), f"{what or b}: text differs beyond its numbers"
    for i, (mx, my) in enumerate(zip(nx, ny)):
        vx, vy = float(mx.group(0)), float(my.group(0))
        if abs(vx - vy) > max(1.01 * max(_last_digit(mx), _last_digit(my)), 1e-12 * max(1.0, abs(vx))):
            raise AssertionError(f"{what or b}: number {i} differs: {mx.group(0)!r} vs {my.group(0)!r}")


def _last_digit(match) -> float:
    """The value of one unit in the last printed digit of a number token."""
    mantissa, _, exponent = match.group(0).lower().partition(b"e")
    return 10.0 ** (-len(match.group(1) or b"") + (int(exponent) if exponent else 0))


def assert_same_npz(a: Path, b: Path, what: str = "", rtol: float = 1e-9, atol: float = 1e-12) -> None:
    """Same arrays (names, shapes, dtypes; integers and strings exactly), floats within ``rtol``/``atol``
    (the defaults: float64 rounding of one computation in two processes)."""
    if Path(a).read_bytes() == Path(b).read_bytes():
        return
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        assert sorted(x.files) == sorted(y.files), f"{what or b}: arrays {sorted(x.files)} vs {sorted(y.files)}"
        for k in x.files:
            u, v = x[k], y[k]
            assert (u.dtype, u.shape) == (v.dtype, v.shape), f"{what or b}:{k}: {u.dtype}{u.shape} vs {v.dtype}{v.shape}"
            if np.issubdtype(u.dtype, np.floating):
                np.testing.assert_allclose(v, u, rtol=rtol, atol=atol, err_msg=f"{what or b}:{k}")
            else:
                assert np.array_equal(u, v), f"{what or b}:{k} differs"


def assert_same_pictures(a: Path, b: Path, what: str = "") -> None:
    """Two renderings (an overlay image or video) equal but for a few edge pixels: the same frame
    count and size, and in each frame at most 0.1 % of the pixels off by more than 40 levels."""
    import cv2

    if Path(a).read_bytes() == Path(b).read_bytes():
        return
    ca, cb = cv2.VideoCapture(str(a)), cv2.VideoCapture(str(b))  # reads a still image as one frame
    try:
        n = 0
        while True:
            ok_a, x = ca.read()
            ok_b, y = cb.read()
            assert ok_a == ok_b, f"{what or b}: frame counts differ (at frame {n})"
            if not ok_a:
                break
            assert x.shape == y.shape, f"{what or b}: frame {n} is {y.shape}, expected {x.shape}"
            off = (np.abs(x.astype(np.int16) - y.astype(np.int16)).max(-1) > 40).mean()
            assert off < 1e-3, f"{what or b}: frame {n} differs in {off:.2%} of its pixels"
            n += 1
        assert n > 0, f"{what or b}: no frame decoded"
    finally:
        ca.release()
        cb.release()


def assert_same_file(a: Path, b: Path, what: str = "") -> None:
    """Equal as far as the format and the process boundary allow: pictures (renderings) by their
    pixels, npz within float64 rounding, text by its numbers' printed digits, anything else byte
    for byte."""
    suffix = Path(a).suffix.lower()
    if suffix in (".jpg", ".png", ".mp4"):
        assert_same_pictures(a, b, what)
    elif suffix == ".npz":
        assert_same_npz(a, b, what)
    elif suffix in (".bvh", ".json"):
        assert_same_text_numbers(a, b, what)
    else:
        assert_same_bytes(a, b, what)


def assert_same_results(ref: Path, got: Path, exact: bool, extra: Iterable[str] = ()) -> None:
    """Same files in two result folders (``got`` may hold the ``extra`` ones too).

    ``exact``: the network ran with the same thread count (one worker, or this process): results
    (npz, per-person json, video.json) byte for byte, renderings (overlay images and video) by
    their pixels -- the renderer and encoder are not bit-stable from one process to another.
    Otherwise ids, frames and scores equal, and SMPL-X parameters, boxes and cameras equal up to
    float32 rounding (another batch size or thread count in the network) as the tracker carries it
    from frame to frame: where it follows a person by the previous prediction's joints, the
    rounding reaches the next box (with random weights it grows, to 4e-4 rad by the 5th frame of
    the test clips)."""
    names = [f for f in files_under(got) if f not in set(extra)]
    expected = files_under(ref)
    assert names == expected, f"{got}: files {sorted(set(names) ^ set(expected))} differ from {ref}"
    for rel in expected:
        a, b = ref / rel, got / rel
        if rel == "run.json":  # when and how the run went (times, command): both complete
            x, y = json.loads(a.read_text()), json.loads(b.read_text())
            assert x["complete"] and y["complete"], (x, y)
            assert (x["frames"], x["persons"]) == (y["frames"], y["persons"])
        elif rel.endswith((".jpg", ".png")) or (exact and rel.endswith(".mp4")):
            assert_same_pictures(a, b, rel)
        elif rel.endswith(".mp4"):  # float32 rounding moves meshes by a pixel: compression spreads it
            import cv2

            counts = [int(cv2.VideoCapture(str(p)).get(cv2.CAP_PROP_FRAME_COUNT)) for p in (a, b)]
            assert counts[0] == counts[1] > 0, f"{rel}: frame counts {counts}"
        elif exact:
            assert_same_bytes(a, b, rel)
        elif rel.endswith(".npz"):
            assert_same_npz(a, b, rel, rtol=0, atol=2e-3)
        elif rel.endswith(".json"):
            x, y = json.loads(a.read_text()), json.loads(b.read_text())
            if not rel.startswith("meta"):  # video.json: the same frame rate, count and source
                assert x == y, rel
                continue
            assert x.keys() == y.keys()
            for k in ("bbox_id", "track_id", "score", "img_path", "frame"):
                assert x.get(k) == y.get(k), f"{rel}:{k}"
            for k in ("focal", "princpt", "bbox", "bbox_detector"):  # joint boxes carry the rounding
                np.testing.assert_allclose(y[k], x[k], rtol=1e-4, atol=1e-2, err_msg=f"{rel}:{k}")
            for k in ("lhand_bbox", "rhand_bbox", "face_bbox"):
                np.testing.assert_allclose(y[k], x[k], rtol=1e-4, atol=0.1, err_msg=f"{rel}:{k}")
