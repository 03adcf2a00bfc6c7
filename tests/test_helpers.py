"""The comparisons the result tests rely on accept rounding and reject real differences, with a
one-line report (never a byte diff)."""
from __future__ import annotations

import numpy as np
import pytest

from .helpers import assert_same_bytes, assert_same_npz, assert_same_text_numbers


def test_text_numbers_within_the_last_printed_digit(tmp_path):
    a, b, c, d = (tmp_path / n for n in "abcd")
    a.write_text("ROOT pelvis\nMOTION\n0.123457 -1.500000 2e-07\n")
    b.write_text("ROOT pelvis\nMOTION\n0.123458 -1.500000 2e-07\n")  # a last digit flipped by rounding
    c.write_text("ROOT pelvis\nMOTION\n0.123480 -1.500000 2e-07\n")
    d.write_text("ROOT hips\nMOTION\n0.123457 -1.500000 2e-07\n")
    assert_same_text_numbers(a, b)
    with pytest.raises(AssertionError, match="number 0 differs"):
        assert_same_text_numbers(a, c)
    with pytest.raises(AssertionError, match="text differs"):
        assert_same_text_numbers(a, d)


def test_npz_within_float64_rounding_only(tmp_path):
    poses = np.random.default_rng(0).normal(size=(5, 165))
    np.savez(tmp_path / "a.npz", poses=poses, ids=np.arange(3))
    np.savez(tmp_path / "b.npz", poses=poses + 8.9e-16, ids=np.arange(3))
    np.savez(tmp_path / "c.npz", poses=poses + 1e-6, ids=np.arange(3))
    np.savez(tmp_path / "d.npz", poses=poses.astype(np.float32), ids=np.arange(3))
    assert_same_npz(tmp_path / "a.npz", tmp_path / "b.npz")
    with pytest.raises(AssertionError, match="poses"):
        assert_same_npz(tmp_path / "a.npz", tmp_path / "c.npz")
    with pytest.raises(AssertionError, match="float32"):
        assert_same_npz(tmp_path / "a.npz", tmp_path / "d.npz")


def test_large_files_that_differ_report_one_line(tmp_path):
    data = bytearray(20_000_000)
    (tmp_path / "a").write_bytes(data)
    data[19_000_001] = 1
    (tmp_path / "b").write_bytes(data)
    with pytest.raises(AssertionError) as err:
        assert_same_bytes(tmp_path / "a", tmp_path / "b", "overlay.mp4")
    assert str(err.value) == "overlay.mp4: bytes differ (20000000 vs 20000000 bytes, first at offset 19000001)"


@pytest.mark.slow
@pytest.mark.parametrize("ci", ["true", ""])
def test_missing_real_media_fails_under_ci_and_skips_locally(tmp_path, ci):
    """A test that needs ../shared/media: skipped on a developer's machine without it, failed under CI
    (CI has the media; a skip there would hide a test that never ran)."""
    import os
    import subprocess
    import sys

    from .helpers import REPO

    env = dict(os.environ, MOCAP_MEDIA_DIR=str(tmp_path / "no-media"), CI=ci)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_geometry.py::test_torch_crop_matches_opencv_crop"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if ci:  # the fixture fails: the run fails, naming what CI lacks
        assert proc.returncode != 0 and "CI must have it" in proc.stdout, proc.stdout[-2000:]
    else:
        assert proc.returncode == 0 and " skipped" in proc.stdout and "passed" not in proc.stdout, proc.stdout[-2000:]
