"""Data that travels between the stages of the live pipeline.

Conventions (shared by every stage, sink and viewer):

* Images are ``uint8`` BGR arrays of shape (H, W, 3), as OpenCV gives them.
* Times are integers from ``time.perf_counter_ns()`` (monotonic clock).
* SMPL-X parameters are axis-angle in the SMPLer-X camera frame (OpenCV: x right,
  y down, z forward, metres), exactly as the official SMPLer-X demo saves them:
  hand poses are *relative to the SMPL-X hand mean* (the model uses
  ``flat_hand_mean=False``), eye poses are always zero, ``transl`` is the
  camera translation (``cam_trans``) added to the model-space vertices.
* Boxes are ``xywh`` float arrays in full-frame pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol

import numpy as np

#: Official npz keys and shapes written by ``mocap image`` / ``mocap video``.
PARAM_SHAPES: Dict[str, tuple] = {
    "global_orient": (1, 3),
    "body_pose": (21, 3),
    "left_hand_pose": (15, 3),
    "right_hand_pose": (15, 3),
    "jaw_pose": (1, 3),
    "leye_pose": (1, 3),
    "reye_pose": (1, 3),
    "betas": (1, 10),
    "expression": (1, 10),
    "transl": (1, 3),
}

#: The parameters the model predicts (eye poses are always zero).
PREDICTED_KEYS = (
    "global_orient", "body_pose", "left_hand_pose", "right_hand_pose",
    "jaw_pose", "betas", "expression", "transl",
)


@dataclass(frozen=True)
class Frame:
    """One captured image. ``t_capture_ns`` is stamped right after the grab."""

    id: int
    t_capture_ns: int
    image: np.ndarray
    #: Position in the source (seconds) for files, None for live cameras.
    source_time: Optional[float] = None


@dataclass
class SMPLXParams:
    """One person's SMPL-X parameters, shapes as in :data:`PARAM_SHAPES`."""

    global_orient: np.ndarray
    body_pose: np.ndarray
    left_hand_pose: np.ndarray
    right_hand_pose: np.ndarray
    jaw_pose: np.ndarray
    betas: np.ndarray
    expression: np.ndarray
    transl: np.ndarray

    @classmethod
    def from_dict(cls, d: Dict[str, np.ndarray]) -> "SMPLXParams":
        return cls(**{k: np.asarray(d[k], dtype=np.float32).reshape(PARAM_SHAPES[k]) for k in PREDICTED_KEYS})

    def to_dict(self, with_eyes: bool = False) -> Dict[str, np.ndarray]:
        out = {k: np.asarray(getattr(self, k), dtype=np.float32).reshape(PARAM_SHAPES[k]) for k in PREDICTED_KEYS}
        if with_eyes:
            out["leye_pose"] = np.zeros((1, 3), np.float32)
            out["reye_pose"] = np.zeros((1, 3), np.float32)
        return out

    def copy(self) -> "SMPLXParams":
        return SMPLXParams(**{k: np.array(getattr(self, k), copy=True) for k in PREDICTED_KEYS})


@dataclass(frozen=True)
class Person:
    """One person in one frame (frozen: a stage that changes a person builds a new one with
    ``dataclasses.replace``)."""

    #: The person's identity: a track id (live, ``mocap video``), a box index (``mocap image``,
    #: ``--bbox``); None straight from the predictor, before anyone has named the person.
    track_id: Optional[int]
    params: SMPLXParams
    #: Processed (padded, aspect-fixed) box the model saw, xywh.
    bbox: np.ndarray
    #: Raw detector / tracker box, xywh.
    bbox_detector: np.ndarray
    #: Full-frame camera of this person's prediction (pixels).
    focal: np.ndarray
    princpt: np.ndarray
    #: Optional camera-space mesh vertices (10475, 3) and joints (J, 3).
    vertices: Optional[np.ndarray] = None
    joints: Optional[np.ndarray] = None
    #: Joints projected to the full frame (J, 2), used by tracking and previews.
    joints_2d: Optional[np.ndarray] = None
    #: The root on the learned floor (``realtime.grounding``, ``mocap live --ground``): a plain dict
    #: with ``version``, ``root_pos``, ``root_quat``, ``contacts``, ``floor``, ``floor_state``.
    grounded: Optional[Dict[str, Any]] = None


@dataclass
class FrameResult:
    """What the pipeline produced for one frame (possibly nobody)."""

    frame_id: int
    t_capture_ns: int
    image_size: tuple  # (width, height)
    persons: List[Person] = field(default_factory=list)
    #: Stage timestamps (perf_counter_ns) by name: see ``realtime.pipeline.STAGES`` (wait, track,
    #: infer, hold, filter, send).
    t_stages: Dict[str, int] = field(default_factory=dict)
    #: The frame image (BGR) for previews and recordings; may be None.
    image: Optional[np.ndarray] = None


class Sink(Protocol):
    """A consumer of results. ``send`` must never block the pipeline."""

    def send(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...
