"""The official SMPLer-X forward in training mode (``main/SMPLer_X.py``, ``mode='train'``) on this
project's network (:class:`engines.smplerx.SMPLerX`, whose eval forward stays untouched).

It returns what the losses need: SMPL-X parameters, the 137 joints of the neutral SMPL-X
(root-relative with and without the per-part alignment, projected to the 12x16 grid), the 65
PositionNet joints (hands in their 16^3 hand grids) and the predicted hand/face boxes. The
``detach()`` points are the official ones, so gradients flow as in the official training.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

from engines import geometry as G
from engines.datasets import joints as J
from engines.smplerx import JOINT_IDX_137, NUM_HAND_ROT, SMPLerX

#: Encoder stochastic depth of the official configs (``drop_path_rate`` of body_encoder_*.py).
DROP_PATH_RATE = {"s32": 0.1, "b32": 0.3, "l32": 0.5, "h32": 0.55}


def part_relative(joint_cam: torch.Tensor) -> torch.Tensor:
    """Root-relative joints -> hands relative to the wrists, face relative to the neck."""
    parts = [joint_cam[:, :J.PART["lhand"][0]]]
    for part, anchor in (("lhand", J.LWRIST), ("rhand", J.RWRIST), ("face", J.NECK)):
        idx = J.PART[part]
        parts.append(joint_cam[:, idx[0]:idx[-1] + 1] - joint_cam[:, anchor, None, :])
    return torch.cat(parts, 1)


def train_forward(net: SMPLerX, body_model, img: torch.Tensor) -> Dict[str, torch.Tensor]:
    """(B, 3, 512, 384) RGB in [0, 1] -> the official training outputs (see the module doc)."""
    b = img.shape[0]
    body_img = F.interpolate(img, G.INPUT_BODY_SHAPE)
    feat, tokens = net.encoder(body_img)
    shape_token, cam_token, expr_token, jaw_token = tokens[:, 0], tokens[:, 1], tokens[:, 2], tokens[:, 3]
    body_pose_token = tokens[:, 6:]

    body_hm, body_joint_img = net.body_position_net(feat)
    root6, body6, shape, cam_param = net.body_regressor(body_pose_token, shape_token, cam_token,
                                                        body_joint_img.detach())
    root_pose = G.rot6d_to_axis_angle(root6)
    body_pose = G.rot6d_to_axis_angle(body6.reshape(-1, 6)).reshape(b, -1)
    cam_trans = G.camera_translation(cam_param)

    lc, ls, rc, rs, fc, fs = net.box_net(feat, body_hm.detach())
    lhand_bbox = G.restore_bbox(lc, ls, 1.0, 2.0).detach()
    rhand_bbox = G.restore_bbox(rc, rs, 1.0, 2.0).detach()
    # diverged weights: RoIAlign cannot size a NaN box; the NaN reaches the losses anyway (the box terms),
    # where the runner stops on it on every rank alike. Finite boxes pass unchanged.
    lhand_bbox = torch.where(torch.isfinite(lhand_bbox), lhand_bbox, torch.zeros_like(lhand_bbox))
    rhand_bbox = torch.where(torch.isfinite(rhand_bbox), rhand_bbox, torch.zeros_like(rhand_bbox))

    hand_feat = net.hand_roi_net(feat, lhand_bbox, rhand_bbox)
    _, hand_joint_img = net.hand_position_net(hand_feat)
    hand6 = net.hand_regressor(hand_feat, hand_joint_img.detach())
    hand_pose = G.rot6d_to_axis_angle(hand6.reshape(-1, 6)).reshape(2 * b, -1)
    lhand_joint_img = hand_joint_img[:b]
    lhand_joint_img = torch.cat((G.OUTPUT_HAND_HM_SHAPE[2] - 1 - lhand_joint_img[:, :, 0:1],
                                 lhand_joint_img[:, :, 1:]), 2)
    rhand_joint_img = hand_joint_img[b:]
    lhand_pose = hand_pose[:b].reshape(b, NUM_HAND_ROT, 3)
    lhand_pose = torch.cat((lhand_pose[:, :, 0:1], -lhand_pose[:, :, 1:3]), 2).reshape(b, -1)
    rhand_pose = hand_pose[b:]

    expr, jaw6 = net.face_regressor(expr_token, jaw_token)
    jaw_pose = G.rot6d_to_axis_angle(jaw6)

    _, joints = body_model(root_pose, body_pose, lhand_pose, rhand_pose, jaw_pose, shape, expr)
    joint_cam = joints[:, list(JOINT_IDX_137), :]
    t = cam_trans
    x = (joint_cam[:, :, 0] + t[:, None, 0]) / (joint_cam[:, :, 2] + t[:, None, 2] + 1e-4) * G.FOCAL[0] + G.PRINCPT[0]
    y = (joint_cam[:, :, 1] + t[:, None, 1]) / (joint_cam[:, :, 2] + t[:, None, 2] + 1e-4) * G.FOCAL[1] + G.PRINCPT[1]
    joint_proj = torch.stack((x / G.INPUT_BODY_SHAPE[1] * G.OUTPUT_HM_SHAPE[2],
                              y / G.INPUT_BODY_SHAPE[0] * G.OUTPUT_HM_SHAPE[1]), 2)
    joint_cam_wo_ra = joint_cam - joint_cam[:, J.ROOT, None, :]
    return {
        "pose": torch.cat((root_pose, body_pose, lhand_pose, rhand_pose, jaw_pose), 1),
        "shape": shape, "expr": expr, "cam_trans": cam_trans,
        "joint_proj": joint_proj, "joint_cam_wo_ra": joint_cam_wo_ra, "joint_cam": part_relative(joint_cam_wo_ra),
        "joint_img": torch.cat((body_joint_img, lhand_joint_img, rhand_joint_img), 1),
        "lhand_bbox_center": lc, "lhand_bbox_size": ls, "rhand_bbox_center": rc, "rhand_bbox_size": rs,
        "face_bbox_center": fc, "face_bbox_size": fs, "lhand_bbox": lhand_bbox, "rhand_bbox": rhand_bbox,
    }


def smplx_joint_fn(body_model):
    """params (numpy, official target names) -> the 137 joints of the neutral SMPL-X, camera space,
    for the targets of samples without 3-D keypoints (:func:`engines.datasets.targets.smplx_joint_targets`)."""
    def joints(param) -> np.ndarray:
        def get(key, n):
            v = param.get(key)
            ok = v is not None and param.get({"lhand_pose": "lhand_valid", "rhand_pose": "rhand_valid"}.get(key, ""), True)
            return torch.as_tensor(np.asarray(v, np.float32)).reshape(1, -1) if ok else torch.zeros(1, n)
        face = param.get("face_valid", True) and param.get("jaw_pose") is not None and param.get("expr") is not None
        with torch.no_grad():
            _, j = body_model(get("root_pose", 3), get("body_pose", 63), get("lhand_pose", 45), get("rhand_pose", 45),
                              get("jaw_pose", 3) if face else torch.zeros(1, 3),
                              torch.as_tensor(np.asarray(param["shape"], np.float32)).reshape(1, -1),
                              get("expr", 10) if face else torch.zeros(1, 10),
                              transl=torch.as_tensor(np.asarray(param.get("trans", np.zeros(3)), np.float32)).reshape(1, 3))
        return j[0, list(JOINT_IDX_137)].numpy()
    return joints


class TrainNet(torch.nn.Module):
    """The network with the training forward as ``forward(img)`` (what DDP wraps). The SMPL-X
    layer is held outside the module tree: its constant buffers are neither trained, saved nor
    broadcast between ranks."""

    def __init__(self, net: SMPLerX, body_model):
        super().__init__()
        self.net = net
        self.__dict__["body_model"] = body_model

    def forward(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        return train_forward(self.net, self.body_model, img)
