"""The official SMPLer-X loss terms (``main/SMPLer_X.py`` train branch, ``common/nets/loss.py``).

Every term is an L1 error times a validity mask, averaged over all its elements (the official
``loss[k].mean()``), times the config's weight; the total is the sum of the terms. The hand
joints' targets are moved into the predicted hand boxes' 16x16x16 grids and the projected hand
and face joints are translation-aligned to their targets, exactly as the official code does,
including which already-updated arrays each step reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch

from engines import geometry as G
from engines.datasets import joints as J

HAND_HM = G.OUTPUT_HAND_HM_SHAPE
HM = G.OUTPUT_HM_SHAPE
BODY = G.INPUT_BODY_SHAPE


@dataclass(frozen=True)
class LossWeights:
    """``smplx_pose_weight``, ``smplx_loss_weight`` (shape), ``smplx_kps_3d_weight``,
    ``smplx_kps_2d_weight``, ``net_kps_2d_weight`` of config_smpler_x_{s,b,l,h}32.py."""
    pose: float = 10.0
    shape: float = 1.0
    kps_3d: float = 100.0
    kps_2d: float = 1.0
    net_kps_2d: float = 1.0
    #: ``agora_fix_global_orient_transl = True`` in the official configs: the root pose is supervised.
    supervise_root: bool = True


def coord_loss(out, gt, valid, is_3d=None):
    loss = torch.abs(out - gt) * valid
    if is_3d is not None:
        loss = torch.cat((loss[:, :, :2], loss[:, :, 2:] * is_3d[:, None, None].to(loss.dtype)), 2)
    return loss


def _reduce(joint):
    """137 joints -> the 65 PositionNet joints (body + hands: the first 65)."""
    return joint[:, :J.POS_JOINT_NUM, :]


def _to_hand_grid(x, y, bbox):
    """Grid x, y -> the hand box's 16x16 grid (official in-place arithmetic, as new tensors)."""
    x = (x - bbox[:, None, 0] / BODY[1] * HM[2]) * (HAND_HM[2] / ((bbox[:, None, 2] - bbox[:, None, 0]) / BODY[1] * HM[2]))
    y = (y - bbox[:, None, 1] / BODY[0] * HM[1]) * (HAND_HM[1] / ((bbox[:, None, 3] - bbox[:, None, 1]) / BODY[0] * HM[1]))
    return x, y


def _splice(full, part_idx, part):
    return torch.cat((full[:, :part_idx[0]], part, full[:, part_idx[-1] + 1:]), 1)


def _align(coord, target, trunc):
    """Per sample: shift ``coord`` by the mean offset to ``target`` over joints with trunc == 1."""
    shifts = []
    for b in range(coord.shape[0]):
        mask = trunc[b] == 1
        if torch.sum(mask) == 0:
            shifts.append(coord.new_zeros(2))
        else:
            shifts.append((-coord[b, mask, :2] + target[b, mask, :2]).mean(0))
    return coord + torch.stack(shifts)[:, None, :]


def official_losses(out: Dict[str, torch.Tensor], targets: Dict[str, torch.Tensor], meta: Dict[str, torch.Tensor],
                    w: LossWeights = LossWeights()) -> Dict[str, torch.Tensor]:
    """Per-element loss tensors by name (average each with ``.mean()``), in the official order."""
    loss: Dict[str, torch.Tensor] = {}
    pose_l1 = torch.abs(out["pose"] - targets["smplx_pose"]) * meta["smplx_pose_valid"]
    loss["smplx_pose"] = (pose_l1 if w.supervise_root else pose_l1[:, 3:]) * w.pose
    loss["smplx_shape"] = torch.abs(out["shape"] - targets["smplx_shape"]) * meta["smplx_shape_valid"][:, None] * w.shape
    loss["smplx_expr"] = torch.abs(out["expr"] - targets["smplx_expr"]) * meta["smplx_expr_valid"][:, None]
    loss["joint_cam"] = coord_loss(out["joint_cam_wo_ra"], targets["joint_cam"],
                                   meta["joint_valid"] * meta["is_3D"][:, None, None]) * w.kps_3d
    loss["smplx_joint_cam"] = coord_loss(out["joint_cam"], targets["smplx_joint_cam"], meta["smplx_joint_valid"]) * w.kps_3d
    for part in ("lhand", "rhand", "face"):
        valid = meta[f"{part}_bbox_valid"]
        if not (valid == 0).all():
            loss[f"{part}_bbox"] = (coord_loss(out[f"{part}_bbox_center"], targets[f"{part}_bbox_center"], valid[:, None])
                                    + coord_loss(out[f"{part}_bbox_size"], targets[f"{part}_bbox_size"], valid[:, None]))

    tgt = {"joint_img": targets["joint_img"], "smplx_joint_img": targets["smplx_joint_img"]}
    trunc = {"joint_trunc": meta["joint_trunc"], "smplx_joint_trunc": meta["smplx_joint_trunc"]}
    joint_proj = out["joint_proj"]
    if not (meta["lhand_bbox_valid"] + meta["rhand_bbox_valid"] == 0).all():
        for part in ("lhand", "rhand"):
            bbox, idx = out[f"{part}_bbox"], J.PART[part]
            sl = slice(idx[0], idx[-1] + 1)
            for coord_name, trunc_name in (("joint_img", "joint_trunc"), ("smplx_joint_img", "smplx_joint_trunc")):
                t = tgt[coord_name]
                x, y = _to_hand_grid(t[:, sl, 0], t[:, sl, 1], bbox)
                z = t[:, sl, 2] * (HAND_HM[0] / HM[0])
                tr = trunc[trunc_name][:, sl, 0] * ((x >= 0) * (x < HAND_HM[2]) * (y >= 0) * (y < HAND_HM[1]))
                tgt[coord_name] = _splice(t, idx, torch.stack((x, y, z), 2))
                trunc[trunc_name] = _splice(trunc[trunc_name], idx, tr[:, :, None])
        for part in ("lhand", "rhand"):
            bbox, idx = out[f"{part}_bbox"], J.PART[part]
            sl = slice(idx[0], idx[-1] + 1)
            x, y = _to_hand_grid(joint_proj[:, sl, 0], joint_proj[:, sl, 1], bbox)
            coord = _align(torch.stack((x, y), 2), tgt["joint_img"][:, sl], trunc["joint_trunc"][:, sl, 0])
            joint_proj = _splice(joint_proj, idx, coord)
    if not (meta["face_bbox_valid"] == 0).all():
        idx = J.PART["face"]
        sl = slice(idx[0], idx[-1] + 1)
        coord = _align(joint_proj[:, sl, :], tgt["joint_img"][:, sl], trunc["joint_trunc"][:, sl, 0])
        joint_proj = _splice(joint_proj, idx, coord)

    loss["joint_proj"] = coord_loss(joint_proj, tgt["joint_img"][:, :, :2], trunc["joint_trunc"]) * w.kps_2d
    loss["joint_img"] = coord_loss(out["joint_img"], _reduce(tgt["joint_img"]), _reduce(trunc["joint_trunc"]),
                                   meta["is_3D"]) * w.net_kps_2d
    loss["smplx_joint_img"] = coord_loss(out["joint_img"], _reduce(tgt["smplx_joint_img"]),
                                         _reduce(trunc["smplx_joint_trunc"])) * w.net_kps_2d
    return loss


def reduce_losses(loss: Dict[str, torch.Tensor]):
    """(means by name, total): the official ``loss_mean`` and ``loss_sum``."""
    means = {k: v.mean() for k, v in loss.items()}
    return means, sum(means.values())
