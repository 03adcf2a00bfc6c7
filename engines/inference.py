"""Frame + box -> SMPL-X parameters, mesh and camera, the way the official demo does it.

``Predictor`` = pre-processing (box padding, affine crop, RGB/255) + an engine
running the network + the SMPL-X layer + the full-frame camera. It works on one
frame and any number of person boxes (batched through the network).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from engines.types import Person, SMPLXParams

from . import geometry as G
from .backends.base import Engine
from .body_model import BodyModel, body_in_camera

@dataclass
class Prediction:
    """One person's result in a frame, with everything the writers and streams need."""

    #: The person, ``track_id`` None: whoever names people (a tracker, ``mocap image``'s numbering)
    #: builds the final person with ``dataclasses.replace(person, track_id=...)``.
    person: Person
    #: Position of this person's box in the boxes given to :meth:`Predictor.predict` (a box that is
    #: degenerate after clipping gets no prediction, so indices may skip).
    box_index: int
    #: Official-style extras: hand/face boxes (xyxy) in full-frame pixels, joint_img.
    lhand_bbox: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    rhand_bbox: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    face_bbox: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    #: The detector's score for this person's box (None: not from a detector).
    score: Optional[float] = None

    def named(self, track_id: int, score: Optional[float] = None) -> "Prediction":
        """This prediction with its person named ``track_id`` (and the detector's ``score``)."""
        return dataclasses.replace(self, person=dataclasses.replace(self.person, track_id=track_id), score=score)

    def npz_dict(self) -> Dict[str, np.ndarray]:
        """Exactly the official demo's npz content (keys, shapes)."""
        d = self.person.params.to_dict()
        d["leye_pose"] = np.zeros((1, 3))
        d["reye_pose"] = np.zeros((1, 3))
        return d


def _crop_box_to_frame(box_xyxy_crop: np.ndarray, inv_trans: np.ndarray) -> np.ndarray:
    pts = np.array([[box_xyxy_crop[0], box_xyxy_crop[1]], [box_xyxy_crop[2], box_xyxy_crop[3]]])
    p = G.apply_affine(pts, inv_trans)
    return np.array([p[0, 0], p[0, 1], p[1, 0], p[1, 1]], np.float32)


class PendingPrediction:
    """A prediction started with :meth:`Predictor.launch`; :meth:`result` waits for it."""

    def __init__(self, finish):
        self._finish = finish
        self._result: Optional[List[Prediction]] = None

    def result(self) -> List[Prediction]:
        if self._finish is not None:
            self._result, self._finish = self._finish(), None
        return self._result


class Predictor:
    """Runs SMPLer-X on person boxes of a frame.

    The path follows the engine's device (``engine.device``), whatever the backend: with a CPU
    engine every step runs as the official demo does (OpenCV crop, bit-equal outputs); with a
    device engine (PyTorch, TensorRT or ONNX Runtime on CUDA) the frame is uploaded once and the
    crops, the network (:meth:`Engine.launch`) and the SMPL-X layer all run on the device (the
    SMPL-X layer as a CUDA graph when the engine replays graphs), and :meth:`launch` returns
    before the device is done, so the caller can do other work (e.g. send the previous frame)
    while it runs. ``device_path=True`` forces the device path on a CPU engine (tests compare the
    two paths that way).
    """

    def __init__(self, engine: Engine, body_model: BodyModel, with_mesh: bool = True,
                 device_path: Optional[bool] = None):
        self.engine = engine
        self.body_model = body_model.to("cpu").eval()
        self.with_mesh = with_mesh
        if device_path is None:
            device_path = engine.device != "cpu"
        self._cuda = _DevicePath(engine, self.body_model) if device_path else None

    @property
    def is_async(self) -> bool:
        """True when :meth:`launch` returns before the prediction is done (GPU path)."""
        return self._cuda is not None

    @classmethod
    def from_files(cls, checkpoint: Union[str, Path], body_models: Optional[Union[str, Path]] = None,
                   device: str = "cpu", engine: str = "torch", **engine_kwargs) -> "Predictor":
        """Load the checkpoint (a path or a size name) and the body model."""
        from .backends import load_engine
        from .body_model import check_smplx_file, find_smplx_file

        check_smplx_file(find_smplx_file(body_models))  # a bad body model fails before a slow engine load
        eng = load_engine(checkpoint, kind=engine, device=device, **engine_kwargs)
        return cls(eng, BodyModel(body_models))

    @staticmethod
    def preprocess(image_rgb: np.ndarray, bboxes: Sequence[Sequence[float]]):
        """The crops of a float RGB frame for raw boxes (xywh): (indices kept, patches, processed
        boxes, crop-to-frame affines); a box degenerate after clipping is skipped."""
        h, w = image_rgb.shape[:2]
        kept, boxes, invs = G.process_bboxes(bboxes, w, h)
        return kept, [G.crop_image(image_rgb, box)[0] for box in boxes], boxes, invs

    def predict(self, image_bgr: np.ndarray, bboxes: Sequence[Sequence[float]],
                image_is_rgb_float: bool = False) -> List[Prediction]:
        """Predict every box (raw detector boxes, xywh) of a BGR uint8 frame."""
        return self.launch(image_bgr, bboxes, image_is_rgb_float).result()

    @torch.inference_mode()
    def launch(self, image_bgr: np.ndarray, bboxes: Sequence[Sequence[float]],
               image_is_rgb_float: bool = False) -> PendingPrediction:
        """Start predicting every box of a frame; ``.result()`` gives the predictions."""
        if self._cuda is not None and not image_is_rgb_float:
            return self._cuda.launch(self, image_bgr, bboxes)
        rgb = image_bgr if image_is_rgb_float else G.bgr_to_rgb_float(image_bgr)
        kept, patches, boxes, invs = self.preprocess(rgb, bboxes)
        if not kept:
            return PendingPrediction(lambda: [])
        out, verts, joints = self.forward(G.to_input_batch(patches))
        preds = assemble_predictions(out, verts, joints, kept, boxes, invs, bboxes)
        return PendingPrediction(lambda: preds)

    @torch.inference_mode()
    def launch_many(self, frames: Sequence[Tuple[np.ndarray, Sequence[Sequence[float]]]]) -> "PendingBatch":
        """Start predicting the boxes of several frames (one per stream) in ONE network call: the
        crops of every frame go into one batch. ``.result()`` gives one list of predictions per
        frame, in the order of ``frames`` (what :meth:`launch` gives for each frame alone)."""
        if self._cuda is not None:
            return self._cuda.launch_many(self, frames)
        parts, patches = [], []
        for image_bgr, bboxes in frames:
            kept, crops, boxes, invs = self.preprocess(G.bgr_to_rgb_float(image_bgr), bboxes)
            parts.append((kept, boxes, invs, bboxes))
            patches.extend(crops)
        if not patches:
            return PendingBatch(lambda: [[] for _ in parts])
        out, verts, joints = self.forward(G.to_input_batch(patches))
        preds = split_predictions(out, verts, joints, parts)
        return PendingBatch(lambda: preds)

    @torch.inference_mode()
    def forward(self, img: np.ndarray):
        """Network, then SMPL-X layer, for a stack of crops on the CPU: (network outputs, vertices
        or None without ``with_mesh``, joints) as numpy, camera translation added."""
        return forward_step(self.engine, self.body_model, torch.from_numpy(np.ascontiguousarray(img)),
                            self.with_mesh)


@torch.inference_mode()
def forward_step(engine: Engine, body, img: torch.Tensor, with_mesh: bool = True, recompute: bool = False):
    """The step every caller shares: the network (waited for, overflow recomputed; with
    ``recompute`` the unbounded forward straight away), the SMPL-X layer ``body`` on the engine's
    device, the camera translation: (network outputs, vertices or None, joints), numpy on the host."""
    out = engine.recompute(img) if recompute else engine.forward_tensor(img)
    verts, joints = body_in_camera(body, out, with_mesh)
    return ({k: v.cpu().numpy() for k, v in out.items()},
            verts.cpu().numpy() if verts is not None else None, joints.cpu().numpy())


#: Network output name -> SMPL-X parameter name (official npz keys).
PARAM_OF_OUTPUT = {"smplx_root_pose": "global_orient", "smplx_body_pose": "body_pose",
                   "smplx_lhand_pose": "left_hand_pose", "smplx_rhand_pose": "right_hand_pose",
                   "smplx_jaw_pose": "jaw_pose", "smplx_shape": "betas", "smplx_expr": "expression",
                   "cam_trans": "transl"}


def params_from_outputs(out: Dict[str, np.ndarray], b: int) -> SMPLXParams:
    """Person ``b``'s SMPL-X parameters (official shapes) from the network's batched outputs."""
    return SMPLXParams.from_dict({PARAM_OF_OUTPUT[k]: np.asarray(out[k][b]) for k in PARAM_OF_OUTPUT})


def assemble_predictions(out: Dict[str, np.ndarray], verts: Optional[np.ndarray], joints: np.ndarray,
                         kept: List[int], boxes, invs, bboxes) -> List[Prediction]:
    """Per-person records from batched outputs: parameters, full-frame camera, projected joints,
    hand/face boxes in frame pixels (``kept[b]`` = index of batch item ``b`` in ``bboxes``)."""
    results = []
    for b, i in enumerate(kept):
        cam = G.full_frame_camera(boxes[b])
        person = Person(
            track_id=None, params=params_from_outputs(out, b), bbox=boxes[b],
            bbox_detector=np.asarray(bboxes[i], np.float64),
            focal=np.array(cam.focal, np.float64), princpt=np.array(cam.princpt, np.float64),
            vertices=verts[b] if verts is not None else None, joints=joints[b],
            joints_2d=cam.project(joints[b]).astype(np.float32),
        )
        results.append(Prediction(
            person, i,
            lhand_bbox=_crop_box_to_frame(out["lhand_bbox"][b], invs[b]),
            rhand_bbox=_crop_box_to_frame(out["rhand_bbox"][b], invs[b]),
            face_bbox=_crop_box_to_frame(out["face_bbox"][b], invs[b]),
        ))
    return results


class PendingBatch:
    """Predictions of several frames started with :meth:`Predictor.launch_many`: :meth:`result`
    waits once for all of them; :meth:`part` is one frame's share as a :class:`PendingPrediction`."""

    def __init__(self, finish):
        self._finish = finish
        self._result: Optional[List[List[Prediction]]] = None

    def result(self) -> List[List[Prediction]]:
        if self._finish is not None:
            self._result, self._finish = self._finish(), None
        return self._result

    def part(self, k: int) -> PendingPrediction:
        return PendingPrediction(lambda: self.result()[k])


def split_predictions(out: Dict[str, np.ndarray], verts: Optional[np.ndarray], joints: np.ndarray,
                      parts: Sequence[tuple]) -> List[List[Prediction]]:
    """One batched forward's outputs cut back into frames: ``parts[k]`` = (kept, processed boxes,
    affines, raw boxes) of frame ``k``, whose crops are the next ``len(kept)`` items of the batch."""
    results, start = [], 0
    for kept, boxes, invs, bboxes in parts:
        end = start + len(kept)
        if kept:
            results.append(assemble_predictions({k: v[start:end] for k, v in out.items()},
                                                verts[start:end] if verts is not None else None,
                                                joints[start:end], kept, boxes, invs, bboxes))
        else:
            results.append([])
        start = end
    return results


class _DevicePath:
    """Frame upload, crops, network and SMPL-X layer on the engine's device (a GPU), one copy back.

    Written for CUDA (pinned buffers, asynchronous copies, an event to wait on, CUDA graphs);
    it also runs on the CPU, which the tests use to check it against the official CPU path. The
    SMPL-X layer replays a CUDA graph when the engine does (``engine.cuda_graph``).
    """

    def __init__(self, engine: Engine, body_model: BodyModel):
        import copy

        from .backends.cuda_graph import CudaGraphed

        self.engine = engine
        self.device = engine.device
        self.cuda = self.device == "cuda"
        self.body = copy.deepcopy(body_model).to(self.device).eval()
        self._body_call = CudaGraphed(self.body, "SMPL-X layer") if engine.cuda_graph else self.body
        self._buffers: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}  # (pinned, device) frame per slot

    def _upload(self, image_bgr: np.ndarray, slot: int = 0) -> torch.Tensor:
        """The frame copied into the device buffer of frame ``slot`` (through a pinned host buffer on
        CUDA); the buffers are made once per slot and frame size."""
        from .media import to_bgr

        img = to_bgr(image_bgr)  # a BGR frame comes back as it is
        if img.dtype != np.uint8:
            raise ValueError(f"expected a uint8 BGR frame, got {img.dtype}")
        host, frame = self._buffers.get(slot, (None, None))
        if host is None or tuple(host.shape) != img.shape:
            host = torch.empty(img.shape, dtype=torch.uint8, pin_memory=self.cuda)
            frame = torch.empty(img.shape, dtype=torch.uint8, device=self.device)
            self._buffers[slot] = (host, frame)
        np.copyto(host.numpy(), img)
        frame.copy_(host, non_blocking=True)
        return frame

    def _crop(self, image_bgr: np.ndarray, invs, slot: int = 0) -> torch.Tensor:
        frame = self._upload(image_bgr, slot)
        inv = torch.from_numpy(np.stack(invs))
        inv = inv.pin_memory().to(self.device, non_blocking=True) if self.cuda else inv
        return G.crop_batch_torch(frame, inv)

    def _launch_batch(self, predictor: Predictor, batch: torch.Tensor):
        """Network and SMPL-X layer launched on ``batch``, their outputs copied back without waiting.
        Returns ``collect()``: waits, then (outputs, vertices, joints) as numpy; recomputed eagerly
        in the rare case the captured grid overflowed."""
        out, overflow = self.engine.launch(batch)
        verts, joints = body_in_camera(self._body_call, out, predictor.with_mesh)
        host = {k: v.to("cpu", non_blocking=True) for k, v in out.items()}
        host_joints = joints.to("cpu", non_blocking=True)
        host_verts = verts.to("cpu", non_blocking=True) if verts is not None else None
        host_overflow = overflow.to("cpu", non_blocking=True) if overflow is not None else None
        done = torch.cuda.Event() if self.cuda else None
        if done is not None:
            done.record()

        def collect():
            if done is not None:
                done.synchronize()
            if host_overflow is not None and bool(host_overflow):
                return forward_step(self.engine, self.body, batch, predictor.with_mesh, recompute=True)
            v = host_verts.numpy() if host_verts is not None else None
            return {k: t.numpy() for k, t in host.items()}, v, host_joints.numpy()

        return collect

    def launch(self, predictor: Predictor, image_bgr: np.ndarray, bboxes) -> PendingPrediction:
        h, w = image_bgr.shape[:2]
        kept, boxes, invs = G.process_bboxes(bboxes, w, h)
        if not kept:
            return PendingPrediction(lambda: [])
        collect = self._launch_batch(predictor, self._crop(image_bgr, invs))
        return PendingPrediction(lambda: assemble_predictions(*collect(), kept, boxes, invs, bboxes))

    def launch_many(self, predictor: Predictor, frames) -> PendingBatch:
        """Every frame uploaded and cropped on the device, the crops of all frames in one network
        call and one SMPL-X layer call, one copy back."""
        parts, crops = [], []
        for slot, (image_bgr, bboxes) in enumerate(frames):
            h, w = image_bgr.shape[:2]
            kept, boxes, invs = G.process_bboxes(bboxes, w, h)
            parts.append((kept, boxes, invs, bboxes))
            if kept:
                crops.append(self._crop(image_bgr, invs, slot))
        if not crops:
            return PendingBatch(lambda: [[] for _ in parts])
        collect = self._launch_batch(predictor, torch.cat(crops) if len(crops) > 1 else crops[0])
        return PendingBatch(lambda: split_predictions(*collect(), parts))
