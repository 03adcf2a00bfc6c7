"""A stand-in for the network and the SMPL-X layer: a fixed cost and well-formed outputs.

It measures and tests everything around the model (capture hand-off, tracking, crop geometry,
filter, streams, recording) without the model's cost: ``StandInPredictor`` has the interface
of :class:`engines.inference.Predictor` (``launch`` / ``predict`` / ``is_async`` /
``with_mesh`` / ``body_model``), does the same host-side work around the model (box
processing, crop geometry, assembling :class:`~engines.types.Person` records, projecting the
joints), and in place of the model waits ``cost_ms``, as a GPU would: asynchronously
(``launch`` returns at once and ``result()`` waits until the cost has passed) or synchronously.
Its joints fill the person's box, so the tracker follows the person as it does with real
weights (but they cannot move with the person: between detector passes the box stays put). Its outputs are not predictions and are never presented as such.
"""
from __future__ import annotations

import math
import time
from typing import List, Sequence

import numpy as np
import torch

from . import geometry as G
from .inference import PARAM_OF_OUTPUT, PendingBatch, PendingPrediction, Prediction, assemble_predictions
from .types import PARAM_SHAPES


class StandInPredictor:
    def __init__(self, body_model, cost_ms: float = 2.0, asynchronous: bool = True, with_mesh: bool = False,
                 seed: int = 0, miss_calls: Sequence[int] = ()):
        self.body_model = body_model
        self.cost_s = float(cost_ms) / 1000.0
        self.is_async = bool(asynchronous)
        self.with_mesh = with_mesh
        self._rng = np.random.default_rng(seed)
        #: Calls (0-based) that find nobody, as a network failing on a frame would.
        self.miss_calls = set(miss_calls)
        self.calls = 0
        with torch.inference_mode():
            zeros = [torch.zeros(1, n) for n in (63, 45, 45, 3, 10, 10)]
            verts, joints = body_model(torch.tensor([[math.pi, 0.0, 0.0]]), *zeros)
        self._joints = _normalise(joints[0].numpy())
        self._verts = _normalise(verts[0].numpy())
        self._offset, self._scale = _calibrate(self._joints)

    def predict(self, image_bgr: np.ndarray, bboxes: Sequence[Sequence[float]]) -> List[Prediction]:
        return self.launch(image_bgr, bboxes).result()

    def launch(self, image_bgr: np.ndarray, bboxes: Sequence[Sequence[float]]) -> PendingPrediction:
        start = time.perf_counter()
        call, self.calls = self.calls, self.calls + 1
        if call in self.miss_calls:
            bboxes = []
        assemble = self._assemble(image_bgr, bboxes)

        def finish():
            remaining = self.cost_s - (time.perf_counter() - start)
            if remaining > 0:
                time.sleep(remaining)
            return assemble()

        if self.is_async:
            return PendingPrediction(finish)
        preds = finish()
        return PendingPrediction(lambda: preds)

    def _assemble(self, image_bgr: np.ndarray, bboxes):
        """The host-side work of one frame now; a function that assembles its predictions."""
        h, w = image_bgr.shape[:2]
        kept, boxes, invs = G.process_bboxes(bboxes, w, h)
        n = len(kept)
        out = {k: (self._rng.standard_normal((n,) + PARAM_SHAPES[v]) * 0.05).astype(np.float32)
               for k, v in PARAM_OF_OUTPUT.items()}
        for name in ("lhand_bbox", "rhand_bbox", "face_bbox"):
            out[name] = np.tile(np.array([100.0, 100.0, 150.0, 150.0], np.float32), (n, 1))
        raw = [np.asarray(bboxes[i], np.float64) for i in kept]
        fill = (self._offset, self._scale)
        joints = (np.stack([_fill_box(self._joints, r, b, *fill) for r, b in zip(raw, boxes)]) if n
                  else np.zeros((0, 144, 3), np.float32))
        verts = (np.stack([_fill_box(self._verts, r, b, *fill) for r, b in zip(raw, boxes)])
                 if (n and self.with_mesh) else None)
        return lambda: assemble_predictions(out, verts, joints, kept, boxes, invs, bboxes) if n else []

    def launch_many(self, frames) -> PendingBatch:
        """Several frames' boxes in ONE call (as :meth:`Predictor.launch_many`): one ``cost_ms`` for
        the round, one count in :attr:`calls`, one list of predictions per frame."""
        start = time.perf_counter()
        call, self.calls = self.calls, self.calls + 1
        parts = []
        for image_bgr, bboxes in frames:
            parts.append(self._assemble(image_bgr, [] if call in self.miss_calls else bboxes))

        def finish():
            remaining = self.cost_s - (time.perf_counter() - start)
            if remaining > 0:
                time.sleep(remaining)
            return [part() for part in parts]

        if self.is_async:
            return PendingBatch(finish)
        preds = finish()
        return PendingBatch(lambda: preds)


def _normalise(points: np.ndarray) -> np.ndarray:
    """Points scaled into the unit square by their x/y extent (z dropped)."""
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    return ((points[:, :2] - lo) / np.maximum(hi - lo, 1e-6)).astype(np.float32)


def _calibrate(unit: np.ndarray):
    """Where in a person box the unit joints go (offset, scale per axis) so that the tracker's
    box around them (``box_from_joints``: padding, headroom) is that box again."""
    ref = np.array([1000.0, 1000.0, 200.0, 400.0])
    offset, scale = np.array([0.1, 0.1]), np.array([0.8, 0.8])
    for _ in range(8):
        got = G.box_from_joints(ref[:2] + (offset + scale * unit) * ref[2:], (4000, 4000))
        scale = scale * ref[2:] / got[2:]
        offset = offset + (ref[:2] - got[:2]) / ref[2:]
    return offset, scale


def _fill_box(unit: np.ndarray, raw: np.ndarray, box: np.ndarray, offset: np.ndarray,
              scale: np.ndarray) -> np.ndarray:
    """Camera-space points that project (through the processed ``box``'s camera) into the
    ``raw`` person box as :func:`_calibrate` places them, at a depth that shrinks as the box
    grows (400 pixels tall: 5 m), as for a real person."""
    cam = G.full_frame_camera(box)
    depth = 5.0 * 400.0 / max(float(raw[3]), 1.0)
    u = raw[0] + (offset[0] + scale[0] * unit[:, 0]) * raw[2]
    v = raw[1] + (offset[1] + scale[1] * unit[:, 1]) * raw[3]
    x = (u - cam.princpt[0]) / cam.focal[0] * depth
    y = (v - cam.princpt[1]) / cam.focal[1] * depth
    return np.stack([x, y, np.full_like(x, depth)], 1).astype(np.float32)
