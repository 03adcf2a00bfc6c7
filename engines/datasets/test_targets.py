"""Test-mode ground truth from body-model parameters, as the official loaders build it.

``smplx_test_params``: what ``process_human_model_output(..., 'smplx')`` hands the model as
``smplx_pose``/``smplx_shape``/``smplx_expr`` in test mode (no augmentation): missing or
invalid hands, face and expression become zeros, the root is rotated by the camera's ``R``
when there is one, and a shape with any coefficient beyond +-3 is zeroed. The official
model then builds the pseudo ground-truth mesh with its NEUTRAL SMPL-X layer plus the
annotation's ``trans`` (``Model.generate_mesh_gt``); :func:`smplx_pseudo_gt_mesh` does the same.

``smpl_test_mesh``: the SMPL ground-truth mesh of ``process_human_model_output(..., 'smpl')``
(3DPW): the gendered SMPL layer, then the camera extrinsics applied about the root joint.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import cv2
import numpy as np
import torch

from .targets import smplx_param_targets


def _rodrigues_round_trip(root: np.ndarray, rot: Optional[np.ndarray] = None) -> np.ndarray:
    """Root axis-angle, optionally pre-rotated by ``rot``, through ``cv2.Rodrigues`` both ways."""
    mat, _ = cv2.Rodrigues(np.asarray(root, np.float32).reshape(3))
    if rot is not None:
        mat = np.dot(rot, mat)
    aa, _ = cv2.Rodrigues(mat)
    return aa.reshape(3)


def smplx_test_params(param: Mapping, cam_param: Optional[Mapping] = None) -> Dict[str, np.ndarray]:
    """Official test-mode SMPL-X targets from an annotation's ``smplx_param`` (keys ``root_pose``,
    ``body_pose``, ``shape``, ``trans``, optional ``lhand_pose``/``rhand_pose``/``jaw_pose``/``expr``
    with ``lhand_valid``/``rhand_valid``/``face_valid``): the root first rotated into the camera
    when ``cam_param`` has ``R``, then :func:`engines.datasets.targets.smplx_param_targets` without
    augmentation. Returns float32 arrays: global_orient (3), body_pose (63),
    left/right_hand_pose (45), jaw_pose (3), betas (10), expression (10), transl (3)."""
    param = dict(param)
    if cam_param and "R" in cam_param:
        rot = np.array(cam_param["R"], np.float32).reshape(3, 3)
        param["root_pose"] = _rodrigues_round_trip(param["root_pose"], rot).astype(np.float32)
    pose, shape, expr, _, _ = smplx_param_targets(param, False, 0.0)
    trans = np.asarray(param["trans"], np.float32).reshape(-1)
    return {"global_orient": pose[:3], "body_pose": pose[3:66], "left_hand_pose": pose[66:111],
            "right_hand_pose": pose[111:156], "jaw_pose": pose[156:159], "betas": shape, "expression": expr,
            "transl": trans}


@torch.no_grad()
def smplx_pseudo_gt_mesh(body_model, params: Mapping[str, np.ndarray]) -> np.ndarray:
    """(10475, 3) float32: the neutral SMPL-X mesh of ``params`` plus ``transl`` (official
    ``generate_mesh_gt``: the model's own layer, eye poses zero, translation added after)."""
    t = {k: torch.from_numpy(np.asarray(v, np.float32).reshape(1, -1)) for k, v in params.items()}
    verts, _ = body_model(t["global_orient"], t["body_pose"], t["left_hand_pose"], t["right_hand_pose"],
                          t["jaw_pose"], t["betas"], t["expression"])
    return (verts + t["transl"][:, None, :])[0].numpy()


@torch.no_grad()
def smpl_test_mesh(smpl_layers, smpl_param: Mapping, cam_param: Mapping) -> np.ndarray:
    """(6890, 3) SMPL ground-truth mesh in camera space (official test path of 3DPW)."""
    pose = torch.FloatTensor(np.asarray(smpl_param["pose"], np.float32)).view(-1, 3)
    shape = torch.FloatTensor(np.asarray(smpl_param["shape"], np.float32)).view(1, -1)
    trans = torch.FloatTensor(np.asarray(smpl_param["trans"], np.float32)).view(1, -1)
    gender = smpl_param.get("gender", "neutral")
    if "R" in cam_param:
        rot = np.array(cam_param["R"], np.float32).reshape(3, 3)
        pose[0] = torch.from_numpy(_rodrigues_round_trip(pose[0].numpy(), rot).astype(np.float32)).view(3)
    layer = smpl_layers.layer(gender)
    out = layer(betas=shape, body_pose=pose[1:].reshape(1, -1), global_orient=pose[:1], transl=trans)
    mesh = out.vertices[0].numpy()
    joints = np.dot(smpl_layers.joint_regressor, mesh)
    if "R" in cam_param and "t" in cam_param:
        rot = np.array(cam_param["R"], np.float32).reshape(3, 3)
        t = np.array(cam_param["t"], np.float32).reshape(1, 3)
        root = joints[0, None, :]
        mesh = mesh - root + np.dot(rot, root.transpose(1, 0)).transpose(1, 0) + t
    return mesh
