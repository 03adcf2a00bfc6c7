"""ZeroMQ PUB output: one msgpack message per frame, schema ``smplerx-mocap/1``.

Message (a msgpack map; every float is float32 on the wire, every time an int):

* ``schema``: ``"smplerx-mocap/1"``
* ``frame_id``: int
* ``t_capture_ns``: ``time.perf_counter_ns()`` when the frame was grabbed
* ``t_stages``: {stage name: perf_counter_ns}, e.g. ``detect``, ``infer``, ``filter``
* ``t_send_ns``: perf_counter_ns right before the message was handed to ZMQ
* ``image_size``: [width, height] in pixels
* ``persons``: list of maps, each with ``track_id`` (int), ``bbox`` and
  ``bbox_detector`` ([x, y, w, h] full-frame pixels), ``focal`` ([fx, fy]) and
  ``princpt`` ([cx, cy]) in pixels, and the SMPL-X parameters under their official
  names as **nested lists with the official shapes**: ``global_orient`` (1×3),
  ``body_pose`` (21×3), ``left_hand_pose`` (15×3), ``right_hand_pose`` (15×3),
  ``jaw_pose`` (1×3), ``betas`` (1×10), ``expression`` (1×10), ``transl`` (1×3).
  Poses are axis-angle (rad) in the OpenCV camera frame; hand poses relative to
  the SMPL-X hand mean; ``transl`` in metres.

The perf_counter clock is per machine: ``now − t_capture_ns`` is a latency only when
publisher and subscriber run on the same machine.

Frames: without a topic each message is a single ZMQ frame (the msgpack payload);
with ``topic=b"..."`` it is a two-frame multipart ``[topic, payload]`` and
subscribers subscribe to that topic.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional

import msgpack
import numpy as np
import zmq

from ..types import PARAM_SHAPES, PREDICTED_KEYS, FrameResult, Person, SMPLXParams

log = logging.getLogger(__name__)

SCHEMA = "smplerx-mocap/1"
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


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
    return d


def person_from_dict(d: Dict[str, Any]) -> Person:
    """Inverse of :func:`person_to_dict` (arrays float32 with the official shapes)."""
    params = SMPLXParams.from_dict({k: np.asarray(d[k], np.float32) for k in PREDICTED_KEYS})
    return Person(
        track_id=int(d["track_id"]), params=params,
        bbox=np.asarray(d["bbox"], np.float32), bbox_detector=np.asarray(d.get("bbox_detector", d["bbox"]), np.float32),
        focal=np.asarray(d["focal"], np.float32), princpt=np.asarray(d["princpt"], np.float32),
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


class ZMQSink:
    """Publishes each result on a ZMQ PUB socket; never blocks (drops when full).

    Args:
        endpoint: where to bind (``tcp://127.0.0.1:5555``; ``tcp://*:5555`` for the LAN).
        topic: optional topic frame (bytes or str) sent before the payload.
        sndhwm: send high-water mark (messages queued per subscriber before dropping).
            ZMQ frees queue slots in batches, so very small values (1-4) drop frames
            even for a subscriber that keeps up when frames come back to back; 10 is
            about 0.3 s at 30 fps. A PUB socket drops silently at the mark: ``dropped``
            only counts sends ZMQ refused (EAGAIN) or failed.
        bind: bind (default) or connect the PUB socket.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, topic=None, sndhwm: int = 10,
                 bind: bool = True, context: Optional[zmq.Context] = None):
        self.endpoint = endpoint
        self.topic = topic.encode("utf-8") if isinstance(topic, str) else topic
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, int(sndhwm))
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            if bind:
                self._sock.bind(endpoint)
            else:
                self._sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            raise OSError(f"ZMQ PUB cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from exc
        #: Actual endpoint (resolves ``tcp://127.0.0.1:*`` wildcards).
        self.last_endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint
        self.sent = 0
        self.dropped = 0
        self._closed = False

    def send(self, result: FrameResult) -> None:
        """Serialise and publish one frame with NOBLOCK; a full queue drops it (counted)."""
        if self._closed:
            return
        payload = pack(result_to_dict(result))
        try:
            if self.topic is not None:
                self._sock.send_multipart([self.topic, payload], flags=zmq.NOBLOCK)
            else:
                self._sock.send(payload, flags=zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1
        except zmq.ZMQError as exc:
            self.dropped += 1
            log.warning("ZMQ send failed on %s: %s", self.endpoint, exc)

    def close(self) -> None:
        """Close the socket at once (linger 0: queued messages are discarded)."""
        if not self._closed:
            self._closed = True
            self._sock.close(linger=0)

    def __enter__(self) -> "ZMQSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
