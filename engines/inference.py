"""Frame + box -> SMPL-X parameters, mesh and camera, the way the official demo does it.

``Predictor`` = pre-processing (box padding, affine crop, RGB/255) + an engine
running the network + the SMPL-X layer + the full-frame camera. It works on one
frame and any number of person boxes (batched through the network).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from engines.types import Person, SMPLXParams

from . import geometry as G
from .backends.base import Engine
from .body_model import BodyModel

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One person's result in a frame, with everything the writers and streams need."""

    person: Person
    #: Official-style extras: hand/face boxes (xyxy) in full-frame pixels, joint_img.
    lhand_bbox: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    rhand_bbox: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    face_bbox: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))

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


class Predictor:
    """Runs SMPLer-X on person boxes of a frame."""

    def __init__(self, engine: Engine, body_model: BodyModel, with_mesh: bool = True):
        self.engine = engine
        self.body_model = body_model.to("cpu").eval()
        self.with_mesh = with_mesh

    @classmethod
    def from_files(cls, checkpoint: Union[str, Path], body_models: Optional[Union[str, Path]] = None,
                   device: str = "cpu", engine: str = "torch", **engine_kwargs) -> "Predictor":
        """Load the checkpoint (a path or a size name) and the body model."""
        from .backends import load_engine
        from .body_model import check_smplx_file, find_smplx_file

        check_smplx_file(find_smplx_file(body_models))  # a bad body model fails before a slow engine load
        eng = load_engine(checkpoint, kind=engine, device=device, **engine_kwargs)
        return cls(eng, BodyModel(body_models))

    def preprocess(self, image_rgb: np.ndarray, bboxes: Sequence[Sequence[float]]):
        h, w = image_rgb.shape[:2]
        kept, patches, boxes, invs = [], [], [], []
        for i, raw in enumerate(bboxes):
            box = G.process_bbox(raw, w, h)
            if box is None:
                log.warning("box %s is degenerate after clipping to the %dx%d frame; skipped", list(raw), w, h)
                continue
            patch, _, inv = G.crop_image(image_rgb, box)
            kept.append(i)
            patches.append(patch)
            boxes.append(box)
            invs.append(inv)
        return kept, patches, boxes, invs

    @torch.inference_mode()
    def predict(self, image_bgr: np.ndarray, bboxes: Sequence[Sequence[float]],
                image_is_rgb_float: bool = False) -> List[Prediction]:
        """Predict every box (raw detector boxes, xywh) of a BGR uint8 frame."""
        rgb = image_bgr if image_is_rgb_float else G.bgr_to_rgb_float(image_bgr)
        kept, patches, boxes, invs = self.preprocess(rgb, bboxes)
        if not kept:
            return []
        out = self.engine.run({"img": G.to_input_batch(patches)})
        tt = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
        verts, joints = self.body_model(tt["smplx_root_pose"], tt["smplx_body_pose"], tt["smplx_lhand_pose"],
                                        tt["smplx_rhand_pose"], tt["smplx_jaw_pose"], tt["smplx_shape"],
                                        tt["smplx_expr"])
        trans = tt["cam_trans"]
        verts = (verts + trans[:, None]).numpy()
        joints = (joints + trans[:, None]).numpy()
        results = []
        for b, i in enumerate(kept):
            cam = G.full_frame_camera(boxes[b])
            params = SMPLXParams(
                global_orient=out["smplx_root_pose"][b].reshape(1, 3),
                body_pose=out["smplx_body_pose"][b].reshape(21, 3),
                left_hand_pose=out["smplx_lhand_pose"][b].reshape(15, 3),
                right_hand_pose=out["smplx_rhand_pose"][b].reshape(15, 3),
                jaw_pose=out["smplx_jaw_pose"][b].reshape(1, 3),
                betas=out["smplx_shape"][b].reshape(1, 10),
                expression=out["smplx_expr"][b].reshape(1, 10),
                transl=out["cam_trans"][b].reshape(1, 3),
            )
            person = Person(
                track_id=i, params=params, bbox=boxes[b],
                bbox_detector=np.asarray(bboxes[i], np.float64),
                focal=np.array(cam.focal, np.float64), princpt=np.array(cam.princpt, np.float64),
                vertices=verts[b] if self.with_mesh else None, joints=joints[b],
                joints_2d=cam.project(joints[b]).astype(np.float32),
            )
            results.append(Prediction(
                person,
                lhand_bbox=_crop_box_to_frame(out["lhand_bbox"][b], invs[b]),
                rhand_bbox=_crop_box_to_frame(out["rhand_bbox"][b], invs[b]),
                face_bbox=_crop_box_to_frame(out["face_bbox"][b], invs[b]),
            ))
        return results
