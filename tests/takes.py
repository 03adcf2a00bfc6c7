"""Takes for the export tests: real recordings (written by the Recorder) and result folders, and the
SMPL-X forward kinematics of their parameters through the ``smplx`` package (the reference)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from engines.synthetic import synthetic_take
from engines.types import FrameResult, Person, SMPLXParams
from realtime.sinks.recorder import Recorder

FPS = 30.0
#: OpenCV camera frame -> y-up world (half turn about x).
FLIP = np.array([1.0, -1.0, -1.0])


def person(track_id: int, params: Dict[str, np.ndarray]) -> Person:
    z = np.zeros(4, np.float32)
    return Person(track_id=track_id, params=SMPLXParams.from_dict(params), bbox=z, bbox_detector=z,
                  focal=np.array([1000.0, 1000.0], np.float32), princpt=np.array([320.0, 240.0], np.float32))


def write_recording(directory: Path, people: Dict[int, Sequence[Optional[dict]]], times_s: Sequence[float],
                    fps: Optional[float] = FPS) -> Path:
    """A recording through the real Recorder: frame k at ``times_s[k]``; ``people[id][k]`` the
    parameters of that person in frame k, or None when they were not seen."""
    with Recorder(directory, fps=fps, source="test") as rec:
        for k, t in enumerate(times_s):
            persons = [person(pid, frames[k]) for pid, frames in people.items() if frames[k] is not None]
            rec.send(FrameResult(frame_id=k, t_capture_ns=7_000_000_000 + int(round(t * 1e9)),
                                 image_size=(640, 480), persons=persons))
    return directory


def write_results(directory: Path, people: Dict[int, Sequence[Optional[dict]]], fps: Optional[float] = FPS,
                  first_frame: int = 1) -> Path:
    """A result folder in the official layout (``smplx/<frame:05d>_<id>.npz``) with ``video.json``."""
    (directory / "smplx").mkdir(parents=True)
    n = max(len(f) for f in people.values())
    for k in range(n):
        for pid, frames in people.items():
            if frames[k] is not None:
                np.savez(directory / "smplx" / f"{first_frame + k:05d}_{pid}.npz", **frames[k])
    if fps is not None:
        (directory / "video.json").write_text(json.dumps({"fps": fps, "first_frame": 1, "frame_count": n,
                                                           "source": "test.mp4"}))
    return directory


def known_take(n_frames: int, seed: int = 0) -> List[dict]:
    return synthetic_take(n_frames, FPS, seed=seed)


@torch.no_grad()
def smplx_joints(body_model, frames: Sequence[dict]) -> np.ndarray:
    """(T, 55, 3) SMPL-X joints of the official parameters (camera frame), by the ``smplx`` package."""
    t = len(frames)
    p = {k: torch.as_tensor(np.stack([f[k] for f in frames]), dtype=torch.float32).reshape(t, -1)
         for k in frames[0]}
    _, joints = body_model(p["global_orient"], p["body_pose"], p["left_hand_pose"], p["right_hand_pose"],
                           p["jaw_pose"], p["betas"], p["expression"], transl=p["transl"])
    return joints[:, :55].numpy().astype(np.float64)


def world_reference(body_model, frames: Sequence[dict]) -> np.ndarray:
    """The reference joints in the y-up export world with the camera at the origin (--place camera)."""
    return smplx_joints(body_model, frames) * FLIP


def to_blender(p: np.ndarray) -> np.ndarray:
    """y-up world -> Blender's z-up world, as Blender's y-up importers convert: (x, y, z) -> (x, -z, y)."""
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)
