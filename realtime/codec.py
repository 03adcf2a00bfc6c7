"""The message schema ``smplerx-mocap/1``: a :class:`~engines.types.FrameResult` as plain
msgpack types and back. The ZMQ stream sends these messages and recordings store them.

Message (a msgpack map; every float is float32 on the wire, every time an int):

* ``schema``: ``"smplerx-mocap/1"``
* ``frame_id``: int
* ``t_capture_ns``: ``time.perf_counter_ns()`` when the frame was grabbed
* ``t_stages``: {stage name: perf_counter_ns} at the end of each pipeline stage
  (``wait``, ``track``, ``infer``, ``filter``, ``send``; see ``realtime.pipeline.STAGES``)
* ``t_send_ns``: perf_counter_ns right before the message was handed to ZMQ
* ``image_size``: [width, height] in pixels
* ``persons``: list of maps, each with ``track_id`` (int), ``bbox`` and
  ``bbox_detector`` ([x, y, w, h] full-frame pixels), ``focal`` ([fx, fy]) and
  ``princpt`` ([cx, cy]) in pixels, and the SMPL-X parameters under their official
  names as **nested lists with the official shapes**: ``global_orient`` (1x3),
  ``body_pose`` (21x3), ``left_hand_pose`` (15x3), ``right_hand_pose`` (15x3),
  ``jaw_pose`` (1x3), ``betas`` (1x10), ``expression`` (1x10), ``transl`` (1x3).
  Poses are axis-angle (rad) in the OpenCV camera frame; hand poses relative to
  the SMPL-X hand mean; ``transl`` in metres.
* optional ``grounded`` per person (``mocap live --ground``; absent otherwise), a map with its own
  ``version`` (1): ``root_pos`` [x, y, z] (metres) and ``root_quat`` [x, y, z, w] of the pelvis in
  the floor frame (right-handed, y up, floor at y = 0), ``contacts`` [left, right] (bool),
  ``floor`` [nx, ny, nz, d] (the plane n . p = d in the camera-level world, y up) and
  ``floor_state`` ("learning" or "fitted"). The raw camera-frame parameters above are unchanged.

The perf_counter clock is per machine: ``now - t_capture_ns`` is a latency only when
publisher and subscriber run on the same machine.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import msgpack
import numpy as np

from engines.types import PARAM_SHAPES, PREDICTED_KEYS, FrameResult, Person, SMPLXParams

SCHEMA = "smplerx-mocap/1"


def _floats(a, n: Optional[int] = None) -> List[float]:
    v = np.asarray(a, dtype=np.float32).reshape(-1)
    return [float(x) for x in (v if n is None else v[:n])]


def person_to_dict(person: Person) -> Dict[str, Any]:
    """One person as plain msgpack-able types (see the module docstring)."""
    d: Dict[str, Any] = {
        "track_id": int(person.track_id),
        "bbox": _floats(person.bbox, 4),
        "bbox_detector": _floats(person.bbox_detector, 4),
        "focal": _floats(person.focal, 2),
        "princpt": _floats(person.princpt, 2),
    }
    for key in PREDICTED_KEYS:
        d[key] = np.asarray(getattr(person.params, key), dtype=np.float32).reshape(PARAM_SHAPES[key]).tolist()
    if person.grounded is not None:
        g = person.grounded
        d["grounded"] = {"version": int(g["version"]), "root_pos": _floats(g["root_pos"], 3),
                         "root_quat": _floats(g["root_quat"], 4), "contacts": [bool(c) for c in g["contacts"]],
                         "floor": _floats(g["floor"], 4), "floor_state": str(g["floor_state"])}
    return d


def person_from_dict(d: Dict[str, Any]) -> Person:
    """Inverse of :func:`person_to_dict` (arrays float32 with the official shapes)."""
    params = SMPLXParams.from_dict({k: np.asarray(d[k], np.float32) for k in PREDICTED_KEYS})
    return Person(
        track_id=int(d["track_id"]), params=params,
        bbox=np.asarray(d["bbox"], np.float32), bbox_detector=np.asarray(d.get("bbox_detector", d["bbox"]), np.float32),
        focal=np.asarray(d["focal"], np.float32), princpt=np.asarray(d["princpt"], np.float32),
        grounded=d.get("grounded"),
    )


def result_to_dict(result: FrameResult, t_send_ns: Optional[int] = None) -> Dict[str, Any]:
    """The schema ``smplerx-mocap/1`` message of one frame (``t_send_ns`` defaults to now)."""
    return {
        "schema": SCHEMA,
        "frame_id": int(result.frame_id),
        "t_capture_ns": int(result.t_capture_ns),
        "t_stages": {str(k): int(v) for k, v in result.t_stages.items()},
        "t_send_ns": int(time.perf_counter_ns() if t_send_ns is None else t_send_ns),
        "image_size": [int(result.image_size[0]), int(result.image_size[1])],
        "persons": [person_to_dict(p) for p in result.persons],
    }


def result_from_dict(d: Dict[str, Any]) -> FrameResult:
    """A :class:`FrameResult` (no image) from a schema message or a recorded frame."""
    return FrameResult(
        frame_id=int(d["frame_id"]), t_capture_ns=int(d["t_capture_ns"]),
        image_size=tuple(int(x) for x in d["image_size"]),
        persons=[person_from_dict(p) for p in d["persons"]],
        t_stages={str(k): int(v) for k, v in d.get("t_stages", {}).items()},
    )


def pack(message: Dict[str, Any]) -> bytes:
    """msgpack with float32 floats (exact for float32 parameters)."""
    return msgpack.packb(message, use_bin_type=True, use_single_float=True)


def unpack(payload: bytes) -> Dict[str, Any]:
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)
